"""What `promptcam explain` takes: [`ExplainOptions`]."""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from ..ranges import check_ranges
from .trait_options import alpha_field, blur_field, stop_field

FORMATS = ("html", "parquet")  # what `promptcam explain` writes (docs/traits.md)


class ExplainUsageError(ValueError):
    """Options that cannot go together (a source given twice or not at all, a flag of the other format); the CLI
    reports it as a usage error (exit 2)."""


@dataclass
class ExplainOptions:
    """What `promptcam explain` takes: a saved model, the images to explain (image files, an image folder or a
    `datasets` dataset: exactly one), what to write (an HTML report with figures, or a Parquet dataset) and how.

    Each field's `metadata["help"]` is its `--help` text (the CLI is generated from this class, docs/cli.md).
    """

    model: str = field(metadata={"help": "a folder saved by save_pretrained / promptcam convert"})
    images: tuple[str, ...] | None = field(
        default=None,
        metadata={
            "help": "image files (or --data-dir / --dataset instead)",
            "positional": True,
            "metavar": "IMAGE",
            "one_of": "source",
        },
    )
    classes: tuple[str, ...] | None = field(
        default=None,
        metadata={
            "help": "also show how these classes' prompts see each image (--format html; default: none)",
            "metavar": "NAME",
        },
    )
    top_k: int = field(
        default=5,
        metadata={
            "min": 1,
            "help": "predictions listed per image (--format parquet: at most the model's class count)",
        },
    )
    blur: str = blur_field()
    stop: str | int = stop_field()
    alpha: float = alpha_field(applies_to="--format html")
    output_dir: str = field(
        default="promptcam_explain",
        metadata={
            "help": "output folder: <image name>/*.png and report.html (html), or manifest.json and "
            "data/shard-*.parquet (parquet; an interrupted run resumes in it)",
            "aliases": ["--out"],
        },
    )
    progress: bool = field(default=True, metadata={"help": "no progress bar"})
    data_dir: str | None = field(
        default=None,
        metadata={
            "help": "instead of IMAGE files: a folder with train/<class>/ (and val/<class>/), read as "
            "promptcam train reads it; the class folder is the true class",
            "one_of": "source",
        },
    )
    dataset: str | None = field(
        default=None,
        metadata={
            "help": "instead of IMAGE files: a datasets dataset (a save_to_disk folder, or a local dataset "
            "load_dataset finds by name or path, offline) with an Image column",
            "one_of": "source",
        },
    )
    split: str | None = field(
        default=None,
        metadata={"help": "the split of --data-dir / --dataset to explain (default: every split)"},
    )
    image_column: str = field(default="image", metadata={"help": "image column of --dataset"})
    label_column: str = field(
        default="label",
        metadata={"help": "true-class column of --dataset (used when present; named explicitly, it must exist)"},
    )
    format: str | None = field(
        default=None,
        metadata={
            "help": "what to write: html (figures and report.html; the default for IMAGE files) or parquet "
            "(a datasets-loadable Parquet dataset; the default and the only choice for --data-dir / --dataset)",
            "choices": FORMATS,
        },
    )
    batch_size: int = field(default=32, metadata={"min": 1, "help": "images per forward pass (--format parquet)"})
    shard_size: int = field(
        default=1000, metadata={"min": 1, "help": "images per Parquet shard, the unit of resuming (--format parquet)"}
    )

    def __post_init__(self) -> None:
        if self.images is not None:
            self.images = tuple(self.images)
        if self.classes is not None:
            self.classes = tuple(self.classes)
        check_ranges(self)  # the metadata's ranges (modeling_promptcam/ranges.py), as the command line checks them

    @property
    def source(self) -> str:
        """Which source was given: "images", "data_dir" or "dataset" (the first given, see [`check_combination`])."""
        if self.data_dir is not None:
            return "data_dir"
        if self.dataset is not None:
            return "dataset"
        return "images"

    @property
    def output_format(self) -> str:
        """The format written: `format`, or its default for the source (html for image files, else parquet)."""
        if self.format is not None:
            return self.format
        return "html" if self.source == "images" else "parquet"

    def check_combination(self) -> None:
        """Raise [`ExplainUsageError`] for options that cannot go together: not exactly one source; --split,
        --image-column or --label-column without the source they apply to; html for a whole folder or dataset;
        a flag of one format given with the other. `explain_images` / `explain_dataset` call it before any work."""
        given = [name for name, value in self._sources() if value]
        if len(given) != 1:
            listed = "IMAGE files, --data-dir or --dataset"
            raise ExplainUsageError(f"give exactly one of {listed} (got {' and '.join(given) if given else 'none'}).")
        changed = {f.name for f in fields(self) if getattr(self, f.name) != f.default}
        if self.source == "images" and "split" in changed:
            raise ExplainUsageError("--split applies to --data-dir / --dataset, not to IMAGE files.")
        for name in ("image_column", "label_column"):
            if self.source != "dataset" and name in changed:
                raise ExplainUsageError(f"--{name.replace('_', '-')} applies to --dataset only.")
        if self.output_format == "html":
            if self.source != "images":
                raise ExplainUsageError(
                    f"--format html writes figures of IMAGE files; for --{self.source.replace('_', '-')} use "
                    "--format parquet (the default), or pass the few image files for an HTML report."
                )
            for name in ("batch_size", "shard_size"):
                if name in changed:
                    raise ExplainUsageError(f"--{name.replace('_', '-')} applies to --format parquet.")
        else:
            for name in ("classes", "alpha"):
                if name in changed:
                    raise ExplainUsageError(
                        f"--{name} applies to --format html (figures); --format parquet writes the predicted and "
                        "true classes' maps and rankings."
                    )

    def _sources(self) -> list[tuple[str, object]]:
        return [("IMAGE files", self.images), ("--data-dir", self.data_dir), ("--dataset", self.dataset)]


__all__ = ["FORMATS", "ExplainOptions", "ExplainUsageError"]
