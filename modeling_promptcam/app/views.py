"""What the trait explorer shows, as plain Python (no Gradio types): the views of its tabs ([`ExplorerView`],
[`ClassAtlasView`]), figures as images, and the Markdown around them (class names escaped).
"""

from __future__ import annotations

import html
import io
from dataclasses import dataclass

import numpy as np
from PIL import Image

from ..explain.explanation import Explanation
from ..extras import require

DISPLAY_SIDE = 448  # overlays and figures are drawn on a copy at most this many pixels on its longer side

ATLAS_COLUMNS = (
    "rank", "head", "named part", "named-part rate", "consistency", "consistent part", "stability", "top-trait rate",
    "distinctiveness", "images",
)  # fmt: skip


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


@dataclass
class ClassAtlasView:
    """What the "Class atlas" tab shows for one class."""

    summary: str  # Markdown
    rows: list[list]  # one row per head in rank order, the columns of ATLAS_COLUMNS
    gallery: list[tuple[Image.Image, str]]  # per head (rank order): its most confident image with its map, caption


def rate(value: float | None) -> str:
    """A score for the atlas table: two decimals, empty for None."""
    return "" if value is None else f"{value:.2f}"


def figures_module():
    """`explain.figures`, the explorer's drawing code, once matplotlib is known to be there: without it,
    [`~modeling_promptcam.extras.MissingDependencyError`] naming the `app` extra (which installs it with gradio)."""
    require("matplotlib", "app", "The trait explorer")
    from ..explain import figures

    return figures


def display_copy(image: Image.Image) -> Image.Image:
    """A copy at most `DISPLAY_SIDE` pixels on its longer side, for the figures (the model sees the full image)."""
    display = image.copy()
    display.thumbnail((DISPLAY_SIDE, DISPLAY_SIDE), Image.BILINEAR)
    return display


def figure_image(figure) -> Image.Image:
    """A matplotlib figure as an RGB image (through `explain.figures.png_bytes`)."""
    with Image.open(io.BytesIO(figures_module().png_bytes(figure))) as png:
        return png.convert("RGB")


def overlay_image(image: Image.Image, trait_map: np.ndarray, alpha: float) -> Image.Image:
    """One trait map over `image` at opacity `alpha`, as an 8-bit RGB image."""
    blended = figures_module().overlay(image, trait_map, alpha=alpha)
    return Image.fromarray((blended * 255.0).round().astype(np.uint8))


def explanation_summary(explanation: Explanation, true_index: int | None, compare_index: int | None) -> str:
    """The Markdown above the Explain tab's figures: the prediction and its top traits, and whether it is right."""
    predicted = explanation.predicted
    ranking = predicted.ranking
    heads = ", ".join(str(head) for head in ranking.top_traits)
    lines = [
        f"**Predicted: {markdown_escape(predicted.name)}** (p = {predicted.score:.3f}). Top traits: head(s) {heads} "
        f"of {len(ranking.ranked_heads)} (blur: {ranking.blur}, stop: {ranking.stop})."
    ]
    if explanation.true is not None:
        lines.append(
            f"Misclassified: the true class is **{markdown_escape(explanation.true.name)}** (p = {explanation.true.score:.3f})."
        )
    elif true_index is not None:
        lines.append("Correct: the prediction is the true class.")
    if compare_index is not None and compare_index == predicted.class_index:
        lines.append("The class to compare is the predicted class; its maps are the ones above.")
    return "\n\n".join(lines)


def markdown_escape(text: str) -> str:
    """Class names shown as Markdown: escaped, so a name cannot inject markup."""
    return html.escape(text).replace("*", r"\*").replace("_", r"\_")


__all__ = [
    "ATLAS_COLUMNS",
    "ClassAtlasView",
    "DISPLAY_SIDE",
    "ExplorerView",
    "display_copy",
    "explanation_summary",
    "figure_image",
    "figures_module",
    "markdown_escape",
    "overlay_image",
    "rate",
]
