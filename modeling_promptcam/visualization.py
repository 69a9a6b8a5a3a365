"""Deprecated import path: `modeling_promptcam.visualization` moved to `modeling_promptcam.explain.figures` (figures) and
`modeling_promptcam.explain.report` (the HTML report) (see docs/architecture.md).

Kept so that code written against the old flat layout still runs; import from the new path instead."""

import warnings

from .explain.figures import (
    DPI,
    PANEL_INCHES,
    figures_for,
    overlay,
    plot_class_vs_class,
    plot_comparison,
    plot_head_grid,
    plot_misclassification,
    plot_top_traits,
    plot_trait_map,
    png_bytes,
    save_png,
    upsample_map,
)
from .explain.report import write_html_report

warnings.warn(
    "modeling_promptcam.visualization is deprecated; import from modeling_promptcam.explain.figures (and .report) "
    "instead.",
    DeprecationWarning,
    stacklevel=2,
)

__all__ = [
    "DPI",
    "PANEL_INCHES",
    "figures_for",
    "overlay",
    "plot_class_vs_class",
    "plot_comparison",
    "plot_head_grid",
    "plot_misclassification",
    "plot_top_traits",
    "plot_trait_map",
    "png_bytes",
    "save_png",
    "upsample_map",
    "write_html_report",
]
