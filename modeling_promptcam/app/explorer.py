"""Trait explorer: a Gradio web app to upload an image and browse what each class prompt looks at (the `app` extra).

`promptcam app --model DIR_OR_HUB_ID [--examples DIR]` serves it; `examples/space_app.py` is the same app as a Hub
Space. Two tabs:

* **Explain an image**: the top-k predictions, the predicted class's top traits in rank order, all its heads, how any
  other class's prompt sees the same image, and true vs predicted when a true class is given (example folders carry it).
* **Class gallery**: one class's top traits over several example images of that class.
* **Class atlas** (with `--atlas OUT/atlas.json` from `promptcam atlas`): for a chosen class, every head of its prompt in
  rank order with its named part and scores, and each head's most confident image with the head's map over it.

[`TraitExplorer`] holds the model (loaded once) and does the work without any Gradio types, so it is tested as plain
Python; [`build_app`] lays it out in Gradio and turns [`InputError`]s into readable messages in the page. Model calls
go through one queue (one request at a time, the others wait their turn), and [`launch`] binds to 127.0.0.1 unless
told otherwise. What the explorer reads (uploads, example folders, the model, the atlas) is checked in `app/inputs.py`,
what it shows is drawn in `app/views.py`.
"""

from __future__ import annotations

import dataclasses
import os
import threading

from PIL import Image

from ..data.images import to_rgb
from ..explain.explanation import Explanation, explain_image, resolve_class
from ..modeling_promptcam import (
    BLUR_MODE_TABLE,
    BLUR_MODES,
    NUMBER_STOP_RULE,
    STOP_RULES,
    PromptCamForImageClassification,
    parse_stop_rule,
    promptcam_image_processor,
)

# what the explorer reads and what it shows moved to app/inputs.py and app/views.py; their old import path works
from .inputs import (
    MAX_PIXELS,
    ExampleImage,
    InputError,
    find_examples,
    load_model,
    logger,  # noqa: F401 (re-exported: its old import path)
    open_image,
    read_atlas,
    too_large,
    whole_number,
)
from .views import (
    ATLAS_COLUMNS,
    DISPLAY_SIDE,  # noqa: F401 (re-exported: its old import path)
    ClassAtlasView,
    ExplorerView,
    display_copy,
    explanation_summary,
    figure_image,
    figures_module,
    markdown_escape,
    overlay_image,
    rate,
)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7860
GALLERY_IMAGES = 4
EXAMPLES_PER_CLASS = 2  # in the Explain tab's examples table (the class gallery uses all of a class's images)
QUEUE_SIZE = 32  # requests waiting beyond this many get a "queue is full" message instead of piling up
# the stop-rule control offers the model's table of stop rules; the rule of an integer stop takes the count slider
STOP_MISCLASSIFIED, STOP_NUMBER = "misclassified", NUMBER_STOP_RULE
STOP_LABELS = {rule.name: f"{rule.name}: {rule.description}" for rule in STOP_RULES.values()}
# what a blurred head's attention becomes, from the model's table of blur modes (modeling_promptcam.rank_traits)
BLUR_LABELS = {mode.name: f"{mode.name}: {mode.description}" for mode in BLUR_MODE_TABLE.values()}


class TraitExplorer:
    """The model, its image processor and the example images, loaded once; what the app's events call.

    Model calls hold a lock, so the explorer is safe to call from several threads (the app also queues them)."""

    def __init__(
        self,
        model: PromptCamForImageClassification,
        image_processor=None,
        examples: list[ExampleImage] | None = None,
        max_pixels: int = MAX_PIXELS,
        atlas: dict | None = None,
    ):
        if isinstance(max_pixels, bool) or not isinstance(max_pixels, int) or max_pixels < 1:
            raise ValueError(
                f"max_pixels must be a whole number >= 1 (the largest image accepted), got {max_pixels!r}."
            )
        self.model = model.eval()
        self.image_processor = image_processor or promptcam_image_processor(model.config)
        self.examples = list(examples or [])
        self.max_pixels = max_pixels
        self.atlas = atlas or {}  # class index -> its entry of atlas.json ([`read_atlas`])
        self._lock = threading.Lock()

    @classmethod
    def load(
        cls,
        model_id: str,
        examples_dir: str | os.PathLike | None = None,
        max_pixels: int = MAX_PIXELS,
        atlas_file: str | os.PathLike | None = None,
    ) -> TraitExplorer:
        model, processor = load_model(model_id)
        examples = find_examples(examples_dir, model) if examples_dir is not None else []
        atlas = read_atlas(atlas_file, model) if atlas_file is not None else None
        return cls(model, processor, examples, max_pixels, atlas)

    @property
    def atlas_classes(self) -> list[str]:
        """The classes of the atlas, in the model's order."""
        return [self.class_names[index] for index in sorted(self.atlas)]

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
        if rule not in STOP_RULES:
            known = " or ".join(repr(name) for name in STOP_RULES)
            raise InputError(f"Unknown stop rule {rule!r}: use {known}.")
        if rule != STOP_NUMBER:
            return parse_stop_rule(rule, self.num_heads)
        return parse_stop_rule(whole_number(count, "number of traits", 1, self.num_heads), self.num_heads)

    def warm_up(self) -> None:
        """One explanation of a blank image, so that the first user's request does not also pay for the one-time
        start-up costs of torch's CPU kernels (several seconds for a ViT-S on CPU)."""
        size = self.model.config.backbone_config.image_size
        side = size if isinstance(size, int) else size[0]
        self.explain(Image.new("RGB", (side, side), (128, 128, 128)), stop=1)

    def _check_settings(self, blur: str, alpha: float) -> None:
        if blur not in BLUR_MODES:
            raise InputError(f"Unknown blur mode {blur!r}: use one of {', '.join(BLUR_MODES)}.")
        try:
            opacity = float(alpha)
        except (TypeError, ValueError):
            opacity = float("nan")
        if isinstance(alpha, bool) or not 0.0 <= opacity <= 1.0:  # NaN fails the comparison too
            raise InputError(f"The map opacity must be between 0 and 1, got {alpha}.")

    def _check_stop(self, stop: str | int) -> str | int:
        try:
            return parse_stop_rule(stop, self.num_heads)
        except ValueError as error:
            raise InputError(f"The {error}") from None

    def _explain(self, image: Image.Image, **options) -> Explanation:
        with self._lock:
            explanation = explain_image(self.model, self.image_processor, image, **options)
        # the model saw the full image; the figures only need a display-sized copy
        return dataclasses.replace(explanation, image=display_copy(explanation.image))

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
        stop = self._check_stop(stop)
        # more predictions than classes list every class (as the pipelines do); fewer than one is a mistake
        top_k = min(whole_number(top_k, "number of predictions", 1), self.model.config.num_labels)
        true_index = self.class_index(true_class, "true class")
        compare_index = self.class_index(compare_class, "class to compare")
        if isinstance(image, Image.Image):
            try:
                picture = to_rgb(image)
            except ValueError as error:  # NaN / inf pixels or a mode with no RGB conversion
                raise InputError(f"The image cannot be shown to the model: {error}") from None
        else:
            picture = open_image(image, self.max_pixels)
        if picture.width * picture.height > self.max_pixels:
            raise InputError(too_large("The image", f"{picture.width} x {picture.height} pixels", self.max_pixels))
        explanation = self._explain(
            picture,
            top_k=top_k,
            classes=[compare_index] if compare_index is not None else None,
            true_class=true_index,
            blur=blur,
            stop=stop,
        )
        return self._view(explanation, compare_index, float(alpha), true_index)

    def _view(
        self, explanation: Explanation, compare_index: int | None, alpha: float, true_index: int | None
    ) -> ExplorerView:
        viz = figures_module()
        predicted = explanation.predicted
        top_traits = [
            (overlay_image(explanation.image, predicted.trait_maps[head], alpha), f"rank {rank + 1}: head {head}")
            for rank, head in enumerate(predicted.ranking.top_traits)
        ]
        comparison = None
        if compare_index is not None and compare_index != predicted.class_index:
            comparison = figure_image(viz.plot_class_vs_class(explanation, explanation.requested[0], alpha=alpha))
        misclassified = (
            figure_image(viz.plot_misclassification(explanation, alpha=alpha)) if explanation.true else None
        )
        return ExplorerView(
            explanation=explanation,
            predictions=dict(explanation.predictions),
            summary=explanation_summary(explanation, true_index, compare_index),
            top_traits=top_traits,
            heads=figure_image(viz.plot_head_grid(explanation.image, predicted, alpha=alpha)),
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
        stop = self._check_stop(stop)
        count = whole_number(count, "number of gallery images", 1)
        if not class_name:
            raise InputError("Pick a class first.")
        examples = self.examples_of(class_name)
        if not examples:
            raise InputError(
                f"There are no example images of {class_name} (examples come from --examples DIR/<class>/)."
            )
        viz, figures = figures_module(), []
        for example in examples[:count]:
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
            figures.append((figure_image(viz.plot_top_traits(explanation.image, view, alpha=alpha)), caption))
        return figures

    def class_atlas(self, class_name: str, count: int = GALLERY_IMAGES, alpha: float = 0.5) -> ClassAtlasView:
        """The atlas of one class: its heads in rank order (the table) and, for the first `count` heads, the image
        where each is most confident with that head's map over it."""
        self._check_settings("paper", alpha)
        if not self.atlas:
            raise InputError(
                "No atlas loaded: start the app with --atlas OUT/atlas.json (written by promptcam atlas)."
            )
        if not class_name:
            raise InputError("Pick a class first.")
        index = self.class_index(class_name)
        if index not in self.atlas:
            raise InputError(f"The atlas has no images of {class_name}; pick one of the classes it lists.")
        entry, name = self.atlas[index], self.class_names[index]
        rows = [
            [rank + 1, head["head"], head["named_part"] or "", rate(head["named_part_rate"]),
             rate(head["consistency"]), head.get("consistency_part") or "", rate(head["stability"]),
             rate(head["top_trait_rate"]), rate(head.get("distinctiveness")), head.get("images", entry["images"])]
            for rank, head in enumerate(entry["heads"])
        ]  # fmt: skip
        consistent = entry.get("consistent_share")
        cls_share = (entry.get("cls_attention") or {}).get("consistent_share")
        lines = [f"**{markdown_escape(name)}**: {entry['images']} image(s), {len(rows)} heads in rank order."]
        if consistent is not None:
            lines.append(f"Share of consistent heads: {consistent:.2f}" + (
                f" (the backbone's CLS-attention heads: {cls_share:.2f})." if cls_share is not None else "."))  # fmt: skip
        if entry.get("small_sample"):
            lines.append(f"Only {entry['images']} image(s): a small sample, these numbers are not reliable.")
        gallery, missing = [], 0
        for rank, head in enumerate(entry["heads"][: max(0, int(count))]):
            images = head.get("gallery") or []
            if not images or not os.path.isfile(images[0]["image"]):
                missing += bool(images)
                continue
            explanation = self._explain(open_image(images[0]["image"], self.max_pixels), top_k=1, classes=[index])
            trait_map = explanation.requested[0].trait_maps[head["head"]]
            part = f", {head['named_part']}" if head["named_part"] else ""
            caption = f"rank {rank + 1}: head {head['head']}{part} ({os.path.basename(images[0]['image'])})"
            gallery.append((overlay_image(explanation.image, trait_map, float(alpha)), caption))
        if missing:
            lines.append(f"{missing} gallery image(s) named in the atlas are no longer on disk and are not shown.")
        return ClassAtlasView(summary="\n\n".join(lines), rows=rows, gallery=gallery)


__all__ = [
    "ATLAS_COLUMNS",
    "ClassAtlasView",
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "ExampleImage",
    "ExplorerView",
    "InputError",
    "MAX_PIXELS",
    "TraitExplorer",
    "figures_module",
    "find_examples",
    "load_model",
    "markdown_escape",
    "open_image",
    "read_atlas",
]
