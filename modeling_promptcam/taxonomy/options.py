"""What a taxonomy takes: [`TaxonomyOptions`] (the `--taxonomy` flags of `promptcam train`) and
[`TaxonomyKeyOptions`] (`promptcam taxonomy-key`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..modeling_promptcam import BLUR_MODES, parse_stop_rule
from ..ranges import check_ranges
from .model import MODES as TAXONOMY_MODES
from .table import parse_levels


@dataclass
class TaxonomyOptions:
    """The taxonomy flags of `promptcam train`: with `taxonomy` (or, with `--dataset`, `levels` naming its columns)
    the run trains a hierarchical Prompt-CAM ([`PromptCamTaxonomy`], docs/taxonomy.md) instead of one flat model.

    Each field's `metadata["help"]` is its `--help` text (the CLI is generated from this class, docs/cli.md).
    """

    taxonomy: str | None = field(
        default=None,
        metadata={
            "help": "a CSV / TSV table mapping every class to its ancestors, one column per level with a header such "
            "as species,genus,family: trains one prompt-only model per node or level (docs/taxonomy.md; default: a "
            "flat model)",
            "metavar": "FILE",
        },
    )
    taxonomy_mode: str = field(
        default="node",
        metadata={
            "help": "node: one model per group with two or more children, trained on its images to tell its children "
            "apart (a key); level: one model per level, on all images relabelled to their group at that level",
            "choices": TAXONOMY_MODES,
        },
    )
    levels: tuple[str, ...] | str | None = field(
        default=None,
        metadata={
            "help": "the levels to use, root first and the class level last, comma-separated, e.g. "
            "family,genus,species (default: every column of --taxonomy; with --dataset and no --taxonomy: the "
            "dataset's columns, the last being the class level)",
            "parse": parse_levels,
            "metavar": "NAMES",
        },
    )

    def __post_init__(self) -> None:
        if isinstance(self.levels, str):
            self.levels = parse_levels(self.levels)
        if self.taxonomy_mode not in TAXONOMY_MODES:
            raise ValueError(f"taxonomy_mode must be one of {', '.join(TAXONOMY_MODES)}, got {self.taxonomy_mode!r}.")

    @property
    def enabled(self) -> bool:
        """Whether the run trains a taxonomy (a table, or dataset columns named by `levels`)."""
        return self.taxonomy is not None or self.levels is not None


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
        default="promptcam_taxonomy_key",
        metadata={"help": "output folder: <image name>/taxonomy_key.png and report.html", "aliases": ["--out"]},
    )
    progress: bool = field(default=True, metadata={"help": "no progress bar"})

    def __post_init__(self) -> None:
        check_ranges(self)  # the metadata's ranges (modeling_promptcam/ranges.py), as the command line checks them


__all__ = ["TAXONOMY_MODES", "TaxonomyKeyOptions", "TaxonomyOptions"]
