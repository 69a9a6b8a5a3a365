"""Ground-truth region masks: where a mask file lives, how it is read, how it follows its image to the model's input
size, and how "within N" of a region is measured.

One rule for every reader (the synthetic dataset, `promptcam faithfulness`, the demo's localisation); nothing else in
the package finds, reads or thresholds a mask:

- **Where** ([`mask_path`]): the mask of `DATA/<split>/<class>/<name>.<ext>` is `DATA/masks/<split>/<class>/<name>.png`
  (the image's path below `DATA`, under `masks/`, with the extension `.png`).
- **What counts** ([`read_mask`]): a grey-level image (read as mode L) of the same size as its image; a pixel belongs
  to the region when its value is above `MASK_THRESHOLD` (0: any nonzero value). The synthetic dataset writes 0 / 255.
- **At the model's input** ([`resize_mask`]): resized with nearest-neighbour sampling to the size the image processor
  gives the image (a plain resize, no crop), so a region pixel stays a region pixel.
- **Within N** ([`grow_region`]): a cell is within N of a region when a region cell lies in the (2N + 1) x (2N + 1)
  square around it (8-neighbourhood, N steps). The localisation measures count N in patches
  (`evaluation.localization.peak_hits_mask`, via [`patch_mask`]) or in pixels (`evaluation.metrics.pointing_game`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
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


def resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A bool mask `(H, W)` resized to `size` `(width, height)` with nearest-neighbour sampling, as its image is resized
    for the model (no crop): `(height, width)` bool."""
    return np.array(Image.fromarray(np.asarray(mask, dtype=bool)).resize(tuple(size), Image.NEAREST))


def grow_region(mask: np.ndarray | torch.Tensor, radius: int) -> np.ndarray | torch.Tensor:
    """Every cell within `radius` cells of the region: a cell is in when a region cell lies in the
    `(2 * radius + 1)` square around it (8-neighbourhood, `radius` steps; Chebyshev distance <= radius).

    Args:
        mask (`(H, W)` or `(B, H, W)` bool, numpy or torch): the region.
        radius: in cells of `mask` (patches for a patch-grid mask, pixels for a pixel mask); 0 returns it unchanged.
    Returns:
        the grown region, of the type and shape of `mask`.
    """
    if isinstance(radius, bool) or not isinstance(radius, (int, np.integer)) or radius < 0:
        raise ValueError(f"The radius of a region's neighbourhood must be an integer >= 0, got {radius!r}.")
    radius = int(radius)
    if radius == 0:
        return mask
    cells = torch.as_tensor(mask)
    grown = torch.nn.functional.max_pool2d(
        cells.reshape(-1, 1, *cells.shape[-2:]).float(), 2 * radius + 1, stride=1, padding=radius
    )
    grown = grown.reshape(cells.shape).bool()
    return grown.numpy() if isinstance(mask, np.ndarray) else grown


def patch_mask(mask: np.ndarray, grid: Sequence[int], dilation: int = 0) -> np.ndarray:
    """A pixel mask `(H, W)` as a patch-grid mask `(grid_h, grid_w)`: a patch is in when any of its pixels is; then
    grown by `dilation` patches in every direction ([`grow_region`]), for "within N patches" tests."""
    grid_h, grid_w = grid
    height, width = mask.shape
    if height % grid_h or width % grid_w:
        raise ValueError(f"A {height}x{width} mask does not split into a {grid_h}x{grid_w} patch grid.")
    cells = mask.reshape(grid_h, height // grid_h, grid_w, width // grid_w).any(axis=(1, 3))
    return grow_region(cells, dilation)


__all__ = [
    "MASKS_DIR",
    "MASK_THRESHOLD",
    "MaskError",
    "grow_region",
    "load_trait_mask",
    "mask_path",
    "patch_mask",
    "read_mask",
    "resize_mask",
]
