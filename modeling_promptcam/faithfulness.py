"""Deprecated import path: `modeling_promptcam.faithfulness` moved to `modeling_promptcam.evaluation` (`evaluation.metrics`: RISE, pointing game,
energy; `evaluation.saliency`: the maps compared) (see docs/architecture.md).

Kept so that code written against the old flat layout still runs; import from the new path instead."""

import warnings

from .evaluation import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_BLUR_KERNEL_SIZE,
    DEFAULT_BLUR_SIGMA,
    DEFAULT_DELETION_VALUE,
    DEFAULT_STEPS,
    HEAD_FUSIONS,
    HEADS_CHOICES,
    attention_rollout,
    cam_target_layer,
    eager_attention,
    eigen_cam,
    energy_in_mask,
    first_component_projection,
    gaussian_blur,
    grad_cam,
    insertion_deletion,
    layer_cam,
    pixel_ranks,
    pointing_game,
    promptcam_saliency,
    to_image_resolution,
)

warnings.warn(
    "modeling_promptcam.faithfulness is deprecated; import from modeling_promptcam.evaluation instead.",
    DeprecationWarning,
    stacklevel=2,
)

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_BLUR_KERNEL_SIZE",
    "DEFAULT_BLUR_SIGMA",
    "DEFAULT_DELETION_VALUE",
    "DEFAULT_STEPS",
    "HEADS_CHOICES",
    "HEAD_FUSIONS",
    "attention_rollout",
    "cam_target_layer",
    "eager_attention",
    "eigen_cam",
    "energy_in_mask",
    "first_component_projection",
    "gaussian_blur",
    "grad_cam",
    "insertion_deletion",
    "layer_cam",
    "pixel_ranks",
    "pointing_game",
    "promptcam_saliency",
    "to_image_resolution",
]
