"""Part annotations in: where the parts of a bird (or a fish, ...) are in each image, for the trait atlas
(`evaluation.atlas`, `promptcam atlas`).

Three sources, one result ([`PartAnnotations`]):

- **CUB-200-2011's own files** ([`read_cub_parts`]): `ROOT/images.txt` (`<image id> <image path>`),
  `ROOT/parts/parts.txt` (`<part id> <part name>`, names may hold spaces), `ROOT/parts/part_locs.txt`
  (`<image id> <part id> <x> <y> <visible>`). A part with visibility 0 is not in the image and is left out (CUB
  writes its coordinates as 0 0). The synthetic dataset writes these files at its root (`data.synthetic`).
- **A keypoints JSON** ([`read_keypoints_json`]): `{image: {part: [x, y]}}`; a part that is not in the image is
  left out of its image's entry (or given as `null`).
- **Per-part mask folders** ([`read_part_masks`]): `DIR/masks/<split>/<class>/<image stem>/<part>.png` (or the same
  below `DIR` itself), one grey-level mask per part, of the image's size, nonzero inside (the rule of `data.masks`);
  a part without a file, or with an empty mask, is not visible in that image.

How an annotation finds its image: its name is a path (`/`-separated); it belongs to an evaluated image whose path
ends with it (`001.Black_footed_Albatross/x.jpg` matches `DATA/val/001.Black_footed_Albatross/x.jpg`), the longest
match winning. Mask folders are named by the image's path below the data folder without its extension.

Coordinates are in pixels of the original image (`x` to the right, `y` down, CUB's convention) and follow the image
through the model's preprocessing ([`PartAnnotations.at_input`]: a plain resize to the model's input size, no crop,
so `x' = x * input_width / width`), for any image size.

Refused with a [`PartsError`] naming the file and the fix: missing or malformed files, a keypoints JSON or mask folder
naming an image that is not in the data (annotations for another dataset), a visible keypoint outside its image, a
mask of another size than its image, and an annotation set that covers none of the evaluated images. The official CUB
files cover the whole dataset, so CUB images that are not in the data are passed over (only none at all is an error).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image

from .masks import MASKS_DIR, MaskError, read_mask, resize_mask

CUB_IMAGES_FILE = "images.txt"
CUB_PARTS_FILE = "parts/parts.txt"
CUB_PART_LOCS_FILE = "parts/part_locs.txt"
SOURCES = ("cub", "keypoints", "masks")


class PartsError(ValueError):
    """Part annotations that cannot be used as they are (says which file and how to fix it)."""


@dataclass
class ImageParts:
    """The visible parts of one image at the model's input size.

    Attributes:
        keypoints: part name -> `(x, y)` in pixels of the model input (keypoint sources; empty for masks).
        masks: part name -> `(height, width)` bool mask at the model input (mask sources; None for keypoints).
    """

    keypoints: dict[str, tuple[float, float]] = field(default_factory=dict)
    masks: dict[str, np.ndarray] | None = None

    @property
    def visible(self) -> list[str]:
        """The parts visible in the image."""
        return list(self.masks) if self.masks is not None else list(self.keypoints)


@dataclass
class PartAnnotations:
    """Part annotations of a set of images (one of `SOURCES`), matched to image paths with [`match`].

    Attributes:
        source: `"cub"`, `"keypoints"` or `"masks"`.
        part_names: every part the annotations name, in their order (CUB: parts.txt's).
        keypoints: annotation name -> part -> `(x, y)` in pixels of the original image, visible parts only
            (keypoint sources).
        mask_folders: annotation name -> folder of `<part>.png` files (mask sources).
        origin: the file or folder read, for messages.
        strict: an annotation that matches no image of the data is an error (JSON and masks) or passed over (CUB).
    """

    source: str
    part_names: tuple[str, ...]
    keypoints: dict[str, dict[str, tuple[float, float]]] = field(default_factory=dict)
    mask_folders: dict[str, Path] = field(default_factory=dict)
    origin: str = ""
    strict: bool = True

    @property
    def names(self) -> list[str]:
        return list(self.keypoints if self.source != "masks" else self.mask_folders)

    def match(
        self,
        image_paths: Sequence[str | os.PathLike],
        data_dir: str | os.PathLike | None = None,
        require_coverage: bool = True,
    ) -> list:
        """The annotation name of each image (None for an image without annotations), by the module docstring's rule.

        Raises [`PartsError`] when none of the images is annotated (unless `require_coverage=False`), and (strict
        sources) when an annotation names no image of `image_paths`.
        """
        index = set(self.names)
        longest = max((len(PurePosixPath(name).parts) for name in index), default=0)
        matched = []
        for path in image_paths:
            relative = Path(os.path.relpath(path, data_dir)) if data_dir is not None else Path(path)
            if self.source == "masks":
                relative = relative.with_suffix("")
            parts = relative.parts
            found = None
            for count in range(min(len(parts), longest), 0, -1):
                tail = "/".join(parts[-count:])
                if tail in index:
                    found = tail
                    break
            matched.append(found)
        if require_coverage and not any(name is not None for name in matched):
            example = next(iter(index), "(none)")
            raise PartsError(
                f"The part annotations in {self.origin} cover none of the {len(matched)} evaluated image(s) (an "
                f"annotation such as {example!r} matches no image path). Use the annotations of this dataset: their "
                "image names must be the ends of the image paths below the data folder."
            )
        if self.strict:
            unknown = sorted(index - {name for name in matched if name is not None})
            if unknown:
                raise PartsError(
                    f"{len(unknown)} image(s) of the part annotations in {self.origin} name no image of the data: "
                    f"{', '.join(unknown[:5])}{' ...' if len(unknown) > 5 else ''}. Remove them, or point --data at "
                    "the images they annotate."
                )
        return matched

    def check(self, name: str, image_size: tuple[int, int]) -> None:
        """Raise [`PartsError`] when a visible keypoint of `name` lies outside its `(width, height)` image or a part
        mask has another size (read from the files' headers): the checks of [`at_input`], before any long work."""
        if self.source != "masks":
            self.at_input(name, image_size, image_size)
            return
        for part in self.part_names:
            file = self.mask_folders[name] / f"{part}.png"
            if file.is_file():
                try:
                    with Image.open(file) as opened:
                        size = opened.size
                except OSError as error:
                    raise PartsError(f"{file} is not a readable mask image ({error}); fix or remove it.") from None
                if size != tuple(image_size):
                    raise PartsError(
                        f"The mask {file} is {size[0]}x{size[1]} but its image is {image_size[0]}x{image_size[1]}; "
                        "write each part mask at its image's size."
                    )

    def at_input(self, name: str, image_size: tuple[int, int], input_size: tuple[int, int]) -> ImageParts:
        """The parts of annotation `name` at the model's input.

        Args:
            image_size: `(width, height)` of the original image (keypoints must lie inside it; masks must have it).
            input_size: `(width, height)` the image processor resizes the image to (no crop).
        """
        width, height = image_size
        scale_x, scale_y = input_size[0] / width, input_size[1] / height
        if self.source == "masks":
            masks = {}
            folder = self.mask_folders[name]
            for part in self.part_names:
                file = folder / f"{part}.png"
                if not file.is_file():
                    continue
                try:
                    mask = read_mask(file, image_size)
                except MaskError as error:
                    raise PartsError(str(error)) from error
                if mask.any():
                    masks[part] = resize_mask(mask, input_size)
            return ImageParts(masks=masks)
        keypoints = {}
        for part, (x, y) in self.keypoints[name].items():
            if not (0 <= x <= width and 0 <= y <= height):
                raise PartsError(
                    f"The keypoint of {part!r} in {name} ({x:g}, {y:g}) in {self.origin} lies outside the "
                    f"{width}x{height} image. Fix the annotation (pixels of the original image, x right, y down), or "
                    "mark the part not visible."
                )
            keypoints[part] = (x * scale_x, y * scale_y)
        return ImageParts(keypoints=keypoints)


def _read_lines(path: Path, fields: int, what: str) -> list[list[str]]:
    if not path.is_file():
        raise PartsError(f"No {path}: a CUB-format part annotation folder holds {what}.")
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        columns = line.split(maxsplit=fields - 1) if fields == 2 else line.split()
        if len(columns) != fields:
            raise PartsError(f"{path}, line {number}: expected {fields} fields ({what}), got {line!r}.")
        rows.append(columns)
    return rows


def read_cub_parts(root: str | os.PathLike) -> PartAnnotations:
    """CUB-200-2011's part keypoints under `root` (`images.txt`, `parts/parts.txt`, `parts/part_locs.txt`; visibility
    flags honoured). Image names are the paths of `images.txt` (relative to CUB's `images/` folder)."""
    root = Path(root)
    if not root.is_dir():
        raise PartsError(f"--parts {root} is not a folder; give the CUB-200-2011 root (with images.txt and parts/).")
    images = {image_id: name for image_id, name in _read_lines(root / CUB_IMAGES_FILE, 2, "'<image id> <path>'")}
    parts = {part_id: name.strip() for part_id, name in _read_lines(root / CUB_PARTS_FILE, 2, "'<part id> <name>'")}
    keypoints: dict[str, dict[str, tuple[float, float]]] = {name: {} for name in images.values()}
    locations = root / CUB_PART_LOCS_FILE
    for number, (image_id, part_id, x, y, visible) in enumerate(
        _read_lines(locations, 5, "'<image id> <part id> <x> <y> <visible>'"), 1
    ):
        if image_id not in images or part_id not in parts:
            raise PartsError(
                f"{locations}, row {number}: image id {image_id} or part id {part_id} is not in {CUB_IMAGES_FILE} / "
                f"{CUB_PARTS_FILE}; the three files must come from the same dataset."
            )
        try:
            x_value, y_value, is_visible = float(x), float(y), int(float(visible))
        except ValueError as error:
            raise PartsError(f"{locations}, row {number}: x, y and visible must be numbers ({error}).") from None
        if is_visible:
            keypoints[images[image_id]][parts[part_id]] = (x_value, y_value)
    return PartAnnotations("cub", tuple(parts.values()), keypoints=keypoints, origin=str(root), strict=False)


def read_keypoints_json(path: str | os.PathLike) -> PartAnnotations:
    """A keypoints JSON `{image: {part: [x, y]}}` (a part given as `null` is not visible)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PartsError(f"--keypoints {path} does not exist.") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise PartsError(f"{path} is not a readable JSON file ({error}).") from None
    if not isinstance(data, dict) or not data:
        raise PartsError(f"{path} must hold a non-empty object {{image: {{part: [x, y]}}}}.")
    keypoints, names = {}, {}
    for image, image_parts in data.items():
        if not isinstance(image_parts, dict):
            raise PartsError(f"{path}: the entry of {image!r} must be an object {{part: [x, y]}}.")
        keypoints[image] = {}
        for part, point in image_parts.items():
            names.setdefault(part, None)
            if point is None:
                continue
            if (
                not isinstance(point, (list, tuple))
                or len(point) != 2
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in point)
            ):
                raise PartsError(f"{path}: {image!r} / {part!r} must be [x, y] (two numbers) or null, got {point!r}.")
            keypoints[image][part] = (float(point[0]), float(point[1]))
    return PartAnnotations("keypoints", tuple(names), keypoints=keypoints, origin=str(path))


def read_part_masks(folder: str | os.PathLike) -> PartAnnotations:
    """Per-part masks `FOLDER/masks/<split>/<class>/<image stem>/<part>.png` (or `FOLDER/<split>/...`): one folder of
    part masks per image; the part names are the union of the file stems."""
    folder = Path(folder)
    if not folder.is_dir():
        raise PartsError(f"--masks {folder} is not a folder; expected {folder}/{MASKS_DIR}/<split>/<class>/<image>/.")
    root = folder / MASKS_DIR if (folder / MASKS_DIR).is_dir() else folder
    mask_folders, names = {}, {}
    for directory, _, files in sorted(os.walk(root)):
        pngs = sorted(name for name in files if name.lower().endswith(".png") and not name.startswith("."))
        relative = Path(directory).relative_to(root)
        # an image's folder is <split>/<class>/<stem>; the whole-image trait masks of data.masks lie one level up
        if not pngs or len(relative.parts) != 3:
            continue
        mask_folders[relative.as_posix()] = Path(directory)
        for name in pngs:
            names.setdefault(os.path.splitext(name)[0], None)
    if not mask_folders:
        raise PartsError(
            f"{root} holds no part masks; expected <split>/<class>/<image stem>/<part>.png (one folder per image)."
        )
    return PartAnnotations("masks", tuple(names), mask_folders=mask_folders, origin=str(root))


def read_part_annotations(
    cub_root: str | os.PathLike | None = None,
    keypoints: str | os.PathLike | None = None,
    masks: str | os.PathLike | None = None,
) -> PartAnnotations:
    """The one source given (`--parts`, `--keypoints` or `--masks`)."""
    sources = ((read_cub_parts, cub_root), (read_keypoints_json, keypoints), (read_part_masks, masks))
    given = [(reader, value) for reader, value in sources if value is not None]
    if len(given) != 1:
        raise PartsError("Give exactly one source of part annotations: a CUB root, a keypoints JSON or a mask folder.")
    reader, value = given[0]
    return reader(value)


__all__ = [
    "CUB_IMAGES_FILE",
    "CUB_PARTS_FILE",
    "CUB_PART_LOCS_FILE",
    "ImageParts",
    "PartAnnotations",
    "PartsError",
    "SOURCES",
    "read_cub_parts",
    "read_keypoints_json",
    "read_part_masks",
    "read_part_annotations",
]
