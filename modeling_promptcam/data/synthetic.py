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

The synthetic taxonomy ([`generate_taxonomy_dataset`], `promptcam synthetic --taxonomy`): eight species in three
levels, each level decided by its own trait on every bird: the family by the wing pattern (stripes or checks), the
genus by the head (a crest or an eye band), the species by the tail or the throat (a forked tail or a spotted
throat); a mask per level and `taxonomy.csv` (docs/taxonomy.md). Its images come from random streams of their own, so
the flat dataset above is drawn exactly as before.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from ..files import write_atomically, write_json_atomically
from .masks import MASKS_DIR, mask_path

SUPERSAMPLE = 2  # drawn at twice the size, then downsampled: smooth edges, exact masks
MAX_TRAIT_FRACTION = 0.05  # a trait covers at most this fraction of the image
SPLITS = {"train": 0, "val": 1}
DATASET_FILE = "dataset.json"


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
TEXTURES = ("stripes", "checks", "dots")

# The body parts with a keypoint, in the order of parts/parts.txt (ids 1, 2, ...), and where each keypoint sits in
# bird coordinates (facing right, body centred at the origin, y down; the shapes `draw_bird` draws): the centre of the
# head, eye, throat patch, wing patch and the tail's base, a point of the crest and of the body that no other shape
# covers, and the point between the legs.
PART_KEYPOINTS: dict[str, tuple[float, float]] = {
    "head": (52.0, -22.0),
    "eye": (58.0, -24.0),
    "crest": (52.0, -42.0),
    "throat": (40.0, 8.0),
    "wing": (-10.0, -5.0),
    "tail": (-55.0, 0.0),
    "body": (10.0, 22.0),
    "legs": (-1.0, 42.0),
}
PART_NAMES = tuple(PART_KEYPOINTS)
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


# ----------------------------------------------------------------------------------------------- geometry
def _ellipse(cx: float, cy: float, rx: float, ry: float, points: int = 40) -> np.ndarray:
    angles = np.linspace(0, 2 * math.pi, points, endpoint=False)
    return np.stack((cx + rx * np.cos(angles), cy + ry * np.sin(angles)), axis=1)


class _Pose:
    """Bird coordinates (facing right, body centred at the origin, y down) -> supersampled canvas pixels."""

    def __init__(self, scale: float, angle: float, flip: bool, centre: tuple[float, float]):
        cos, sin = math.cos(angle), math.sin(angle)
        self.matrix = scale * SUPERSAMPLE * np.array([[cos, -sin], [sin, cos]]) @ np.diag([-1.0 if flip else 1.0, 1.0])
        self.offset = np.array(centre) * SUPERSAMPLE

    def __call__(self, points: np.ndarray) -> list[tuple[float, float]]:
        return [tuple(p) for p in points @ self.matrix.T + self.offset]


def _random_colour(rng: np.random.Generator, lightness: tuple[float, float] = (0.2, 0.85)) -> tuple[int, int, int]:
    import colorsys

    hue, light, saturation = rng.random(), rng.uniform(*lightness), rng.uniform(0.35, 0.9)
    return tuple(int(255 * c) for c in colorsys.hls_to_rgb(hue, light, saturation))


def _contrasting_pair(rng: np.random.Generator) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    return _random_colour(rng, (0.12, 0.3)), _random_colour(rng, (0.7, 0.9))


def _texture(kind: str, size: int, period: float, angle: float, colours, rng: np.random.Generator) -> Image.Image:
    """A `size` x `size` RGB texture: stripes, checks or dots with the given period (pixels) and orientation."""
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    u = xs * math.cos(angle) + ys * math.sin(angle) + rng.uniform(0, period)
    v = -xs * math.sin(angle) + ys * math.cos(angle) + rng.uniform(0, period)
    if kind == "stripes":
        on = (u % period) < period / 2
    elif kind == "checks":
        on = ((u // (period / 2)) + (v // (period / 2))) % 2 == 0
    elif kind == "dots":
        du, dv = (u % period) - period / 2, (v % period) - period / 2
        on = du * du + dv * dv < (period * 0.3) ** 2
    else:
        raise ValueError(f"Unknown texture {kind!r}; expected one of {TEXTURES}.")
    dark, light = np.array(colours[0], np.uint8), np.array(colours[1], np.uint8)
    return Image.fromarray(np.where(on[..., None], dark, light).astype(np.uint8))


def _paste_texture(canvas: Image.Image, polygon, texture: Image.Image) -> None:
    region = Image.new("L", canvas.size, 0)
    ImageDraw.Draw(region).polygon(polygon, fill=255)
    canvas.paste(texture, (0, 0), region)


# ----------------------------------------------------------------------------------------------- drawing
def _background(rng: np.random.Generator, size: int) -> Image.Image:
    """A smooth two-colour gradient with soft blobs (class-independent)."""
    top, bottom = np.array(_random_colour(rng, (0.3, 0.85))), np.array(_random_colour(rng, (0.3, 0.85)))
    ramp = np.linspace(0, 1, size)[:, None, None]
    canvas = Image.fromarray((top * (1 - ramp) + bottom * ramp).repeat(size, axis=1).astype(np.uint8))
    draw = ImageDraw.Draw(canvas)
    for _ in range(int(rng.integers(3, 7))):
        cx, cy, r = rng.uniform(0, size, 2).tolist() + [rng.uniform(0.05, 0.2) * size]
        draw.ellipse((cx - r, cy - r * 0.7, cx + r, cy + r * 0.7), fill=_random_colour(rng))
    canvas = canvas.filter(ImageFilter.GaussianBlur(size / 40))
    return canvas


def draw_bird(class_index: int, rng: np.random.Generator, image_size: int = 224) -> tuple[Image.Image, np.ndarray]:
    """One image of class `class_index` and its trait mask.

    Returns:
        the RGB image `(image_size, image_size)` and the mask, a bool array `(image_size, image_size)` that is True on
        the class's trait.
    """
    image, mask, _ = draw_bird_with_keypoints(class_index, rng, image_size)
    return image, mask


def bird_keypoints(pose: _Pose, class_index: int) -> dict[str, tuple[float, float, bool]]:
    """The keypoint of every part of `PART_NAMES` for a bird drawn with `pose`: `(x, y, visible)` in pixels of the
    image (the supersampled canvas scaled back; within a pixel of the drawn shape). Only crested birds have a crest:
    every other part is visible on every bird."""
    return _part_keypoints(pose, crested=CLASSES[class_index].name == "crested")


def _part_keypoints(pose: _Pose, crested: bool) -> dict[str, tuple[float, float, bool]]:
    points = np.array(list(PART_KEYPOINTS.values()))
    image_points = np.array(pose(points)) / SUPERSAMPLE
    return {
        part: (float(x), float(y), part != "crest" or crested) for part, (x, y) in zip(PART_KEYPOINTS, image_points)
    }


def draw_bird_with_keypoints(
    class_index: int, rng: np.random.Generator, image_size: int = 224
) -> tuple[Image.Image, np.ndarray, dict[str, tuple[float, float, bool]]]:
    """[`draw_bird`] and the bird's part keypoints ([`bird_keypoints`]), from the same random draw: the keypoints are
    computed from the pose and take nothing from `rng`, so the image and mask are those `draw_bird` gives."""
    if not 0 <= class_index < len(CLASSES):
        raise ValueError(f"class_index must be in [0, {len(CLASSES)}), got {class_index}.")
    trait = CLASSES[class_index]
    image, masks, keypoints = _draw_traits(
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


def _draw_traits(
    rng: np.random.Generator,
    image_size: int,
    wing_texture: str | None = None,
    crest: bool = False,
    fork: bool = False,
    band: bool = False,
    throat: bool = False,
) -> tuple[Image.Image, dict[str, np.ndarray], dict[str, tuple[float, float, bool]]]:
    """One bird with the given traits (any combination), one mask per trait drawn (`wing`, `crest`, `tail`,
    `band`, `throat`) and its part keypoints (`bird_keypoints`; they take nothing from `rng`). The random draws happen in one fixed order whatever the traits, so a one-trait bird is drawn
    exactly as the flat dataset always drew it."""
    size = image_size * SUPERSAMPLE
    canvas = _background(rng, size)
    trait_masks: dict[str, Image.Image] = {}

    def mask_draw(name: str) -> ImageDraw.ImageDraw:
        if name not in trait_masks:
            trait_masks[name] = Image.new("L", (size, size), 0)
        return ImageDraw.Draw(trait_masks[name])

    draw = ImageDraw.Draw(canvas)

    # the bird spans about 150 x 110 px at scale 1 on a 224 px image; keep it inside the frame
    unit = image_size / 224
    scale = rng.uniform(0.85, 1.05) * unit
    angle, flip = rng.uniform(-0.3, 0.3), bool(rng.random() < 0.5)
    margin = 80 * scale
    centre = (rng.uniform(margin, image_size - margin), rng.uniform(margin * 0.85, image_size - margin * 0.85))
    pose = _Pose(scale, angle, flip, centre)
    body_colour, head_colour, wing_colour = (_random_colour(rng) for _ in range(3))
    beak_colour, leg_colour = _random_colour(rng, (0.5, 0.8)), _random_colour(rng, (0.2, 0.4))

    def shape(points, colour, mask: str | None = None) -> None:
        polygon = pose(points)
        draw.polygon(polygon, fill=colour)
        if mask:
            mask_draw(mask).polygon(polygon, fill=255)

    # legs, tail, body, wing, head, beak, eye: the order they overlap in
    for x in (-12.0, 10.0):
        shape(np.array([[x, 25], [x + 4, 25], [x + 2, 58], [x - 2, 58]]), leg_colour)
    forked_tail = np.array([[-45, -8], [-112, -42], [-62, 0], [-112, 42], [-45, 8]])
    plain_tail = np.array([[-45, -8], [-88, -16], [-92, 0], [-88, 16], [-45, 8]])
    shape(forked_tail if fork else plain_tail, body_colour if rng.random() < 0.5 else wing_colour)
    if fork:  # the trait is the tail's shape: its region is where either shape could be
        for outline in (forked_tail, plain_tail):
            mask_draw("tail").polygon(pose(outline), fill=255)
    shape(_ellipse(0, 0, 55, 34), body_colour)
    wing = _ellipse(-6, -4, 38, 20)
    shape(wing, wing_colour)
    if wing_texture is not None:
        texture = _texture(
            wing_texture,
            size,
            rng.uniform(6.0, 8.0) * scale * SUPERSAMPLE,
            rng.uniform(0, math.pi),
            _contrasting_pair(rng),
            rng,
        )
        patch = pose(_ellipse(-10, -5, 31, 16))
        _paste_texture(canvas, patch, texture)
        mask_draw("wing").polygon(patch, fill=255)
    if throat:
        throat_patch = pose(_ellipse(40, 8, 18, 15))
        spots = _texture("dots", size, 6.0 * scale * SUPERSAMPLE, 0.0, _contrasting_pair(rng), rng)
        _paste_texture(canvas, throat_patch, spots)
        mask_draw("throat").polygon(throat_patch, fill=255)
    shape(_ellipse(52, -22, 22, 20), head_colour)
    if crest:  # in front of the head, so all of it shows
        spikes = np.array([[34, -33], [20, -76], [42, -50], [50, -88], [58, -50], [80, -74], [70, -33]])
        shape(spikes, _random_colour(rng), mask="crest")
    shape(np.array([[70, -28], [92, -20], [70, -14]]), beak_colour)
    if band:
        shape(np.array([[30, -32], [76, -32], [76, -14], [30, -14]]), _random_colour(rng, (0.05, 0.15)), mask="band")
    shape(_ellipse(58, -24, 4.5, 4.5), (15, 15, 15))

    # area averaging for both: a pixel the trait touches at all is in the mask, and no filter rings beyond it
    image = canvas.resize((image_size, image_size), Image.BOX)
    masks = {
        name: np.asarray(mask.resize((image_size, image_size), Image.BOX)) > 0 for name, mask in trait_masks.items()
    }
    return image, masks, _part_keypoints(pose, crested=crest)


# ----------------------------------------------------------------------------------------------- the dataset
def _rng(seed: int, split: str, class_index: int, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, SPLITS[split], class_index, index])


def _check_generation(out_dir: str | os.PathLike, train_per_class: int, val_per_class: int, image_size: int) -> Path:
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
    out = _check_generation(out_dir, train_per_class, val_per_class, image_size)
    jobs = [
        (split, class_index, index)
        for split, count in (("train", train_per_class), ("val", val_per_class))
        for class_index in range(len(CLASSES))
        for index in range(count)
    ]
    fractions = []
    image_lines, location_lines = [], []
    from tqdm.auto import tqdm

    for image_id, (split, class_index, index) in enumerate(tqdm(jobs, desc="Drawing birds", disable=not progress), 1):
        name = CLASSES[class_index].name
        image, mask, keypoints = draw_bird_with_keypoints(
            class_index, _rng(seed, split, class_index, index), image_size
        )
        image_path = out / split / name / f"{name}_{index:04d}.png"
        image_lines.append(f"{image_id} {image_path.relative_to(out).as_posix()}\n")
        for part_id, (x, y, visible) in enumerate(keypoints.values(), 1):
            # CUB writes hidden parts as 0 0 with visibility 0
            x, y = (x, y) if visible else (0.0, 0.0)
            location_lines.append(f"{image_id} {part_id} {x:.2f} {y:.2f} {int(visible)}\n")
        for path, picture in (
            (image_path, image),
            (mask_path(out, image_path), Image.fromarray(mask.astype(np.uint8) * 255)),
        ):
            path.parent.mkdir(parents=True, exist_ok=True)
            picture.save(path)
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
        "trait_fraction": {"min": min(fractions), "mean": float(np.mean(fractions)), "max": max(fractions)},
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


# ----------------------------------------------------------------------------------------------- the taxonomy
TAXONOMY_FILE = "taxonomy.csv"
TAXONOMY_STREAM = 1  # the taxonomy's images come from their own random streams, apart from the flat dataset's


@dataclass(frozen=True)
class TaxonomyLevel:
    """One level of the synthetic taxonomy: its name, the body part that decides it, and its two choices
    (`(name, trait)`; the trait is a `_draw_traits` argument)."""

    name: str
    part: str
    choices: tuple[tuple[str, str], tuple[str, str]]


# every bird carries one trait per level, each in its own place: the family is told by the wing pattern alone, the
# genus (within a family) by the head alone, the species (within a genus) by the tail or the throat alone
TAXONOMY_LEVELS: tuple[TaxonomyLevel, ...] = (
    TaxonomyLevel("family", "wing patch", (("striped", "wing_texture=stripes"), ("checkered", "wing_texture=checks"))),
    TaxonomyLevel("genus", "head", (("crested", "crest"), ("masked", "band"))),
    TaxonomyLevel("species", "tail or throat", (("forktail", "fork"), ("spotthroat", "throat"))),
)
TRAIT_MASK = {"wing_texture": "wing", "crest": "crest", "band": "band", "fork": "tail", "throat": "throat"}


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
    image, masks, _ = _draw_traits(rng, image_size, **arguments)
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
    out = _check_generation(out_dir, train_per_class, val_per_class, image_size)
    leaves = taxonomy_classes()
    jobs = [
        (split, class_index, index)
        for split, count in (("train", train_per_class), ("val", val_per_class))
        for class_index in range(len(leaves))
        for index in range(count)
    ]
    fractions = {level.name: [] for level in TAXONOMY_LEVELS}
    from tqdm.auto import tqdm

    for split, class_index, index in tqdm(jobs, desc="Drawing taxonomy birds", disable=not progress):
        name = taxonomy_path_names(leaves[class_index])[-1]
        rng = np.random.default_rng([seed, SPLITS[split], TAXONOMY_STREAM, class_index, index])
        image, masks = draw_taxonomy_bird(leaves[class_index], rng, image_size)
        image_path = out / split / name / f"{name}_{index:04d}.png"
        union = np.any(list(masks.values()), axis=0)
        pictures = [(image_path, image), (mask_path(out, image_path), Image.fromarray(union.astype(np.uint8) * 255))]
        pictures += [
            (level_mask_path(out, level, image_path), Image.fromarray(mask.astype(np.uint8) * 255))
            for level, mask in masks.items()
        ]
        for path, picture in pictures:
            path.parent.mkdir(parents=True, exist_ok=True)
            picture.save(path)
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
        "trait_fraction": {
            level: {"min": min(values), "mean": float(np.mean(values)), "max": max(values)}
            for level, values in fractions.items()
        },
        "masks": f"{MASKS_DIR}/<split>/<class>/<name>.png (every trait), {MASKS_DIR}-<level>/<split>/<class>/<name>.png "
        "(that level's trait); mode L, 255 on the trait",
    }
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
