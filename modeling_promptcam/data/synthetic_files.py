"""What the synthetic generators share when they write a dataset: the output folder check, the per-image random
streams, the list of images to draw, the PNG files of images and masks, and the trait-coverage summary of
`dataset.json`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

SPLITS = {"train": 0, "val": 1}
DATASET_FILE = "dataset.json"


def check_generation(out_dir: str | os.PathLike, train_per_class: int, val_per_class: int, image_size: int) -> Path:
    """The checks both generators make before drawing anything; returns the output folder."""
    if train_per_class < 1 or val_per_class < 1:
        raise ValueError(
            f"train_per_class and val_per_class must be at least 1, got {train_per_class}, {val_per_class}."
        )
    if image_size < 64:
        raise ValueError(f"image_size must be at least 64 px, got {image_size}.")
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise ValueError(f"{out} already holds files; choose a new or empty folder.")
    return out


def image_rng(seed: int, split: str, *stream: int) -> np.random.Generator:
    """The random stream of one image: it depends only on the seed, the split and `stream` (the image's class and
    index, after a generator's own stream number), so an image never changes when others are added."""
    return np.random.default_rng([seed, SPLITS[split], *stream])


def generation_jobs(train_per_class: int, val_per_class: int, classes: int) -> list[tuple[str, int, int]]:
    """Every image to draw, `(split, class index, index within the class)`: the train split first, class by class."""
    return [
        (split, class_index, index)
        for split, count in (("train", train_per_class), ("val", val_per_class))
        for class_index in range(classes)
        for index in range(count)
    ]


def mask_image(mask: np.ndarray) -> Image.Image:
    """A bool mask as the dataset stores it: mode L, 255 inside."""
    return Image.fromarray(mask.astype(np.uint8) * 255)


def save_images(pictures: Iterable[tuple[Path, Image.Image]]) -> None:
    """Save each `(path, image)` as PNG, making its folder first."""
    for path, picture in pictures:
        path.parent.mkdir(parents=True, exist_ok=True)
        picture.save(path)


def fraction_summary(fractions: Sequence[float]) -> dict:
    """`dataset.json`'s trait coverage: the smallest, mean and largest share of the image a trait covers."""
    return {"min": min(fractions), "mean": float(np.mean(fractions)), "max": max(fractions)}


__all__ = [
    "DATASET_FILE",
    "SPLITS",
    "check_generation",
    "fraction_summary",
    "generation_jobs",
    "image_rng",
    "mask_image",
    "save_images",
]
