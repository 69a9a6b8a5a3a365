"""What the trait explorer reads, checked: uploaded images (the package's one decoding rule, a size limit checked
before decoding), the example folders, the model, and an `atlas.json`; what it cannot use is an [`InputError`]
whose message the page shows.
"""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

from ..data.images import IMAGE_EXTENSIONS, to_rgb
from ..explain.explanation import resolve_class, resolve_classes
from ..files import check_model_folder
from ..modeling_promptcam import PromptCamForImageClassification, promptcam_image_processor

# the name the explorer logged under before this module split off from app/explorer.py
logger = logging.getLogger("modeling_promptcam.app.explorer")

# PIL's own decompression-bomb threshold (about 89 megapixels): larger images are refused before they are decoded
MAX_PIXELS = Image.MAX_IMAGE_PIXELS


class InputError(ValueError):
    """Input the app cannot use (not an image, too large, an unknown class, ...): the message is shown to the user."""


def whole_number(value, what: str, low: int, high: int | None = None) -> int:
    """`value` as an int in `[low, high]` (a float with no fraction counts, as a slider gives it), else
    [`InputError`] naming `what` and the range."""
    allowed = f"from {low} to {high}" if high is not None else f"of at least {low}"
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if isinstance(value, bool) or not number.is_integer() or number < low or (high is not None and number > high):
        raise InputError(f"The {what} must be a whole number {allowed}, got {value!r}.")
    return int(number)


@dataclass
class ExampleImage:
    path: str
    label: str  # the name of the folder it is in: its true class
    class_index: int | None  # that class's index in the model, None when the model has no class of that name


def read_atlas(path: str | os.PathLike, model: PromptCamForImageClassification) -> dict:
    """An `atlas.json` of `promptcam atlas` for `model`: keyed by the model's class indices. Raises `AtlasFileError`
    for a file of another layout or with classes the model does not have."""
    from ..evaluation.atlas import AtlasFileError, read_atlas_json

    data = read_atlas_json(path)
    indices, unknown = resolve_classes(model, data)
    if unknown:
        raise AtlasFileError(
            f"{path} has classes the model does not know: {', '.join(unknown[:5])}; use the atlas of this model "
            "(promptcam atlas --model the same folder)."
        )
    return {indices[name]: entry for name, entry in data.items()}


def open_image(path: str | os.PathLike, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """An uploaded file as an 8-bit RGB image, by the package's one decoding rule (`data.images.to_rgb`, as in
    training and the `prompt-cam` pipeline: EXIF orientation applied, 16-bit and float grey rescaled by their range,
    alpha dropped).

    Raises [`InputError`] for a missing or unreadable file and for images over `max_pixels` (checked from the
    header, before the pixels are decoded)."""
    if not isinstance(path, (str, bytes, os.PathLike)):
        raise InputError(f"Upload an image file (got {type(path).__name__}).")
    name = os.path.basename(os.fsdecode(path))
    if os.path.isdir(path):
        raise InputError(f"{name} is a folder, not an image file; upload a JPEG, PNG, WebP, BMP, GIF or TIFF file.")
    try:
        with warnings.catch_warnings():  # PIL's decompression-bomb warning: the size is checked right here instead
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            opened = Image.open(path)
        with opened:
            width, height = opened.size
            if width * height > max_pixels:
                raise InputError(too_large(name, f"{width} x {height} pixels", max_pixels))
            opened.load()  # every pixel: a truncated upload fails here, as an unreadable file
            try:
                return to_rgb(opened)
            except ValueError as error:  # NaN / inf pixels or a mode with no RGB conversion: the rule says which
                raise InputError(f"{name}: {error}") from None
    except InputError:
        raise
    except FileNotFoundError:
        raise InputError(f"{name}: no such file.") from None
    except Image.DecompressionBombError as error:  # raised by Image.open itself beyond twice PIL's limit
        size = f"over {2 * Image.MAX_IMAGE_PIXELS / 1e6:.0f} megapixels, PIL's decompression-bomb limit"
        raise InputError(too_large(name, size, max_pixels)) from error
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise InputError(
            f"{name} is not an image this app can read ({type(error).__name__}); upload a JPEG, PNG, WebP, BMP, GIF "
            "or TIFF file."
        ) from None


def too_large(name: str, size: str, max_pixels: int) -> str:
    """The message for an image over the size limit: its size, the limit, and the fix."""
    limit = f"{max_pixels / 1e6:.0f} megapixels" if max_pixels >= 1e6 else f"{max_pixels} pixels"
    return f"{name} is too large ({size}); the app accepts images up to {limit}. Downscale it and upload it again."


def find_examples(folder: str | os.PathLike, model: PromptCamForImageClassification) -> list[ExampleImage]:
    """The images of an imagefolder tree `folder/<class name>/<image>`, sorted by class then file name; the class
    folder name (a model class name, or an official `NNN.Class_Name` folder) is the true label."""
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"examples folder {folder} does not exist.")
    examples = []
    for entry in sorted(os.scandir(folder), key=lambda entry: entry.name):
        if not entry.is_dir() or entry.name.startswith("."):
            continue
        files = sorted(
            name
            for name in os.listdir(entry.path)
            if os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS and not name.startswith(".")
        )
        index = resolve_class(model, entry.name)
        if index is None and files:
            logger.warning("examples: %s is not a class of the model; its images get no true class.", entry.name)
        examples += [ExampleImage(os.path.join(entry.path, name), entry.name, index) for name in files]
    return examples


def load_model(model_id: str) -> tuple[PromptCamForImageClassification, object]:
    """A Prompt-CAM model (a saved folder or a Hub id) in eval mode and its image processor (the model's saved one,
    else Prompt-CAM's evaluation preprocessing)."""
    from transformers import AutoImageProcessor

    if os.path.isdir(model_id):
        check_model_folder(model_id)  # names a damaged file or a folder of another kind of model
    elif os.path.exists(model_id) or os.path.isabs(model_id) or model_id.startswith((".", "~")):
        raise FileNotFoundError(
            f"{model_id} is not a model folder; give a folder saved by save_pretrained / promptcam train / promptcam "
            "convert, or a Hub model id."
        )
    model = PromptCamForImageClassification.from_pretrained(model_id).eval()
    try:
        processor = AutoImageProcessor.from_pretrained(model_id)
    except (OSError, ValueError):  # a folder saved without its preprocessor_config.json
        processor = promptcam_image_processor(model.config)
    return model, processor


__all__ = [
    "ExampleImage",
    "InputError",
    "MAX_PIXELS",
    "find_examples",
    "load_model",
    "open_image",
    "read_atlas",
    "too_large",
    "whole_number",
]
