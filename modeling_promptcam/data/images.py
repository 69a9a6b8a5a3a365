"""Image files in: the file types the package reads, and the one conversion of any PIL image to 8-bit RGB that every
path (training, evaluation, `promptcam explain`, the app) goes through."""

from __future__ import annotations

import os
from typing import BinaryIO

import numpy as np
from PIL import Image

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}


def to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL image as 8-bit RGB: palette, grey, alpha and CMYK via PIL; 16-bit and float grey images rescaled by
    their value range first (PIL's own conversion would clip them to 255)."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        values = np.asarray(image, dtype=np.float64)
        low, high = float(values.min()), float(values.max())
        scaled = (values - low) / (high - low) * 255.0 if high > low else np.zeros_like(values)
        image = Image.fromarray(scaled.round().astype(np.uint8))
    return image.convert("RGB")


def open_rgb(path: str | os.PathLike | BinaryIO) -> Image.Image:
    """An image file (a path, or an open binary file such as the bytes of a `datasets` image in a `BytesIO`) as 8-bit
    RGB through [`to_rgb`], read whole (the file is closed when this returns)."""
    with Image.open(path) as opened:
        return to_rgb(opened)


__all__ = ["IMAGE_EXTENSIONS", "open_rgb", "to_rgb"]
