"""Train Prompt-CAM with `Trainer` (single process, or data-parallel under `accelerate launch` / `torchrun`).

`promptcam train` (and `python -m modeling_promptcam train`) call [`run_training`]; `examples/train.py` is the same
pipeline written out for reading.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil

import torch

from ..data.folders import check_image_folder
from ..data.loading import load_image_folder, load_saved_dataset
from ..data.transforms import EvalTransform, PromptCamCollator, TrainTransform, batch_transform
from ..files import write_json_atomically
from ..modeling_promptcam import promptcam_image_processor
from .backbone import build_model
from .callbacks import AugmentationEpoch, CollationObserver, RunTrainingLoss, TrainerCheckpointFormat
from .metrics import ClassificationMetrics, accuracy_metric
from .options import TrainOptions
from .prompt_init import init_agnostic_prompts_from_training_images

logger = logging.getLogger(__name__)

TRAINER_STATE = "trainer_state.json"  # the Trainer writes it last: a checkpoint without it is incomplete
SUMMARY_FILE = "training_summary.json"


def last_complete_checkpoint(output_dir: str) -> str | None:
    """The newest `checkpoint-N` folder whose trainer state was written completely (the Trainer writes it last).

    A folder without `trainer_state.json` (killed while saving) is passed over; one whose `trainer_state.json` is
    not a JSON object (truncated by a kill or a full disk) is passed over with a warning naming it, and the next
    older complete one is taken.
    """
    if not os.path.isdir(output_dir):
        return None
    steps = []
    for name in os.listdir(output_dir):
        path = os.path.join(output_dir, name)
        if (
            name.startswith("checkpoint-")
            and name[11:].isdigit()
            and os.path.isfile(os.path.join(path, TRAINER_STATE))
        ):
            steps.append((int(name[11:]), path))
    for _, path in sorted(steps, reverse=True):
        problem = _unreadable_trainer_state(os.path.join(path, TRAINER_STATE))
        if problem is None:
            return path
        logger.warning(
            "skipping %s: its %s %s (the run was probably killed while writing it); resuming from the newest "
            "complete checkpoint before it instead.",
            path,
            TRAINER_STATE,
            problem,
        )
    return None


def _unreadable_trainer_state(path: str) -> str | None:
    """Why the trainer state at `path` cannot be resumed from, or None when it is a JSON object."""
    try:
        with open(path, encoding="utf-8") as file:
            state = json.load(file)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        return f"cannot be read as JSON ({error})"
    if not isinstance(state, dict):
        return f"holds a JSON {type(state).__name__}, not the Trainer's state object"
    return None


def check_output_writable(output_dir: str) -> None:
    """Refuse an output folder that cannot be written, before any training step (else a finished run is lost).

    Creates the folder (and missing parents; an empty folder does not count as another run's) and writes and removes
    a probe file named after the process, so the processes of a data-parallel run do not meet. Raises `OSError`
    naming the folder and the fix.
    """
    probe = os.path.join(output_dir, f".promptcam-write-check-{os.getpid()}")
    try:
        os.makedirs(output_dir, exist_ok=True)
        with open(probe, "w", encoding="utf-8") as file:
            file.write("probe")
        os.remove(probe)
    except OSError as error:
        raise OSError(
            f"--output-dir {output_dir} cannot be written ({type(error).__name__}: {error.strerror or error}); "
            "choose a folder you can write to, or fix its permissions or free disk space, and start again."
        ) from None


def check_output_dir(options: TrainOptions, is_main_process: bool = True) -> str | None:
    """Refuse to mix runs: a non-empty output folder needs --resume (continue it) or --overwrite-output-dir.
    Returns the checkpoint to resume from, if any. Only the main process deletes an overwritten folder."""
    occupied = os.path.isdir(options.output_dir) and bool(os.listdir(options.output_dir))
    if options.resume:
        if is_main_process:  # a run killed while replacing final/ left the previous model beside it
            restore_final(os.path.join(options.output_dir, "final"))
        checkpoint = last_complete_checkpoint(options.output_dir)
        if checkpoint is None:
            raise ValueError(f"--resume: {options.output_dir} has no complete checkpoint to continue from.")
        return checkpoint
    if occupied and not options.overwrite_output_dir:
        raise ValueError(
            f"{options.output_dir} already holds files (another run?). Pass --resume to continue it, "
            "--overwrite-output-dir to replace it, or choose a new folder."
        )
    if occupied and options.overwrite_output_dir and is_main_process:
        shutil.rmtree(options.output_dir, ignore_errors=True)
    return None


def run_training(options: TrainOptions, callbacks: list | None = None, data: tuple | None = None) -> dict:
    """Train, evaluate each epoch, keep the best checkpoint on the validation split, write the final folder.

    Args:
        options: what to train on and how ([`TrainOptions`]).
        callbacks: further `TrainerCallback`s, added after the package's own ([`TrainerCheckpointFormat`]): to watch
            or steer the run, e.g. [`SampleIdRecorder`], or one of your own that reads `state` and `model` in
            `on_train_end`; a [`CollationObserver`] also sees each training batch as it is collated.
        data: `(DatasetDict, class_names)` already loaded and checked (as [`load_image_folder`] returns them), used
            instead of reading `options.data_dir` / `options.dataset` again: a taxonomy trains one model per node
            on subsets of one checked folder (`taxonomy.training`).

    Returns a summary (also written to `training_summary.json`): metrics, recipe, data sizes, output paths.
    """
    from transformers import Trainer, TrainingArguments, set_seed
    from transformers.integrations import is_tensorboard_available

    if options.trains_taxonomy:  # one model per node or level: the taxonomy room's loop (layer above this one)
        raise ValueError(
            "These options train a taxonomy (--taxonomy / --levels): call "
            "modeling_promptcam.taxonomy.run_taxonomy_training(options), as promptcam train does."
        )
    recipe = options.recipe()
    recipe.validate()
    if (options.data_dir is None) == (options.dataset is None):
        raise ValueError("Give exactly one of --data-dir (an image folder) and --dataset (a datasets dataset).")
    check_output_writable(options.output_dir)  # before minutes of image checks, and before any training step
    splits = check_image_folder(options.data_dir, options.verify_images) if options.data_dir and not data else None
    if data is not None:
        dataset, class_names = data
        has_validation = "validation" in dataset
    elif splits is None:
        dataset, class_names = load_saved_dataset(options.dataset, options.image_column, options.label_column)
        has_validation = "validation" in dataset
    else:
        has_validation = splits.validation_dir is not None
    strategy = "steps" if options.eval_steps else "epoch"
    settings = dict(
        output_dir=options.output_dir,
        num_train_epochs=recipe.epochs,
        per_device_train_batch_size=recipe.batch_size,
        per_device_eval_batch_size=recipe.batch_size,
        gradient_accumulation_steps=options.gradient_accumulation_steps,
        learning_rate=recipe.learning_rate,
        weight_decay=recipe.weight_decay,
        optim="sgd",
        optim_args=f"momentum={recipe.momentum}",
        max_grad_norm=0.0,  # the official recipe does not clip gradients (the Trainer clips to 1.0 by default)
        lr_scheduler_type="cosine_with_min_lr",
        lr_scheduler_kwargs={"min_lr": recipe.lr_min},
        warmup_steps=recipe.warmup_epochs / recipe.epochs,  # a float below 1 is a fraction of all steps
        eval_strategy=strategy if has_validation else "no",
        save_strategy=strategy,
        eval_steps=options.eval_steps,
        save_steps=options.eval_steps,
        save_total_limit=2,
        load_best_model_at_end=has_validation,
        metric_for_best_model="accuracy" if has_validation else None,
        greater_is_better=True,
        logging_strategy="steps",
        logging_steps=10,
        remove_unused_columns=False,  # the transform produces pixel_values / labels on the fly
        ddp_find_unused_parameters=False,  # every trainable parameter is used in every step
        dataloader_num_workers=options.num_workers,
        dataloader_pin_memory=torch.cuda.is_available(),
        seed=options.seed,
        report_to=["tensorboard"] if is_tensorboard_available() else "none",
        # data-parallel on CPU (gloo) needs Accelerate's CPU mode; `accelerate launch --cpu` sets it, torchrun not
        use_cpu=_distributed_cpu_launch(),
    )
    settings.update(options.extra)  # programmatic overrides win
    arguments = TrainingArguments(**settings)
    # set up the (distributed) state now, before from_pretrained would claim the process group for itself
    _ = arguments.device
    resume_from = check_output_dir(options, is_main_process=arguments.process_index == 0)
    if splits is not None:
        with arguments.main_process_first(desc="reading the image folder"):
            dataset, class_names = load_image_folder(options.data_dir, splits=splits)
    set_seed(options.seed)  # the prompt initialisation is part of the run: same seed, same prompts
    model, recipe = build_model(options, recipe, class_names)
    image_processor = promptcam_image_processor(model.config, image_size=recipe.image_size)
    if (
        recipe.agnostic_prompt_init == "image-tokens" and resume_from is None
    ):  # a resumed run's come from its checkpoint
        used = init_agnostic_prompts_from_training_images(model, dataset["train"], image_processor, options.seed)
        logger.info("class-agnostic prompts start from patch tokens of %d training images", used)

    # crops and flips are a function of (seed, epoch, sample id), so a resumed run sees the same images (AugmentationEpoch)
    augmentation = TrainTransform(recipe.image_size, recipe.train_resize, seed=options.seed)
    dataset["train"] = dataset["train"].with_transform(batch_transform(augmentation))
    if has_validation:
        dataset["validation"] = dataset["validation"].with_transform(batch_transform(EvalTransform(image_processor)))

    if options.save_prompts_only:
        from .adapters import wrap_for_prompt_training

        model = wrap_for_prompt_training(model, backbone=options.backbone)

    callbacks = list(callbacks or [])
    compute_metrics = ClassificationMetrics()  # eval_accuracy, eval_top5_accuracy, eval_mean_per_class_accuracy
    run_loss = RunTrainingLoss()  # the whole run's loss, a resumed run's earlier part included
    collator = PromptCamCollator(observers=[c for c in callbacks if isinstance(c, CollationObserver)])
    trainer = Trainer(
        model=model,
        args=arguments,
        train_dataset=dataset["train"],
        eval_dataset=dataset["validation"] if has_validation else None,
        data_collator=collator,
        compute_metrics=compute_metrics,
        processing_class=image_processor,
        # run_loss last: it sees whether any callback before it asked for a checkpoint
        callbacks=[TrainerCheckpointFormat(), AugmentationEpoch(augmentation), *callbacks, run_loss],
    )
    result = trainer.train(resume_from_checkpoint=resume_from)
    metrics = trainer.evaluate() if has_validation else {}

    summary = {
        "backbone": options.backbone,
        "data_dir": os.path.abspath(options.data_dir) if options.data_dir else options.dataset,
        "classes": len(class_names),
        "train_images": len(dataset["train"]),
        "validation_images": len(dataset["validation"]) if has_validation else 0,
        "recipe": recipe.to_dict(),
        "preset": options.preset,
        "steps": trainer.state.global_step,  # optimizer steps taken (resumed ones included)
        "train_loss": run_loss.train_loss if run_loss.train_loss is not None else result.training_loss,
        "validation_accuracy": metrics.get("eval_accuracy"),
        # every validation metric of the final evaluation, without the Trainer's "eval_" prefix (the model card's)
        "validation_metrics": {
            name[len("eval_") :]: value
            for name, value in metrics.items()
            if name[len("eval_") :] in compute_metrics.names
        },
        "best_checkpoint": trainer.state.best_model_checkpoint,
        "world_size": arguments.world_size,
        "prompts_only": options.save_prompts_only,
    }
    if trainer.is_world_process_zero():
        final_dir = os.path.join(options.output_dir, "final")
        save_final(trainer.model, image_processor, final_dir, summary)
        summary["final_dir"] = final_dir
        _write_json_atomically(os.path.join(options.output_dir, SUMMARY_FILE), summary)
        if options.push_to_hub:
            from .hub import push_folder

            summary["hub_url"] = push_folder(final_dir, options.push_to_hub)
    trainer.accelerator.wait_for_everyone()
    return summary


def close_process_group(wait_for_peers: bool) -> bool:
    """End this process's part in a data-parallel run (docs/training.md, "How a data-parallel run ends"); returns
    whether there was a process group to close (False outside a data-parallel run: nothing is done).

    1. Collect garbage: what is left of the finished `Trainer` in reference cycles (the DDP model, whose C++ reducer
       holds the process group) is destroyed now, while the interpreter is fully alive, not by its teardown.
    2. With `wait_for_peers` (this process succeeded): a barrier, so that no process closes its connections while
       another still communicates. A process that failed skips it: its peers may never arrive (they may be waiting in
       a collective of their own), and its non-zero exit makes the launcher (torchrun, mpirun) stop them.
    3. Destroy the process group, on every process, success or failure.
    """
    import gc

    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return False
    gc.collect()
    if wait_for_peers:
        torch.distributed.barrier()
    torch.distributed.destroy_process_group()
    return True


def _distributed_cpu_launch() -> bool:
    accelerators = torch.cuda.is_available() or (hasattr(torch, "xpu") and torch.xpu.is_available())
    return not accelerators and int(os.environ.get("WORLD_SIZE", "1")) > 1


# where the previous final folder waits while a new one replaces it; `restore_final` (run before every replace and
# by `--resume`) puts it back if a run was killed between moving it aside and moving the new one in
PREVIOUS_FINAL_SUFFIX = ".previous"


def restore_final(final_dir: str) -> None:
    """Finish or undo a replace of `final_dir` that was interrupted (docs/training.md, "The final folder").

    `final_dir` is only ever created by a rename of a complete folder, so: when it is missing and
    `<final_dir>.previous` exists, the kill came between moving the old one aside and moving the new one in, and the
    old one is renamed back; when both exist, the new one is in place and the old copy is deleted.
    """
    previous = final_dir + PREVIOUS_FINAL_SUFFIX
    if not os.path.isdir(previous):
        return
    if os.path.isdir(final_dir):
        shutil.rmtree(previous)
    else:
        os.replace(previous, final_dir)


def save_final(model, image_processor, final_dir: str, summary: dict) -> None:
    """Write the final model (or prompt adapter) folder so that a complete model exists at every instant.

    The new folder is written to `<final_dir>.tmp`; then an existing `final_dir` is renamed to
    `<final_dir>.previous`, the new one renamed into place, and the previous one deleted. A kill at any step leaves
    a complete model at `final_dir` or at `<final_dir>.previous`, which [`restore_final`] puts back.
    """
    from .hub import write_model_card

    staging = f"{final_dir}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    if hasattr(model, "peft_config"):
        from .adapters import save_prompt_adapter

        save_prompt_adapter(model, staging)
    else:
        model.save_pretrained(staging)
    image_processor.save_pretrained(staging)
    write_model_card(staging, summary)
    replace_final(staging, final_dir)


def replace_final(staging: str, final_dir: str) -> None:
    """Move the complete folder `staging` into place as `final_dir` so that a complete folder exists at every
    instant: an existing `final_dir` is renamed to `<final_dir>.previous`, the new one renamed in, the previous one
    deleted ([`restore_final`] finishes or undoes a replace a kill cut short)."""
    restore_final(final_dir)
    previous = final_dir + PREVIOUS_FINAL_SUFFIX
    if os.path.isdir(final_dir):
        os.replace(final_dir, previous)
    os.replace(staging, final_dir)
    shutil.rmtree(previous, ignore_errors=True)


def _write_json_atomically(path: str, data: dict) -> None:
    # only the JSON-serialisable entries (the summary also carries objects for the caller)
    write_json_atomically(path, {k: v for k, v in data.items() if _is_json(v)})


def _is_json(value) -> bool:
    try:
        json.dumps(value)
    except TypeError:
        return False
    return not (isinstance(value, float) and math.isnan(value))


__all__ = [
    "PREVIOUS_FINAL_SUFFIX",
    "SUMMARY_FILE",
    "TRAINER_STATE",
    "accuracy_metric",
    "check_output_dir",
    "check_output_writable",
    "close_process_group",
    "last_complete_checkpoint",
    "replace_final",
    "restore_final",
    "run_training",
    "save_final",
]
