"""Ground-truth region masks: where a mask file lives, how it is read, and how it becomes a patch-grid mask.

One rule for every reader (the synthetic dataset, `promptcam faithfulness`, the demo's localisation):

- **Where:** the mask of `DATA/<split>/<class>/<name>.<ext>` is `DATA/masks/<split>/<class>/<name>.png`.
- **What counts:** a grey-level (mode L) image of the same size as its image; a pixel belongs to the region when its
  value is above `MASK_THRESHOLD` (0: any nonzero value). The synthetic dataset writes 0 / 255.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

MASKS_DIR = "masks"
MASK_THRESHOLD = 0  # a pixel is in the region when its grey value is above this


class MaskError(ValueError):
    """A mask file is missing, unreadable, or does not fit its image (says which file and how to fix it)."""


def mask_path(data_dir: str | os.PathLike, image_path: str | os.PathLike) -> Path:
    """Where the mask of `DATA/<split>/<class>/<name>.<ext>` is: `DATA/masks/<split>/<class>/<name>.png`.

    `image_path` may be relative to the working directory or absolute; it must lie under `data_dir`."""
    relative = Path(os.path.abspath(image_path)).relative_to(Path(os.path.abspath(data_dir)))
    return Path(data_dir) / MASKS_DIR / relative.with_suffix(".png")


def read_mask(path: str | os.PathLike, size: tuple[int, int] | None = None) -> np.ndarray:
    """The region of the mask file `path` as a bool array `(H, W)`.

    Args:
        size: `(width, height)` the mask must have (its image's size), checked when given.
    """
    try:
        with Image.open(path) as opened:
            if size is not None and opened.size != tuple(size):
                raise MaskError(
                    f"The mask {path} is {opened.size[0]}x{opened.size[1]} but its image is {size[0]}x{size[1]}; "
                    "write each mask at its image's size."
                )
            grey = opened.convert("L")
    except FileNotFoundError as error:
        raise MaskError(f"No mask file {path}.") from error
    except OSError as error:
        raise MaskError(f"{path} is not a readable mask image ({error}); fix or remove it.") from error
    return np.asarray(grey) > MASK_THRESHOLD


def load_trait_mask(data_dir: str | os.PathLike, image_path: str | os.PathLike) -> np.ndarray:
    """The mask of an image of `data_dir` (see [`mask_path`]) as a bool array `(H, W)`."""
    path = mask_path(data_dir, image_path)
    if not path.is_file():
        raise FileNotFoundError(f"No trait mask for {image_path} (expected {path}).")
    return read_mask(path)


def patch_mask(mask: np.ndarray, grid: Sequence[int], dilation: int = 0) -> np.ndarray:
    """A pixel mask `(H, W)` as a patch-grid mask `(grid_h, grid_w)`: a patch is in when any of its pixels is; then
    grown by `dilation` patches in every direction (8-neighbourhood), for "within N patches" tests."""
    grid_h, grid_w = grid
    height, width = mask.shape
    if height % grid_h or width % grid_w:
        raise ValueError(f"A {height}x{width} mask does not split into a {grid_h}x{grid_w} patch grid.")
    cells = mask.reshape(grid_h, height // grid_h, grid_w, width // grid_w).any(axis=(1, 3))
    for _ in range(dilation):
        padded = np.pad(cells, 1)
        cells = np.max(
            [padded[dy : dy + grid_h, dx : dx + grid_w] for dy in range(3) for dx in range(3)], axis=0
        ).astype(bool)
    return cells
