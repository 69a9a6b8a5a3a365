"""Deprecated import path: `modeling_promptcam.linear_probe` moved to `modeling_promptcam.evaluation.linear_probe` (see docs/architecture.md).

Kept so that code written against the old flat layout still runs; import from the new path instead."""

import warnings

from .evaluation import (
    LinearProbeForImageClassification,
    backbone_features,
    extract_features,
    fit_linear_probe,
    load_linear_probe,
    save_linear_probe,
)

warnings.warn(
    "modeling_promptcam.linear_probe is deprecated; import from modeling_promptcam.evaluation.linear_probe instead.",
    DeprecationWarning,
    stacklevel=2,
)

__all__ = [
    "LinearProbeForImageClassification",
    "backbone_features",
    "extract_features",
    "fit_linear_probe",
    "load_linear_probe",
    "save_linear_probe",
]
