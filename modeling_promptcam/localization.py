"""Deprecated import path: `modeling_promptcam.localization` moved to `modeling_promptcam.evaluation.localization` (see docs/architecture.md).

Kept so that code written against the old flat layout still runs; import from the new path instead."""

import warnings

from .evaluation import chance_level, cls_attention_maps, map_peak, peak_hits_mask

warnings.warn(
    "modeling_promptcam.localization is deprecated; import from modeling_promptcam.evaluation.localization instead.",
    DeprecationWarning,
    stacklevel=2,
)

__all__ = ["chance_level", "cls_attention_maps", "map_peak", "peak_hits_mask"]
