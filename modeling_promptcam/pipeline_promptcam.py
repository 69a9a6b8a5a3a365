# Copyright 2026 The modeling-promptcam authors. Licensed under the Apache License, Version 2.0.
"""The `prompt-cam` pipeline: image classification that also returns each predicted class's trait maps; and the
package's one image decoding rule ([`decode_image`], [`read_image`]), which this pipeline, training, evaluation,
`promptcam explain`, the app and the faithfulness run all use.

One of the remote-code files saved next to checkpoints: imports nothing beyond torch, transformers and the standard
library at module level (Pillow, which every image pipeline of transformers needs, only inside the functions that
decode images; see docs/architecture.md), and uses only the model's public API (`forward(..., trait_map_top_k=...)`
and `rank_traits`).
"""

from __future__ import annotations

import base64
import binascii
import io
import os
import urllib.request
import warnings

import torch
from transformers import ImageClassificationPipeline

PROMPT_CAM_TASK = "prompt-cam"

# one-channel modes of more than 8 bits: rescaled by their value range (PIL's own conversion to RGB clips them at 255)
WIDE_GREY_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")


def decode_image(image):
    """Any PIL image as the 8-bit RGB image the model is shown: the package's one decoding rule.

    1. EXIF orientation applied (`ImageOps.exif_transpose`, as transformers' `load_image`); the result carries no
       orientation tag, so applying the rule twice changes nothing.
    2. One-channel images of more than 8 bits (`I;16*`, `I`, `F`: 16-bit PNG / TIFF, 32-bit integer, float TIFF) are
       rescaled by their value range, min -> 0 and max -> 255 (rounded; a constant image becomes black), instead of
       clipped at 255 as PIL's conversion would. A float image holding NaN or infinity is refused (`ValueError`):
       there is no range to rescale by, and the model would see garbage without a word.
    3. Every other mode through PIL's `convert("RGB")`: palette, grey, bilevel and CMYK converted; alpha (RGBA, LA,
       PA, palette transparency) dropped, not composited, so the colour under a transparent pixel is what the model
       sees, exactly as transformers' `load_image` (and so the stock `image-classification` pipeline) does.

    Multi-frame files (GIF, multi-page TIFF) give their current (first) frame. Raises `ValueError` for NaN / inf
    pixels and for a mode PIL cannot convert to RGB, `TypeError` for anything that is not a PIL image.
    """
    from PIL import Image, ImageOps  # Pillow: a dependency of every image pipeline, imported where images are read

    if not isinstance(image, Image.Image):
        raise TypeError(f"decode_image takes a PIL image, got {type(image).__name__}; open files with read_image.")
    image = ImageOps.exif_transpose(image)
    if image.mode in WIDE_GREY_MODES:
        image = _rescaled_to_8_bits(image)
    try:
        with warnings.catch_warnings():  # "palette transparency ... convert to RGBA": alpha is dropped by design
            warnings.filterwarnings("ignore", message="Palette images with Transparency", category=UserWarning)
            return image.convert("RGB")
    except ValueError as error:
        raise ValueError(
            f"an image of PIL mode {image.mode} cannot be converted to RGB ({error}); save it as an 8-bit RGB or grey "
            "PNG / JPEG."
        ) from None


def _rescaled_to_8_bits(image):
    """A one-channel image of more than 8 bits as mode L, its value range stretched to 0..255 (float64 arithmetic,
    round half to even)."""
    from PIL import Image

    width, height = image.size
    if image.mode == "F":
        values = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.float32)
    else:  # every 16-bit layout (little / big endian) through PIL's exact conversion to 32-bit integers
        values = torch.frombuffer(bytearray(image.convert("I").tobytes()), dtype=torch.int32)
    values = values.to(torch.float64).reshape(height, width)
    finite = torch.isfinite(values)
    if not bool(finite.all()):
        bad = int((~finite).sum())
        raise ValueError(
            f"the image holds {bad} NaN or infinite pixel value(s) of {values.numel()}; replace them (e.g. with "
            "numpy.nan_to_num) or fix how the file was written."
        )
    if not values.numel():
        return Image.new("L", (width, height))
    low, high = float(values.min()), float(values.max())
    if high > low:
        scaled = ((values - low) / (high - low) * 255.0).round()
    else:
        scaled = torch.zeros_like(values)
    return Image.frombytes("L", (width, height), scaled.to(torch.uint8).contiguous().numpy().tobytes())


def _is_image_source(item) -> bool:
    """Whether `item` is of a type [`read_image`] (or, for arrays and tensors, the image processor) takes."""
    from PIL import Image

    if isinstance(item, (Image.Image, str, os.PathLike, torch.Tensor)) or type(item).__module__ == "numpy":
        return True
    return hasattr(item, "read")  # an open binary file


def read_image(image, timeout: float | None = None):
    """An image source as [`decode_image`] decodes it: a PIL image, a path (`str` or `os.PathLike`), an open binary
    file (such as the bytes of a `datasets` image in a `BytesIO`), an http(s) URL (fetched with `timeout` seconds) or
    a base64-encoded image (optionally a `data:image/...;base64,` URL): the sources transformers' `load_image` takes,
    and open files.

    Raises `FileNotFoundError` for a path that does not exist, `IsADirectoryError` for a folder, `TypeError` for
    another type, `PIL.UnidentifiedImageError` / `OSError` (naming the source) for a file that is not a readable
    image, and `decode_image`'s `ValueError`s prefixed with the source."""
    from PIL import Image, UnidentifiedImageError

    if isinstance(image, Image.Image):
        return decode_image(image)
    if hasattr(image, "read") and not isinstance(image, (str, os.PathLike)):
        return _opened_and_decoded(image, str(getattr(image, "name", "the image data")))
    if not isinstance(image, (str, os.PathLike)):
        raise TypeError(
            f"an image must be a PIL image, a file path, an open binary file, an http(s) URL or a base64 string, got {type(image).__name__}."
        )
    source = os.fsdecode(image)
    name = source if len(source) <= 200 else source[:60] + "..."
    if source.startswith(("http://", "https://")):
        with urllib.request.urlopen(source, timeout=timeout) as response:
            stream = io.BytesIO(response.read())
    elif os.path.isdir(source):
        raise IsADirectoryError(f"{name} is a folder, not an image file; pass the path of an image file.")
    elif os.path.isfile(source):
        stream = source
    else:
        encoded = source.split(",", 1)[1] if source.startswith("data:image/") else source
        try:
            stream = io.BytesIO(base64.b64decode(encoded, validate=True))
        except (binascii.Error, ValueError):
            stream = None
    missing = FileNotFoundError(
        f"{name}: no such image file (nor an http(s) URL or a base64-encoded image); check the path."
    )
    if stream is None:
        raise missing
    try:
        return _opened_and_decoded(stream, name)
    except UnidentifiedImageError:
        if isinstance(stream, io.BytesIO) and not source.startswith(("data:image/", "http://", "https://")):
            raise missing from None  # a mistyped path that happens to be valid base64 ("cats") is still a path
        raise


def _opened_and_decoded(stream, name: str):
    """[`decode_image`] of the open binary file `stream` (`name` in the messages)."""
    from PIL import Image, UnidentifiedImageError

    try:
        opened = Image.open(stream)
    except UnidentifiedImageError:
        raise UnidentifiedImageError(
            f"{name} is not an image PIL can identify; pass a JPEG, PNG, WebP, BMP, GIF or TIFF file."
        ) from None
    except (OSError, ValueError, SyntaxError) as error:  # a header PIL recognises but cannot read
        raise OSError(f"{name} is not a readable image ({error}); fix or replace the file.") from None
    return _decoded(opened, name)


def _decoded(opened, name: str):
    """[`decode_image`] of the PIL image `opened`, decoded in full first and closed after."""
    with opened:
        try:
            opened.load()  # decode every pixel here, so a truncated or damaged file fails now, naming itself
        except (OSError, ValueError, SyntaxError) as error:  # what PIL's decoders raise for broken data
            raise OSError(f"{name} is not a readable image ({error}); fix or replace the file.") from None
        try:
            return decode_image(opened)
        except ValueError as error:  # NaN / inf pixels, or a mode with no RGB conversion: the rule says which
            raise ValueError(f"{name}: {error}") from None


class PromptCamImageClassificationPipeline(ImageClassificationPipeline):
    r"""
    Classify images with a Prompt-CAM model and return, for each of the top-k labels, its trait maps.

    ```python
    from transformers import pipeline

    explainer = pipeline("prompt-cam", model="path/to/promptcam")  # add trust_remote_code=True without the package
    result = explainer("bird.jpg", top_k=3, rank_traits=True)
    result[0]["label"], result[0]["score"]  # as the image-classification pipeline
    result[0]["trait_maps"]  # numpy (num_heads, grid_height, grid_width): the class prompt's attention per head
    result[0]["ranked_heads"], result[0]["top_traits"]  # with rank_traits=True
    ```

    Images (a path, a URL, a base64 string or a PIL image of any mode) are decoded by the package's one rule
    ([`read_image`]: EXIF orientation applied, 16-bit and float grey rescaled by their range, alpha dropped), as in
    training; arrays and tensors go to the image processor as they are (after a check that they are finite).

    Call arguments (besides the image-classification ones, `top_k`, `function_to_apply`, `timeout`):
        rank_traits (`bool`, defaults to `False`): also rank the heads of each returned label (greedy head blurring,
            see `PromptCamForImageClassification.rank_traits`): adds `ranked_heads` (all heads, most important first),
            `top_traits` and `target_scores` (the label's logit after each greedy step).
        blur (`"paper"`, `"official"` or `"spatial"`, defaults to `"paper"`): what the target prompt's attention in a
            blurred head becomes: uniform over the patches (the paper), uniform over all tokens (the official code), or
            only its patch part spread evenly (see `BLUR_MODE_TABLE` in `modeling_promptcam.py`).
        stop (`"misclassified"` or an int k, defaults to `"misclassified"`): the top traits are the heads still
            unblurred when another class first scores higher (the paper), or the k most important heads.
    """

    def _sanitize_parameters(
        self, top_k=None, function_to_apply=None, timeout=None, rank_traits=None, blur=None, stop=None
    ):
        preprocess_params, _, postprocess_params = super()._sanitize_parameters(
            top_k=top_k, function_to_apply=function_to_apply, timeout=timeout
        )
        forward_params = {}
        if top_k is not None:
            # checked here, before any image is read: 0 or a negative count would reach the model as a bad argument
            if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
                raise ValueError(
                    f"top_k must be a whole number >= 1 (values above the {self.model.config.num_labels} classes list "
                    f"every class), got {top_k!r}."
                )
            forward_params["top_k"] = top_k
        if rank_traits is not None:
            if not isinstance(rank_traits, bool):  # bool("False") is True: a string would silently rank
                raise ValueError(f"rank_traits must be True or False, got {rank_traits!r}.")
            forward_params["rank_traits"] = rank_traits
        # the ranking's settings are checked by the model's own readers, here, before any image is read
        if blur is not None:
            forward_params["blur"] = self.model.ranking_settings(blur=blur)[0]
        if stop is not None:
            forward_params["stop"] = self.model.ranking_settings(stop=stop)[1]
        return preprocess_params, forward_params, postprocess_params

    def __call__(self, inputs=None, **kwargs):
        # a list is read image by image: check every item's type first, so item 900 cannot fail after 899 ran
        items = kwargs.get("images", inputs)
        if isinstance(items, (list, tuple)):
            for index, item in enumerate(items):
                if not _is_image_source(item):
                    raise TypeError(
                        f"item {index} of the images is of type {type(item).__name__}; each must be a PIL image, a file "
                        "path, an http(s) URL, a base64 string, an array or a tensor."
                    )
        return super().__call__(inputs, **kwargs)

    def preprocess(self, image, timeout=None):
        if isinstance(image, torch.Tensor) or type(image).__module__ == "numpy":
            # arrays skip decoding (as in the stock pipeline); non-finite values are refused here, naming the input
            values = torch.as_tensor(image)
            if values.is_floating_point() and not bool(torch.isfinite(values).all()):
                raise ValueError(
                    "the image array holds NaN or infinite values; replace them (e.g. with numpy.nan_to_num) or pass "
                    "the image file instead."
                )
        else:
            image = read_image(image, timeout=timeout)
        return self.image_processor(images=image, return_tensors="pt").to(self.dtype)

    def _forward(self, model_inputs, top_k=5, rank_traits=False, blur=None, stop=None):
        if not rank_traits and (blur is not None or stop is not None):
            given = ", ".join(
                f"{name}={value!r}" for name, value in (("blur", blur), ("stop", stop)) if value is not None
            )
            raise ValueError(f"{given} set(s) the trait ranking, which runs only with rank_traits=True; pass it too.")
        blur = "paper" if blur is None else blur
        stop = "misclassified" if stop is None else stop
        top_k = min(top_k, self.model.config.num_labels)
        outputs = self.model(**model_inputs, trait_map_top_k=top_k)
        result = {
            "logits": outputs.logits,
            "trait_maps": outputs.trait_maps,
            "trait_map_classes": outputs.trait_map_classes,
            "rankings": None,
        }
        if rank_traits:
            result["rankings"] = self.model.rank_traits(
                model_inputs["pixel_values"], target_classes=outputs.trait_map_classes, blur=blur, stop=stop
            )
        return result

    def postprocess(self, model_outputs, function_to_apply=None, top_k=5):
        num_labels = self.model.config.num_labels
        top_k = min(top_k, num_labels)
        # the stock scores (softmax by default) for every label, then the top-k labels in the model's order
        all_scores = super().postprocess(model_outputs, function_to_apply=function_to_apply, top_k=num_labels)
        score_of = {entry["label"]: entry["score"] for entry in all_scores}
        classes = model_outputs["trait_map_classes"][0].tolist()[:top_k]
        maps = model_outputs["trait_maps"][0].to(torch.float32)
        rankings = model_outputs["rankings"]
        if rankings is not None and rankings and isinstance(rankings[0], list):
            rankings = rankings[0]  # not unbatched by the pipeline loader (batch of one)
        results = []
        for index, class_index in enumerate(classes):
            label = self.model.config.id2label[class_index]
            entry = {"label": label, "score": score_of[label], "trait_maps": maps[index].contiguous().numpy()}
            if rankings is not None:
                ranking = rankings[index]
                entry.update(
                    ranked_heads=ranking.ranked_heads,
                    top_traits=ranking.top_traits,
                    target_scores=ranking.target_scores,
                )
            results.append(entry)
        return results


__all__ = ["PROMPT_CAM_TASK", "WIDE_GREY_MODES", "PromptCamImageClassificationPipeline", "decode_image", "read_image"]
