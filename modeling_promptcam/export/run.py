"""The export behind `promptcam export`, as a library call taking its options: check everything that can be checked
before loading the weights, export, check the graph against PyTorch, and write the folder."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field

from ..files import ModelFolderError, check_model_folder, check_output_folder, write_atomically, write_json_atomically
from .onnx_graph import ONNX_FILE, OnnxGraph, check_exportable, check_top_k, export_onnx, onnx_preprocessing
from .options import EXPORT_FORMATS, ExportOptions

CONFIG_FILE = "config.json"
PREPROCESSOR_FILE = "preprocessor_config.json"
# what the export measured and wrote, beside the graph
EXPORT_INFO_FILE = "export.json"


@dataclass
class ExportResult:
    """What [`export_model`] wrote.

    Attributes:
        output_dir: the folder.
        files: the files written in it, in the order written (the graph first).
        backbone: the backbone's `model_type`.
        num_labels: the model's class count (the graph's `logits` are `(batch, num_labels)`).
        top_k: the trait maps per image the graph returns.
        opset: the graph's ONNX opset.
        image_size: `(height, width)`, the graph's one input resolution (the image processor's size).
        position_embeddings: how the graph's position embeddings relate to that resolution (its metadata's words).
        parity: the graph against PyTorch under onnxruntime ([`check_parity`]'s dict).
    """

    output_dir: str
    files: tuple[str, ...]
    backbone: str
    num_labels: int
    top_k: int
    opset: int
    image_size: tuple[int, int]
    position_embeddings: str
    parity: dict = field(default_factory=dict)


def export_model(options: ExportOptions) -> ExportResult:
    """Export the saved Prompt-CAM model `options.model` in `options.format` to `options.output_dir` (new or empty
    unless `options.overwrite`): `model.onnx`, the model's `config.json` (its classes in `id2label`), the image
    processor's `preprocessor_config.json`, and `export.json` (what the graph takes and returns, and its measured
    parity with PyTorch).

    Before any weight is loaded: the output folder, the model folder, the backbone (one of the exportable ones),
    `top_k` against the class count and the optional packages are checked. Nothing is written when the graph does
    not match PyTorch under onnxruntime.
    Raises `FileExistsError` (an occupied output folder), `FileNotFoundError` / `ModelFolderError` (not a saved
    model, or a damaged one), `BackboneNotExportableError`, `ValueError` (a `top_k` above the class count, an image
    processor the graph cannot carry), `OnnxParityError`, and `ImportError` without the `export` extra.
    """
    if options.format not in EXPORT_WRITERS:
        raise ValueError(f"Unknown export format {options.format!r}: use one of {', '.join(EXPORT_FORMATS)}.")
    check_output_folder(options.output_dir, options.overwrite)
    check_model_folder(options.model)
    config = _load(options.model, "config")
    check_exportable(config)
    top_k = check_top_k(options.top_k, config.num_labels)
    return EXPORT_WRITERS[options.format](options, top_k)


def _load(folder: str, what: str, **kwargs):
    """The config, the model (float32, eval mode) or the image processor of a saved folder, or `ModelFolderError`."""
    from transformers import AutoImageProcessor

    from ..configuration_promptcam import PromptCamConfig
    from ..modeling_promptcam import PromptCamForImageClassification, promptcam_image_processor

    try:
        if what == "config":
            return PromptCamConfig.from_pretrained(folder)
        if what == "model":
            return PromptCamForImageClassification.from_pretrained(folder, **kwargs).eval()
        if os.path.isfile(os.path.join(folder, PREPROCESSOR_FILE)):
            return AutoImageProcessor.from_pretrained(folder)
        return promptcam_image_processor(kwargs["config"])  # what save_pretrained would have written beside it
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as error:  # what transformers raises
        raise ModelFolderError(
            f"cannot load the {what} in {folder} ({type(error).__name__}: {error}); save or convert it again."
        ) from error


def _write_onnx(options: ExportOptions, top_k: int) -> ExportResult:
    import torch

    from ..extras import require

    # before the weights are loaded: the extra's packages (export_onnx asks again; this is the early check)
    require("onnx", "export", "The ONNX export")
    require("onnxruntime", "export", "The ONNX export's parity check")
    config = _load(options.model, "config")
    processor = _load(options.model, "image processor", config=config)
    onnx_preprocessing(processor)  # refuse a preprocessing the graph cannot carry before the weights are loaded
    model = _load(options.model, "model", dtype=torch.float32)
    graph: OnnxGraph = export_onnx(model, processor, top_k=top_k, opset=options.opset)

    size = graph.preprocessing["size"]
    image_size = (size["height"], size["width"])
    result = ExportResult(
        output_dir=str(options.output_dir),
        files=(ONNX_FILE, CONFIG_FILE, PREPROCESSOR_FILE, EXPORT_INFO_FILE),
        backbone=model.config.backbone_config.model_type,
        num_labels=model.config.num_labels,
        top_k=top_k,
        opset=options.opset,
        image_size=image_size,
        position_embeddings=graph.metadata["promptcam.position_embeddings"],
        parity=graph.parity,
    )
    os.makedirs(options.output_dir, exist_ok=True)
    write_atomically(os.path.join(options.output_dir, ONNX_FILE), graph.data)
    write_atomically(os.path.join(options.output_dir, CONFIG_FILE), model.config.to_json_string())
    write_atomically(os.path.join(options.output_dir, PREPROCESSOR_FILE), processor.to_json_string())
    write_json_atomically(
        os.path.join(options.output_dir, EXPORT_INFO_FILE),
        {
            "format": options.format,
            "file": ONNX_FILE,
            "source_model": str(options.model),
            "opset": options.opset,
            "input": {"pixel_values": ["batch", 3, *image_size]},
            "outputs": json.loads(graph.metadata["promptcam.outputs"]),
            "top_k": top_k,
            "image_size": list(image_size),
            "position_embeddings": result.position_embeddings,
            "preprocessing": graph.preprocessing,
            "parity": graph.parity,
            "torch_version": torch.__version__,
        },
    )
    return result


# one writer per entry of EXPORT_FORMATS (tests/test_export.py checks that they match)
EXPORT_WRITERS: dict[str, Callable[[ExportOptions, int], ExportResult]] = {"onnx": _write_onnx}


__all__ = ["CONFIG_FILE", "EXPORT_INFO_FILE", "EXPORT_WRITERS", "PREPROCESSOR_FILE", "ExportResult", "export_model"]
