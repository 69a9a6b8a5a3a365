"""What every saliency method of the comparison shares: the shape of a method ([`SaliencyMethod`], the base of the
table in `evaluation.saliency`), its result, the two classifiers a map can explain, and the way from a supported
backbone's tokens to its patch grid.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, NamedTuple

import torch
from torch import nn
from transformers import PreTrainedModel

from ..modeling_promptcam import BACKBONE_DRIVERS, PromptCamForImageClassification
from .metrics import _check_pixel_values

# the two classifiers a map can explain: the Prompt-CAM model, or the linear probe on its frozen backbone
PROMPT_CAM, PROBE = "prompt-cam", "probe"


class SaliencyMaps(NamedTuple):
    maps: torch.Tensor  # (B, H, W) float32, one map per image at image resolution
    heads: list[list[int]] | None  # the heads averaged for each image (Prompt-CAM), None for other methods


class SaliencyMethod:
    """One saliency method of the comparison: its name, the classifier whose decision its maps explain, and how it
    computes them. Subclasses set `name` and `explains` and implement [`~SaliencyMethod.compute`]; calling an instance
    checks the inputs and the `(B, H, W)` result around it.

    `explains` is `"prompt-cam"` (the Prompt-CAM model) or `"probe"` (the linear probe on the same frozen backbone).
    `promptcam faithfulness` reads it to pick the class a map explains under `--target predicted` (that classifier's
    prediction) and the classifier that scores it under `--scorer own`; class-agnostic baselines explain the probe,
    as in the paper, where every baseline is scored by the probe.
    """

    name: ClassVar[str]
    explains: ClassVar[str] = PROBE
    # an opt-in method is in the registry (and `--methods`' choices) but not in the default comparison (`METHODS`)
    opt_in: ClassVar[bool] = False

    def classifier(self, model: PromptCamForImageClassification, probe: nn.Module | None) -> nn.Module | None:
        """The classifier this method's maps explain: `model` or `probe`."""
        return model if self.explains == PROMPT_CAM else probe

    def compute(
        self,
        model: PromptCamForImageClassification,
        probe: nn.Module | None,
        pixel_values: torch.Tensor,
        target_classes: torch.Tensor,
        settings=None,
    ) -> SaliencyMaps:
        """The maps of `pixel_values` for `target_classes` (see `__call__`)."""
        raise NotImplementedError(f"{type(self).__name__} does not implement compute().")

    def __call__(
        self,
        model: PromptCamForImageClassification,
        probe: nn.Module | None,
        pixel_values: torch.Tensor,
        target_classes: torch.Tensor,
        settings=None,
    ) -> SaliencyMaps:
        """
        Args:
            model: the Prompt-CAM model (its backbone is the probe's).
            probe (*optional*): the linear probe on that backbone; needed when `explains == "probe"`.
            pixel_values (`(B, 3, H, W)`): normalised images.
            target_classes (`(B,)`): the class each map explains (class-agnostic methods ignore it).
            settings (*optional*): the run's settings (a `FaithfulnessOptions`), from which a method reads its own
                (Prompt-CAM: `heads`, `blur`, `stop`); `None`: each method's defaults.
        Returns:
            [`SaliencyMaps`]: `(B, H, W)` float maps and, for Prompt-CAM, the heads averaged per image.
        """
        _check_pixel_values(pixel_values)
        if self.classifier(model, probe) is None:
            raise ValueError(f"The saliency method {self.name!r} explains the linear probe; pass one.")
        result = SaliencyMaps(*self.compute(model, probe, pixel_values, target_classes, settings))
        expected = (pixel_values.shape[0], *pixel_values.shape[2:])
        if tuple(result.maps.shape) != expected:
            raise ValueError(
                f"The saliency method {self.name!r} returned maps of shape {tuple(result.maps.shape)}, expected "
                f"{expected}: one map per image at image resolution."
            )
        return result


@dataclass
class _ViTParts:
    target_layer: nn.Module  # the last block's input LayerNorm
    num_prefix_tokens: int  # CLS + registers, dropped before reshaping to the patch grid
    patch_size: tuple[int, int]


def _vit_parts(backbone: PreTrainedModel) -> _ViTParts:
    model_type = getattr(backbone.config, "model_type", None)
    if model_type not in BACKBONE_DRIVERS:
        raise ValueError(
            f"Unsupported backbone {type(backbone).__name__} (model_type {model_type!r}); the saliency baselines "
            f"support {', '.join(BACKBONE_DRIVERS)}."
        )
    driver = BACKBONE_DRIVERS[model_type](backbone)
    return _ViTParts(driver.attention_norm(driver.layers()[-1]), driver.num_prefix_tokens, driver.patch_size)


def _tokens_to_grid(tokens: torch.Tensor, parts: _ViTParts, image_size: tuple[int, int]) -> torch.Tensor:
    """`(B, T, D)` tokens -> `(B, D, grid_h, grid_w)` patch activations (CLS and registers dropped)."""
    grid = (image_size[0] // parts.patch_size[0], image_size[1] // parts.patch_size[1])
    patches = tokens[:, parts.num_prefix_tokens :]
    if patches.shape[1] != grid[0] * grid[1]:
        raise ValueError(
            f"The target layer has {patches.shape[1]} patch tokens, expected {grid[0]}x{grid[1]} for images of "
            f"{image_size[0]}x{image_size[1]} with patch {parts.patch_size}."
        )
    return patches.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], *grid)


__all__ = ["PROBE", "PROMPT_CAM", "SaliencyMaps", "SaliencyMethod"]
