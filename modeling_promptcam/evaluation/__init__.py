"""Measuring the maps: RISE insertion / deletion, pointing game and energy, trait localisation, the saliency methods
compared (Prompt-CAM and the Grad-CAM family, rollout), the linear probe, and the faithfulness run.
"""

from .faithfulness import PAPER_TABLE_1, PROBE_FOLDER, RESULT_FILE, format_table, run_faithfulness
from .linear_probe import (
    LinearProbeForImageClassification,
    backbone_features,
    extract_features,
    fit_linear_probe,
    load_linear_probe,
    save_linear_probe,
)
from .localization import chance_level, cls_attention_maps, map_peak, peak_hits_mask
from .metrics import (
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
)
from .options import METHODS, SCORERS, TARGETS, FaithfulnessOptions
from .saliency import (
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
)

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_BLUR_KERNEL_SIZE",
    "DEFAULT_BLUR_SIGMA",
    "DEFAULT_DELETION_VALUE",
    "DEFAULT_STEPS",
    "FaithfulnessOptions",
    "HEADS_CHOICES",
    "HEAD_FUSIONS",
    "LinearProbeForImageClassification",
    "METHODS",
    "PAPER_TABLE_1",
    "PROBE_FOLDER",
    "RESULT_FILE",
    "SCORERS",
    "TARGETS",
    "attention_rollout",
    "backbone_features",
    "cam_target_layer",
    "chance_level",
    "cls_attention_maps",
    "eager_attention",
    "eigen_cam",
    "energy_in_mask",
    "extract_features",
    "first_component_projection",
    "fit_linear_probe",
    "format_table",
    "gaussian_blur",
    "grad_cam",
    "insertion_deletion",
    "layer_cam",
    "load_linear_probe",
    "map_peak",
    "peak_hits_mask",
    "pixel_ranks",
    "pointing_game",
    "promptcam_saliency",
    "run_faithfulness",
    "save_linear_probe",
    "to_image_resolution",
]
