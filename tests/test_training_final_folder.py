"""Replacing final/ (a `--resume` of a finished run): a kill at any step leaves a loadable model that the next run
restores (training/trainer.py `save_final` / `restore_final`, docs/training.md "The final folder")."""

from __future__ import annotations

import os
import shutil

import pytest
import torch
from transformers import ViTImageProcessor

from modeling_promptcam.modeling_promptcam import PromptCamForImageClassification
from modeling_promptcam.training import trainer
from modeling_promptcam.training.options import TrainOptions
from modeling_promptcam.training.trainer import PREVIOUS_FINAL_SUFFIX, check_output_dir, restore_final, save_final
from tests.helpers.models import tiny_model


class Killed(BaseException):
    """Stands for the process being killed: not an Exception, so no cleanup code catches it."""


def _models():
    old, new = tiny_model("vit", num_labels=2), tiny_model("vit", num_labels=2)
    with torch.no_grad():
        next(new.parameters()).add_(1.0)
    return old, new


def _first_parameter(folder) -> torch.Tensor:
    return next(PromptCamForImageClassification.from_pretrained(folder).parameters()).detach()


def _steps_of_one_replace(tmp_path, old, new) -> int:
    """How many os.replace / shutil.rmtree calls one replace of an existing final/ makes."""
    final_dir = str(tmp_path / "count" / "final")
    save_final(old, ViTImageProcessor(), final_dir, {})
    calls = []
    real_replace, real_rmtree = os.replace, shutil.rmtree

    def counting_replace(*args, **kwargs):
        calls.append("replace")
        return real_replace(*args, **kwargs)

    def counting_rmtree(*args, **kwargs):
        calls.append("rmtree")
        return real_rmtree(*args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(trainer.os, "replace", counting_replace)
        patch.setattr(trainer.shutil, "rmtree", counting_rmtree)
        save_final(new, ViTImageProcessor(), final_dir, {})
    return len(calls)


def test_a_kill_at_every_step_of_replacing_final_leaves_a_model_the_next_run_restores(tmp_path):
    old, new = _models()
    old_weight, new_weight = next(old.parameters()).detach(), next(new.parameters()).detach()
    assert not torch.equal(old_weight, new_weight)
    steps = _steps_of_one_replace(tmp_path, old, new)
    assert steps >= 3  # at least: the staging cleanup, moving the old aside, moving the new in, deleting the old
    for kill_at in range(steps):
        output_dir = tmp_path / f"kill-{kill_at}"
        final_dir = str(output_dir / "final")
        save_final(old, ViTImageProcessor(), final_dir, {})
        replace, rmtree = _killing_at(kill_at)
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(trainer.os, "replace", replace)
            patch.setattr(trainer.shutil, "rmtree", rmtree)
            with pytest.raises(Killed):
                save_final(new, ViTImageProcessor(), final_dir, {})
        # right after the kill a complete model is at final/ or at its documented sibling
        survivors = [path for path in (final_dir, final_dir + PREVIOUS_FINAL_SUFFIX) if os.path.isdir(path)]
        assert survivors, f"kill at step {kill_at}: no final model left"
        loaded = [_first_parameter(path) for path in survivors if os.path.isfile(os.path.join(path, "config.json"))]
        assert any(torch.equal(w, old_weight) or torch.equal(w, new_weight) for w in loaded), kill_at
        # the next run (`--resume`) restores final/ before anything else
        options = TrainOptions(backbone="unused", data_dir="unused", output_dir=str(output_dir), resume=True)
        with pytest.raises(ValueError, match="no complete checkpoint"):
            check_output_dir(options, is_main_process=True)
        assert os.path.isdir(final_dir) and not os.path.exists(final_dir + PREVIOUS_FINAL_SUFFIX)
        restored = _first_parameter(final_dir)
        assert torch.equal(restored, old_weight) or torch.equal(restored, new_weight), kill_at
        # and a completed replace afterwards leaves exactly the new model
        save_final(new, ViTImageProcessor(), final_dir, {})
        assert torch.equal(_first_parameter(final_dir), new_weight)
        assert sorted(os.listdir(output_dir)) == ["final"]


def _killing_at(kill_at: int):
    """os.replace and shutil.rmtree that count their calls together and "kill" the process at call `kill_at`."""
    real_replace, real_rmtree = os.replace, shutil.rmtree
    calls = []

    def replace(*args, **kwargs):
        calls.append(args)
        if len(calls) - 1 == kill_at:
            raise Killed
        return real_replace(*args, **kwargs)

    def rmtree(path, *args, **kwargs):
        calls.append(path)
        if len(calls) - 1 == kill_at:
            _delete_half(path)
            raise Killed
        return real_rmtree(path, *args, **kwargs)

    return replace, rmtree


def _delete_half(path) -> None:
    """A kill in the middle of deleting a folder: some of its files are gone."""
    if os.path.isdir(path):
        for name in sorted(os.listdir(path))[::2]:
            target = os.path.join(path, name)
            if os.path.isfile(target):
                os.remove(target)


def test_restore_final_leaves_a_finished_replace_alone(tmp_path):
    final_dir = tmp_path / "final"
    final_dir.mkdir()
    (final_dir / "config.json").write_text("{}")
    restore_final(str(final_dir))  # no sibling: nothing to do
    assert (final_dir / "config.json").read_text() == "{}"
