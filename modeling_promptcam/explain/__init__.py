"""Explaining images: per-image explanations gathered from the model's public outputs, figures (matplotlib, the `viz`
extra), the one HTML report writer, the loop behind `promptcam explain` for image files ([`explain_images`]), and
whole-dataset explanation into resumable Parquet shards, data-parallel under Accelerate ([`explain_dataset`]).
"""

from .dataset import ExplainDatasetResult, explain_dataset
from .explanation import ClassView, Explanation, explain_image, resolve_class
from .options import ExplainOptions, ExplainUsageError
from .run import ExplainResult, explain_images
from .shards import ShardsOfAnotherRunError

__all__ = [
    "ClassView",
    "ExplainDatasetResult",
    "ExplainOptions",
    "ExplainResult",
    "ExplainUsageError",
    "Explanation",
    "ShardsOfAnotherRunError",
    "explain_dataset",
    "explain_image",
    "explain_images",
    "resolve_class",
]
