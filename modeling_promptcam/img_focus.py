"""Deprecated import path: `modeling_promptcam.img_focus` moved to `modeling_promptcam.convert.img_focus` (see docs/architecture.md).

Kept so that code written against the old flat layout still runs; import from the new path instead."""

import warnings

from .convert import (
    IMG_FOCUS_BACKBONE_NAME,
    IMG_FOCUS_REQUIREMENT,
    PROVENANCE_FILE,
    ImgFocusLayoutError,
    dinov2_from_onnx,
    find_img_focus_onnx,
    onnx_encoder_output,
    rebuild_img_focus_backbone,
    save_img_focus_backbone,
    verify_against_onnx,
)

warnings.warn(
    "modeling_promptcam.img_focus is deprecated; import from modeling_promptcam.convert.img_focus instead.",
    DeprecationWarning,
    stacklevel=2,
)

__all__ = [
    "IMG_FOCUS_BACKBONE_NAME",
    "IMG_FOCUS_REQUIREMENT",
    "ImgFocusLayoutError",
    "PROVENANCE_FILE",
    "dinov2_from_onnx",
    "find_img_focus_onnx",
    "onnx_encoder_output",
    "rebuild_img_focus_backbone",
    "save_img_focus_backbone",
    "verify_against_onnx",
]
