"""Image files in: the file types the package reads, and the one decoding rule every path (training, evaluation,
`promptcam explain`, the app, the faithfulness run, the `prompt-cam` pipeline) goes through.

The rule itself lives in the remote-code pipeline file (`pipeline_promptcam.decode_image` / `read_image`), so that a
saved model folder's `prompt-cam` pipeline decodes exactly as training did, with or without this package installed;
`to_rgb` and `open_rgb` are its names here (docs/bad-input.md, "The decoding rule")."""

from __future__ import annotations

import os
from typing import BinaryIO

from PIL import Image

from ..pipeline_promptcam import WIDE_GREY_MODES, decode_image, read_image

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}


def to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL image as the 8-bit RGB image the model is shown ([`decode_image`]): EXIF orientation applied,
    16-bit / 32-bit / float grey rescaled by their value range (PIL's own conversion would clip them at 255), NaN /
    inf refused (`ValueError`), palette, grey and CMYK converted, alpha dropped."""
    return decode_image(image)


def open_rgb(path: str | os.PathLike | BinaryIO) -> Image.Image:
    """An image file (a path, or an open binary file such as the bytes of a `datasets` image in a `BytesIO`) as
    [`to_rgb`] decodes it, read whole (a file opened here is closed when this returns). Raises
    `FileNotFoundError`, `IsADirectoryError`, `PIL.UnidentifiedImageError` / `OSError` (unreadable) or `ValueError`
    (NaN / inf, unconvertible mode), each naming the file ([`read_image`])."""
    return read_image(path)


# EXIF orientations that turn the image by 90 degrees (transposed, rotated 90 / 270, transversed)
_QUARTER_TURNS = {5, 6, 7, 8}


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """`(width, height)` of the image [`open_rgb`] gives for `path` (upright: swapped when the EXIF orientation turns
    it by 90 degrees), read from the file's header without decoding the pixels."""
    with Image.open(path) as opened:
        width, height = opened.size
        turned = opened.getexif().get(0x0112) in _QUARTER_TURNS  # 0x0112: the EXIF orientation tag
    return (height, width) if turned else (width, height)


__all__ = ["IMAGE_EXTENSIONS", "WIDE_GREY_MODES", "image_size", "open_rgb", "to_rgb"]
