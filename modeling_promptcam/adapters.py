"""Deprecated import path: `modeling_promptcam.adapters` moved to `modeling_promptcam.training.adapters` (see docs/architecture.md).

Kept so that code written against the old flat layout still runs; import from the new path instead."""

import warnings

from .training import load_prompt_adapter, merge_prompt_adapter, save_prompt_adapter, wrap_for_prompt_training

warnings.warn(
    "modeling_promptcam.adapters is deprecated; import from modeling_promptcam.training.adapters instead.",
    DeprecationWarning,
    stacklevel=2,
)

__all__ = ["load_prompt_adapter", "merge_prompt_adapter", "save_prompt_adapter", "wrap_for_prompt_training"]
