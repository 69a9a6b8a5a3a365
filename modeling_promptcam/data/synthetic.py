"""A synthetic fine-grained dataset with ground-truth trait masks: birds of one body plan whose classes differ only in
one small local trait.

Every image shows one bird (body, head, beak, eye, wing, tail, legs) at a random position, size, rotation and facing,
with random colours for every part, over a random background. All of that is drawn the same way for every class.
What decides the class is one trait, drawn only for that class:

- three wing-patch textures (stripes, checks, dots) in the same place on the wing, in random colours;
- a crest on the head, a forked tail, a dark eye band, a spotted throat;
- none: the `plain` reference class.

Every class differs from `plain` in one place only, so a classifier can only tell a class apart by looking at its
trait: the texture on the wing, the head, the tail or the throat. Each image comes with a mask of its trait (empty
for `plain`) (`masks/<split>/<class>/<name>.png`, mode L, 255 inside); the
masks are drawn with the same geometry as the image. A trait covers at most `MAX_TRAIT_FRACTION` of the image.

Layout written by [`generate_dataset`] (an `imagefolder` tree that `promptcam train --data-dir` takes):

    DIR/train/<class>/<name>.png   DIR/val/<class>/<name>.png
    DIR/masks/train/<class>/<name>.png   DIR/masks/val/<class>/<name>.png
    DIR/images.txt                 CUB-200-2011's part keypoint files, one line per image of both splits: the
    DIR/parts/parts.txt            image's id and path below DIR; the part names (`PART_NAMES`); per image and part
    DIR/parts/part_locs.txt        `x y visible` in pixels of the image (see [`bird_keypoints`])
    DIR/dataset.json               classes, traits, counts, seed, image size, mask coverage

The keypoint files are what `promptcam atlas --parts DIR` reads (`data.parts.read_cub_parts`): every body part of every
bird has a keypoint, visible except the crest, which only crested birds have.

Generation is deterministic: image i of class c in a split depends only on (seed, split, c, i).

The synthetic taxonomy (one trait per level, `promptcam synthetic --taxonomy`) is `data.synthetic_taxonomy`; the
drawing of one bird is `data.synthetic_drawing`. Their names are importable from here as before.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
from PIL import Image

from ..files import write_atomically, write_json_atomically
from .masks import MASKS_DIR, mask_path

# the drawing, the shared writing steps and the taxonomy moved to modules of their own; their old import path works
from .synthetic_drawing import (
    MAX_TRAIT_FRACTION,
    PART_KEYPOINTS,
    PART_NAMES,
    SUPERSAMPLE,  # noqa: F401 (re-exported: its old import path)
    TEXTURES,
    Pose,
    draw_traits,
    part_keypoints,
)
from .synthetic_files import (
    DATASET_FILE,
    SPLITS,  # noqa: F401 (re-exported: its old import path)
    check_generation,
    fraction_summary,
    generation_jobs,
    image_rng,
    mask_image,
    save_images,
)
from .synthetic_taxonomy import (
    TAXONOMY_FILE,
    TAXONOMY_LEVELS,
    TAXONOMY_STREAM,  # noqa: F401 (re-exported: its old import path)
    TRAIT_MASK,  # noqa: F401 (re-exported: its old import path)
    TaxonomyLevel,
    draw_taxonomy_bird,
    generate_taxonomy_dataset,
    level_mask_path,
    taxonomy_classes,
    taxonomy_path_names,
)


@dataclass(frozen=True)
class TraitClass:
    """One class: its name, the body part its trait is on, and what the trait looks like."""

    name: str
    part: str
    description: str


CLASSES: tuple[TraitClass, ...] = (
    TraitClass("striped_wing", "wing patch", "a striped patch on the wing"),
    TraitClass("checkered_wing", "wing patch", "a checkered patch on the wing"),
    TraitClass("dotted_wing", "wing patch", "a dotted patch on the wing"),
    TraitClass("crested", "head", "a three-spiked crest on the head"),
    TraitClass("fork_tailed", "tail", "a deeply forked tail"),
    TraitClass("masked", "head", "a dark band through the eye"),
    TraitClass("spotted_throat", "throat", "a spotted throat patch"),
    # the reference bird: without it, a class could be told by the absence of the other classes' traits (a bird
    # with no crest, band, spots or patch would have to be fork-tailed), and its prompt would not need its own trait
    TraitClass("plain", "none", "no trait: the reference bird every other class differs from in one place"),
)
# the trait part of each trait class (the part a head that finds the class's trait should be named after)
TRAIT_PARTS = {
    "striped_wing": "wing",
    "checkered_wing": "wing",
    "dotted_wing": "wing",
    "crested": "crest",
    "fork_tailed": "tail",
    "masked": "eye",
    "spotted_throat": "throat",
}
PARTS_DIR = "parts"


def class_names() -> list[str]:
    return [trait_class.name for trait_class in CLASSES]


def draw_bird(class_index: int, rng: np.random.Generator, image_size: int = 224) -> tuple[Image.Image, np.ndarray]:
    """One image of class `class_index` and its trait mask.

    Returns:
        the RGB image `(image_size, image_size)` and the mask, a bool array `(image_size, image_size)` that is True on
        the class's trait.
    """
    image, mask, _ = draw_bird_with_keypoints(class_index, rng, image_size)
    return image, mask


def bird_keypoints(pose: Pose, class_index: int) -> dict[str, tuple[float, float, bool]]:
    """The keypoint of every part of `PART_NAMES` for a bird drawn with `pose`: `(x, y, visible)` in pixels of the
    image (the supersampled canvas scaled back; within a pixel of the drawn shape). Only crested birds have a crest:
    every other part is visible on every bird."""
    return part_keypoints(pose, crested=CLASSES[class_index].name == "crested")


def draw_bird_with_keypoints(
    class_index: int, rng: np.random.Generator, image_size: int = 224
) -> tuple[Image.Image, np.ndarray, dict[str, tuple[float, float, bool]]]:
    """[`draw_bird`] and the bird's part keypoints ([`bird_keypoints`]), from the same random draw: the keypoints are
    computed from the pose and take nothing from `rng`, so the image and mask are those `draw_bird` gives."""
    if not 0 <= class_index < len(CLASSES):
        raise ValueError(f"class_index must be in [0, {len(CLASSES)}), got {class_index}.")
    trait = CLASSES[class_index]
    image, masks, keypoints = draw_traits(
        rng,
        image_size,
        wing_texture=TEXTURES[class_index] if trait.part == "wing patch" else None,
        crest=trait.name == "crested",
        fork=trait.name == "fork_tailed",
        band=trait.name == "masked",
        throat=trait.name == "spotted_throat",
    )
    mask = np.any(list(masks.values()), axis=0) if masks else np.zeros((image_size, image_size), bool)
    return image, mask, keypoints


# ----------------------------------------------------------------------------------------------- the dataset
def generate_dataset(
    out_dir: str | os.PathLike,
    train_per_class: int = 48,
    val_per_class: int = 16,
    seed: int = 0,
    image_size: int = 224,
    progress: bool = True,
) -> dict:
    """Write the dataset (layout in the module docstring) and return what `dataset.json` holds.

    Raises `ValueError` for counts below 1 or a folder that already holds files (images are never overwritten).
    """
    out = check_generation(out_dir, train_per_class, val_per_class, image_size)
    jobs = generation_jobs(train_per_class, val_per_class, len(CLASSES))
    fractions = []
    image_lines, location_lines = [], []
    from tqdm.auto import tqdm

    for image_id, (split, class_index, index) in enumerate(tqdm(jobs, desc="Drawing birds", disable=not progress), 1):
        name = CLASSES[class_index].name
        image, mask, keypoints = draw_bird_with_keypoints(
            class_index, image_rng(seed, split, class_index, index), image_size
        )
        image_path = out / split / name / f"{name}_{index:04d}.png"
        image_lines.append(f"{image_id} {image_path.relative_to(out).as_posix()}\n")
        for part_id, (x, y, visible) in enumerate(keypoints.values(), 1):
            # CUB writes hidden parts as 0 0 with visibility 0
            x, y = (x, y) if visible else (0.0, 0.0)
            location_lines.append(f"{image_id} {part_id} {x:.2f} {y:.2f} {int(visible)}\n")
        save_images([(image_path, image), (mask_path(out, image_path), mask_image(mask))])
        if mask.any():
            fractions.append(float(mask.mean()))
    write_atomically(out / "images.txt", "".join(image_lines))
    (out / PARTS_DIR).mkdir(exist_ok=True)
    write_atomically(out / PARTS_DIR / "parts.txt", "".join(f"{i} {part}\n" for i, part in enumerate(PART_NAMES, 1)))
    write_atomically(out / PARTS_DIR / "part_locs.txt", "".join(location_lines))
    info = {
        "name": "synthetic fine-grained birds",
        "classes": class_names(),
        "traits": {c.name: {"part": c.part, "description": c.description} for c in CLASSES},
        "train_per_class": train_per_class,
        "val_per_class": val_per_class,
        "seed": seed,
        "image_size": image_size,
        "trait_fraction": fraction_summary(fractions),
        "masks": f"{MASKS_DIR}/<split>/<class>/<name>.png (mode L, 255 on the trait)",
        "parts": {
            "files": ["images.txt", f"{PARTS_DIR}/parts.txt", f"{PARTS_DIR}/part_locs.txt"],
            "format": "CUB-200-2011 part keypoints (x y visible, pixels of the image)",
            "names": list(PART_NAMES),
            "trait_parts": TRAIT_PARTS,
        },
    }
    # written last and atomically: its presence says the dataset is complete (the demo reuses it then)
    write_json_atomically(out / DATASET_FILE, info)
    return info


__all__ = [
    "DATASET_FILE",
    "MAX_TRAIT_FRACTION",
    "PARTS_DIR",
    "PART_KEYPOINTS",
    "PART_NAMES",
    "TAXONOMY_FILE",
    "TAXONOMY_LEVELS",
    "TRAIT_PARTS",
    "TaxonomyLevel",
    "TraitClass",
    "bird_keypoints",
    "class_names",
    "draw_bird",
    "draw_bird_with_keypoints",
    "draw_taxonomy_bird",
    "generate_dataset",
    "generate_taxonomy_dataset",
    "level_mask_path",
    "taxonomy_classes",
    "taxonomy_path_names",
]
