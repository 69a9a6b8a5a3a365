"""Prompt-CAM models for runtimes without the Python training stack: `promptcam export --format onnx` writes an ONNX
graph (`pixel_values` in; `logits`, the top-k classes' `trait_maps` and `trait_map_classes` out) with the image
processor's preprocessing in its metadata, checked against PyTorch under onnxruntime (docs/export.md)."""

from .onnx_graph import (
    INPUT_NAME,
    METADATA_PREFIX,
    ONNX_FILE,
    OUTPUT_NAMES,
    PARITY_TOLERANCE,
    BackboneNotExportableError,
    OnnxGraph,
    OnnxParityError,
    PromptCamOnnxGraph,
    check_exportable,
    check_parity,
    check_top_k,
    export_onnx,
    exportable_backbones,
    graph_metadata,
    onnx_preprocessing,
    pinned_position_embeddings,
)
from .options import DEFAULT_OPSET, DEFAULT_TOP_K, EXPORT_FORMATS, MAX_OPSET, MIN_OPSET, ExportOptions
from .run import CONFIG_FILE, EXPORT_INFO_FILE, EXPORT_WRITERS, PREPROCESSOR_FILE, ExportResult, export_model

__all__ = [
    "CONFIG_FILE",
    "DEFAULT_OPSET",
    "DEFAULT_TOP_K",
    "EXPORT_FORMATS",
    "EXPORT_INFO_FILE",
    "EXPORT_WRITERS",
    "INPUT_NAME",
    "MAX_OPSET",
    "METADATA_PREFIX",
    "MIN_OPSET",
    "ONNX_FILE",
    "OUTPUT_NAMES",
    "PARITY_TOLERANCE",
    "PREPROCESSOR_FILE",
    "BackboneNotExportableError",
    "ExportOptions",
    "ExportResult",
    "OnnxGraph",
    "OnnxParityError",
    "PromptCamOnnxGraph",
    "check_exportable",
    "check_parity",
    "check_top_k",
    "export_model",
    "export_onnx",
    "exportable_backbones",
    "graph_metadata",
    "onnx_preprocessing",
    "pinned_position_embeddings",
]
