"""`TrainerCallback`s that wire Prompt-CAM into `Trainer`, and one for watching a run.

Training changes nothing around the `Trainer` calls by hand: what must hold while `Trainer` runs is set by a callback
when training begins and undone when it ends, so any code that drives the same `Trainer` (a notebook, `run_training`,
a user's own loop) gets the same behaviour.
"""

from __future__ import annotations

import math

from transformers import TrainerCallback

from ..data.transforms import SAMPLE_ID


def prompt_cam_model(model):
    """The [`PromptCamForImageClassification`] inside what `Trainer` holds (itself, or the base of a `PeftModel`)."""
    return model.get_base_model() if hasattr(model, "peft_config") else model


class TrainerCheckpointFormat(TrainerCallback):
    """Trainer checkpoints in the key layout `Trainer` reloads, the final folder in the portable one.

    transformers 5 writes a model's *original* key layout by default (`save_original_format`), but `Trainer` reloads
    its own checkpoints (best model, `--resume`) without the reverse conversion. While training runs, the model saves
    in its in-memory layout; when training ends, the portable layout is restored for the final `save_pretrained`.
    """

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        prompt_cam_model(model).save_in_original_format = False

    def on_train_end(self, args, state, control, model=None, **kwargs):
        prompt_cam_model(model).save_in_original_format = True


class AugmentationEpoch(TrainerCallback):
    """Tells a [`TrainTransform`] which epoch begins, so its crops and flips are those of (seed, epoch, sample id).

    `state.epoch` is the number of epochs done when an epoch begins (a fraction when a run resumes in the middle of
    one: 1.5 is still epoch 1), so its floor is the 0-based epoch about to run, in a fresh run and after `--resume`.
    """

    def __init__(self, transform):
        self.transform = transform

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.transform.set_epoch(math.floor(state.epoch or 0))


class RunTrainingLoss(TrainerCallback):
    """The mean training loss over every optimizer step of the run, a resumed run's earlier part included.

    `Trainer.train()` reports the mean over the steps of its own call only (after `--resume`, the part after the
    checkpoint). The whole run's losses are in the trainer state's `log_history`, which checkpoints carry: each `loss`
    entry is the mean over the steps since the previous one. So that a checkpoint's log covers every step up to it,
    this callback asks for a log entry whenever a checkpoint is about to be written; the steps after the last entry
    are recovered from the call's own mean. After training, `train_loss` holds the result.
    """

    def __init__(self):
        self.train_loss: float | None = None
        self._first_step = 0

    def on_train_begin(self, args, state, control, **kwargs):
        self._first_step = state.global_step

    def on_step_end(self, args, state, control, **kwargs):
        if control.should_save:  # log the loss since the last entry into the state about to be saved
            control.should_log = True

    on_epoch_end = on_step_end

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "train_loss" in logs:  # Trainer's last log of train(): this call's mean loss
            self.train_loss = run_mean_loss(state.log_history, logs["train_loss"], self._first_step, state.global_step)


def run_mean_loss(log_history: list[dict], call_loss: float, first_step: int, last_step: int) -> float:
    """The mean loss per step over a run, from its `log_history` and the mean loss `call_loss` of the steps
    `first_step + 1 .. last_step` of the latest `train()` call.

    Each `loss` entry of the history is the mean over the steps since the entry before it. Steps of an earlier call
    whose loss was never logged (a checkpoint written without a log entry just before it) are left out of the mean.
    """
    total, steps, logged_until, call_logged = 0.0, 0, 0, 0.0
    for entry in log_history:
        if "loss" not in entry or "step" not in entry:
            continue
        step = int(entry["step"])
        # this call's first entry covers the steps since it began: unlogged steps before the resume stay unknown
        interval = step - (max(logged_until, first_step) if step > first_step else logged_until)
        total += entry["loss"] * interval
        steps += interval
        if step > first_step:
            call_logged += entry["loss"] * interval
        logged_until = step
    tail = last_step - max(logged_until, first_step)  # this call's steps after its last loss entry
    if tail > 0:
        total += call_loss * (last_step - first_step) - call_logged
        steps += tail
    return total / steps if steps else call_loss


class CollationObserver(TrainerCallback):
    """A callback that also sees every training batch as it is collated: `run_training` hands the callbacks of this
    type to the [`PromptCamCollator`], which calls `on_batch_collated(examples)` with the examples (dicts with
    `pixel_values`, `labels` and `sample_id`) before stacking them.

    The collator runs where the batches are built: in this process with `num_workers=0`, in the data-loading worker
    processes otherwise (there the observer works on its own copy, so use `num_workers=0` to watch batches).
    """

    def on_batch_collated(self, examples: list[dict]) -> None:
        raise NotImplementedError


class SampleIdRecorder(CollationObserver):
    """Records, in this process, the `sample_id` of every training example in the order its batches were built: how
    data parallelism split each epoch. The ids are those of `load_image_folder` / `load_saved_dataset` (train rows
    first, then validation)."""

    def __init__(self):
        self.seen_sample_ids: list[int] = []

    def on_batch_collated(self, examples: list[dict]) -> None:
        self.seen_sample_ids += [int(example[SAMPLE_ID]) for example in examples if SAMPLE_ID in example]


__all__ = [
    "AugmentationEpoch",
    "CollationObserver",
    "RunTrainingLoss",
    "SampleIdRecorder",
    "TrainerCheckpointFormat",
    "prompt_cam_model",
    "run_mean_loss",
]
