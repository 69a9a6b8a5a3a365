"""How `promptcam demo` fits its training into `--time-budget` minutes: [`plan_schedule`].

The demo's recipe (`--epochs` epochs of AdamW with a linear warm-up and a cosine decay) reaches its targets at
224 px on a CPU that trains in bf16, but the same steps take about three times longer on a CPU that trains in
float32. So the demo times a training step on the machine it runs on and chooses, in this order:

1. the largest image side of the ladder at which all the recipe's steps fit the budget; each side has fewer
   patches (DINOv2-S/14: 224 px = 16 x 16 patches, 168 px = 12 x 12, 140 px = 10 x 10) and a step costs about
   what its tokens cost;
2. where none does, the side with the fastest step, and as many steps as fit there: the recipe's schedule
   (warm-up, cosine decay) compressed to those steps, so the learning rate still ends at its floor;
3. where not even one epoch fits, nothing: [`BudgetTooSmall`] says the smallest budget that would do.

The ladder stops at 10 x 10 patches: there the smallest synthetic trait (the eye band and the spotted throat, about
1.3% of the image) still covers more than one patch (`tests/test_demo_budget.py` draws them to check), so the
localisation measure "peak within one patch of the trait" still separates a hit from a miss.

This module is pure: it takes the step timer (image side -> seconds for one training step on one batch) and the
clock as arguments, so tests drive it with fake ones; `demo/timing.py` has the real timer.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

# patches per side the budget may go down to, largest first: 224 / 168 / 140 px at patch 14 (256 / 144 / 100 patches)
PATCH_GRIDS = (16, 12, 10)
# the share of the budget that is planned: the timed steps leave out data loading, logging and the Trainer's own work
# (a few per cent: 432 Trainer steps took 9 min on a bf16 CPU whose timed step is 1.3 s)
PLANNED_SHARE = 0.95
# the learning-rate schedule the demo trains with (a TrainingArguments `lr_scheduler_type`)
LR_SCHEDULER = "cosine_with_min_lr"


class BudgetTooSmall(ValueError):
    """The time budget cannot hold one epoch at the fastest image side; `minimum_minutes` is the smallest that can."""

    def __init__(self, message: str, minimum_minutes: float):
        super().__init__(message)
        self.minimum_minutes = minimum_minutes


@dataclass(frozen=True)
class Schedule:
    """What the demo trains for, and why: written to `summary.json` under `schedule`.

    `measured_step_seconds` maps each image side that was timed to its seconds per training step (one batch:
    forward, backward, optimizer update); `expected_training_s` is `steps` times the chosen side's step time.
    """

    time_budget_min: float | None
    image_size: int
    patch_grid: int
    patches: int
    steps: int
    steps_per_epoch: int
    epochs: float
    warmup_steps: int
    lr_scheduler: str
    learning_rate: float
    min_learning_rate: float
    bf16: bool
    step_seconds: float | None
    expected_training_s: float | None
    timing_s: float
    reason: str
    measured_step_seconds: dict[int, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        values = asdict(self)
        values["measured_step_seconds"] = {str(side): round(s, 4) for side, s in self.measured_step_seconds.items()}
        for key in ("step_seconds", "expected_training_s", "timing_s"):
            if values[key] is not None:
                values[key] = round(values[key], {"step_seconds": 4, "timing_s": 2}.get(key, 1))
        return values

    def training_arguments(self) -> dict:
        """The TrainingArguments that make `Trainer` follow this schedule."""
        return {
            "max_steps": self.steps,
            "warmup_steps": self.warmup_steps,
            "lr_scheduler_type": self.lr_scheduler,
            "lr_scheduler_kwargs": {"min_lr": self.min_learning_rate},
        }


def ladder(largest: int, patch_size: int, fixed: bool = False) -> tuple[int, ...]:
    """The image sides the budget may choose, largest first: `largest` itself, then the sides of `PATCH_GRIDS`
    below it (a whole number of patches each). `fixed` (a backbone whose position embeddings fix its side, such as
    ViT) leaves only `largest`."""
    if largest < 1 or patch_size < 1:
        raise ValueError(f"image side and patch size must be positive, got {largest} and {patch_size}.")
    if fixed:
        return (largest,)
    return (largest, *(grid * patch_size for grid in PATCH_GRIDS if grid * patch_size < largest))


def _warmup_steps(steps: int, epochs: int, warmup_epochs: int) -> int:
    # the recipe's share of warm-up, kept when the schedule is compressed (at least one step when it has any)
    return 0 if warmup_epochs == 0 else max(1, round(steps * warmup_epochs / epochs))


def _rounded_up(minutes: float) -> float:
    return math.ceil(minutes * 10 - 1e-9) / 10


def plan_schedule(
    time_budget: float,
    step_timer: Callable[[int], float],
    *,
    sizes: tuple[int, ...],
    patch_size: int,
    train_images: int,
    batch_size: int,
    epochs: int,
    warmup_epochs: int,
    learning_rate: float,
    min_learning_rate: float,
    bf16: bool,
    clock: Callable[[], float] = time.perf_counter,
) -> Schedule:
    """Choose the image side and the number of steps that fit `time_budget` minutes of training.

    Args:
        time_budget: minutes for training, the timing of the steps included (it is spent from the budget).
        step_timer: `step_timer(side)` -> seconds of one training step of `batch_size` images at `side` px, measured
            on this machine; called for the sides of `sizes` from the largest down until the recipe fits.
        sizes: the sides to choose from, largest first ([`ladder`]).
        epochs, warmup_epochs: the recipe's length (the most the demo trains) and its warm-up.
        clock: seconds, monotonic (tests pass a fake one).

    Raises [`BudgetTooSmall`] when not even one epoch fits at the fastest side; its message gives the minimum.
    """
    if time_budget <= 0:
        raise ValueError(f"time_budget must be a number of minutes > 0, got {time_budget}.")
    if not sizes or list(sizes) != sorted(sizes, reverse=True):
        raise ValueError(f"sizes must be image sides, largest first, got {sizes}.")
    started = clock()
    steps_per_epoch = math.ceil(train_images / batch_size)
    recipe_steps = epochs * steps_per_epoch
    budget_s = time_budget * 60
    measured: dict[int, float] = {}
    chosen, steps = None, recipe_steps
    for side in sizes:
        if measured and clock() - started >= budget_s:
            break  # the timing alone spent the budget: time no smaller side, refuse from what was measured
        measured[side] = float(step_timer(side))
        if measured[side] <= 0 or not math.isfinite(measured[side]):
            raise ValueError(f"the step timer gave {measured[side]} s for {side} px; it must be a positive time.")
        planned_s = PLANNED_SHARE * (budget_s - (clock() - started))
        if recipe_steps * measured[side] <= planned_s:
            chosen = side
            break
    timing_s = clock() - started
    planned_s = PLANNED_SHARE * (budget_s - timing_s)
    word = "bf16" if bf16 else "float32"
    timed = ", ".join(f"{s:.2f} s at {side} px ({(side // patch_size) ** 2} patches)" for side, s in measured.items())
    full_s = recipe_steps * measured[sizes[0]]
    if chosen is not None:
        why = (
            f"one step of {batch_size} images takes {timed} here ({word}); the recipe's {recipe_steps} steps "
            f"({epochs} epochs) fit {time_budget:g} min at {chosen} px"
        )
        if chosen != sizes[0]:
            why += f" (at {sizes[0]} px they would take {full_s / 60:.1f} min)"
    else:
        chosen = min(measured, key=lambda side: (measured[side], -side))  # the fastest; on a tie the larger
        steps = math.floor(planned_s / measured[chosen]) if planned_s > 0 else 0
        if steps < steps_per_epoch:
            epoch_s = steps_per_epoch * measured[chosen]
            minimum = _rounded_up((timing_s + epoch_s / PLANNED_SHARE) / 60)
            stopped = (
                "" if len(measured) == len(sizes) else f", which spent the budget before {sizes[len(measured)]} px"
            )
            raise BudgetTooSmall(
                f"--time-budget {time_budget:g} min is too small for one epoch: one epoch ({steps_per_epoch} steps of "
                f"{batch_size} images) at {chosen} px takes {epoch_s / 60:.1f} min on this machine ({measured[chosen]:.2f} s "
                f"a step, {word}) and timing the steps took {timing_s:.0f} s{stopped}; give --time-budget {minimum:g} "
                "or more (or fewer --train-per-class).",
                minimum,
            )
        why = (
            f"one step of {batch_size} images takes {timed} here ({word}); the recipe's {recipe_steps} steps "
            f"({epochs} epochs) would take {full_s / 60:.1f} min at {sizes[0]} px and do not fit {time_budget:g} min "
            f"at any side, so it trains at the fastest, {chosen} px, for the {steps} steps that fit "
            f"({steps / steps_per_epoch:.1f} epochs; the warm-up and the cosine decay are compressed to them)"
        )
    grid = chosen // patch_size
    return Schedule(
        time_budget_min=time_budget,
        image_size=chosen,
        patch_grid=grid,
        patches=grid * grid,
        steps=steps,
        steps_per_epoch=steps_per_epoch,
        epochs=round(steps / steps_per_epoch, 3),
        warmup_steps=_warmup_steps(steps, epochs, warmup_epochs),
        lr_scheduler=LR_SCHEDULER,
        learning_rate=learning_rate,
        min_learning_rate=min_learning_rate,
        bf16=bf16,
        step_seconds=measured[chosen],
        expected_training_s=steps * measured[chosen],
        timing_s=timing_s,
        reason=why,
        measured_step_seconds=measured,
    )


def fixed_schedule(
    *,
    image_size: int,
    patch_size: int,
    train_images: int,
    batch_size: int,
    epochs: int,
    warmup_epochs: int,
    learning_rate: float,
    min_learning_rate: float,
    bf16: bool,
) -> Schedule:
    """The schedule without a budget (`--time-budget 0`): `epochs` epochs at `image_size`, nothing timed."""
    steps_per_epoch = math.ceil(train_images / batch_size)
    steps = epochs * steps_per_epoch
    grid = image_size // patch_size
    return Schedule(
        time_budget_min=None,
        image_size=image_size,
        patch_grid=grid,
        patches=grid * grid,
        steps=steps,
        steps_per_epoch=steps_per_epoch,
        epochs=float(epochs),
        warmup_steps=_warmup_steps(steps, epochs, warmup_epochs),
        lr_scheduler=LR_SCHEDULER,
        learning_rate=learning_rate,
        min_learning_rate=min_learning_rate,
        bf16=bf16,
        step_seconds=None,
        expected_training_s=None,
        timing_s=0.0,
        reason=f"no time budget (--time-budget 0): {epochs} epochs at --image-size {image_size}",
    )


__all__ = [
    "LR_SCHEDULER",
    "PATCH_GRIDS",
    "PLANNED_SHARE",
    "BudgetTooSmall",
    "Schedule",
    "fixed_schedule",
    "ladder",
    "plan_schedule",
]
