"""`promptcam demo` / `make demo`: real pretrained weights, the synthetic trait dataset, training on the CPU, trait
localisation against ground truth, and a report.
"""

from .budget import BudgetTooSmall, Schedule, plan_schedule
from .evaluation import ImageResult, evaluate_traits, per_class_summary, summarize
from .options import DemoOptions
from .report import write_report
from .run import (
    REPORT_FILE,
    SUMMARY_FILE,
    choose_schedule,
    cpu_bf16_arguments,
    prepare_backbone,
    prepare_dataset,
    run_demo,
)

__all__ = [
    "BudgetTooSmall",
    "DemoOptions",
    "ImageResult",
    "REPORT_FILE",
    "SUMMARY_FILE",
    "Schedule",
    "choose_schedule",
    "cpu_bf16_arguments",
    "evaluate_traits",
    "per_class_summary",
    "plan_schedule",
    "prepare_backbone",
    "prepare_dataset",
    "run_demo",
    "summarize",
    "write_report",
]
