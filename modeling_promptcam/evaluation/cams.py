"""The Grad-CAM family on a linear probe over the frozen backbone, computed as pytorch-grad-cam 1.5.7 computes them
(`GradCAM`, `LayerCAM`, `EigenCAM` with a ViT reshape transform): [`grad_cam`], [`layer_cam`], [`eigen_cam`].

[`TargetLayerCAM`] is the family's shared machinery, as pytorch-grad-cam's `BaseCAM` (hook the target layer, then
ReLU, scale and resize); each CAM is a subclass that only combines the activations and gradients. Why they are
written here rather than imported from `grad-cam`: see `evaluation.saliency`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import torch
from torch import nn
from transformers import PreTrainedModel

from .metrics import _check_pixel_values, _check_targets, _logits, to_image_resolution
from .saliency_base import SaliencyMaps, SaliencyMethod, _tokens_to_grid, _vit_parts


def cam_target_layer(backbone: PreTrainedModel) -> nn.Module:
    """The layer the Grad-CAM family reads: the last transformer block's input LayerNorm (`layernorm_before` of ViT,
    `norm1` of DINOv2 / DINOv3, `layer_norm1` of CLIP), pytorch-grad-cam's recommended target for ViTs."""
    return _vit_parts(backbone).target_layer


def _target_logits(logits: torch.Tensor, target_classes: torch.Tensor) -> torch.Tensor:
    """The objective Grad-CAM differentiates: each image's target logit `(B,)`."""
    return logits.gather(1, target_classes[:, None])[:, 0]


def _target_layer_activations(
    model: nn.Module,
    pixel_values: torch.Tensor,
    target_classes: torch.Tensor | None,
    with_gradients: bool,
    objective: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = _target_logits,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Activations `(B, D, gh, gw)` of the target layer, and (with gradients) the gradients of the objective (by
    default the target logits; `objective(logits, targets)` gives one score per image) with respect to them. `model`
    is a probe (`backbone` + `classifier`) or, without gradients, a bare backbone."""
    _check_pixel_values(pixel_values)
    backbone = getattr(model, "backbone", model)
    if not with_gradients:
        model = backbone  # the activations need the backbone only
    parts = _vit_parts(backbone)
    captured = {}

    def hook(module, args, output):
        # the frozen backbone's activations do not require grad: restart the graph at this layer's output
        leaf = output.detach().requires_grad_(with_gradients)
        captured["activations"] = leaf
        return leaf

    was_training = model.training
    model.eval()
    handle = parts.target_layer.register_forward_hook(hook)
    try:
        with torch.set_grad_enabled(with_gradients):
            output = model(pixel_values=pixel_values) if model is backbone else model(pixel_values)
            gradients = None
            if with_gradients:
                logits = _logits(output)
                if target_classes is None:
                    target_classes = logits.argmax(dim=-1)
                target_classes = _check_targets(target_classes, logits.shape[0], logits.shape[1])
                score = objective(logits, target_classes.to(logits.device)).sum()
                (gradients,) = torch.autograd.grad(score, captured["activations"])
    finally:
        handle.remove()
        model.train(was_training)
    if "activations" not in captured:
        raise RuntimeError("The target layer was not called in the forward pass; is this the probe's backbone?")
    image_size = tuple(pixel_values.shape[2:])
    activations = _tokens_to_grid(captured["activations"].detach(), parts, image_size)
    if gradients is not None:
        gradients = _tokens_to_grid(gradients, parts, image_size)
    return activations.float(), gradients.float() if gradients is not None else None


def _scale(cams: torch.Tensor) -> torch.Tensor:
    """pytorch-grad-cam's `scale_cam_image` without resizing: subtract the minimum, divide by 1e-7 + the new maximum."""
    flat = cams.flatten(1)
    flat = flat - flat.min(dim=1, keepdim=True).values
    return (flat / (1e-7 + flat.max(dim=1, keepdim=True).values)).view_as(cams)


def _finish_cam(cams: torch.Tensor, image_size: tuple[int, int], upsample: bool) -> torch.Tensor:
    """As pytorch-grad-cam finishes a single-layer CAM: ReLU, scale to [0, 1], resize (bilinear), ReLU, scale."""
    cams = _scale(cams.clamp(min=0))
    if upsample:
        cams = to_image_resolution(cams, image_size)
    return _scale(cams.clamp(min=0))


class TargetLayerCAM(SaliencyMethod):
    """The Grad-CAM family's shared machinery, as pytorch-grad-cam's `BaseCAM`: the activations (and, with
    `uses_gradients`, the target logit's gradients) of [`cam_target_layer`] on the patch grid, combined into one
    `(B, grid_h, grid_w)` map by [`~TargetLayerCAM.combine`] (each CAM's own part), then ReLU, scale to [0, 1], resize
    (bilinear), ReLU, scale. The maps explain the probe they are computed on."""

    uses_gradients: ClassVar[bool] = True

    def objective(self, logits: torch.Tensor, target_classes: torch.Tensor) -> torch.Tensor:
        """The score per image `(B,)` whose gradients the CAM combines: the target logit (Finer-CAM changes it)."""
        return _target_logits(logits, target_classes)

    def combine(self, activations: torch.Tensor, gradients: torch.Tensor | None) -> torch.Tensor:
        """`(B, D, gh, gw)` activations and gradients (None without `uses_gradients`) -> `(B, gh, gw)` raw maps."""
        raise NotImplementedError(f"{type(self).__name__} does not implement combine().")

    def cams(
        self,
        probe: nn.Module,
        pixel_values: torch.Tensor,
        target_classes: torch.Tensor | None = None,
        upsample: bool = True,
    ) -> torch.Tensor:
        """`(B, H, W)` maps in [0, 1] (`upsample=False`: `(B, grid_h, grid_w)`); `probe` may be a bare backbone for
        a method without gradients."""
        activations, gradients = _target_layer_activations(
            probe,
            pixel_values,
            target_classes if self.uses_gradients else None,
            with_gradients=self.uses_gradients,
            objective=self.objective,
        )
        return _finish_cam(self.combine(activations, gradients), tuple(pixel_values.shape[2:]), upsample)

    def compute(self, model, probe, pixel_values, target_classes, settings=None) -> SaliencyMaps:
        return SaliencyMaps(self.cams(probe, pixel_values, target_classes), None)


class GradCAM(TargetLayerCAM):
    """Grad-CAM: channel weights = the target logit's gradients averaged over the patch grid."""

    name = "grad-cam"

    def combine(self, activations, gradients):
        weights = gradients.mean(dim=(2, 3))
        return (weights[:, :, None, None] * activations).sum(dim=1)


def finer_comparison_classes(logits: torch.Tensor, target_classes: torch.Tensor, count: int) -> torch.Tensor:
    """Finer-CAM's comparison classes: per image, the `count` other classes whose logits are nearest the target's
    (`|y_k - y_t|` ascending, the target left out), `(B, count)`; `count` is capped at the number of other classes.
    pytorch-grad-cam 1.5.x's `FinerCAM` sorts every class by that distance and compares with ranks 1..3 (rank 0 is the
    target itself), which is this selection except when another class's logit equals the target's exactly."""
    batch, num_classes = logits.shape
    if num_classes < 2:
        raise ValueError("Finer-CAM compares the target with other classes; the classifier has only one class.")
    distance = (logits - logits.gather(1, target_classes[:, None])).abs()
    distance = distance.scatter(1, target_classes[:, None], float("inf"))  # the target is never its own comparison
    return distance.argsort(dim=1, stable=True)[:, : min(count, num_classes - 1)]


def finer_objective(
    logits: torch.Tensor, target_classes: torch.Tensor, comparisons: torch.Tensor, alpha: float = 1.0
) -> torch.Tensor:
    """Finer-CAM's score per image (pytorch-grad-cam's `FinerWeightedTarget`): the target logit contrasted with each
    comparison class, weighted by the comparison classes' softmax probabilities,
    `sum_k p_k (y_t - alpha * y_k) / (sum_k p_k + 1e-9)`; the probabilities stay in the graph, as there."""
    probabilities = logits.softmax(dim=-1).gather(1, comparisons)
    target = logits.gather(1, target_classes[:, None])
    contrast = target - alpha * logits.gather(1, comparisons)
    return (probabilities * contrast).sum(dim=1) / (probabilities.sum(dim=1) + 1e-9)


class FinerCAM(GradCAM):
    """Finer-CAM (Zhang et al., CVPR 2025): Grad-CAM of the target logit contrasted with the most similar classes
    ([`finer_comparison_classes`], [`finer_objective`]), as pytorch-grad-cam 1.5.x's `FinerCAM` with its default
    `base_method=GradCAM`, `alpha=1` and three comparison classes. The shared evidence of similar classes cancels,
    so the map keeps what tells the target apart. Opt-in in the faithfulness comparison (`--methods ... finer-cam`)."""

    name = "finer-cam"
    opt_in = True

    def __init__(self, alpha: float = 1.0, comparisons: int = 3):
        if comparisons < 1:
            raise ValueError(f"Finer-CAM needs at least one comparison class, got {comparisons}.")
        self.alpha, self.comparisons = alpha, comparisons

    def objective(self, logits, target_classes):
        # the comparison classes are picked on the logits as computed, not through the gradient
        comparisons = finer_comparison_classes(logits.detach(), target_classes, self.comparisons)
        return finer_objective(logits, target_classes, comparisons, self.alpha)


def finer_cam(
    probe: nn.Module,
    pixel_values: torch.Tensor,
    target_classes: torch.Tensor | None = None,
    alpha: float = 1.0,
    comparisons: int = 3,
    upsample: bool = True,
) -> torch.Tensor:
    """Finer-CAM ([`FinerCAM`]) on a ViT probe; arguments as [`grad_cam`], and `alpha` (the contrast's strength) and
    `comparisons` (how many of the most similar classes)."""
    return FinerCAM(alpha, comparisons).cams(probe, pixel_values, target_classes, upsample)


class LayerCAM(TargetLayerCAM):
    """Layer-CAM: every position's activations weighted by the positive part of its own gradients."""

    name = "layer-cam"

    def combine(self, activations, gradients):
        return (gradients.clamp(min=0) * activations).sum(dim=1)


class EigenCAM(TargetLayerCAM):
    """Eigen-CAM: the centred activations' first principal component, sign-corrected unless told otherwise
    (see [`eigen_cam`]). Class-agnostic; no gradients."""

    name = "eigen-cam"
    uses_gradients = False

    def __init__(self, sign_correction: bool = True):
        self.sign_correction = sign_correction

    def combine(self, activations, gradients=None):
        projection = first_component_projection(activations)
        if self.sign_correction:
            flat = projection.flatten(1)
            flip = flat.min(dim=1).values.abs() > flat.max(dim=1).values.abs()
            projection = torch.where(flip[:, None, None], -projection, projection)
        return projection


def grad_cam(
    probe: nn.Module,
    pixel_values: torch.Tensor,
    target_classes: torch.Tensor | None = None,
    upsample: bool = True,
) -> torch.Tensor:
    """Grad-CAM (Selvaraju et al., ICCV 2017) on a ViT probe, as pytorch-grad-cam's `GradCAM`.

    The channel weights are the target logit's gradients averaged over the patch grid; the map is the ReLU of the
    weighted sum of the target layer's channels ([`cam_target_layer`]; patch tokens only, on their grid), scaled to
    [0, 1] per image.

    Args:
        probe: a [`LinearProbeForImageClassification`] (any module with a supported `backbone` whose forward returns
            logits from it).
        pixel_values (`(B, 3, H, W)`): normalised images.
        target_classes (`(B,)`, *optional*): default: the probe's predicted class.
        upsample: `(B, H, W)` maps (bilinear), else `(B, grid_h, grid_w)`.
    """
    return GradCAM().cams(probe, pixel_values, target_classes, upsample)


def layer_cam(
    probe: nn.Module,
    pixel_values: torch.Tensor,
    target_classes: torch.Tensor | None = None,
    upsample: bool = True,
) -> torch.Tensor:
    """Layer-CAM (Jiang et al., IEEE TIP 2021) on a ViT probe, as pytorch-grad-cam's `LayerCAM`: every position's
    activations weighted by the positive part of its own gradients, summed over channels. Arguments as [`grad_cam`]."""
    return LayerCAM().cams(probe, pixel_values, target_classes, upsample)


@torch.no_grad()
def eigen_cam(
    model: nn.Module,
    pixel_values: torch.Tensor,
    target_classes: torch.Tensor | None = None,
    sign_correction: bool = True,
    upsample: bool = True,
) -> torch.Tensor:
    """Eigen-CAM (Muhammad & Yeasin, IJCNN 2020), as pytorch-grad-cam's `EigenCAM`: the projection of the target
    layer's centred patch activations on their first principal direction. Class-agnostic: `target_classes` is
    accepted for a uniform signature and ignored.

    Args:
        model: a probe or a bare backbone (only the backbone is used).
        sign_correction: the sign of a singular vector is arbitrary, and pytorch-grad-cam's `EigenCAM` keeps whatever
            sign LAPACK returns, so its map is inverted on some images (the ReLU then keeps the background). With
            `True` (default) the projection is flipped when its most negative value is larger in magnitude than its
            most positive one (the rule of Seg-Eigen-CAM, Eq. 13, which pytorch-grad-cam 1.5.7 ships as
            `get_2d_projection_with_sign_correction`). `False` keeps the sign torch's SVD returns (the library's
            behaviour, up to that arbitrary sign).
        upsample: `(B, H, W)` maps (bilinear), else `(B, grid_h, grid_w)`.
    """
    return EigenCAM(sign_correction).cams(model, pixel_values, None, upsample)


def first_component_projection(activations: torch.Tensor) -> torch.Tensor:
    """`(B, D, gh, gw)` activations -> `(B, gh, gw)`: every position's centred activations projected on the first
    right singular vector (pytorch-grad-cam's `get_2d_projection`; the sign is the SVD's)."""
    batch, _, grid_h, grid_w = activations.shape
    centred = activations.flatten(2).transpose(1, 2)  # (B, positions, channels)
    centred = centred - centred.mean(dim=1, keepdim=True)
    _, _, vh = torch.linalg.svd(centred, full_matrices=False)
    return (centred @ vh[:, 0, :, None]).view(batch, grid_h, grid_w)


__all__ = [
    "EigenCAM",
    "FinerCAM",
    "GradCAM",
    "LayerCAM",
    "TargetLayerCAM",
    "cam_target_layer",
    "eigen_cam",
    "finer_cam",
    "finer_comparison_classes",
    "finer_objective",
    "first_component_projection",
    "grad_cam",
    "layer_cam",
]
