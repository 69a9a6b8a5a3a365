"""Training off the happy path: damaged checkpoints, unreadable images and unwritable output folders are found before
any training step, with a message naming the file or folder and the fix."""

import io
import json
import logging
import os
import re
from unittest import mock

import numpy as np
import pytest
from PIL import Image
from transformers import Trainer

from modeling_promptcam.cli import main as cli_main
from modeling_promptcam.data import DataError, check_image_folder, verify_image_files
from modeling_promptcam.training import last_complete_checkpoint
from modeling_promptcam.training.trainer import check_output_writable
from tests.helpers.training import write_image_folder, write_tiny_backbone


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


# ----------------------------------------------------------------------------------------------- images, in full
def _truncated_jpeg(path):
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buffer, "JPEG")
    data = buffer.getvalue()
    path.write_bytes(data[: len(data) * 2 // 3])  # the header is intact: Image.verify() alone passes it


def _truncated_png(path):
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buffer, "PNG")
    data = buffer.getvalue()
    path.write_bytes(data[: len(data) // 2])


def _not_an_image(path):
    path.write_bytes(b"this is not an image")


@pytest.fixture(scope="module")
def backbone(tmp_path_factory):
    return write_tiny_backbone(tmp_path_factory.mktemp("backbone") / "vit")


def _train_argv(backbone, data, output):
    return ["train", "--backbone", str(backbone), "--data-dir", str(data), "--output-dir", str(output)] + [
        "--epochs", "2", "--warmup-epochs", "1", "--batch-size", "8", "--image-size", "32",
    ]  # fmt: skip


@pytest.mark.parametrize(
    "damage",
    [
        [("train", _truncated_jpeg, "cut.jpg")],
        [("train", _truncated_png, "cut.png")],
        [("val", _not_an_image, "junk.jpeg")],
        [("train", _truncated_jpeg, "a.jpg"), ("val", _truncated_png, "b.png"), ("train", _not_an_image, "c.png")],
    ],
    ids=["truncated-jpeg", "truncated-png", "not-an-image-in-val", "three-at-once"],
)
def test_broken_images_stop_training_before_the_first_step_listing_each(tmp_path, backbone, capsys, damage):
    data = write_image_folder(tmp_path / "data", train_per_class=4, val_per_class=2)
    broken = []
    for split, write, name in damage:
        path = data / split / "001.Red_Finch" / name
        write(path)
        broken.append(path)
    steps = []
    original = Trainer.training_step
    with mock.patch.object(Trainer, "training_step", lambda *a, **k: steps.append(1) or original(*a, **k)):
        code = cli_main(_train_argv(backbone, data, tmp_path / "run"))
    err = capsys.readouterr().err
    assert code == 1
    assert f"error: {len(broken)} image file(s) cannot be read; fix or remove them and start again" in err
    assert all(str(path) in err for path in broken)
    assert "Traceback" not in err
    assert steps == []  # found before the first step, not by the epoch that reaches the file
    assert not any(path.name.startswith("checkpoint-") for path in (tmp_path / "run").glob("*"))


def test_the_check_decodes_in_full_where_verify_alone_would_pass(tmp_path):
    path = tmp_path / "cut.jpg"
    _truncated_jpeg(path)
    with Image.open(path) as image:
        image.verify()  # the header-only check the package used to rely on
    with pytest.raises(
        DataError, match=r"(?s)1 image file\(s\) cannot be read.*cut\.jpg \(OSError: image file is truncated"
    ):
        verify_image_files([str(path)])


def test_the_image_check_shows_a_progress_bar(tmp_path, capsys):
    data = write_image_folder(tmp_path / "data", train_per_class=3, val_per_class=1)
    check_image_folder(str(data))
    err = capsys.readouterr().err
    assert "checking images" in err and "12/12" in err  # 3 classes x (3 train + 1 validation)


# ----------------------------------------------------------------------------------------------- the output folder
def test_an_unwritable_output_folder_is_refused_before_any_work(tmp_path, backbone, capsys, monkeypatch):
    if os.geteuid() == 0:
        pytest.skip("root writes into read-only folders")
    data = write_image_folder(tmp_path / "data", train_per_class=4, val_per_class=2)
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    checked = []
    monkeypatch.setattr("modeling_promptcam.training.trainer.check_image_folder", lambda *a: checked.append(a))
    try:
        code = cli_main(_train_argv(backbone, data, locked / "run"))
    finally:
        locked.chmod(0o700)
    err = capsys.readouterr().err
    assert code == 1
    assert f"error: --output-dir {locked / 'run'} cannot be written (PermissionError" in err
    assert "choose a folder you can write to" in err and "Traceback" not in err
    assert checked == []  # refused before the images were even checked
    assert list(locked.iterdir()) == []


def test_an_output_folder_below_a_file_is_refused_by_the_cli_before_any_work(tmp_path, backbone, capsys, monkeypatch):
    data = write_image_folder(tmp_path / "data", train_per_class=4, val_per_class=2)
    blocker = tmp_path / "notes.txt"
    blocker.write_text("keep")
    checked = []
    monkeypatch.setattr("modeling_promptcam.training.trainer.check_image_folder", lambda *a: checked.append(a))
    code = cli_main(_train_argv(backbone, data, blocker / "run"))
    err = capsys.readouterr().err
    assert code == 1
    assert f"error: --output-dir {blocker / 'run'} cannot be written" in err and "Traceback" not in err
    assert "choose a folder you can write to" in err
    assert checked == [] and blocker.read_text() == "keep"


def test_an_output_path_that_is_a_file_is_refused_and_left_alone(tmp_path):
    target = tmp_path / "notes.txt"
    target.write_text("keep")
    with pytest.raises(OSError, match=rf"--output-dir {re.escape(str(target))} cannot be written"):
        check_output_writable(str(target))
    assert target.read_text() == "keep"


def test_a_writable_output_folder_is_created_and_left_empty(tmp_path):
    check_output_writable(str(tmp_path / "a" / "b"))
    assert list((tmp_path / "a" / "b").iterdir()) == []  # no probe left: not mistaken for another run's folder
