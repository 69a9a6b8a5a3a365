"""Explaining images: per-image explanations gathered from the model's public outputs, figures (matplotlib, the `viz`
extra), the one HTML report writer, and the loop behind `promptcam explain` ([`explain_images`]).
"""

from .explanation import ClassView, Explanation, explain_image, resolve_class
from .options import ExplainOptions
from .run import ExplainResult, explain_images

__all__ = [
    "ClassView",
    "ExplainOptions",
    "ExplainResult",
    "Explanation",
    "explain_image",
    "explain_images",
    "resolve_class",
]
