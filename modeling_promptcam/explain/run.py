"""The loop behind `promptcam explain`: explain each image, write its figures as PNG files and one HTML report.

An image that cannot be read and a class name the model does not know are failures: they are listed in the report and
in [`ExplainResult.errors`], and every other image is still explained.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from ..data.images import open_rgb
from ..files import ModelFolderError, check_model_folder, write_atomically
from .explanation import Explanation, explain_image, resolve_class
from .options import ExplainOptions

REPORT_FILE = "report.html"


@dataclass
class ExplainResult:
    """What [`explain_images`] did."""

    output_dir: str
    report: str  # path of the HTML report
    images: int  # how many images were given
    explained: list[tuple[str, Explanation]] = field(default_factory=list)  # (input path, explanation), input order
    failures: list[tuple[str, str]] = field(default_factory=list)  # (input or class name, why), as in the report
    errors: list[str] = field(default_factory=list)  # one line per failure, as `promptcam explain` prints them

    @property
    def ok(self) -> bool:
        """True when every image and every class name could be used."""
        return not self.failures


def explain_images(options: ExplainOptions) -> ExplainResult:
    """Explain every image of `options.images` with the model saved in `options.model`.

    Writes, per image, `OUTPUT_DIR/<image name>/top_traits.png`, `heads.png`, `misclassified.png` (when the image's
    parent folder names another class: imagefolder layout) and `class_<name>.png` per `options.classes` class, then
    `OUTPUT_DIR/report.html` with every figure embedded. Images are converted to RGB the way training converts them
    (16-bit images rescaled, not clipped).

    Raises `FileNotFoundError` when `options.model` is not a saved model folder, `ModelFolderError` when it is damaged
    or holds another kind of model, and `ImportError` without matplotlib (the `viz` extra); a missing or unreadable image and an unknown class name are reported in the result instead.
    """
    from PIL import UnidentifiedImageError
    from tqdm.auto import tqdm
    from transformers import AutoImageProcessor

    from ..modeling_promptcam import PromptCamForImageClassification
    from .figures import figures_for, png_bytes
    from .report import write_html_report

    check_model_folder(options.model)
    try:
        model = PromptCamForImageClassification.from_pretrained(options.model).eval()
        processor = AutoImageProcessor.from_pretrained(options.model)
    except (
        OSError,
        ValueError,
        KeyError,
        TypeError,
        RuntimeError,
    ) as error:  # what transformers raises for a bad folder
        raise ModelFolderError(
            f"cannot load the model in {options.model} ({type(error).__name__}: {error}); save or convert it again."
        ) from error
    top_k = min(options.top_k, model.config.num_labels)  # asking for more predictions than classes lists them all
    result = ExplainResult(
        options.output_dir, os.path.join(options.output_dir, REPORT_FILE), images=len(options.images)
    )

    classes = []
    for name in options.classes or ():
        index = resolve_class(model, name)
        if index is None:
            known = ", ".join(list(model.config.id2label.values())[:8])
            message = f"unknown class name {name!r} (the model's classes include: {known}, ...)"
            result.failures.append((name, message))
            result.errors.append(message)
        else:
            classes.append(index)

    os.makedirs(options.output_dir, exist_ok=True)
    items, used_names = [], {REPORT_FILE}  # an image named report.html.png must not take the report's path
    for path in tqdm(options.images, desc="explaining", unit="image", disable=not options.progress):
        try:
            image = open_rgb(path)
        except FileNotFoundError:
            reason = "no such file"
        except IsADirectoryError:
            reason = "a folder, not an image file"
        except (UnidentifiedImageError, OSError) as error:
            reason = f"not a readable image ({error})"
        except ValueError as error:  # the decoding rule refuses NaN / inf pixels and modes with no RGB conversion
            reason = f"cannot be shown to the model ({error})"
        else:
            # imagefolder layout: a parent folder named like a class gives the true class
            true_class = resolve_class(model, os.path.basename(os.path.dirname(os.path.abspath(path))))
            explanation = explain_image(
                model, processor, image, top_k, classes, true_class, blur=options.blur, stop=options.stop
            )
            folder = os.path.join(options.output_dir, _unique(os.path.splitext(os.path.basename(path))[0], used_names))
            os.makedirs(folder, exist_ok=True)
            pngs = {stem: png_bytes(figure) for stem, figure in figures_for(explanation, alpha=options.alpha).items()}
            for stem, data in pngs.items():
                write_atomically(os.path.join(folder, f"{stem}.png"), data)
            items.append((path, explanation, pngs))
            result.explained.append((path, explanation))
            continue
        result.failures.append((path, reason))
        result.errors.append(f"{path}: {reason}")

    write_html_report(items, result.report, failures=result.failures)
    return result


def _unique(name: str, used: set[str]) -> str:
    """`name`, or `name_2`, `name_3`, ... when images of the same name came before (one folder per image)."""
    candidate, number = name, 2
    while candidate in used:
        candidate, number = f"{name}_{number}", number + 1
    used.add(candidate)
    return candidate


__all__ = ["REPORT_FILE", "ExplainResult", "explain_images"]
