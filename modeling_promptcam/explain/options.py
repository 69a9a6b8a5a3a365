"""What `promptcam explain` takes: [`ExplainOptions`]."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..modeling_promptcam import BLUR_MODES, parse_stop_rule
from ..ranges import check_ranges


@dataclass
class ExplainOptions:
    """What `promptcam explain` takes: a saved model, the images to explain, and how to draw them.

    Each field's `metadata["help"]` is its `--help` text (the CLI is generated from this class, docs/cli.md).
    """

    model: str = field(metadata={"help": "a folder saved by save_pretrained / promptcam convert"})
    images: tuple[str, ...] = field(metadata={"help": "image files", "positional": True, "metavar": "IMAGE"})
    classes: tuple[str, ...] | None = field(
        default=None,
        metadata={"help": "also show how these classes' prompts see each image (default: none)", "metavar": "NAME"},
    )
    top_k: int = field(default=5, metadata={"min": 1, "help": "predictions listed per image"})
    blur: str = field(
        default="paper",
        metadata={"help": "head blurring for the ranking (see docs/traits.md)", "choices": BLUR_MODES},
    )
    stop: str | int = field(
        default="misclassified",
        metadata={"help": "top traits: 'misclassified' (paper) or a number of heads", "parse": parse_stop_rule},
    )
    alpha: float = field(default=0.5, metadata={"min": 0, "max": 1, "help": "opacity of the maps over the image"})
    output_dir: str = field(
        default="promptcam_explain",
        metadata={"help": "output folder: <image name>/*.png and report.html", "aliases": ["--out"]},
    )
    progress: bool = field(default=True, metadata={"help": "no progress bar"})

    def __post_init__(self) -> None:
        check_ranges(self)  # the metadata's ranges (modeling_promptcam/ranges.py), as the command line checks them


__all__ = ["ExplainOptions"]
