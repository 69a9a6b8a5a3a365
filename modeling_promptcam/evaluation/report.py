"""What `promptcam faithfulness` reports: the per-method means of its per-image records, and the Table-1-style table
printed beside the paper's numbers."""

from __future__ import annotations

import numpy as np

# the paper's Table 1 (CUB-200, DINO ViT-B/16): insertion, deletion
PAPER_TABLE_1 = {
    "prompt-cam": (0.61, 0.09),
    "grad-cam": (0.52, 0.17),
    "layer-cam": (0.54, 0.13),
    "eigen-cam": (0.56, 0.22),
    "attention-rollout": (0.55, 0.27),
}


def _mean(values: list) -> float | None:
    return float(np.mean(values)) if values else None


def accuracies(records: list[dict]) -> dict:
    """Each classifier's accuracy on the evaluated images (`"prompt-cam"`, and `"linear-probe"` when one ran)."""
    accuracy = {"prompt-cam": _mean([r["prompt_cam_predicted"] == r["true"] for r in records])}
    if records and "probe_predicted" in records[0]:
        accuracy["linear-probe"] = _mean([r["probe_predicted"] == r["true"] for r in records])
    return accuracy


def summarize_methods(records: list[dict], methods: tuple[str, ...]) -> dict:
    """Per method, the means of its per-image values (insertion, deletion, p(target); pointing game and energy over
    the images with a mask), the image counts, and for Prompt-CAM the mean number of heads averaged."""
    summaries = {}
    for method in methods:
        values = [r["methods"][method] for r in records]
        localised = [v for v in values if "pointing_game" in v]
        summary = {
            "insertion": _mean([v["insertion"] for v in values]),
            "deletion": _mean([v["deletion"] for v in values]),
            "probability": _mean([v["probability"] for v in values]),
            "pointing_game": _mean([float(v["pointing_game"]) for v in localised]),
            "energy": _mean([v["energy"] for v in localised]),
            "images": len(values),
            "localisation_images": len(localised),
        }
        if values and "heads" in values[0]:
            summary["mean_heads"] = _mean([len(v["heads"]) for v in values])
        summaries[method] = summary
    return summaries


def _number(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def format_table(result: dict, markdown: bool = False) -> str:
    """The Table-1-style comparison: one row per method (insertion, deletion, pointing game, energy), then the image
    count and settings. `markdown=True` gives a Markdown table with the paper's Table 1 values beside ours."""
    methods = result["methods"]
    settings = result["settings"]
    lines = []
    if markdown:
        lines.append(
            "| method | insertion ↑ | deletion ↓ | pointing game ↑ | energy ↑ | p(target) | paper insertion | "
            "paper deletion |"
        )
        lines.append("|---|---|---|---|---|---|---|---|")
        for name, summary in methods.items():
            paper = PAPER_TABLE_1.get(name, (None, None))
            lines.append(
                f"| {name} | {_number(summary['insertion'])} | {_number(summary['deletion'])} | "
                f"{_number(summary['pointing_game'], 2)} | {_number(summary['energy'])} | "
                f"{_number(summary['probability'])} | {_number(paper[0], 2)} | {_number(paper[1], 2)} |"
            )
    else:
        lines.append(
            f"{'method':<20}{'insertion ↑':>13}{'deletion ↓':>13}{'pointing ↑':>13}{'energy ↑':>11}{'p(target)':>12}"
        )
        for name, summary in methods.items():
            lines.append(
                f"{name:<20}{_number(summary['insertion']):>13}{_number(summary['deletion']):>13}"
                f"{_number(summary['pointing_game'], 2):>13}{_number(summary['energy']):>11}"
                f"{_number(summary['probability']):>12}"
            )
    accuracy = ", ".join(f"{k} {_number(v)}" for k, v in result["accuracy"].items())
    lines.append("")
    lines.append(
        f"{result['images']} images from {settings['data']}/{settings['split']} "
        f"({result['localisation_images']} with masks); accuracy on them: {accuracy}."
    )
    heads = settings["heads"]
    mean_heads = methods.get("prompt-cam", {}).get("mean_heads")
    if mean_heads is not None:
        heads = f"{heads}, {mean_heads:.1f} on average"
    lines.append(
        f"Target: {settings['target_rule']}. Scored as {settings['scoring']}; p(target) is that classifier's mean "
        "probability of the target on the whole image."
    )
    lines.append(
        f"{settings['steps']} steps; insertion from a Gaussian blur (kernel "
        f"{settings['blur_kernel_size']}, sigma {settings['blur_sigma']}); deletion to {settings['deletion_value']} "
        f"(normalised); Prompt-CAM heads: {heads} (blur {settings['blur']}, stop {settings['stop']}); "
        f"backbone: {settings['backbone']}; seed {settings['seed']}."
    )
    probe = result.get("probe")
    if probe and "train_accuracy" in probe:
        lines.append(
            f"Linear probe: {probe['train_images']} train images, {probe['epochs']} epochs, lr {probe['lr']}, "
            f"train accuracy {probe['train_accuracy']:.3f}."
        )
    return "\n".join(lines)


__all__ = ["PAPER_TABLE_1", "accuracies", "format_table", "summarize_methods"]
