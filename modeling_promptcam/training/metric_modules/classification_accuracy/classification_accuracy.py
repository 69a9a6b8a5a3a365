"""Top-1, top-k and mean per-class accuracy of classifier logits: an `evaluate` module.

It ships inside modeling-promptcam and loads from its folder, offline::

    import evaluate
    from modeling_promptcam.training import CLASSIFICATION_ACCURACY_PATH

    metric = evaluate.load(CLASSIFICATION_ACCURACY_PATH)
    metric.compute(predictions=logits, references=labels, top_k=5)
    # {"accuracy": ..., "top5_accuracy": ..., "mean_per_class_accuracy": ...}

`evaluate` copies this file into its module cache and imports it on its own, so it imports nothing from the package.
"""

import datasets
import evaluate
import numpy as np

_DESCRIPTION = """
Accuracy of a classifier from its logits (or any per-class scores), one row per image:

- accuracy: the share of images whose highest-scoring class is the label (top-1);
- top{k}_accuracy: the share whose label is among the k highest-scoring classes (k = min(top_k, number of classes);
  the paper's fine-grained benchmarks report top-1 and top-5);
- mean_per_class_accuracy: the top-1 accuracy of each class that has images, averaged over those classes (every
  class weighs the same however many images it has; the usual figure for long-tailed sets).

Ties among scores are broken towards the lower class index (numpy's stable sort), so a result does not depend on
the batch an image was in.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `list` of `float`, shape (N, C)): per-class scores (logits or probabilities) per image.
    references (`list` of `int`, shape (N,)): the class index of each image, in [0, C).
    top_k (`int`, defaults to 5): the k of the top-k accuracy (capped at C).
Returns:
    accuracy, top{k}_accuracy, mean_per_class_accuracy: floats in [0, 1].
Example:
    >>> metric = evaluate.load(path)
    >>> metric.compute(predictions=[[0.1, 0.9, 0.0], [0.8, 0.1, 0.1]], references=[1, 2], top_k=2)
    {'accuracy': 0.5, 'top2_accuracy': 0.5, 'mean_per_class_accuracy': 0.5}
"""

_CITATION = ""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class ClassificationAccuracy(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Sequence(datasets.Value("float32")), "references": datasets.Value("int64")}
            ),
        )

    def _compute(self, predictions, references, top_k: int = 5) -> dict:
        scores = np.asarray(predictions, dtype=np.float32)
        labels = np.asarray(references, dtype=np.int64)
        if scores.ndim != 2 or scores.shape[0] != labels.shape[0]:
            raise ValueError(
                f"predictions must be (N, C) scores with one row per reference, got {scores.shape} for "
                f"{labels.shape[0]} references (every row needs the same number of classes)."
            )
        num_classes = scores.shape[1]
        if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
            raise ValueError(
                f"references must be class indices in [0, {num_classes}), got [{labels.min()}, {labels.max()}]."
            )
        if not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1:
            raise ValueError(f"top_k must be a positive integer, got {top_k!r}.")
        # classes by descending score, ties towards the lower index (a stable sort of the negated scores)
        ranking = np.argsort(-scores, axis=1, kind="stable")
        correct = ranking[:, 0] == labels
        in_top_k = (ranking[:, : min(top_k, num_classes)] == labels[:, None]).any(axis=1)
        present = np.unique(labels)
        per_class = [correct[labels == label].mean() for label in present]
        return {
            "accuracy": float(correct.mean()) if labels.size else float("nan"),
            f"top{top_k}_accuracy": float(in_top_k.mean()) if labels.size else float("nan"),
            "mean_per_class_accuracy": float(np.mean(per_class)) if per_class else float("nan"),
        }
