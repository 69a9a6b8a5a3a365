"""`TrainerCallback`s that wire Prompt-CAM into `Trainer`, and one for watching a run.

Training changes nothing around the `Trainer` calls by hand: what must hold while `Trainer` runs is set by a callback
when training begins and undone when it ends, so any code that drives the same `Trainer` (a notebook, `run_training`,
a user's own loop) gets the same behaviour.
"""

from __future__ import annotations

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


__all__ = ["CollationObserver", "SampleIdRecorder", "TrainerCheckpointFormat", "prompt_cam_model"]
