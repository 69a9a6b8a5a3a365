"""Deprecated import path: `modeling_promptcam.faithfulness` moved to `modeling_promptcam.evaluation.metrics and modeling_promptcam.evaluation.saliency` (see docs/architecture.md).

Kept so that code written against the old flat layout still runs; import from the new path instead."""

import warnings

from .evaluation.metrics import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_BLUR_KERNEL_SIZE,
    DEFAULT_BLUR_SIGMA,
    DEFAULT_DELETION_VALUE,
    DEFAULT_STEPS,
    energy_in_mask,
    gaussian_blur,
    insertion_deletion,
    pixel_ranks,
    pointing_game,
    to_image_resolution,
)  # noqa: F401
from .evaluation.saliency import (
    HEAD_FUSIONS,
    HEADS_CHOICES,
    attention_rollout,
    cam_target_layer,
    eager_attention,
    eigen_cam,
    first_component_projection,
    grad_cam,
    layer_cam,
    promptcam_saliency,
)  # noqa: F401

warnings.warn(
    "modeling_promptcam.faithfulness is deprecated; import from modeling_promptcam.evaluation.metrics"
    "(and modeling_promptcam.evaluation.saliency) "
    "instead.",
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
