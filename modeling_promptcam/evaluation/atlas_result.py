"""The trait atlas's result and its file: per class its heads' statistics ([`HeadStatistics`], [`ClassAtlas`],
[`TraitAtlas`]), written as `atlas.json` ([`TraitAtlas.to_json`]) and read back, checked ([`read_atlas_json`]: the
app's Class atlas tab). The statistics themselves: `evaluation.atlas` (their definitions) and
`evaluation.atlas_statistics` (their computation).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field

from ..extras import require
from ..files import write_json_atomically

PROMPT_HEADS, CLS_HEADS = "prompt-cam", "cls-attention"


@dataclass
class GalleryImage:
    """One of the images where a head is most confident (the highest peak value of its map)."""

    image: int  # index into `TraitAtlas.images`
    peak: tuple[float, float]  # (x, y) in input pixels
    confidence: float  # the map's peak value


@dataclass
class HeadStatistics:
    """One head's statistics over one class's evaluated images (None where there is nothing to compute them on)."""

    head: int
    images: int  # the images behind the statistics
    annotated_images: int  # ... of which have part annotations with a visible part
    named_part: str | None = None
    named_part_rate: float | None = None
    consistency: float | None = None
    consistency_part: str | None = None
    consistent: bool | None = None
    stability: float | None = None
    top_trait_rate: float | None = None
    mean_rank: float | None = None
    distinctiveness: float | None = None
    part_mask_mass: float | None = None
    part_rates: dict[str, float] = field(default_factory=dict)  # part -> share of images in the box (where visible)
    part_counts: dict[str, int] = field(default_factory=dict)  # part -> images where visible
    gallery: list[GalleryImage] = field(default_factory=list)


@dataclass
class ClassAtlas:
    """The atlas of one class: its heads in rank order and the CLS-attention baseline's heads."""

    class_index: int
    class_name: str
    images: int
    annotated_images: int
    small_sample: bool
    heads: list[HeadStatistics]
    cls_heads: list[HeadStatistics]
    consistent_share: float | None
    cls_consistent_share: float | None


@dataclass
class TraitAtlas:
    """[`trait_atlas`]'s result: per class its [`ClassAtlas`], the summary, the settings, the evaluated images and
    the most-confused class pairs `(true, predicted, count)` (by class name, most frequent first)."""

    classes: dict[str, ClassAtlas]
    summary: dict
    settings: dict
    images: list[str]
    confusions: list[tuple[str, str, int]]
    labels: list[int] = field(default_factory=list)  # the true class of each image
    predicted: list[int] = field(default_factory=list)  # the model's prediction for each image
    class_names: dict[int, str] = field(default_factory=dict)  # the model's class index -> name

    def to_json(self) -> dict:
        """The `atlas.json` layout: `{class_name: {"images": n, "heads": [{"head": h, "named_part": ..., ...}]}}`,
        the heads in rank order; per class also its annotated images, the small-sample flag, the share of
        consistent heads and the CLS-attention baseline (`cls_attention`)."""

        def head_entry(head: HeadStatistics) -> dict:
            entry = asdict(head)
            entry["gallery"] = [
                {"image": self.images[g.image], "peak": list(g.peak), "confidence": g.confidence} for g in head.gallery
            ]
            return entry

        return {
            name: {
                "images": atlas.images,
                "heads": [head_entry(head) for head in atlas.heads],
                "annotated_images": atlas.annotated_images,
                "small_sample": atlas.small_sample,
                "consistent_share": atlas.consistent_share,
                "cls_attention": {
                    "heads": [head_entry(head) for head in atlas.cls_heads],
                    "consistent_share": atlas.cls_consistent_share,
                },
            }
            for name, atlas in self.classes.items()
        }

    def save(self, path: str | os.PathLike) -> None:
        """`atlas.json` ([`to_json`]), written atomically."""
        write_json_atomically(path, self.to_json())

    def to_dataset(self):
        """One row per (class, method, head) as a `datasets.Dataset` (method `"prompt-cam"` or `"cls-attention"`)."""
        Dataset = require("datasets", "train", "The trait atlas as a datasets.Dataset").Dataset

        rows = []
        for name, atlas in self.classes.items():
            for method, heads in ((PROMPT_HEADS, atlas.heads), (CLS_HEADS, atlas.cls_heads)):
                for rank, head in enumerate(heads):
                    row = {k: v for k, v in asdict(head).items() if k not in ("gallery", "part_rates", "part_counts")}
                    rows.append(
                        {"class_name": name, "method": method, "rank": rank, "small_sample": atlas.small_sample, **row}
                    )
        return Dataset.from_list(rows)


class AtlasFileError(ValueError):
    """An `atlas.json` that cannot be read or does not have the layout of `TraitAtlas.to_json` (says how to fix it)."""


ATLAS_HEAD_FIELDS = ("head", "named_part", "named_part_rate", "consistency", "stability", "top_trait_rate")


def read_atlas_json(path: str | os.PathLike) -> dict:
    """An `atlas.json` written by `promptcam atlas` ([`TraitAtlas.to_json`]), checked: one entry per class with
    `images` and `heads`, each head with at least `ATLAS_HEAD_FIELDS`."""
    import json

    try:
        with open(path, encoding="utf-8") as file:
            data = json.load(file)
    except FileNotFoundError:
        raise AtlasFileError(f"No atlas file {path}; write one with promptcam atlas (OUT/atlas.json).") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise AtlasFileError(f"{path} is not a readable atlas.json ({error}).") from None
    if not isinstance(data, dict) or not data:
        raise AtlasFileError(f"{path} must hold {{class_name: {{'images': n, 'heads': [...]}}}} (promptcam atlas).")
    for name, entry in data.items():
        heads = entry.get("heads") if isinstance(entry, dict) else None
        if not isinstance(heads, list) or "images" not in entry:
            raise AtlasFileError(f"{path}: the entry of {name!r} has no 'images' and 'heads'; is it an atlas.json?")
        for head in heads:
            missing = [key for key in ATLAS_HEAD_FIELDS if not isinstance(head, dict) or key not in head]
            if missing:
                raise AtlasFileError(f"{path}: a head of {name!r} lacks {', '.join(missing)}.")
    return data


__all__ = [
    "ATLAS_HEAD_FIELDS",
    "AtlasFileError",
    "CLS_HEADS",
    "ClassAtlas",
    "GalleryImage",
    "HeadStatistics",
    "PROMPT_HEADS",
    "TraitAtlas",
    "read_atlas_json",
]
