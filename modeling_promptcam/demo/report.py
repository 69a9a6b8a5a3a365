"""The demo's `report.html`: the numbers, per class its top traits over a few images with the trait mask outlined, and
a misclassification explained; written with the package's one HTML writer (`explain.report`)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from ..data.masks import load_trait_mask
from ..files import write_atomically
from ..modeling_promptcam import PromptCamForImageClassification
from .evaluation import ImageResult


def _class_figure(results: Sequence[ImageResult], name: str, top: int = 3):
    """Rows: images of one class; columns: the image with its trait mask outlined, then its top-ranked heads."""
    from matplotlib.figure import Figure

    from ..explain.figures import DPI, PANEL_INCHES, overlay

    columns = 1 + top
    figure = Figure(figsize=(PANEL_INCHES * columns, PANEL_INCHES * len(results) + 0.4), dpi=DPI, layout="constrained")
    axes = figure.subplots(len(results), columns, squeeze=False)
    figure.suptitle(f"{name}: top-ranked heads (trait mask outlined in white)", fontsize=10)
    for row, result in zip(axes, results):
        image = Image.open(result.path).convert("RGB")
        mask = load_trait_mask(Path(result.path).parents[2], result.path)
        row[0].imshow(image)
        if mask.any():
            row[0].contour(mask, levels=[0.5], colors="white", linewidths=1.2)
        verdict = {True: "hit", False: "miss", None: "no trait"}[result.trait_hit]
        row[0].set_title(f"{Path(result.path).name} ({verdict})", fontsize=8)
        for rank, axis in enumerate(row[1:], start=1):
            if rank <= len(result.ranked_heads):
                head = result.ranked_heads[rank - 1]
                axis.imshow(overlay(image, result.trait_maps[head]))
                if mask.any():
                    axis.contour(mask, levels=[0.5], colors="white", linewidths=0.8)
                axis.set_title(f"rank {rank}: head {head}", fontsize=8)
        for axis in row:
            axis.axis("off")
    return figure


def _misclassification_section(model, image_processor, results: Sequence[ImageResult], names: list[str]):
    """An explained misclassification (the most confident one), or, when there is none, the closest call."""
    from ..explain.explanation import explain_image
    from ..explain.figures import plot_class_vs_class, plot_misclassification

    wrong = [r for r in results if not r.correct]
    if wrong:
        chosen = max(wrong, key=lambda r: r.probabilities[r.predicted])
        explanation = explain_image(
            model, image_processor, Image.open(chosen.path), true_class=chosen.true_class, blur="paper"
        )
        text = (
            f"{Path(chosen.path).name}: true class <b>{names[chosen.true_class]}</b>, predicted "
            f"<b>{names[chosen.predicted]}</b> (p = {chosen.probabilities[chosen.predicted]:.3f}). The figure puts "
            "the predicted class's top traits beside the true class's heads on the same image."
        )
        return text, plot_misclassification(explanation)
    # no error to explain: show the smallest margin between the true class and the runner-up
    margins = [r.probabilities[r.true_class] - np.sort(r.probabilities)[-2] for r in results]
    chosen = results[int(np.argmin(margins))]
    runner_up = int(np.argsort(chosen.probabilities)[-2])
    explanation = explain_image(model, image_processor, Image.open(chosen.path), classes=[runner_up], blur="paper")
    text = (
        "No validation image was misclassified. The closest call is shown instead: "
        f"{Path(chosen.path).name} ({names[chosen.true_class]}, p = {chosen.probabilities[chosen.true_class]:.3f}) "
        f"against the runner-up <b>{names[runner_up]}</b> (p = {chosen.probabilities[runner_up]:.3f}): how that "
        "class's prompt sees the same image."
    )
    return text, plot_class_vs_class(explanation, explanation.requested[0])


def write_report(
    path: str | os.PathLike,
    summary: dict,
    results: Sequence[ImageResult],
    model: PromptCamForImageClassification,
    image_processor,
    images_per_class: int = 3,
) -> None:
    """A single self-contained HTML file: the numbers, per class its top traits over a few images, and a
    misclassification explained."""
    import base64
    import html

    from ..explain.figures import png_bytes

    names = [model.config.id2label[i] for i in range(model.config.num_labels)]

    def embed(figure) -> str:
        return f"<img src='data:image/png;base64,{base64.b64encode(png_bytes(figure)).decode('ascii')}'>"

    def number(value) -> str:
        return "n/a" if value is None else f"{value:.3f}"

    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>Prompt-CAM demo</title>",
        "<style>body{font-family:sans-serif;margin:2em;max-width:1200px}img{max-width:100%}"
        "td,th{padding:2px 12px;text-align:left;border-bottom:1px solid #eee}</style></head><body>",
        "<h1>Prompt-CAM demo: synthetic fine-grained birds</h1>",
        f"<p>Backbone: {html.escape(str(summary['backbone']))}, frozen; Prompt-CAM ({summary['settings']['prompt_mode']}"
        f" prompts) trained for {summary['settings']['epochs']} epochs on {summary['train_images']} images; "
        f"evaluated on {summary['validation_images']} validation images.</p><table>",
        f"<tr><th>accuracy</th><td>{number(summary['accuracy'])}</td></tr>",
        f"<tr><th>trait localisation (top-ranked head)</th><td>{number(summary['trait_localization'])}</td></tr>",
        f"<tr><th>baseline (backbone CLS attention)</th><td>{number(summary['baseline_localization'])}</td></tr>",
        f"<tr><th>chance (random peak)</th><td>{number(summary['chance_localization'])}</td></tr></table>",
        f"<p>Localisation: the fraction of correctly classified validation images whose map peak lies within "
        f"{summary['settings']['tolerance']} patch of the image's trait mask. Heads ranked with "
        f"blur={html.escape(str(summary['settings']['blur']))}, stop={html.escape(str(summary['settings']['stop']))}."
        "</p><h2>Traits per class</h2>",
    ]
    for class_index, name in enumerate(names):
        chosen = [r for r in results if r.true_class == class_index and r.correct][:images_per_class]
        trait = summary.get("traits", {}).get(name, {}).get("description", "")
        per_class = summary["per_class"].get(name, {})
        parts.append(
            f"<h3>{html.escape(name)}</h3><p>Trait: {html.escape(trait)}. Accuracy "
            f"{number(per_class.get('accuracy'))}, trait localisation {number(per_class.get('trait_localization'))}."
            "</p>"
        )
        parts.append(embed(_class_figure(chosen, name)) if chosen else "<p>No correctly classified image.</p>")
    text, figure = _misclassification_section(model, image_processor, results, names)
    parts += ["<h2>A misclassification explained</h2>", f"<p>{text}</p>", embed(figure), "</body></html>"]
    write_atomically(path, "\n".join(parts))
