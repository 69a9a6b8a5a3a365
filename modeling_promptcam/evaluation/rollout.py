"""Attention rollout (Abnar & Zuidema, ACL 2020) on the frozen backbone: [`attention_rollout`], and
[`eager_attention`], which switches a backbone to the one attention implementation that returns weights.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from transformers import PreTrainedModel

from .metrics import _check_pixel_values, to_image_resolution
from .saliency_base import SaliencyMaps, SaliencyMethod, _tokens_to_grid, _vit_parts

HEAD_FUSIONS = ("mean", "max", "min")


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
        backbone: a supported transformers backbone with a CLS token (ViT, DINOv2, DINOv2 with registers, DINOv3,
            CLIP; not SigLIP), or a model with one (`.backbone`).
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


class AttentionRollout(SaliencyMethod):
    """Attention rollout ([`attention_rollout`]) on the frozen backbone. Class-agnostic; its maps are scored by the
    probe, as in the paper, where every baseline is."""

    name = "attention-rollout"

    def compute(self, model, probe, pixel_values, target_classes, settings=None) -> SaliencyMaps:
        return SaliencyMaps(attention_rollout(model.backbone, pixel_values), None)


# The methods `promptcam faithfulness` compares, in the order of its table (the paper's Table 1 puts Prompt-CAM last;

__all__ = ["HEAD_FUSIONS", "AttentionRollout", "attention_rollout", "eager_attention"]
