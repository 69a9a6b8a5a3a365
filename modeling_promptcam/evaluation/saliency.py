"""Saliency maps to compare: Prompt-CAM's own (the mean of a class's top-trait heads) and the baselines of the paper's
Table 1 on the same frozen backbone, and [`SALIENCY_METHODS`], the one table of them that `promptcam faithfulness`
(and every list of its choices) reads.

- [`promptcam_saliency`]: one map per image from Prompt-CAM, the mean of the target class's top-trait heads (here).
- [`finer_cam`] (opt-in): Finer-CAM (CVPR 2025), Grad-CAM of the target contrasted with its most similar classes, as
  pytorch-grad-cam 1.5.x's `FinerCAM` computes it (`evaluation/cams.py`).
- [`grad_cam`], [`layer_cam`], [`eigen_cam`]: the Grad-CAM family on a [`LinearProbeForImageClassification`], computed
  as pytorch-grad-cam 1.5.7 computes them (`GradCAM`, `LayerCAM`, `EigenCAM` with a ViT reshape transform;
  `evaluation/cams.py`).
- [`attention_rollout`]: Abnar & Zuidema (ACL 2020) on the backbone's attention (`evaluation/rollout.py`).

The table has the shape of pytorch-grad-cam's `BaseCAM` and its subclasses: [`SaliencyMethod`]
(`evaluation/saliency_base.py`) holds what every method shares (the input checks, which classifier a method
explains, the `(B, H, W)` contract), and each method is a small subclass; the Grad-CAM family shares one more base,
[`TargetLayerCAM`] (hook the target layer, then ReLU, scale and resize), and each CAM only combines the activations
and gradients. A new method is one subclass and one entry of `SALIENCY_METHODS`. Every name is importable from here.

Why the Grad-CAM family is implemented here rather than imported from `grad-cam` (pytorch-grad-cam): importing any
of its modules runs `pytorch_grad_cam/__init__.py`, which imports `base_cam` -> `utils/image.py` (`from
torchvision.transforms import ...`, `cv2`, `scipy`, `matplotlib`) and `utils/model_targets.py` (`import torchvision`),
and the package requires `torchvision`, `opencv-python-headless`, `ttach`, `scikit-learn` at install time. torchvision
cannot be installed beside every torch build this package supports (with the CPU torch 2.13.0 wheel it fails with
"operator torchvision::nms does not exist", and transformers then fails to import as well), so `grad-cam` could not be
even an optional dependency that the test suite exercises. The three CAMs are a few tensor operations on one layer's
activations and gradients; they are written here in torch, and `tests/test_evaluation_faithfulness.py` checks them against maps
that pytorch-grad-cam 1.5.7 itself produced (torch 2.14.1 + torchvision 0.29.1) on tiny ViT and DINOv2-with-registers
probes, stored in `tests/fixtures/gradcam_parity/` (see `tests/fixtures/make_gradcam_parity.py`).
"""

from __future__ import annotations

import torch

from ..modeling_promptcam import PromptCamForImageClassification
from .cams import (
    EigenCAM,
    FinerCAM,
    GradCAM,
    LayerCAM,
    TargetLayerCAM,
    _target_layer_activations,  # noqa: F401 (kept importable from here: the pytorch-grad-cam parity test reads it)
    cam_target_layer,
    eigen_cam,
    finer_cam,
    finer_comparison_classes,
    finer_objective,
    first_component_projection,
    grad_cam,
    layer_cam,
)
from .metrics import _check_pixel_values, _check_targets, to_image_resolution
from .rollout import HEAD_FUSIONS, AttentionRollout, attention_rollout, eager_attention
from .saliency_base import PROBE, PROMPT_CAM, SaliencyMaps, SaliencyMethod

HEADS_CHOICES = ("top", "all")


def parse_heads(value: str | int, num_heads: int | None = None) -> str | int:
    """The one reader of Prompt-CAM's head choice for a saliency map (`promptcam_saliency`, `promptcam
    faithfulness`): `"top"` (the ranking's top traits), `"all"`, or a number of heads k (an int, or its decimal text
    as a command line gives it) in `[1, num_heads]`.

    Raises `ValueError` naming the allowed values."""
    if value in HEADS_CHOICES:
        return value
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1 or (num_heads and value > num_heads):
        bound = f"in [1, {num_heads}]" if num_heads else ">= 1"
        raise ValueError(f"heads must be 'top' or 'all' or a number of heads {bound}, got {value!r}.")
    return value


@torch.no_grad()
def promptcam_saliency(
    model: PromptCamForImageClassification,
    pixel_values: torch.Tensor,
    target_classes: torch.Tensor | None = None,
    heads: str | int = "top",
    blur: str = "paper",
    stop: str | int = "misclassified",
    upsample: bool = True,
    return_heads: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, list[list[int]]]:
    r"""
    Prompt-CAM's saliency for a class: the mean of the trait maps of its most important heads.

    Args:
        model: a Prompt-CAM model (eval mode is used while computing).
        pixel_values (`(B, 3, H, W)`): normalised images.
        target_classes (`(B,)`, *optional*): the class per image (default: the predicted class).
        heads (defaults to `"top"`): `"top"`: the top traits of [`PromptCamForImageClassification.rank_traits`] with
            `blur` and `stop` (the paper's aggregation: "Prompt-CAM's maps aggregated over the top heads"); an integer
            k (or its decimal text): the k highest-ranked heads; `"all"`: every head, no ranking (see
            [`parse_heads`]).
        blur, stop: the ranking settings (see `rank_traits`; defaults: the paper's). With `stop="misclassified"` and
            a target that is not the predicted class, all heads are top traits.
        upsample: return maps at image resolution `(B, H, W)` (bilinear); `False` gives the patch grid.
        return_heads: also return the heads averaged for each image.
    Returns:
        `(B, H, W)` (or `(B, grid_h, grid_w)`) float32 maps, non-negative; and the heads when asked.
    """
    _check_pixel_values(pixel_values)
    batch = pixel_values.shape[0]
    num_heads = model.config.backbone_config.num_attention_heads
    heads = parse_heads(heads, num_heads)
    was_training = model.training
    model.eval()
    try:
        if target_classes is None:
            target_classes = model(pixel_values).logits.argmax(dim=-1)
        target_classes = _check_targets(target_classes, batch, model.config.num_labels).to(pixel_values.device)
        trait_maps = model(pixel_values, trait_map_classes=target_classes[:, None]).trait_maps[
            :, 0
        ]  # (B, heads, gh, gw)
        if heads == "all":
            chosen = [list(range(num_heads))] * batch
        else:
            rankings = model.rank_traits(pixel_values, target_classes=target_classes, blur=blur, stop=stop)
            chosen = [r.top_traits if heads == "top" else r.ranked_heads[:heads] for r in rankings]
    finally:
        model.train(was_training)
    selected = torch.zeros(batch, num_heads, device=trait_maps.device)
    for b, image_heads in enumerate(chosen):
        selected[b, image_heads] = 1.0
    maps = (trait_maps.float() * selected[:, :, None, None]).sum(dim=1) / selected.sum(dim=1)[:, None, None]
    if upsample:
        maps = to_image_resolution(maps, tuple(pixel_values.shape[2:]))
    return (maps, [list(h) for h in chosen]) if return_heads else maps


class PromptCamSaliency(SaliencyMethod):
    """Prompt-CAM's own maps ([`promptcam_saliency`]), explaining the Prompt-CAM model."""

    name = "prompt-cam"
    explains = PROMPT_CAM

    def compute(self, model, probe, pixel_values, target_classes, settings=None) -> SaliencyMaps:
        ranking = {} if settings is None else {"heads": settings.heads, "blur": settings.blur, "stop": settings.stop}
        return SaliencyMaps(*promptcam_saliency(model, pixel_values, target_classes, **ranking, return_heads=True))


# The methods `promptcam faithfulness` compares, in the order of its table (the paper's Table 1 puts Prompt-CAM last;
# here it comes first). Every list of choices (the CLI's --methods, and the default comparison `METHODS`: the entries
# that are not `opt_in`) is derived from this table, so a new method is one entry: a `SaliencyMethod` subclass, added
# here. Finer-CAM is opt-in: the default table stays the paper's Table 1.
SALIENCY_METHODS: dict[str, SaliencyMethod] = {
    method.name: method
    for method in (PromptCamSaliency(), GradCAM(), LayerCAM(), EigenCAM(), AttentionRollout(), FinerCAM())
}
DEFAULT_METHODS = tuple(name for name, method in SALIENCY_METHODS.items() if not method.opt_in)


__all__ = [
    "HEADS_CHOICES",
    "HEAD_FUSIONS",
    "PROBE",
    "PROMPT_CAM",
    "SALIENCY_METHODS",
    "AttentionRollout",
    "DEFAULT_METHODS",
    "EigenCAM",
    "FinerCAM",
    "GradCAM",
    "LayerCAM",
    "PromptCamSaliency",
    "SaliencyMaps",
    "SaliencyMethod",
    "TargetLayerCAM",
    "attention_rollout",
    "cam_target_layer",
    "eager_attention",
    "eigen_cam",
    "finer_cam",
    "finer_comparison_classes",
    "finer_objective",
    "first_component_projection",
    "grad_cam",
    "layer_cam",
    "parse_heads",
    "promptcam_saliency",
]
