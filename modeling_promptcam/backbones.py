"""Deprecated import path: `modeling_promptcam.backbones` moved to `modeling_promptcam.convert.open_clip` (see docs/architecture.md).

Kept so that code written against the old flat layout still runs; import from the new path instead."""

import warnings

from .convert import (
    NotAnOpenClipCheckpointError,
    convert_open_clip_vision,
    open_clip_image_processor,
    open_clip_vision_config,
    save_open_clip_vision,
)

warnings.warn(
    "modeling_promptcam.backbones is deprecated; import from modeling_promptcam.convert.open_clip instead.",
    DeprecationWarning,
    stacklevel=2,
)

__all__ = [
    "NotAnOpenClipCheckpointError",
    "convert_open_clip_vision",
    "open_clip_image_processor",
    "open_clip_vision_config",
    "save_open_clip_vision",
]
