"""Training off the happy path: damaged checkpoints, unreadable images and unwritable output folders are found before
any training step, with a message naming the file or folder and the fix."""

import json
import logging

import pytest

from modeling_promptcam.training import last_complete_checkpoint


def _checkpoint(run_dir, step, state_text):
    folder = run_dir / f"checkpoint-{step}"
    folder.mkdir(parents=True)
    if state_text is not None:
        (folder / "trainer_state.json").write_text(state_text)
    return str(folder)


COMPLETE = json.dumps({"global_step": 7, "log_history": []})


@pytest.mark.parametrize(
    "damaged, reason",
    [
        (COMPLETE[: len(COMPLETE) // 2], "cannot be read as JSON"),  # truncated by a kill
        ("", "cannot be read as JSON"),  # created, nothing written
        ("\x00\x00\x00", "cannot be read as JSON"),  # a full disk's zeros
        ("[1, 2]", "holds a JSON list, not the Trainer's state object"),
    ],
)
def test_a_damaged_trainer_state_is_skipped_with_a_warning_naming_it(tmp_path, caplog, damaged, reason):
    complete = _checkpoint(tmp_path, 14, COMPLETE)
    damaged_dir = _checkpoint(tmp_path, 21, damaged)
    _checkpoint(tmp_path, 28, None)  # killed before the state was written: passed over as before
    with caplog.at_level(logging.WARNING, logger="modeling_promptcam.training.trainer"):
        assert last_complete_checkpoint(str(tmp_path)) == complete
    warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert f"skipping {damaged_dir}" in warnings[0] and "trainer_state.json" in warnings[0]
    assert reason in warnings[0] and "resuming from the newest complete checkpoint" in warnings[0]


def test_several_damaged_checkpoints_are_each_named_and_none_left_means_none(tmp_path, caplog):
    damaged = [_checkpoint(tmp_path, step, "{") for step in (5, 10)]
    with caplog.at_level(logging.WARNING, logger="modeling_promptcam.training.trainer"):
        assert last_complete_checkpoint(str(tmp_path)) is None
    text = caplog.text
    assert all(f"skipping {folder}" in text for folder in damaged)


def test_a_complete_newest_checkpoint_is_taken_without_a_word(tmp_path, caplog):
    _checkpoint(tmp_path, 3, "{")
    newest = _checkpoint(tmp_path, 30, COMPLETE)
    with caplog.at_level(logging.WARNING):
        assert last_complete_checkpoint(str(tmp_path)) == newest
    assert caplog.records == []  # the damaged older one is never read
