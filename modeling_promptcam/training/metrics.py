"""The validation metrics `Trainer` reports: top-1, top-5 and mean per-class accuracy, computed by the package's own
`evaluate` module (`metric_modules/classification_accuracy`), loaded from its folder inside the package: no Hub
access, so it works offline (`HF_HUB_OFFLINE=1`) and on machines without internet."""

from __future__ import annotations

import os
import uuid

import numpy as np

from ..extras import require

# the folders `evaluate.load` reads; each holds `<folder name>.py`
METRIC_MODULES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "metric_modules")
CLASSIFICATION_ACCURACY_PATH = os.path.join(METRIC_MODULES, "classification_accuracy")
TOP_K = 5  # the paper's fine-grained benchmarks report top-1 and top-5


def load_metric_module(path: str):
    """`evaluate.load` of a module folder shipped with the package, kept in memory: no cache files on disk, so that
    the processes of a data-parallel run (each computes the metrics of the gathered predictions) never share one."""
    evaluate = require("evaluate", "train", "The validation metrics")
    return evaluate.load(path, keep_in_memory=True, experiment_id=uuid.uuid4().hex)


class ClassificationMetrics:
    """`compute_metrics` for `Trainer`: `{"accuracy", "top5_accuracy", "mean_per_class_accuracy"}` of the
    validation logits `(N, C)` against the labels `(N,)`. `accuracy` (top-1) is the metric the best checkpoint is
    chosen by (`eval_accuracy`). With fewer than 5 classes top-5 counts every class (k = min(5, C))."""

    def __init__(self, top_k: int = TOP_K):
        self.top_k = top_k
        # the keys each call returns (Trainer reports them prefixed with "eval_")
        self.names = ("accuracy", f"top{top_k}_accuracy", "mean_per_class_accuracy")
        self.metric = load_metric_module(CLASSIFICATION_ACCURACY_PATH)

    def __call__(self, eval_prediction) -> dict[str, float]:
        logits, labels = eval_prediction.predictions, eval_prediction.label_ids
        logits = logits[0] if isinstance(logits, tuple) else logits
        if np.ndim(labels) != 1:
            raise ValueError(
                f"ClassificationMetrics scores single-label runs: label_ids must be class indices (N,), got shape "
                f"{np.shape(labels)} (multi-hot targets?). For problem_type='multi_label_classification' pass a "
                "compute_metrics of your own, e.g. evaluate's multi-label f1 on sigmoid(logits) > 0.5."
            )
        return self.metric.compute(
            predictions=np.asarray(logits, dtype=np.float32), references=np.asarray(labels), top_k=self.top_k
        )


def accuracy_metric(eval_prediction) -> dict[str, float]:
    """Top-1, top-5 and mean per-class accuracy of a `Trainer` evaluation (see [`ClassificationMetrics`]); loads the
    module on each call; `run_training` keeps one [`ClassificationMetrics`] for the whole run."""
    return ClassificationMetrics()(eval_prediction)


__all__ = [
    "CLASSIFICATION_ACCURACY_PATH",
    "METRIC_MODULES",
    "ClassificationMetrics",
    "accuracy_metric",
    "load_metric_module",
]
