"""Deprecated import path: `modeling_promptcam.synthetic` moved to `modeling_promptcam.data.synthetic` (see docs/architecture.md).

Kept so that code written against the old flat layout still runs; import from the new path instead."""

import warnings

from .data import (
    CLASSES,
    DATASET_FILE,
    MASKS_DIR,
    MAX_TRAIT_FRACTION,
    TraitClass,
    class_names,
    draw_bird,
    generate_dataset,
    load_trait_mask,
    mask_path,
    patch_mask,
)

warnings.warn(
    "modeling_promptcam.synthetic is deprecated; import from modeling_promptcam.data.synthetic instead.",
    DeprecationWarning,
    stacklevel=2,
)

__all__ = [
    "CLASSES",
    "DATASET_FILE",
    "MASKS_DIR",
    "MAX_TRAIT_FRACTION",
    "TraitClass",
    "class_names",
    "draw_bird",
    "generate_dataset",
    "load_trait_mask",
    "mask_path",
    "patch_mask",
]
