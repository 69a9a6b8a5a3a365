"""The demo's `report.html`: the numbers, per class its top traits over a few images with the trait mask outlined, and
a misclassification explained; written with the package's one HTML writer (`explain.report`)."""

from __future__ import annotations

import html
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..data.images import open_rgb
from ..data.masks import load_trait_mask
from ..explain.report import ReportSection, write_html_page
from ..extras import require
from ..modeling_promptcam import PromptCamForImageClassification
from .evaluation import ImageResult


def _class_figure(results: Sequence[ImageResult], name: str, top: int = 3):
    """Rows: images of one class; columns: the image with its trait mask outlined, then its top-ranked heads."""
    Figure = require("matplotlib.figure", "demo", "The demo's report").Figure
    from ..explain.figures import DPI, PANEL_INCHES, overlay

    columns = 1 + top
    figure = Figure(figsize=(PANEL_INCHES * columns, PANEL_INCHES * len(results) + 0.4), dpi=DPI, layout="constrained")
    axes = figure.subplots(len(results), columns, squeeze=False)
    figure.suptitle(f"{name}: top-ranked heads (trait mask outlined in white)", fontsize=10)
    for row, result in zip(axes, results):
        image = open_rgb(result.path)
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


def _misclassification_section(
    model,
    image_processor,
    results: Sequence[ImageResult],
    names: list[str],
    blur: str,
    stop: str | int,
):
    """An explained misclassification (the most confident one), or, when there is none, the closest call; the heads
    ranked with the demo's `blur` and `stop`, as its localisation figures are."""
    from ..explain.explanation import explain_image
    from ..explain.figures import plot_class_vs_class, plot_misclassification

    wrong = [r for r in results if not r.correct]
    if wrong:
        chosen = max(wrong, key=lambda r: r.probabilities[r.predicted])
        explanation = explain_image(
            model, image_processor, open_rgb(chosen.path), true_class=chosen.true_class, blur=blur, stop=stop
        )
        text = (
            f"{html.escape(Path(chosen.path).name)}: true class <b>{html.escape(names[chosen.true_class])}</b>, "
            f"predicted <b>{html.escape(names[chosen.predicted])}</b> (p = "
            f"{chosen.probabilities[chosen.predicted]:.3f}). The figure puts "
            "the predicted class's top traits beside the true class's heads on the same image."
        )
        return text, plot_misclassification(explanation)
    # no error to explain: show the smallest margin between the true class and the runner-up
    margins = [r.probabilities[r.true_class] - np.sort(r.probabilities)[-2] for r in results]
    chosen = results[int(np.argmin(margins))]
    runner_up = int(np.argsort(chosen.probabilities)[-2])
    explanation = explain_image(
        model, image_processor, open_rgb(chosen.path), classes=[runner_up], blur=blur, stop=stop
    )
    text = (
        "No validation image was misclassified. The closest call is shown instead: "
        f"{html.escape(Path(chosen.path).name)} ({html.escape(names[chosen.true_class])}, p = "
        f"{chosen.probabilities[chosen.true_class]:.3f}) against the runner-up <b>{html.escape(names[runner_up])}</b> "
        f"(p = {chosen.probabilities[runner_up]:.3f}): how that "
        "class's prompt sees the same image."
    )
    return text, plot_class_vs_class(explanation, explanation.requested[0])


def _training_length(summary: dict) -> str:
    """ "432 steps (18 epochs) at 224 px, time budget 11 min": the schedule the demo trained with."""
    schedule = summary.get("schedule")
    if schedule is None:  # a summary written before the time budget existed
        return f"{summary['settings']['epochs']} epochs"
    budget = schedule["time_budget_min"]
    return f"{schedule['steps']} steps ({schedule['epochs']:g} epochs) at {schedule['image_size']} px, " + (
        "no time budget" if budget is None else f"time budget {budget:g} min"
    )


def write_report(
    path: str | os.PathLike,
    summary: dict,
    results: Sequence[ImageResult],
    model: PromptCamForImageClassification,
    image_processor,
    images_per_class: int = 3,
) -> None:
    """A single self-contained HTML file: the numbers, per class its top traits over a few images, and a
    misclassification explained (its heads ranked with the demo's blur and stop rule, `summary["settings"]`)."""
    from ..explain.figures import png_bytes

    names = [model.config.id2label[i] for i in range(model.config.num_labels)]
    settings = summary["settings"]

    def number(value) -> str:
        return "n/a" if value is None else f"{value:.3f}"

    sections = [
        ReportSection(
            paragraphs=[
                f"Backbone: {html.escape(str(summary['backbone']))}, frozen; Prompt-CAM ({settings['prompt_mode']} "
                f"prompts) trained for {_training_length(summary)} on {summary['train_images']} images; evaluated on "
                f"{summary['validation_images']} validation images."
            ],
            table=[
                ("accuracy", number(summary["accuracy"])),
                ("trait localisation (top-ranked head)", number(summary["trait_localization"])),
                ("baseline (backbone CLS attention)", number(summary["baseline_localization"])),
                ("chance (random peak)", number(summary["chance_localization"])),
            ],
        ),
        ReportSection(
            paragraphs=[
                "Localisation: the fraction of correctly classified validation images whose map peak lies within "
                f"{settings['tolerance']} patch of the image's trait mask. Heads ranked with "
                f"blur={html.escape(str(settings['blur']))}, stop={html.escape(str(settings['stop']))}."
            ]
        ),
        ReportSection(heading="Traits per class"),
    ]
    for class_index, name in enumerate(names):
        chosen = [r for r in results if r.true_class == class_index and r.correct][:images_per_class]
        trait = summary.get("traits", {}).get(name, {}).get("description", "")
        per_class = summary["per_class"].get(name, {})
        text = (
            f"Trait: {html.escape(trait)}. Accuracy {number(per_class.get('accuracy'))}, trait localisation "
            f"{number(per_class.get('trait_localization'))}."
        )
        sections.append(
            ReportSection(
                heading=name,
                level=3,
                paragraphs=[text] if chosen else [text, "No correctly classified image."],
                figures=[("", png_bytes(_class_figure(chosen, name)))] if chosen else [],
            )
        )
    text, figure = _misclassification_section(
        model, image_processor, results, names, blur=settings["blur"], stop=settings["stop"]
    )
    sections.append(
        ReportSection(heading="A misclassification explained", paragraphs=[text], figures=[("", png_bytes(figure))])
    )
    write_html_page(path, "Prompt-CAM demo: synthetic fine-grained birds", sections)
