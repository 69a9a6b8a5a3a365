"""What `promptcam synthetic` takes: [`SyntheticOptions`], the arguments of [`generate_dataset`]."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..ranges import check_ranges


@dataclass
class SyntheticOptions:
    """What `promptcam synthetic` takes; the defaults are `generate_dataset`'s (tests/test_cli.py checks they agree).

    Each field's `metadata["help"]` is its `--help` text (the CLI is generated from this class, docs/cli.md).
    """

    output_dir: str = field(metadata={"help": "output folder (new or empty)", "aliases": ["--out"]})
    train_per_class: int = field(default=48, metadata={"min": 1, "help": "training images per class"})
    val_per_class: int = field(default=16, metadata={"min": 1, "help": "validation images per class"})
    image_size: int = field(default=224, metadata={"min": 1, "help": "image side in pixels"})
    seed: int = field(default=0, metadata={"min": 0, "help": "random seed"})
    taxonomy: bool = field(
        default=False,
        metadata={
            "help": "draw the three-level synthetic taxonomy instead (family by wing pattern, genus by head trait, "
            "species by tail or throat: 8 species), with a mask per level and taxonomy.csv (docs/taxonomy.md)"
        },
    )
    progress: bool = field(default=True, metadata={"help": "no progress bar"})

    def __post_init__(self) -> None:
        check_ranges(self)  # the metadata's ranges (modeling_promptcam/ranges.py), as the command line checks them


__all__ = ["SyntheticOptions"]
