"""`promptcam explain`: trait-map figures and an HTML report for images ([`explain_images`]), or a Parquet dataset of
explanations for a whole image folder or dataset ([`explain_dataset`])."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from ..explain.options import ExplainOptions, ExplainUsageError
from ..explain.shards import DATA_DIR
from .errors import UsageError, report_error

if TYPE_CHECKING:
    from ..explain.dataset import ExplainDatasetResult

NAME = "explain"
HELP = "trait-map figures and an HTML report for images, or a Parquet dataset of explanations for a whole dataset"
DESCRIPTION = (
    "Classify images with a Prompt-CAM model. With IMAGE files (--format html, the default): write, per image, the "
    "predicted class's top traits, all its heads, the true-vs-predicted view when an image's parent folder names "
    "another class (imagefolder layout), and how each --classes class's prompt sees it; plus report.html with "
    "everything embedded. With --data-dir or --dataset (--format parquet): stream the images in batches and write a "
    "datasets-loadable Parquet dataset (top-k classes, the predicted and true classes' head rankings, top traits and "
    "float16 trait maps) in shards; run it again to resume an interrupted run; data-parallel under 'accelerate "
    "launch -m modeling_promptcam explain ...' or 'torchrun --nproc_per_node N -m modeling_promptcam explain ...'. "
    "Exit code 1 if any image or class name could not be used (the others are still processed)."
)
OPTIONS = (ExplainOptions,)


def run(options: ExplainOptions) -> int:
    try:
        options.check_combination()
    except ExplainUsageError as error:
        raise UsageError(str(error)) from None
    if options.output_format == "parquet":
        return _run_parquet(options)
    from ..explain.run import explain_images

    result = explain_images(options)
    for message in result.errors:
        report_error(message)
    print(
        f"Explained {len(result.explained)} of {result.images} image(s); figures and {result.report} in "
        f"{result.output_dir}."
    )
    return 0 if result.ok else 1


def _run_parquet(options: ExplainOptions) -> int:
    from ..explain.dataset import explain_dataset, process_state
    from .distributed import distributed_exit

    with distributed_exit() as outcome:
        result = explain_dataset(options)
        outcome.exit_code = 0 if result.ok else 1
        if process_state().is_main_process:  # the main process reports the whole run
            _report_parquet(result)
    return outcome.exit_code


def _report_parquet(result: ExplainDatasetResult) -> None:
    for message in result.errors:
        report_error(message)
    resumed = f", {result.resumed} of them written by an earlier run" if result.resumed else ""
    shared = f" by {result.world_size} processes" if result.world_size > 1 else ""
    print(
        f"Explained {result.images - len(result.failures)} of {result.images} image(s) into {result.shards} Parquet "
        f"shard(s) in {result.output_dir}{shared}{resumed}; load with datasets.load_dataset('parquet', "
        f"data_dir={os.path.join(result.output_dir, DATA_DIR)!r}, split='train')."
    )
