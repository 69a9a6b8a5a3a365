"""The synthetic taxonomy ([`generate_taxonomy_dataset`], `promptcam synthetic --taxonomy`): eight species in three
levels, each level decided by its own trait on every bird: the family by the wing pattern (stripes or checks), the
genus by the crest's shape (spikes or a tuft), the species by the tail's shape (forked or fanned); a mask per level
and `taxonomy.csv` (docs/taxonomy.md). Its images come from random streams of their own, so
the flat dataset (`data.synthetic`) is drawn exactly as before.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..files import write_atomically, write_json_atomically
from .masks import MASKS_DIR, mask_path
from .synthetic_drawing import draw_traits
from .synthetic_files import (
    DATASET_FILE,
    check_generation,
    fraction_summary,
    generation_jobs,
    image_rng,
    mask_image,
    save_images,
)

TAXONOMY_FILE = "taxonomy.csv"
TAXONOMY_STREAM = 1  # the taxonomy's images come from their own random streams, apart from the flat dataset's


@dataclass(frozen=True)
class TaxonomyLevel:
    """One level of the synthetic taxonomy: its name, the body part that decides it, and its two choices
    (`(name, trait)`; the trait is a `draw_traits` argument)."""

    name: str
    part: str
    choices: tuple[tuple[str, str], tuple[str, str]]


# every bird carries one trait per level, each in its own place: the family is told by the wing pattern alone, the
# genus (within a family) by the crest alone, the species (within a genus) by the tail alone. Both choices of a level
# are a form of the same part, never a trait against its absence: with a crest against an eye band, a node could tell
# its children apart by the missing band, and its head would point at an empty spot (docs/benchmarks.md, Taxonomy keys)
TAXONOMY_LEVELS: tuple[TaxonomyLevel, ...] = (
    TaxonomyLevel("family", "wing patch", (("striped", "wing_texture=stripes"), ("checkered", "wing_texture=checks"))),
    TaxonomyLevel("genus", "crest", (("spiky", "crest=spikes"), ("tufted", "crest=tuft"))),
    TaxonomyLevel("species", "tail", (("forktail", "tail=forked"), ("fantail", "tail=fanned"))),
)
# the mask `draw_traits` draws for each of its arguments
TRAIT_MASK = {
    "wing_texture": "wing",
    "crest": "crest",
    "tail": "tail",
    "fork": "tail",
    "band": "band",
    "throat": "throat",
}


def taxonomy_classes() -> list[tuple[str, ...]]:
    """Every leaf's path of choice indices, e.g. (0, 1, 0), in class order (sorted names)."""
    import itertools

    paths = list(itertools.product(*(range(len(level.choices)) for level in TAXONOMY_LEVELS)))
    return sorted(paths, key=lambda path: taxonomy_path_names(path)[-1])


def taxonomy_path_names(path: Sequence[int]) -> list[str]:
    """The group names of a path of choice indices, root first: ["striped", "striped_crested", ...]."""
    names, prefix = [], ""
    for level, choice in zip(TAXONOMY_LEVELS, path):
        prefix = f"{prefix}_{level.choices[choice][0]}" if prefix else level.choices[choice][0]
        names.append(prefix)
    return names


def draw_taxonomy_bird(
    path: Sequence[int], rng: np.random.Generator, image_size: int = 224
) -> tuple[Image.Image, dict[str, np.ndarray]]:
    """One bird of the leaf `path` (a choice index per level) and one mask per level (`{level: bool (H, W)}`), each
    True on the trait that decides that level."""
    arguments, mask_of_level = {}, {}
    for level, choice in zip(TAXONOMY_LEVELS, path):
        trait = level.choices[choice][1]
        name, _, value = trait.partition("=")
        arguments[name] = value or True
        mask_of_level[level.name] = TRAIT_MASK[name]
    image, masks, _ = draw_traits(rng, image_size, **arguments)
    empty = np.zeros((image_size, image_size), bool)
    return image, {level: masks.get(part, empty) for level, part in mask_of_level.items()}


def level_mask_path(data_dir: str | os.PathLike, level: str, image_path: str | os.PathLike) -> Path:
    """Where the mask of one level's trait is: `DATA/masks-<level>/<split>/<class>/<name>.png` (the image's path
    below `DATA`, as `data.masks.mask_path` has it under `masks/`)."""
    relative = Path(os.path.abspath(image_path)).relative_to(Path(os.path.abspath(data_dir)))
    return Path(data_dir) / f"{MASKS_DIR}-{level}" / relative.with_suffix(".png")


def generate_taxonomy_dataset(
    out_dir: str | os.PathLike,
    train_per_class: int = 48,
    val_per_class: int = 16,
    seed: int = 0,
    image_size: int = 224,
    progress: bool = True,
) -> dict:
    """Write the synthetic taxonomy: three levels (`TAXONOMY_LEVELS`), eight species, every level decided by its own
    small trait. Layout: the flat dataset's (`DIR/train/<species>/`, `DIR/val/<species>/`, `DIR/masks/...` holding
    the union of the three traits), plus `DIR/masks-<level>/<split>/<species>/<name>.png` per level and
    `DIR/taxonomy.csv` (`species,genus,family`), then `DIR/dataset.json`. Deterministic by seed: image i of species
    c in a split depends only on (seed, split, c, i)."""
    out = check_generation(out_dir, train_per_class, val_per_class, image_size)
    leaves = taxonomy_classes()
    jobs = generation_jobs(train_per_class, val_per_class, len(leaves))
    fractions = {level.name: [] for level in TAXONOMY_LEVELS}
    from tqdm.auto import tqdm

    for split, class_index, index in tqdm(jobs, desc="Drawing taxonomy birds", disable=not progress):
        name = taxonomy_path_names(leaves[class_index])[-1]
        rng = image_rng(seed, split, TAXONOMY_STREAM, class_index, index)
        image, masks = draw_taxonomy_bird(leaves[class_index], rng, image_size)
        image_path = out / split / name / f"{name}_{index:04d}.png"
        union = np.any(list(masks.values()), axis=0)
        pictures = [(image_path, image), (mask_path(out, image_path), mask_image(union))]
        pictures += [(level_mask_path(out, level, image_path), mask_image(mask)) for level, mask in masks.items()]
        save_images(pictures)
        for level, mask in masks.items():
            fractions[level].append(float(mask.mean()))
    header = [level.name for level in reversed(TAXONOMY_LEVELS)]
    rows = [",".join(reversed(taxonomy_path_names(path))) for path in leaves]
    write_atomically(out / TAXONOMY_FILE, "\n".join([",".join(header), *rows]) + "\n")
    info = {
        "name": "synthetic bird taxonomy",
        "classes": [taxonomy_path_names(path)[-1] for path in leaves],
        "levels": [level.name for level in TAXONOMY_LEVELS],
        "traits": {
            level.name: {"part": level.part, "choices": {name: trait for name, trait in level.choices}}
            for level in TAXONOMY_LEVELS
        },
        "taxonomy": TAXONOMY_FILE,
        "train_per_class": train_per_class,
        "val_per_class": val_per_class,
        "seed": seed,
        "image_size": image_size,
        "trait_fraction": {level: fraction_summary(values) for level, values in fractions.items()},
        "masks": f"{MASKS_DIR}/<split>/<class>/<name>.png (every trait), {MASKS_DIR}-<level>/<split>/<class>/<name>.png "
        "(that level's trait); mode L, 255 on the trait",
    }
    write_json_atomically(out / DATASET_FILE, info)
    return info


__all__ = [
    "TAXONOMY_FILE",
    "TAXONOMY_LEVELS",
    "TAXONOMY_STREAM",
    "TRAIT_MASK",
    "TaxonomyLevel",
    "draw_taxonomy_bird",
    "generate_taxonomy_dataset",
    "level_mask_path",
    "taxonomy_classes",
    "taxonomy_path_names",
]
