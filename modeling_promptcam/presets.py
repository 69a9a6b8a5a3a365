"""Deprecated import path: `modeling_promptcam.presets` moved to `modeling_promptcam.training.recipe` (see docs/architecture.md).

Kept so that code written against the old flat layout still runs; import from the new path instead."""

import warnings

from .training import Recipe, hub_config_dir, load_preset, preset_names

warnings.warn(
    "modeling_promptcam.presets is deprecated; import from modeling_promptcam.training.recipe instead.",
    DeprecationWarning,
    stacklevel=2,
)

__all__ = ["Recipe", "hub_config_dir", "load_preset", "preset_names"]
