"""Figures of Prompt-CAM trait maps (matplotlib, the `viz` extra); the HTML report that embeds them is `explain.report`.

Every figure is a `matplotlib.figure.Figure` built without pyplot (no global state, no display needed); `save_png`
writes one to disk and `png_bytes` encodes it for the report.
"""

from __future__ import annotations

import io
import os

import numpy as np
from PIL import Image

from ..data.images import to_rgb
from ..extras import require
from ..files import write_atomically
from .explanation import ClassView, Explanation

# matplotlib is the `viz` extra: importing this module without it raises extras.MissingDependencyError naming it
colormaps = require("matplotlib", "viz", "Drawing trait-map figures").colormaps
Figure = require("matplotlib.figure", "viz", "Drawing trait-map figures").Figure

PANEL_INCHES = 2.4
DPI = 100


def upsample_map(trait_map: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A `(grid_h, grid_w)` map resized to the image's `(width, height)` with bilinear interpolation, then normalised
    to [0, 1] per map (the maps of different heads have different ranges)."""
    resized = Image.fromarray(np.asarray(trait_map, dtype=np.float32)).resize(size, Image.BILINEAR)
    values = np.asarray(resized, dtype=np.float32)
    low, high = float(values.min()), float(values.max())
    return (values - low) / (high - low) if high > low else np.zeros_like(values)


def overlay(image: Image.Image, trait_map: np.ndarray, cmap: str = "jet", alpha: float = 0.5) -> np.ndarray:
    """The image with a trait map blended over it: `(height, width, 3)` floats in [0, 1]."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}.")
    upright = to_rgb(image)  # the decoding rule: the image as the model saw it (upright, 8-bit RGB)
    rgb = np.asarray(upright, dtype=np.float32) / 255.0
    heat = colormaps[cmap](upsample_map(trait_map, upright.size))[..., :3]
    return (1.0 - alpha) * rgb + alpha * heat


def _panels(count: int, columns: int, title: str) -> tuple[Figure, list]:
    rows = max(1, -(-count // columns))
    figure = Figure(figsize=(PANEL_INCHES * columns, PANEL_INCHES * rows + 0.5), dpi=DPI, layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False).ravel().tolist()
    for axis in axes:
        axis.axis("off")
    figure.suptitle(title, fontsize=10)
    return figure, axes


def _show(axis, image: Image.Image, trait_map: np.ndarray | None, title: str, cmap: str, alpha: float) -> None:
    axis.imshow(image if trait_map is None else overlay(image, trait_map, cmap, alpha))
    axis.set_title(title, fontsize=8)


def _rank_of(view: ClassView) -> dict[int, int]:
    return {head: rank + 1 for rank, head in enumerate(view.ranking.ranked_heads)}


def plot_trait_map(
    image: Image.Image, trait_map: np.ndarray, title: str = "", cmap: str = "jet", alpha: float = 0.5
) -> Figure:
    """One trait map over its image."""
    figure, (axis,) = _panels(1, 1, title)
    _show(axis, image, trait_map, "", cmap, alpha)
    return figure


def plot_head_grid(
    image: Image.Image, view: ClassView, cmap: str = "jet", alpha: float = 0.5, columns: int = 7
) -> Figure:
    """Every head's map of one class, in head order, each titled with the head's importance rank (* = top trait)."""
    ranks = _rank_of(view)
    heads = view.trait_maps.shape[0]
    figure, axes = _panels(
        heads + 1, min(columns, heads + 1), f"{view.name} (p = {view.score:.3f}): all {heads} heads"
    )
    _show(axes[0], image, None, "image", cmap, alpha)
    for head in range(heads):
        star = " *" if head in view.ranking.top_traits else ""
        _show(axes[head + 1], image, view.trait_maps[head], f"head {head}, rank {ranks[head]}{star}", cmap, alpha)
    return figure


def plot_top_traits(image: Image.Image, view: ClassView, cmap: str = "jet", alpha: float = 0.5) -> Figure:
    """The top-trait heads of one class in rank order (most important first)."""
    heads = view.ranking.top_traits
    figure, axes = _panels(len(heads) + 1, len(heads) + 1, f"{view.name} (p = {view.score:.3f}): top traits")
    _show(axes[0], image, None, "image", cmap, alpha)
    for rank, head in enumerate(heads):
        _show(axes[rank + 1], image, view.trait_maps[head], f"rank {rank + 1}: head {head}", cmap, alpha)
    return figure


def plot_comparison(
    image: Image.Image, first: ClassView, second: ClassView, title: str, cmap: str = "jet", alpha: float = 0.5
) -> Figure:
    """Two classes' prompts on the same image, one row each, every head in the first class's rank order."""
    order = first.ranking.ranked_heads
    columns = len(order) + 1
    rows_figure = Figure(
        figsize=(PANEL_INCHES * columns * 0.75, PANEL_INCHES * 2 * 0.75 + 0.6), dpi=DPI, layout="constrained"
    )
    axes = rows_figure.subplots(2, columns, squeeze=False)
    rows_figure.suptitle(title, fontsize=10)
    for row, view in enumerate((first, second)):
        ranks = _rank_of(view)
        for axis in axes[row]:
            axis.axis("off")
        _show(axes[row][0], image, None, f"{view.name}\np = {view.score:.3f}", cmap, alpha)
        for column, head in enumerate(order):
            _show(
                axes[row][column + 1], image, view.trait_maps[head], f"head {head} (rank {ranks[head]})", cmap, alpha
            )
    return rows_figure


def plot_misclassification(explanation: Explanation, cmap: str = "jet", alpha: float = 0.5) -> Figure:
    """True class vs predicted class maps, side by side: where each prompt looks, and why the wrong one won."""
    true, predicted = explanation.true, explanation.predicted
    return plot_comparison(
        explanation.image, true, predicted, f"misclassified: true {true.name}, predicted {predicted.name}", cmap, alpha
    )


def plot_class_vs_class(explanation: Explanation, other: ClassView, cmap: str = "jet", alpha: float = 0.5) -> Figure:
    """How another class's prompt sees this image, beside the predicted class's own maps (shared traits)."""
    predicted = explanation.predicted
    return plot_comparison(
        explanation.image, predicted, other, f"{other.name}'s prompt on an image of {predicted.name}", cmap, alpha
    )


def png_bytes(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def save_png(figure: Figure, path: str | os.PathLike) -> None:
    """Write the figure as a PNG, atomically (a temporary file renamed into place)."""
    write_atomically(path, png_bytes(figure))


def figures_for(explanation: Explanation, cmap: str = "jet", alpha: float = 0.5) -> dict[str, Figure]:
    """All figures of one explanation, by file stem."""
    figures = {
        "top_traits": plot_top_traits(explanation.image, explanation.predicted, cmap, alpha),
        "heads": plot_head_grid(explanation.image, explanation.predicted, cmap, alpha),
    }
    if explanation.true is not None:
        figures["misclassified"] = plot_misclassification(explanation, cmap, alpha)
    for view in explanation.requested:
        if view.class_index != explanation.predicted.class_index:
            figures[f"class_{_safe(view.name)}"] = plot_class_vs_class(explanation, view, cmap, alpha)
    return figures


def _safe(name: str) -> str:
    return "".join(character if character.isalnum() or character in "-_." else "_" for character in name)


__all__ = [
    "DPI",
    "PANEL_INCHES",
    "figures_for",
    "overlay",
    "plot_class_vs_class",
    "plot_comparison",
    "plot_head_grid",
    "plot_misclassification",
    "plot_top_traits",
    "plot_trait_map",
    "png_bytes",
    "save_png",
    "upsample_map",
]
