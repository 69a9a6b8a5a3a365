"""What `promptcam taxonomy-key` takes: [`TaxonomyKeyOptions`]. (Training a taxonomy takes `TrainOptions`: its
`taxonomy`, `taxonomy_mode` and `levels` fields, the `--taxonomy` flags of `promptcam train`.)"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..explain.trait_options import alpha_field, blur_field, stop_field
from ..ranges import check_ranges


@dataclass
class TaxonomyKeyOptions:
    """What `promptcam taxonomy-key` takes: a taxonomy folder, images, and how to rank and draw their traits.

    Each field's `metadata["help"]` is its `--help` text (the CLI is generated from this class, docs/cli.md).
    """

    model: str = field(metadata={"help": "a taxonomy folder (OUTPUT_DIR/final of promptcam train --taxonomy)"})
    images: tuple[str, ...] = field(metadata={"help": "image files", "positional": True, "metavar": "IMAGE"})
    class_key: str | None = field(
        default=None,
        metadata={
            "help": "also write the key of this class: IMAGES are its images, and the heads that recur in its top "
            "traits at each level are listed (default: only the per-image keys)",
            "metavar": "CLASS",
        },
    )
    blur: str = blur_field()
    stop: str | int = stop_field()
    alpha: float = alpha_field()
    output_dir: str = field(
        default="promptcam_taxonomy_key",
        metadata={"help": "output folder: <image name>/taxonomy_key.png and report.html", "aliases": ["--out"]},
    )
    progress: bool = field(default=True, metadata={"help": "no progress bar"})

    def __post_init__(self) -> None:
        check_ranges(self)  # the metadata's ranges (modeling_promptcam/ranges.py), as the command line checks them


__all__ = ["TaxonomyKeyOptions"]
