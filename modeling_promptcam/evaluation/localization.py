"""Do the traits land on the part that decides the class? Map peaks against ground-truth trait masks.

The measure used by the demo (`promptcam demo`): an image counts as a hit when the peak of a map (the patch with the
highest value) lies within `tolerance` patches (8-neighbourhood) of a patch that the trait mask touches. The same
measure is applied to Prompt-CAM's top-ranked head and, as a baseline, to the backbone's own last-layer CLS
attention (mean over heads); `chance_level` is what a peak placed uniformly at random would score.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from transformers import PreTrainedModel

from ..data.masks import patch_mask


def map_peak(trait_map: np.ndarray | torch.Tensor) -> tuple[int, int]:
    """The (row, column) of the largest value of a `(grid_h, grid_w)` map (the first one on ties)."""
    values = np.asarray(trait_map, dtype=np.float64)
    if values.ndim != 2:
        raise ValueError(f"A map must be 2-D (grid_h, grid_w), got shape {values.shape}.")
    row, column = np.unravel_index(int(np.argmax(values)), values.shape)
    return int(row), int(column)


def peak_hits_mask(trait_map: np.ndarray | torch.Tensor, mask: np.ndarray, tolerance: int = 1) -> bool:
    """Whether the map's peak patch is within `tolerance` patches of the pixel mask `(H, W)` (bool)."""
    grid = np.asarray(trait_map).shape
    return bool(patch_mask(mask, grid, dilation=tolerance)[map_peak(trait_map)])


def chance_level(mask: np.ndarray, grid: Sequence[int], tolerance: int = 1) -> float:
    """The hit rate of a peak placed uniformly at random on the patch grid."""
    return float(patch_mask(mask, grid, dilation=tolerance).mean())


@torch.no_grad()
def cls_attention_maps(
    backbone: PreTrainedModel, pixel_values: torch.Tensor, num_prefix_tokens: int = 1
) -> torch.Tensor:
    """The backbone's last-layer attention of the CLS token to each patch, averaged over heads: `(B, grid_h, grid_w)`.

    Attention weights come from transformers' own `output_attentions=True`, which needs the eager attention
    (`faithfulness.eager_attention` switches to it and back). `num_prefix_tokens`: CLS plus register tokens.
    """
    from .saliency import eager_attention

    with eager_attention(backbone):
        attentions = backbone(pixel_values=pixel_values, output_attentions=True).attentions[-1]
    patch = backbone.config.patch_size
    patch_h, patch_w = (patch, patch) if isinstance(patch, int) else patch
    grid = (pixel_values.shape[-2] // patch_h, pixel_values.shape[-1] // patch_w)
    return attentions[:, :, 0, num_prefix_tokens:].mean(dim=1).reshape(-1, *grid)


__all__ = ["chance_level", "cls_attention_maps", "map_peak", "peak_hits_mask"]
