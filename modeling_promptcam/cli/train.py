"""`promptcam train`: train Prompt-CAM on an image folder or a datasets dataset ([`run_training`] does the work)."""

from __future__ import annotations

from ..training.options import TrainOptions
from .distributed import distributed_exit

NAME = "train"
HELP = "train Prompt-CAM on an image folder"
DESCRIPTION = (
    "Train Prompt-CAM (frozen backbone, learned class prompts) with the paper's recipe on DATA/train/<class>/* with "
    "evaluation on DATA/val/<class>/* each epoch; the best epoch on validation is kept. Values not given come from "
    "--preset (see hub_configs/) or the paper's default recipe. Data-parallel: 'accelerate launch -m "
    "modeling_promptcam train ...' or 'torchrun --nproc_per_node N -m modeling_promptcam train ...'. Writes "
    "checkpoints to OUTPUT_DIR and the final model to OUTPUT_DIR/final. With --taxonomy FILE: one prompt-only model "
    "per taxonomy node (or level, --taxonomy-mode level) on one shared backbone, in OUTPUT_DIR/final with "
    "taxonomy.json (docs/taxonomy.md)."
)
OPTIONS = (TrainOptions,)


def run(options: TrainOptions) -> int:
    from ..training.trainer import run_training

    if options.trains_taxonomy:
        return _run_taxonomy(options)
    with distributed_exit():
        summary = run_training(options)
        if "final_dir" in summary:  # the main process of a data-parallel run
            accuracy = summary["validation_accuracy"]
            shown = f"{accuracy:.4f}" if accuracy is not None else "n/a (no validation split)"
            print(f"Validation accuracy {shown}; model in {summary['final_dir']}")
    return 0


def _run_taxonomy(options: TrainOptions) -> int:
    from ..taxonomy.training import run_taxonomy_training

    with distributed_exit():
        summary = run_taxonomy_training(options)
        for message in summary["skipped"]:
            print(f"skipped: {message}")
        accuracy = summary["validation"].get("top_down") if summary["validation"] else None
        shown = ", ".join(f"{level} {value:.4f}" for level, value in accuracy.items()) if accuracy else "n/a"
        print(f"Top-down validation accuracy per level: {shown}; taxonomy in {summary['final_dir']}")
    return 0
