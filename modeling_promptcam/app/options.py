"""What `promptcam app` takes: [`AppOptions`]."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..ranges import check_ranges
from .explorer import DEFAULT_HOST, DEFAULT_PORT


@dataclass
class AppOptions:
    """What `promptcam app` takes: the model to serve, example images, and where to serve.

    Each field's `metadata["help"]` is its `--help` text (the CLI is generated from this class, docs/cli.md).
    """

    model: str = field(metadata={"help": "a folder saved by save_pretrained / promptcam convert, or a Hub id"})
    examples: str | None = field(
        default=None,
        metadata={
            "help": "example images as DIR/<class name>/<image> (imagefolder layout): the folder name is the true "
            "class (default: none)",
            "metavar": "DIR",
        },
    )
    atlas: str | None = field(
        default=None,
        metadata={
            "help": "an atlas.json written by promptcam atlas for this model: the Class atlas tab (default: none)",
            "metavar": "FILE",
        },
    )
    host: str = field(
        default=DEFAULT_HOST,
        metadata={
            "help": "address to bind (default: %(default)s, this machine only; 0.0.0.0 serves every network interface)"
        },
    )
    port: int = field(default=DEFAULT_PORT, metadata={"min": 0, "max": 65535, "help": "port"})
    max_pixels: int | None = field(
        default=None,
        metadata={
            "min": 1,
            "help": "refuse larger uploads with a message (default: PIL's decompression-bomb limit, about 89 megapixels)",
        },
    )

    def __post_init__(self) -> None:
        check_ranges(self)  # the metadata's ranges (modeling_promptcam/ranges.py), as the command line checks them


__all__ = ["AppOptions"]
