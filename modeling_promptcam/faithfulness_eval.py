"""Deprecated import path: `modeling_promptcam.faithfulness_eval` moved to `modeling_promptcam.evaluation.faithfulness` (see docs/architecture.md).

Kept so that code written against the old flat layout still runs; import from the new path instead."""

import warnings

from .evaluation import (
    METHODS,
    PAPER_TABLE_1,
    PROBE_FOLDER,
    RESULT_FILE,
    SCORERS,
    TARGETS,
    FaithfulnessOptions,
    format_table,
    run_faithfulness,
)

warnings.warn(
    "modeling_promptcam.faithfulness_eval is deprecated; import from modeling_promptcam.evaluation instead.",
    DeprecationWarning,
    stacklevel=2,
)

__all__ = [
    "FaithfulnessOptions",
    "METHODS",
    "PAPER_TABLE_1",
    "PROBE_FOLDER",
    "RESULT_FILE",
    "SCORERS",
    "TARGETS",
    "format_table",
    "run_faithfulness",
]
