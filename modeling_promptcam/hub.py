"""Deprecated import path: `modeling_promptcam.hub` moved to `modeling_promptcam.training.hub` (see docs/architecture.md).

Kept so that code written against the old flat layout still runs; import from the new path instead."""

import warnings

from .training import model_card, push_folder, write_model_card

warnings.warn(
    "modeling_promptcam.hub is deprecated; import from modeling_promptcam.training.hub instead.",
    DeprecationWarning,
    stacklevel=2,
)

__all__ = ["model_card", "push_folder", "write_model_card"]
