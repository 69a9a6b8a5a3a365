"""Do the traits land on the part that decides the class? Map peaks against ground-truth trait masks.

The measure used by the demo (`promptcam demo`): an image counts as a hit when the peak of a map (the patch with the
highest value) lies within `tolerance` patches (8-neighbourhood) of a patch that the trait mask touches. The same
measure is applied to Prompt-CAM's top-ranked head and, as a baseline, to the backbone's own last-layer CLS
attention (mean over heads); `chance_level` is what a peak placed uniformly at random would score.

[`peak_hits_mask`] is the patch-level measure, [`evaluation.metrics.pointing_game`] the pixel-level one; both read
"within N" with `data.masks.grow_region`. Use `peak_hits_mask` for maps that live on the patch grid (trait maps,
attention) and small traits that may cover only part of a patch; use `pointing_game` to compare methods whose maps
come at different resolutions (`promptcam faithfulness`). docs/faithfulness.md, "Two localisation measures", has the
details.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from transformers import PreTrainedModel

from ..data.masks import patch_mask
from .rollout import eager_attention


def map_peak(trait_map: np.ndarray | torch.Tensor) -> tuple[int, int]:
    """The (row, column) of the largest value of a `(grid_h, grid_w)` map (the first one on ties)."""
    values = np.asarray(trait_map, dtype=np.float64)
    if values.ndim != 2:
        raise ValueError(f"A map must be 2-D (grid_h, grid_w), got shape {values.shape}.")
    row, column = np.unravel_index(int(np.argmax(values)), values.shape)
    return int(row), int(column)


def peak_hits_mask(trait_map: np.ndarray | torch.Tensor, mask: np.ndarray, tolerance: int = 1) -> bool:
    """Whether the map's peak patch is within `tolerance` patches of the pixel mask `(H, W)` (bool).

    The patch-level pointing game: the map stays on its patch grid `(grid_h, grid_w)`; its peak is one patch (the
    first on ties, [`map_peak`]); a patch belongs to the region when any of its pixels does ([`data.masks.patch_mask`]),
    and the region is grown by `tolerance` patches with the rule `pointing_game` uses for pixels
    (`data.masks.grow_region`). Unlike [`evaluation.metrics.pointing_game`], a trait smaller than a patch is hit by
    the patch it lies in, and ties are not all required to be inside. On a map with one highest patch and a mask of
    whole patches, `peak_hits_mask(map, mask, k)` equals `pointing_game` of the map repeated per patch (nearest) at
    `tolerance=k * patch_size`.
    """
    grid = np.asarray(trait_map).shape
    return bool(patch_mask(mask, grid, dilation=tolerance)[map_peak(trait_map)])


def chance_level(mask: np.ndarray, grid: Sequence[int], tolerance: int = 1) -> float:
    """The hit rate of a peak placed uniformly at random on the patch grid."""
    return float(patch_mask(mask, grid, dilation=tolerance).mean())


@torch.no_grad()
def cls_attention_heads(
    backbone: PreTrainedModel, pixel_values: torch.Tensor, num_prefix_tokens: int = 1
) -> torch.Tensor:
    """The backbone's last-layer attention of the CLS token to each patch, per head: `(B, heads, grid_h, grid_w)`
    (the "heads" a user of the plain backbone would look at; the trait atlas's baseline).

    Attention weights come from transformers' own `output_attentions=True`, which needs the eager attention
    ([`eager_attention`] switches to it and back). `num_prefix_tokens`: CLS plus register tokens.
    """
    with eager_attention(backbone):
        attentions = backbone(pixel_values=pixel_values, output_attentions=True).attentions[-1]
    patch = backbone.config.patch_size
    patch_h, patch_w = (patch, patch) if isinstance(patch, int) else patch
    grid = (pixel_values.shape[-2] // patch_h, pixel_values.shape[-1] // patch_w)
    return attentions[:, :, 0, num_prefix_tokens:].reshape(*attentions.shape[:2], *grid)


@torch.no_grad()
def cls_attention_maps(
    backbone: PreTrainedModel, pixel_values: torch.Tensor, num_prefix_tokens: int = 1
) -> torch.Tensor:
    """The backbone's last-layer attention of the CLS token to each patch, averaged over heads: `(B, grid_h, grid_w)`
    (the mean of [`cls_attention_heads`])."""
    return cls_attention_heads(backbone, pixel_values, num_prefix_tokens).mean(dim=1)


__all__ = ["chance_level", "cls_attention_heads", "cls_attention_maps", "map_peak", "peak_hits_mask"]
