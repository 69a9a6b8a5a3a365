"""Trait explorer: a Gradio web app to upload an image and browse what each class prompt looks at (the `app` extra).

`promptcam app --model DIR_OR_HUB_ID [--examples DIR]` serves it; `examples/space_app.py` is the same app as a Hub
Space. Two tabs:

* **Explain an image**: the top-k predictions, the predicted class's top traits in rank order, all its heads, how any
  other class's prompt sees the same image, and true vs predicted when a true class is given (example folders carry it).
* **Class gallery**: one class's top traits over several example images of that class.

[`TraitExplorer`] holds the model (loaded once) and does the work without any Gradio types, so it is tested as plain
Python; [`build_app`] lays it out in Gradio and turns [`InputError`]s into readable messages in the page. Model calls
go through one queue (one request at a time, the others wait their turn), and [`launch`] binds to 127.0.0.1 unless
told otherwise.
"""

from __future__ import annotations

import dataclasses
import html
import io
import logging
import os
import threading
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .data import IMAGE_EXTENSIONS, to_rgb
from .explain import Explanation, explain_image, resolve_class
from .modeling_promptcam import BLUR_MODES, PromptCamForImageClassification, promptcam_image_processor

logger = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7860
# PIL's own decompression-bomb threshold (about 89 megapixels): larger images are refused before they are decoded
MAX_PIXELS = Image.MAX_IMAGE_PIXELS
DISPLAY_SIDE = 448  # overlays and figures are drawn on a copy at most this many pixels on its longer side
GALLERY_IMAGES = 4
EXAMPLES_PER_CLASS = 2  # in the Explain tab's examples table (the class gallery uses all of a class's images)
QUEUE_SIZE = 32  # requests waiting beyond this many get a "queue is full" message instead of piling up
STOP_MISCLASSIFIED, STOP_NUMBER = "misclassified", "number"
BLUR_LABELS = {  # what a blurred head's attention becomes (modeling_promptcam.rank_traits)
    "paper": "paper (uniform over patches)",
    "official": "official code (uniform over all tokens)",
    "spatial": "spatial (only the patch part spread evenly)",
}


class InputError(ValueError):
    """Input the app cannot use (not an image, too large, an unknown class, ...): the message is shown to the user."""


@dataclass
class ExampleImage:
    path: str
    label: str  # the name of the folder it is in: its true class
    class_index: int | None  # that class's index in the model, None when the model has no class of that name


@dataclass
class ExplorerView:
    """What the "Explain an image" tab shows for one image."""

    explanation: Explanation  # its `image` is the display copy (at most DISPLAY_SIDE pixels)
    predictions: dict[str, float]  # top-k class name -> probability
    summary: str  # Markdown
    top_traits: list[tuple[Image.Image, str]]  # one overlay per top trait, in rank order, with its caption
    heads: Image.Image  # every head of the predicted class
    misclassified: Image.Image | None  # true vs predicted, when a true class is given and differs
    comparison: Image.Image | None  # the compared class's prompt beside the predicted class's


def _gradio():
    try:
        import gradio
    except ImportError as error:
        raise ImportError('The trait explorer needs gradio: pip install "modeling-promptcam[app]".') from error
    return gradio


def _visualization():
    try:
        from . import visualization
    except ImportError as error:
        raise ImportError(f'{error} The trait explorer needs it: pip install "modeling-promptcam[app]".') from error
    return visualization


def open_image(path: str | os.PathLike, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """An uploaded file as an 8-bit RGB image, read as the image-classification pipeline reads a file (EXIF orientation
    applied, alpha dropped) except that 16-bit and float grey are rescaled by their range (`data.to_rgb`, as in
    training) instead of clipped.

    Raises [`InputError`] for a missing or unreadable file and for images over `max_pixels` (checked from the
    header, before the pixels are decoded)."""
    name = os.path.basename(os.fspath(path))
    try:
        with warnings.catch_warnings():  # PIL's decompression-bomb warning: the size is checked right here instead
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            opened = Image.open(path)
        with opened:
            width, height = opened.size
            if width * height > max_pixels:
                raise InputError(_too_large(name, f"{width} x {height} pixels", max_pixels))
            image = ImageOps.exif_transpose(opened)
            image.load()
    except InputError:
        raise
    except FileNotFoundError:
        raise InputError(f"{name}: no such file.") from None
    except Image.DecompressionBombError as error:  # raised by Image.open itself beyond twice PIL's limit
        size = f"over {2 * Image.MAX_IMAGE_PIXELS / 1e6:.0f} megapixels, PIL's decompression-bomb limit"
        raise InputError(_too_large(name, size, max_pixels)) from error
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise InputError(
            f"{name} is not an image this app can read ({type(error).__name__}); upload a JPEG, PNG, WebP, BMP, GIF "
            "or TIFF file."
        ) from None
    return to_rgb(image)


def _too_large(name: str, size: str, max_pixels: int) -> str:
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

    model = PromptCamForImageClassification.from_pretrained(model_id).eval()
    try:
        processor = AutoImageProcessor.from_pretrained(model_id)
    except (OSError, ValueError):  # a folder saved without its preprocessor_config.json
        processor = promptcam_image_processor(model.config)
    return model, processor


def _display_copy(image: Image.Image) -> Image.Image:
    display = image.copy()
    display.thumbnail((DISPLAY_SIDE, DISPLAY_SIDE), Image.BILINEAR)
    return display


def _to_image(figure) -> Image.Image:
    with Image.open(io.BytesIO(_visualization().png_bytes(figure))) as png:
        return png.convert("RGB")


def _overlay_image(image: Image.Image, trait_map: np.ndarray, alpha: float) -> Image.Image:
    blended = _visualization().overlay(image, trait_map, alpha=alpha)
    return Image.fromarray((blended * 255.0).round().astype(np.uint8))


class TraitExplorer:
    """The model, its image processor and the example images, loaded once; what the app's events call.

    Model calls hold a lock, so the explorer is safe to call from several threads (the app also queues them)."""

    def __init__(
        self,
        model: PromptCamForImageClassification,
        image_processor=None,
        examples: list[ExampleImage] | None = None,
        max_pixels: int = MAX_PIXELS,
    ):
        self.model = model.eval()
        self.image_processor = image_processor or promptcam_image_processor(model.config)
        self.examples = list(examples or [])
        self.max_pixels = max_pixels
        self._lock = threading.Lock()

    @classmethod
    def load(
        cls, model_id: str, examples_dir: str | os.PathLike | None = None, max_pixels: int = MAX_PIXELS
    ) -> TraitExplorer:
        model, processor = load_model(model_id)
        examples = find_examples(examples_dir, model) if examples_dir is not None else []
        return cls(model, processor, examples, max_pixels)

    @property
    def class_names(self) -> list[str]:
        return [str(self.model.config.id2label[index]) for index in range(self.model.config.num_labels)]

    @property
    def num_heads(self) -> int:
        return self.model.config.backbone_config.num_attention_heads

    def class_index(self, name: str | None, role: str = "class") -> int | None:
        """The index of a class given by name (None for no name); [`InputError`] naming a few classes if unknown."""
        if name is None or not str(name).strip():
            return None
        index = resolve_class(self.model, str(name).strip())
        if index is None:
            known = ", ".join(self.class_names[:5])
            raise InputError(f"Unknown {role} {name!r}: pick one of the model's classes (for example {known}).")
        return index

    def stop_rule(self, rule: str, count: int | float | None) -> str | int:
        """The ranking's stop rule from the two controls: the paper's rule, or a fixed number of traits."""
        if rule == STOP_MISCLASSIFIED:
            return STOP_MISCLASSIFIED
        if rule != STOP_NUMBER:
            raise InputError(f"Unknown stop rule {rule!r}: use {STOP_MISCLASSIFIED!r} or {STOP_NUMBER!r}.")
        if count is None or int(count) != count or not 1 <= int(count) <= self.num_heads:
            raise InputError(f"The number of traits must be a whole number from 1 to {self.num_heads}, got {count}.")
        return int(count)

    def warm_up(self) -> None:
        """One explanation of a blank image, so that the first user's request does not also pay for the one-time
        start-up costs of torch's CPU kernels (several seconds for a ViT-S on CPU)."""
        size = self.model.config.backbone_config.image_size
        side = size if isinstance(size, int) else size[0]
        self.explain(Image.new("RGB", (side, side), (128, 128, 128)), stop=1)

    def _check_settings(self, blur: str, alpha: float) -> None:
        if blur not in BLUR_MODES:
            raise InputError(f"Unknown blur mode {blur!r}: use one of {', '.join(BLUR_MODES)}.")
        if alpha is None or not 0.0 <= float(alpha) <= 1.0:
            raise InputError(f"The map opacity must be between 0 and 1, got {alpha}.")

    def _explain(self, image: Image.Image, **options) -> Explanation:
        with self._lock:
            explanation = explain_image(self.model, self.image_processor, image, **options)
        # the model saw the full image; the figures only need a display-sized copy
        return dataclasses.replace(explanation, image=_display_copy(explanation.image))

    def explain(
        self,
        image: str | os.PathLike | Image.Image,
        true_class: str | None = None,
        compare_class: str | None = None,
        blur: str = "paper",
        stop: str | int = STOP_MISCLASSIFIED,
        alpha: float = 0.5,
        top_k: int = 5,
    ) -> ExplorerView:
        """Classify one image (a file path or a PIL image of any mode) and draw its trait views."""
        self._check_settings(blur, alpha)
        true_index = self.class_index(true_class, "true class")
        compare_index = self.class_index(compare_class, "class to compare")
        picture = to_rgb(image) if isinstance(image, Image.Image) else open_image(image, self.max_pixels)
        if picture.width * picture.height > self.max_pixels:
            raise InputError(_too_large("The image", f"{picture.width} x {picture.height} pixels", self.max_pixels))
        explanation = self._explain(
            picture,
            top_k=max(1, int(top_k)),
            classes=[compare_index] if compare_index is not None else None,
            true_class=true_index,
            blur=blur,
            stop=stop,
        )
        return self._view(explanation, compare_index, float(alpha), true_index)

    def _view(
        self, explanation: Explanation, compare_index: int | None, alpha: float, true_index: int | None
    ) -> ExplorerView:
        viz = _visualization()
        predicted = explanation.predicted
        top_traits = [
            (_overlay_image(explanation.image, predicted.trait_maps[head], alpha), f"rank {rank + 1}: head {head}")
            for rank, head in enumerate(predicted.ranking.top_traits)
        ]
        comparison = None
        if compare_index is not None and compare_index != predicted.class_index:
            comparison = _to_image(viz.plot_class_vs_class(explanation, explanation.requested[0], alpha=alpha))
        misclassified = _to_image(viz.plot_misclassification(explanation, alpha=alpha)) if explanation.true else None
        return ExplorerView(
            explanation=explanation,
            predictions=dict(explanation.predictions),
            summary=_summary(explanation, true_index, compare_index),
            top_traits=top_traits,
            heads=_to_image(viz.plot_head_grid(explanation.image, predicted, alpha=alpha)),
            misclassified=misclassified,
            comparison=comparison,
        )

    def examples_of(self, class_name: str) -> list[ExampleImage]:
        index = self.class_index(class_name)
        return [example for example in self.examples if example.class_index == index]

    def gallery(
        self,
        class_name: str,
        count: int = GALLERY_IMAGES,
        blur: str = "paper",
        stop: str | int = STOP_MISCLASSIFIED,
        alpha: float = 0.5,
    ) -> list[tuple[Image.Image, str]]:
        """One class's top traits (a figure each) over up to `count` example images of that class, with captions
        saying what the model predicts for each image."""
        self._check_settings(blur, alpha)
        if not class_name:
            raise InputError("Pick a class first.")
        examples = self.examples_of(class_name)
        if not examples:
            raise InputError(
                f"There are no example images of {class_name} (examples come from --examples DIR/<class>/)."
            )
        viz, figures = _visualization(), []
        for example in examples[: max(1, int(count))]:
            explanation = self._explain(
                open_image(example.path, self.max_pixels),
                top_k=1,
                classes=[example.class_index],
                blur=blur,
                stop=stop,
            )
            view = explanation.requested[0]
            name, score = explanation.predictions[0]
            caption = f"{os.path.basename(example.path)}: predicted {name} ({score:.2f})"
            figures.append((_to_image(viz.plot_top_traits(explanation.image, view, alpha=alpha)), caption))
        return figures


def _summary(explanation: Explanation, true_index: int | None, compare_index: int | None) -> str:
    predicted = explanation.predicted
    ranking = predicted.ranking
    heads = ", ".join(str(head) for head in ranking.top_traits)
    lines = [
        f"**Predicted: {_md(predicted.name)}** (p = {predicted.score:.3f}). Top traits: head(s) {heads} "
        f"of {len(ranking.ranked_heads)} (blur: {ranking.blur}, stop: {ranking.stop})."
    ]
    if explanation.true is not None:
        lines.append(
            f"Misclassified: the true class is **{_md(explanation.true.name)}** (p = {explanation.true.score:.3f})."
        )
    elif true_index is not None:
        lines.append("Correct: the prediction is the true class.")
    if compare_index is not None and compare_index == predicted.class_index:
        lines.append("The class to compare is the predicted class; its maps are the ones above.")
    return "\n\n".join(lines)


def _md(text: str) -> str:
    """Class names shown as Markdown: escaped, so a name cannot inject markup."""
    return html.escape(text).replace("*", r"\*").replace("_", r"\_")


def _class_name(example: ExampleImage, names: list[str]) -> str | None:
    return names[example.class_index] if example.class_index is not None else None


def _first_of_each(examples: list[ExampleImage]) -> list[ExampleImage]:
    """Up to EXAMPLES_PER_CLASS examples of each folder: a whole validation set (thousands of images) would make the
    table unusable and the start slow (Gradio copies every example into its cache)."""
    shown, counts = [], {}
    for example in examples:
        counts[example.label] = counts.get(example.label, 0) + 1
        if counts[example.label] <= EXAMPLES_PER_CLASS:
            shown.append(example)
    return shown


def _path_of(payload) -> str | None:
    """The uploaded file's path from an image input's raw value (the app reads files itself, with its own checks and
    messages, instead of letting Gradio decode them first)."""
    if payload is None:
        return None
    if isinstance(payload, dict):
        return payload.get("path")
    return str(payload)


def build_app(
    model_or_path: str | os.PathLike | PromptCamForImageClassification | TraitExplorer,
    examples_dir: str | os.PathLike | None = None,
    *,
    image_processor=None,
    max_pixels: int = MAX_PIXELS,
    title: str = "Prompt-CAM trait explorer",
    warm_up: bool = True,
):
    """The trait explorer as a `gradio.Blocks` (queued: one model call at a time, at most `QUEUE_SIZE` waiting).

    Args:
        model_or_path: a saved folder or Hub id (loaded once, here), a loaded model, or a ready [`TraitExplorer`].
        examples_dir: an imagefolder tree `DIR/<class name>/<image>`; its images are the examples to pick and the
            class gallery, their folder names the true labels.
        image_processor: for a loaded model (default: Prompt-CAM's evaluation preprocessing for its config).
        max_pixels: larger uploads are refused with a message (default: PIL's decompression-bomb threshold).
        warm_up: explain a blank image once before serving (see [`TraitExplorer.warm_up`]).
    """
    gr = _gradio()
    _visualization()  # fail now, not on the first request, when matplotlib is missing
    if isinstance(model_or_path, TraitExplorer):
        explorer = model_or_path
    elif isinstance(model_or_path, PromptCamForImageClassification):
        examples = find_examples(examples_dir, model_or_path) if examples_dir is not None else []
        explorer = TraitExplorer(model_or_path, image_processor, examples, max_pixels)
    else:
        explorer = TraitExplorer.load(os.fspath(model_or_path), examples_dir, max_pixels)
    if warm_up:
        explorer.warm_up()

    def shown(error: InputError) -> Exception:
        # Gradio shows the message as HTML: escape what the user typed (class names) so it shows as written
        return gr.Error(html.escape(str(error), quote=False), title="Cannot use this input")

    def explain_event(image, true_class, compare_class, blur, rule, count, alpha, top_k):
        path = _path_of(image)
        if path is None:
            hidden = gr.update(value=None, visible=False)
            return None, "Upload an image or pick an example.", [], None, hidden, hidden
        try:
            view = explorer.explain(
                path, true_class, compare_class, blur, explorer.stop_rule(rule, count), alpha, top_k
            )
        except InputError as error:
            raise shown(error) from None
        return (
            view.predictions,
            view.summary,
            view.top_traits,
            view.heads,
            gr.update(value=view.misclassified, visible=view.misclassified is not None),
            gr.update(value=view.comparison, visible=view.comparison is not None),
        )

    def gallery_event(class_name, count, blur, rule, traits, alpha):
        try:
            figures = explorer.gallery(class_name, int(count), blur, explorer.stop_rule(rule, traits), alpha)
        except InputError as error:
            raise shown(error) from None
        return figures, f"Top traits of **{_md(class_name)}** on {len(figures)} example image(s)."

    names = explorer.class_names
    with_examples = {example.class_index for example in explorer.examples} - {None}
    gallery_classes = [names[index] for index in sorted(with_examples)]
    heads = explorer.num_heads
    config = explorer.model.config
    with gr.Blocks(title=title, analytics_enabled=False) as demo:
        gr.Markdown(
            f"# {html.escape(title)}\n{config.num_labels} classes, {heads} attention heads "
            f"({config.backbone_config.model_type} backbone). Each class has its own prompt; each head's map shows "
            "where that prompt looks in the image: its traits. The top traits are the heads the class's score needs."
        )
        with gr.Accordion("Settings", open=True):
            with gr.Row():
                blur = gr.Radio(
                    [(BLUR_LABELS.get(mode, mode), mode) for mode in BLUR_MODES],
                    value="paper",
                    label="Blur mode of the trait ranking",
                )
                rule = gr.Radio(
                    [("until misclassified (paper)", STOP_MISCLASSIFIED), ("a fixed number", STOP_NUMBER)],
                    value=STOP_MISCLASSIFIED,
                    label="Top traits",
                )
                count = gr.Slider(1, heads, value=min(4, heads), step=1, label="Number of traits (fixed number)")
                alpha = gr.Slider(0.0, 1.0, value=0.5, step=0.05, label="Map opacity")
                top_k = gr.Slider(
                    1, min(10, config.num_labels), value=min(5, config.num_labels), step=1, label="Top-k"
                )
        with gr.Tab("Explain an image"):
            with gr.Row():
                with gr.Column(scale=1):
                    image = gr.Image(type="filepath", image_mode=None, label="Image", elem_id="image-input")
                    true_class = gr.Dropdown(
                        names, value=None, allow_custom_value=True, label="True class (optional)", elem_id="true-class"
                    )
                    compare_class = gr.Dropdown(
                        names,
                        value=None,
                        allow_custom_value=True,
                        label="Compare with class: how its prompt sees this image",
                        elem_id="compare-class",
                    )
                    explain_button = gr.Button("Explain", variant="primary", elem_id="explain-button")
                    if explorer.examples:
                        gr.Examples(
                            # the model's own class name: the dropdown shows (and selects) only names it offers
                            [
                                [example.path, _class_name(example, names)]
                                for example in _first_of_each(explorer.examples)
                            ],
                            inputs=[image, true_class],
                            label=f"Examples (the folder name is the true class; up to {EXAMPLES_PER_CLASS} per class)",
                            examples_per_page=12,
                            elem_id="examples",
                        )
                with gr.Column(scale=2):
                    predictions = gr.Label(num_top_classes=10, label="Predictions", elem_id="predictions")
                    summary = gr.Markdown(elem_id="summary")
                    top_traits = gr.Gallery(
                        label="Top traits of the predicted class, in rank order",
                        columns=4,
                        fit_columns=False,
                        height="auto",
                        format="png",
                        object_fit="contain",
                        elem_id="top-traits",
                    )
                    head_grid = gr.Image(
                        label="All heads of the predicted class (rank per head)",
                        format="png",
                        interactive=False,
                        elem_id="head-grid",
                    )
                    misclassified = gr.Image(
                        label="True vs predicted",
                        format="png",
                        interactive=False,
                        visible=False,
                        elem_id="misclassified",
                    )
                    comparison = gr.Image(
                        label="Compared class", format="png", interactive=False, visible=False, elem_id="comparison"
                    )
        with gr.Tab("Class gallery"):
            with gr.Row():
                gallery_class = gr.Dropdown(
                    gallery_classes,
                    value=None,
                    allow_custom_value=True,
                    label="Class (those with example images)",
                    elem_id="gallery-class",
                )
                gallery_count = gr.Slider(1, 12, value=GALLERY_IMAGES, step=1, label="Images")
                gallery_button = gr.Button("Show", variant="primary", elem_id="gallery-button")
            gallery_note = gr.Markdown(
                "" if explorer.examples else "No example images: start the app with --examples DIR/<class>/<image>."
            )
            gallery = gr.Gallery(
                label="Top traits",
                columns=2,
                fit_columns=False,
                height="auto",
                format="png",
                object_fit="contain",
                elem_id="gallery",
            )

        # every model call shares one queue slot (concurrency_id): requests wait their turn instead of competing
        gr.on(
            [image.change, explain_button.click, compare_class.input],
            explain_event,
            inputs=[image, true_class, compare_class, blur, rule, count, alpha, top_k],
            outputs=[predictions, summary, top_traits, head_grid, misclassified, comparison],
            api_name="explain",
            concurrency_id="model",
            preprocess=False,
        )
        gr.on(
            [gallery_button.click, gallery_class.input],
            gallery_event,
            inputs=[gallery_class, gallery_count, blur, rule, count, alpha],
            outputs=[gallery, gallery_note],
            api_name="gallery",
            concurrency_id="model",
            preprocess=False,
        )
    demo.queue(default_concurrency_limit=1, max_size=QUEUE_SIZE)
    return demo


def launch(app, host: str = DEFAULT_HOST, port: int | None = DEFAULT_PORT, block: bool = True, **kwargs) -> str:
    """Serve a [`build_app`] app on `host:port` (127.0.0.1 by default: reachable from this machine only; pass
    0.0.0.0 to serve a network). With `block=False` it returns at once, the server running in a thread
    (`app.close()` stops it). Returns the local URL; other keyword arguments go to `gradio.Blocks.launch`."""
    kwargs.setdefault("max_file_size", "200mb")  # larger uploads get Gradio's own message before reaching the app
    _, local_url, _ = app.launch(server_name=host, server_port=port, prevent_thread_lock=not block, **kwargs)
    return local_url


__all__ = [
    "DEFAULT_HOST",
    "ExampleImage",
    "ExplorerView",
    "InputError",
    "TraitExplorer",
    "build_app",
    "find_examples",
    "launch",
    "load_model",
    "open_image",
]
