"""Explaining images: per-image explanations gathered from the model's public outputs, figures (matplotlib, the `viz`
extra), the one HTML report writer, and the loop behind `promptcam explain`.
"""

from .explanation import ClassView, Explanation, explain_image, resolve_class

__all__ = ["ClassView", "Explanation", "explain_image", "resolve_class"]
