"""A killed and resumed run equals an uninterrupted one: every later checkpoint, the final model and the summary
(docs/training.md, "Resuming a run"), from an epoch-end checkpoint and from a mid-epoch one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from transformers import TrainerCallback

from modeling_promptcam.data import TrainTransform
from modeling_promptcam.training import TrainOptions, run_mean_loss, run_training
from tests.helpers.training import write_image_folder, write_tiny_backbone

# 24 training images in batches of 4: 6 steps per epoch, 3 epochs; a checkpoint (and evaluation) every 3 steps, so
# checkpoints 6 and 12 end an epoch and 3, 9 and 15 are in the middle of one
STEPS_PER_EPOCH, EPOCHS, SAVE_EVERY = 6, 3, 3
RUN = dict(epochs=EPOCHS, warmup_epochs=1, batch_size=4, learning_rate=0.05, image_size=32, eval_steps=SAVE_EVERY)
TOLERANCE = dict(atol=1e-5, rtol=0)


class Killed(BaseException):
    """Stands for the process being killed: not an Exception, so nothing on the way out catches it."""


class CheckpointRecorder(TrainerCallback):
    """Reads each checkpoint's trainable weights (the prompt head) from its folder right after it is written; and
    "kills" the run after the checkpoint of step `kill_after`."""

    def __init__(self, kill_after: int | None = None):
        self.kill_after = kill_after
        self.prompt_weights: dict[int, dict[str, torch.Tensor]] = {}

    def on_save(self, args, state, control, **kwargs):
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        weights = load_file(folder / "model.safetensors")
        self.prompt_weights[state.global_step] = {k: v for k, v in weights.items() if k.startswith("prompt_head.")}
        if state.global_step == self.kill_after:
            raise Killed


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    write_image_folder(root / "data", train_per_class=8, val_per_class=2)
    write_tiny_backbone(root / "backbone")
    return root


def options(workspace, output, **overrides) -> TrainOptions:
    return TrainOptions(
        backbone=str(workspace / "backbone"),
        data_dir=str(workspace / "data"),
        output_dir=str(output),
        **{**RUN, **overrides},
    )


@pytest.fixture(scope="module")
def uninterrupted(workspace):
    recorder = CheckpointRecorder()
    summary = run_training(options(workspace, workspace / "straight"), callbacks=[recorder])
    assert sorted(recorder.prompt_weights) == list(range(SAVE_EVERY, STEPS_PER_EPOCH * EPOCHS + 1, SAVE_EVERY))
    return summary, recorder.prompt_weights


def _final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(run_dir / "final" / "model.safetensors")


@pytest.mark.parametrize(
    "kill_after, where",
    [(STEPS_PER_EPOCH, "end of epoch 1"), (STEPS_PER_EPOCH + SAVE_EVERY, "middle of epoch 2")],
    ids=["epoch-checkpoint", "mid-epoch-checkpoint"],
)
def test_a_killed_and_resumed_run_equals_an_uninterrupted_one(workspace, uninterrupted, tmp_path, kill_after, where):
    straight_summary, straight_checkpoints = uninterrupted
    run_dir = tmp_path / "run"
    with pytest.raises(Killed):
        run_training(options(workspace, run_dir), callbacks=[CheckpointRecorder(kill_after=kill_after)])
    assert not (run_dir / "final").exists() and (run_dir / f"checkpoint-{kill_after}").is_dir()

    recorder = CheckpointRecorder()
    summary = run_training(options(workspace, run_dir, resume=True), callbacks=[recorder])

    # every checkpoint written after the resume holds the prompts the uninterrupted run had at that step
    later = [step for step in straight_checkpoints if step > kill_after]
    assert sorted(recorder.prompt_weights) == later, where
    for step in later:
        for name, expected in straight_checkpoints[step].items():
            torch.testing.assert_close(
                recorder.prompt_weights[step][name], expected, **TOLERANCE, msg=f"{name} at step {step} ({where})"
            )
    # the final model, in full
    final, straight_final = _final_weights(run_dir), _final_weights(workspace / "straight")
    assert final.keys() == straight_final.keys()
    for name in final:
        torch.testing.assert_close(final[name], straight_final[name], **TOLERANCE, msg=f"final {name} ({where})")
    # the summary: the loss of the whole run (not of the resumed part), the metrics, the best checkpoint
    written = json.loads((run_dir / "training_summary.json").read_text())
    for result, expected in ((summary, straight_summary), (written, straight_summary)):
        assert result["train_loss"] == pytest.approx(expected["train_loss"], abs=1e-5), where
        assert result["validation_accuracy"] == pytest.approx(expected["validation_accuracy"], abs=1e-5)
        assert result["validation_metrics"].keys() == expected["validation_metrics"].keys()
        for name, value in expected["validation_metrics"].items():
            assert result["validation_metrics"][name] == pytest.approx(value, abs=1e-5), name
        assert Path(result["best_checkpoint"]).name == Path(expected["best_checkpoint"]).name
    # the model card reports the same loss
    card = (run_dir / "final" / "README.md").read_text()
    assert f"| final training loss | {written['train_loss']} |" in card


def test_the_run_loss_is_the_mean_over_every_step(workspace, uninterrupted):
    """The summary's train_loss is the mean of the per-step losses of the whole run: what the trainer state's log
    history records, step-weighted over the logging intervals."""
    summary, _ = uninterrupted
    state = json.loads(
        (workspace / "straight" / f"checkpoint-{STEPS_PER_EPOCH * EPOCHS}" / "trainer_state.json").read_text()
    )
    logged = [(entry["step"], entry["loss"]) for entry in state["log_history"] if "loss" in entry]
    total, previous = 0.0, 0
    for step, loss in logged:
        total += loss * (step - previous)
        previous = step
    assert previous == STEPS_PER_EPOCH * EPOCHS  # every step's loss is in the log
    assert summary["train_loss"] == pytest.approx(total / previous, rel=1e-9)


def _example_images(count: int = 6):
    generator = torch.Generator().manual_seed(0)
    arrays = torch.randint(0, 256, (count, 20, 20, 3), generator=generator, dtype=torch.uint8).numpy()
    return [Image.fromarray(array) for array in arrays]


def test_the_augmentation_of_an_image_depends_only_on_seed_epoch_and_sample_id():
    images = _example_images()
    transform = TrainTransform(size=12, resize=16, seed=3)
    transform.set_epoch(2)
    forward = [transform(image, sample_id=i) for i, image in enumerate(images)]
    torch.manual_seed(123)  # the global stream plays no part
    backward = [transform(images[i], sample_id=i) for i in reversed(range(len(images)))][::-1]
    for a, b in zip(forward, backward):
        torch.testing.assert_close(a, b, atol=0, rtol=0)
    # another epoch or seed draws other crops and flips (for some images at least)
    draws = {transform.draw(i) for i in range(len(images))}
    transform.set_epoch(3)
    assert {transform.draw(i) for i in range(len(images))} != draws
    assert {TrainTransform(12, 16, seed=4).draw(i) for i in range(len(images))} != {
        TrainTransform(12, 16, seed=3).draw(i) for i in range(len(images))
    }
    # every crop position and both flips occur
    many = [transform.draw(i) for i in range(400)]
    assert {top for top, _, _ in many} == set(range(5)) and {flip for _, _, flip in many} == {True, False}


def test_data_loading_workers_see_the_epoch_set_in_the_main_process():
    """Persistent workers keep their copy of the dataset across epochs: the epoch reaches them through shared
    memory, so what they produce equals the main process's augmentation of each epoch."""
    images = _example_images(4)
    transform = TrainTransform(size=12, resize=16, seed=0)

    class Images(torch.utils.data.Dataset):
        def __len__(self):
            return len(images)

        def __getitem__(self, index):
            return transform(images[index], sample_id=index)

    loader = torch.utils.data.DataLoader(Images(), batch_size=4, num_workers=1, persistent_workers=True)
    for epoch in range(3):
        transform.set_epoch(epoch)
        (batch,) = list(loader)
        expected = torch.stack([transform(image, sample_id=i) for i, image in enumerate(images)])
        torch.testing.assert_close(batch, expected, atol=0, rtol=0, msg=f"epoch {epoch}")


def test_run_mean_loss_weights_each_logged_interval_by_its_steps():
    # a first call logged steps 1-4 (mean 2.0) and 5-6 (mean 1.0) and was checkpointed at 6; the resumed call ran
    # steps 7-10, logged 7-8 (mean 0.5) and reports a mean of 0.25 over its four steps (so 9-10 averaged 0.0)
    history = [{"loss": 2.0, "step": 4}, {"eval_loss": 9.0, "step": 4}, {"loss": 1.0, "step": 6}]
    history += [{"loss": 0.5, "step": 8}, {"train_loss": 0.25, "step": 10}]
    assert run_mean_loss(history, call_loss=0.25, first_step=6, last_step=10) == pytest.approx(11.0 / 10)
    # an uninterrupted call whose last step was logged: the history alone
    assert run_mean_loss(history[:2] + [{"loss": 1.0, "step": 6}], 5.0 / 3, 0, 6) == pytest.approx(10.0 / 6)
    # a checkpoint written without a log entry just before it (step 6 unlogged): those steps are left out
    old = [{"loss": 2.0, "step": 4}, {"loss": 0.5, "step": 8}]
    assert run_mean_loss(old, call_loss=0.25, first_step=6, last_step=10) == pytest.approx((8.0 + 1.0) / 8)
