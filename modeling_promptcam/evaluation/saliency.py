"""Saliency maps to compare: Prompt-CAM's own (the mean of a class's top-trait heads) and the baselines of the paper's
Table 1 on the same frozen backbone.

- [`promptcam_saliency`]: one map per image from Prompt-CAM, the mean of the target class's top-trait heads.
- [`grad_cam`], [`layer_cam`], [`eigen_cam`]: the Grad-CAM family on a [`LinearProbeForImageClassification`], computed
  as pytorch-grad-cam 1.5.7 computes them (`GradCAM`, `LayerCAM`, `EigenCAM` with a ViT reshape transform).
- [`attention_rollout`]: Abnar & Zuidema (ACL 2020) on the backbone's attention.

Why the Grad-CAM family is implemented here rather than imported from `grad-cam` (pytorch-grad-cam): importing any
of its modules runs `pytorch_grad_cam/__init__.py`, which imports `base_cam` -> `utils/image.py` (`from
torchvision.transforms import ...`, `cv2`, `scipy`, `matplotlib`) and `utils/model_targets.py` (`import torchvision`),
and the package requires `torchvision`, `opencv-python-headless`, `ttach`, `scikit-learn` at install time. torchvision
cannot be installed beside every torch build this package supports (with the CPU torch 2.13.0 wheel it fails with
"operator torchvision::nms does not exist", and transformers then fails to import as well), so `grad-cam` could not be
even an optional dependency that the test suite exercises. The three CAMs are a few tensor operations on one layer's
activations and gradients; they are written here in torch, and `tests/test_evaluation_saliency.py` checks them against
maps that pytorch-grad-cam 1.5.7 itself produced (torch 2.14.1 + torchvision 0.29.1) on tiny ViT and
DINOv2-with-registers probes, stored in `tests/fixtures/gradcam_parity/` (see `tests/fixtures/make_gradcam_parity.py`).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn
from transformers import PreTrainedModel

from ..modeling_promptcam import BACKBONE_DRIVERS, PromptCamForImageClassification
from .metrics import _check_pixel_values, _check_targets, _logits, to_image_resolution

HEADS_CHOICES = ("top", "all")


HEAD_FUSIONS = ("mean", "max", "min")


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
            k: the k highest-ranked heads; `"all"`: every head, no ranking.
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
    if heads not in HEADS_CHOICES and (
        isinstance(heads, bool) or not isinstance(heads, int) or not 1 <= heads <= num_heads
    ):
        raise ValueError(f"heads must be 'top', 'all' or an integer in [1, {num_heads}], got {heads!r}.")
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


def cam_target_layer(backbone: PreTrainedModel) -> nn.Module:
    """The layer the Grad-CAM family reads: the last transformer block's input LayerNorm (`layernorm_before` of ViT,
    `norm1` of DINOv2 / DINOv3, `layer_norm1` of CLIP), pytorch-grad-cam's recommended target for ViTs."""
    return _vit_parts(backbone).target_layer


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


def _target_layer_activations(
    model: nn.Module, pixel_values: torch.Tensor, target_classes: torch.Tensor | None, with_gradients: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Activations `(B, D, gh, gw)` of the target layer, and (with gradients) the gradients of the target logits
    with respect to them. `model` is a probe (`backbone` + `classifier`) or, without gradients, a bare backbone."""
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
                score = logits.gather(1, target_classes.to(logits.device)[:, None]).sum()
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
    activations, gradients = _target_layer_activations(probe, pixel_values, target_classes, with_gradients=True)
    weights = gradients.mean(dim=(2, 3))
    cams = (weights[:, :, None, None] * activations).sum(dim=1)
    return _finish_cam(cams, tuple(pixel_values.shape[2:]), upsample)


def layer_cam(
    probe: nn.Module,
    pixel_values: torch.Tensor,
    target_classes: torch.Tensor | None = None,
    upsample: bool = True,
) -> torch.Tensor:
    """Layer-CAM (Jiang et al., IEEE TIP 2021) on a ViT probe, as pytorch-grad-cam's `LayerCAM`: every position's
    activations weighted by the positive part of its own gradients, summed over channels. Arguments as [`grad_cam`]."""
    activations, gradients = _target_layer_activations(probe, pixel_values, target_classes, with_gradients=True)
    cams = (gradients.clamp(min=0) * activations).sum(dim=1)
    return _finish_cam(cams, tuple(pixel_values.shape[2:]), upsample)


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
    activations, _ = _target_layer_activations(model, pixel_values, None, with_gradients=False)
    projection = first_component_projection(activations)
    if sign_correction:
        flat = projection.flatten(1)
        flip = flat.min(dim=1).values.abs() > flat.max(dim=1).values.abs()
        projection = torch.where(flip[:, None, None], -projection, projection)
    return _finish_cam(projection, tuple(pixel_values.shape[2:]), upsample)


def first_component_projection(activations: torch.Tensor) -> torch.Tensor:
    """`(B, D, gh, gw)` activations -> `(B, gh, gw)`: every position's centred activations projected on the first
    right singular vector (pytorch-grad-cam's `get_2d_projection`; the sign is the SVD's)."""
    batch, _, grid_h, grid_w = activations.shape
    centred = activations.flatten(2).transpose(1, 2)  # (B, positions, channels)
    centred = centred - centred.mean(dim=1, keepdim=True)
    _, _, vh = torch.linalg.svd(centred, full_matrices=False)
    return (centred @ vh[:, 0, :, None]).view(batch, grid_h, grid_w)


@contextmanager
def eager_attention(backbone: PreTrainedModel):
    """Run `backbone` with eager attention (the only implementation that returns attention weights), then restore."""
    config = backbone.config
    previous = config._attn_implementation
    config._attn_implementation = "eager"
    try:
        yield backbone
    finally:
        config._attn_implementation = previous


@torch.no_grad()
def attention_rollout(
    backbone: PreTrainedModel,
    pixel_values: torch.Tensor,
    head_fusion: str = "mean",
    upsample: bool = True,
) -> torch.Tensor:
    """Attention rollout (Abnar & Zuidema, ACL 2020): how much attention flows from each patch to the CLS token.

    Per layer: fuse the heads (mean, as in the paper), add the identity for the residual connection, renormalise the
    rows; multiply the layers from the first to the last; the map is the CLS row over the patch columns (register
    tokens are part of the flow but not of the map). The backbone runs once with eager attention.

    Args:
        backbone: a transformers ViT / DINOv2 / ... backbone, or a model with one (`.backbone`).
        pixel_values (`(B, 3, H, W)`): normalised images.
        head_fusion: `"mean"` (paper), `"max"` or `"min"` (variants of jacobgil/vit-explain).
        upsample: `(B, H, W)` maps (bilinear), else `(B, grid_h, grid_w)`.
    Returns:
        `(B, H, W)` float32 maps, non-negative. Class-agnostic.
    """
    _check_pixel_values(pixel_values)
    backbone = getattr(backbone, "backbone", backbone)
    parts = _vit_parts(backbone)
    if parts.num_prefix_tokens == 0:
        raise ValueError(
            f"Attention rollout reads the CLS token's row, and {type(backbone).__name__} has no CLS token; use another "
            "method for this backbone."
        )
    if head_fusion not in HEAD_FUSIONS:
        raise ValueError(f"head_fusion must be one of {HEAD_FUSIONS}, got {head_fusion!r}.")
    was_training = backbone.training
    backbone.eval()
    try:
        with eager_attention(backbone):
            attentions = backbone(pixel_values=pixel_values, output_attentions=True).attentions
    finally:
        backbone.train(was_training)
    if not attentions:
        raise RuntimeError(f"{type(backbone).__name__} returned no attention weights; attention rollout needs them.")
    tokens = attentions[0].shape[-1]
    identity = torch.eye(tokens, device=attentions[0].device)
    rollout = identity.expand(attentions[0].shape[0], -1, -1)
    for layer_attention in attentions:
        heads = layer_attention.float()
        fused = heads.mean(dim=1) if head_fusion == "mean" else getattr(heads, head_fusion)(dim=1).values
        fused = fused + identity
        fused = fused / fused.sum(dim=-1, keepdim=True)
        rollout = fused @ rollout
    cls_row = rollout[:, :1, :].transpose(1, 2)  # (B, T, 1): the CLS row as a "token" column for the reshape
    maps = _tokens_to_grid(cls_row, parts, tuple(pixel_values.shape[2:]))[:, 0]
    return to_image_resolution(maps, tuple(pixel_values.shape[2:])) if upsample else maps
