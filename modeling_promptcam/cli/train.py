"""`promptcam train`: train Prompt-CAM on an image folder or a datasets dataset ([`run_training`] does the work)."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import traceback
from dataclasses import dataclass

from ..training.options import TrainOptions

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


@dataclass
class ProcessOutcome:
    """What a command's process exits with when it leaves a data-parallel run through [`distributed_exit`]; the body
    sets `exit_code` (0 unless it says otherwise)."""

    exit_code: int = 0


@contextlib.contextmanager
def distributed_exit():
    """The one way a `promptcam train` or `promptcam explain --format parquet` process leaves a data-parallel run
    (docs/training.md, "How a data-parallel run ends"). It is the process's end, so it is the command's job (a library
    caller may go on using the group). Yields a [`ProcessOutcome`] whose `exit_code` the body may set.

    - Success: [`close_process_group`] after a final barrier, then the process ends at once with the outcome's exit
      code (`os._exit`, after flushing its output and logs): everything it had to do is done, and the interpreter's
      teardown (joining gloo's and the autograd engine's threads, finalizers, C++ static destructors) is where a
      finished process could hang with no way for the launcher to tell.
    - Failure: [`close_process_group`] without the barrier (the peers may never get there), and the error goes on to
      the one error path (`error: ...`, exit 1); the launcher then stops the other processes.
    Outside a data-parallel run it changes nothing.
    """
    from ..training.trainer import close_process_group

    outcome = ProcessOutcome()
    try:
        yield outcome
    except BaseException as error:
        # the traceback's frames hold the Trainer (and through it the process group): let them go, keep the lines
        traceback.clear_frames(error.__traceback__)
        close_process_group(wait_for_peers=False)
        raise
    if close_process_group(wait_for_peers=True):
        sys.stdout.flush()
        sys.stderr.flush()
        logging.shutdown()
        os._exit(outcome.exit_code)
