"""What `promptcam export` takes: [`ExportOptions`], and the formats the export room writes."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..ranges import check_ranges

# the formats `promptcam export --format` writes (one writer each in export/run.py's EXPORT_WRITERS)
EXPORT_FORMATS = ("onnx",)
# the maps of this many top classes when --top-k is not given (all classes when the model has fewer)
DEFAULT_TOP_K = 5
# scaled_dot_product_attention (the backbones' SDPA attention) exports from opset 14; 20 is the highest opset the
# TorchScript-based exporter of torch.onnx writes
MIN_OPSET, MAX_OPSET = 14, 20
DEFAULT_OPSET = 17


@dataclass
class ExportOptions:
    """What `promptcam export` takes: a saved Prompt-CAM model, the folder to write, the format and the graph's top-k.

    Each field's `metadata["help"]` is its `--help` text (the CLI is generated from this class, docs/cli.md).
    """

    model: str = field(
        metadata={"help": "a folder saved by save_pretrained / promptcam train / promptcam convert", "metavar": "DIR"}
    )
    output_dir: str = field(
        metadata={
            "help": "output folder for model.onnx, config.json, preprocessor_config.json and export.json (must be "
            "new or empty unless --overwrite)",
            "aliases": ["--out"],
            "metavar": "DIR",
        }
    )
    format: str = field(default="onnx", metadata={"help": "the export format", "choices": EXPORT_FORMATS})
    top_k: int | None = field(
        default=None,
        metadata={
            "min": 1,
            "help": f"the graph returns the trait maps of each image's K highest-scoring classes (at most the "
            f"model's class count; default: {DEFAULT_TOP_K}, or every class when the model has fewer)",
            "metavar": "K",
        },
    )
    opset: int = field(
        default=DEFAULT_OPSET,
        metadata={"min": MIN_OPSET, "max": MAX_OPSET, "help": "the ONNX opset version", "metavar": "N"},
    )
    overwrite: bool = field(default=False, metadata={"help": "write into a non-empty output folder"})

    def __post_init__(self) -> None:
        check_ranges(self)  # the metadata's ranges (modeling_promptcam/ranges.py), as the command line checks them
        if self.format not in EXPORT_FORMATS:
            raise ValueError(f"Unknown export format {self.format!r}: use one of {', '.join(EXPORT_FORMATS)}.")


__all__ = ["DEFAULT_OPSET", "DEFAULT_TOP_K", "EXPORT_FORMATS", "MAX_OPSET", "MIN_OPSET", "ExportOptions"]
