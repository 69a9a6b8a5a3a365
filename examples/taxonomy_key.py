"""Taxonomy keys end to end: draw the synthetic taxonomy, train one prompt-only Prompt-CAM per node on one frozen
backbone, predict from the root down, and write the key of a few images and of one class (docs/taxonomy.md).

    python examples/taxonomy_key.py --backbone facebook/dinov2-small --out runs/taxonomy [--mode level]

The same as `promptcam synthetic --taxonomy`, `promptcam train --taxonomy` and `promptcam taxonomy-key`, written out
to read and adapt (with your own image folder, write a species,genus,family table and skip the first step).
"""

import argparse
import os

from modeling_promptcam import PromptCamTaxonomy
from modeling_promptcam.data.images import open_rgb
from modeling_promptcam.data.synthetic import TAXONOMY_FILE, generate_taxonomy_dataset
from modeling_promptcam.explain.figures import save_png
from modeling_promptcam.taxonomy import run_taxonomy_training
from modeling_promptcam.taxonomy.key import class_key, plot_class_key, plot_taxonomy_key
from modeling_promptcam.training import TrainOptions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", required=True, help="a DINOv2 / ViT checkpoint (folder or Hub id)")
    parser.add_argument("--out", required=True, help="working folder")
    parser.add_argument("--mode", default="node", choices=("node", "level"))
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--train-per-class", type=int, default=32)
    args = parser.parse_args()

    # 1. the data: an image folder (train/<species>/, val/<species>/) and its taxonomy table
    data = os.path.join(args.out, "data")
    if not os.path.isfile(os.path.join(data, TAXONOMY_FILE)):
        generate_taxonomy_dataset(data, train_per_class=args.train_per_class, val_per_class=8)

    # 2. one model per node (or level), each trained by the ordinary training loop on its relabelled images
    summary = run_taxonomy_training(
        TrainOptions(
            backbone=args.backbone,
            data_dir=data,
            output_dir=os.path.join(args.out, "run"),
            epochs=args.epochs,
            warmup_epochs=1,
            learning_rate=0.003,
            overwrite_output_dir=True,
            taxonomy=os.path.join(data, TAXONOMY_FILE),
            taxonomy_mode=args.mode,
        )
    )
    print("skipped:", summary["skipped"])
    print("validation accuracy per level:", summary["validation"])

    # 3. predict from the root down: {level: (group, path probability)}
    taxonomy = PromptCamTaxonomy.from_pretrained(summary["final_dir"])
    species = taxonomy.taxonomy.classes[0]
    folder = os.path.join(data, "val", species)
    images = [open_rgb(os.path.join(folder, name)) for name in sorted(os.listdir(folder))]
    for prediction in taxonomy.predict(images[:3]):
        print(dict(prediction))

    # 4. the key of an image (one row per level) and of a class (the heads that recur over its images)
    keys = os.path.join(args.out, "keys")
    os.makedirs(keys, exist_ok=True)
    key = taxonomy.explain(images[0])
    for step in key.steps:
        traits = step.ranking.top_traits if step.decided else "nothing to choose"
        print(f"{step.level}: {step.chosen} (p = {step.probability:.2f}) against {step.siblings}: heads {traits}")
    save_png(plot_taxonomy_key(key), os.path.join(keys, "image_key.png"))
    per_class = class_key(taxonomy, images, species)
    for level in per_class.levels:
        print(f"{species} at {level.level}: recurring heads {level.recurring}")
    save_png(plot_class_key(per_class), os.path.join(keys, f"class_key_{species}.png"))


if __name__ == "__main__":
    main()
