"""`promptcam convert` off the happy path (docs/bad-input.md): missing, empty, truncated, foreign and hostile
checkpoints, wrong keys and shapes, NaN weights, bad class-name files, head counts the weights cannot have, and output
paths that cannot take the folder. Each case: exit 1 (or 2 for a usage error) with one `error:` line naming the
problem and the fix, no traceback, no output folder written, a previous result left intact, and no code from the
checkpoint run."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch

from modeling_promptcam.cli import main as cli_main

OFFICIAL = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "official" / "dino_tiny.model.pt"
HEADS = "4"  # the tiny fixture's head count (width 64)


class RunsCode:
    """A pickle that runs a command when unpickled without weights_only: it must never run."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _state_dict() -> dict[str, torch.Tensor]:
    return dict(torch.load(OFFICIAL, map_location="cpu", weights_only=True)["model_state_dict"])


def _write(kind: str, folder: Path) -> Path:
    """The checkpoint (or --labels file) of one case, written into `folder`."""
    path = folder / f"{kind}.pt"
    if kind == "missing":
        return path
    if kind == "folder":
        path.mkdir()
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        path.write_bytes(OFFICIAL.read_bytes()[: OFFICIAL.stat().st_size // 2])
    elif kind == "text":
        path.write_text("weights: none\n")
    elif kind == "hostile pickle":
        with open(path, "wb") as handle:
            pickle.dump(RunsCode(folder / "code-ran"), handle)
    elif kind == "hostile torch.save":
        torch.save({"model_state_dict": RunsCode(folder / "code-ran")}, path)
    elif kind == "a list":
        torch.save([torch.zeros(2)], path)
    elif kind == "numbers, not tensors":
        torch.save({"model_state_dict": {"head.weight": 1.0}}, path)
    elif kind == "no prompts":
        state = _state_dict()
        state.pop("vpt.prompt_embeddings")
        torch.save(state, path)
    elif kind == "an unknown key":
        torch.save({**_state_dict(), "adapter.weight": torch.zeros(3)}, path)
    elif kind == "a missing block weight":
        state = _state_dict()
        state.pop("blocks.2.attn.qkv.weight")
        torch.save(state, path)
    elif kind == "prompts of the wrong width":
        torch.save({**_state_dict(), "vpt.prompt_embeddings": torch.zeros(3, 5, 10)}, path)
    elif kind in ("NaN prompts", "inf head"):
        state = _state_dict()
        key = "vpt.prompt_embeddings" if kind == "NaN prompts" else "head.weight"
        state[key] = state[key].clone()
        state[key].view(-1)[0] = float("nan") if kind == "NaN prompts" else float("inf")
        torch.save(state, path)
    else:
        raise ValueError(kind)
    return path


# (checkpoint kind, extra arguments, message parts); every case exits 1
CHECKPOINT_CASES = [
    ("missing", [], ["No checkpoint file", "missing.pt", "check the path"]),
    ("folder", [], ["folder.pt is a folder", "checkpoint file itself"]),
    ("empty", [], ["empty.pt is empty (0 bytes)", "again"]),
    ("truncated", [], ["truncated.pt", "Could not read", "weights_only=True"]),
    ("text", [], ["text.pt", "damaged, not one", "copy it again"]),
    ("hostile pickle", [], ["hostile pickle.pt", "nothing in the file was run"]),
    ("hostile torch.save", [], ["hostile torch.save.pt", "nothing in the file was run"]),
    ("a list", [], ["does not hold a state dict of tensors", "found list", "model_state_dict"]),
    ("numbers, not tensors", [], ["does not hold a state dict of tensors", "model_state_dict"]),
    ("no prompts", [], ["there is no vpt.prompt_embeddings"]),
    ("an unknown key", [], ["does not know: adapter.weight", "refusing to drop them"]),
    ("a missing block weight", [], ["blocks.2.attn.qkv.weight"]),
    ("prompts of the wrong width", [], ["vpt.prompt_embeddings", "expected (depth, num_classes, 64)"]),
    ("NaN prompts", [], ["NaN or infinite values in vpt.prompt_embeddings", "earlier or re-downloaded"]),
    ("inf head", [], ["NaN or infinite values in head.weight"]),
]


@pytest.mark.parametrize(("kind", "extra", "named"), CHECKPOINT_CASES, ids=[case[0] for case in CHECKPOINT_CASES])
def test_bad_checkpoints_exit_1_naming_the_file_and_write_nothing(tmp_path, capsys, kind, extra, named):
    checkpoint = _write(kind, tmp_path)
    output = tmp_path / "out"
    assert cli_main(["convert", str(checkpoint), str(output), "--num-heads", HEADS, *extra]) == 1
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err and "unexpected" not in lines[0], err
    for part in named:
        assert part in lines[0], (part, lines[0])
    assert not output.exists()
    assert not (tmp_path / "code-ran").exists()  # the hostile pickle's command never ran


def _labels(tmp_path: Path, content: str | None) -> Path:
    path = tmp_path / "labels.txt"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    return path


# (--labels content (None: no such file), message parts); the fixture has 5 classes
LABEL_CASES = [
    (None, ["--labels", "labels.txt: no such file or folder", "one class name per line"]),
    ("", ["5 classes but 0 class names", "one name per class"]),
    ("a\nb\n", ["5 classes but 2 class names", "class-index order"]),
    ("a\nb\nc\nd\ne\nf\n", ["5 classes but 6 class names"]),
    ("a\nb\na\nc\nd\n", ["must be unique", "repeated: a"]),
    ("001.Sparrow\n002.Sparrow\n003.Wren\n004.Jay\n005.Owl\n", ["must be unique", "repeated: Sparrow"]),
]


@pytest.mark.parametrize(
    ("content", "named"), LABEL_CASES, ids=["missing", "empty", "too few", "too many", "dup", "dup"]
)
def test_bad_class_names_exit_1_and_write_nothing(tmp_path, capsys, content, named):
    output = tmp_path / "out"
    argv = ["convert", str(OFFICIAL), str(output), "--num-heads", HEADS, "--labels", str(_labels(tmp_path, content))]
    assert cli_main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("error:") and "Traceback" not in err
    for part in named:
        assert part in err, (part, err)
    assert not output.exists()


# (arguments after the checkpoint and output, exit code, message parts)
ARGUMENT_CASES = [
    (["--num-heads", "3"], 1, ["num_heads=3 does not divide the width 64", "pass --num-heads"]),
    ([], 1, ["num_heads=12 does not divide the width 64", "pass --num-heads"]),  # the default head count
    (["--num-heads", "4", "--backbone", "dinov2"], 1, ["--backbone dinov2 does not match", "absent (DINO)"]),
    (["--num-heads", "0"], 2, ["--num-heads", "integer >= 1"]),
    (["--num-heads", "-4"], 2, ["--num-heads", "integer >= 1"]),
    (["--num-heads", "four"], 2, ["--num-heads", "four"]),
    (["--num-heads", "4", "--backbone", "resnet"], 2, ["--backbone", "resnet"]),
]


@pytest.mark.parametrize(
    ("extra", "code", "named"), ARGUMENT_CASES, ids=[" ".join(c[0]) or "default" for c in ARGUMENT_CASES]
)
def test_bad_arguments_are_refused_before_anything_is_written(tmp_path, capsys, extra, code, named):
    output = tmp_path / "out"
    if code == 2:
        with pytest.raises(SystemExit) as usage:
            cli_main(["convert", str(OFFICIAL), str(output), *extra])
        assert usage.value.code == 2
    else:
        assert cli_main(["convert", str(OFFICIAL), str(output), *extra]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    for part in named:
        assert part in err, (part, err)
    assert not output.exists()


def test_output_paths_that_cannot_take_the_folder(tmp_path, capsys):
    a_file = tmp_path / "model"
    a_file.write_text("keep me")
    assert cli_main(["convert", str(OFFICIAL), str(a_file), "--num-heads", HEADS]) == 1
    assert "is a file, not a folder" in capsys.readouterr().err
    assert a_file.read_text() == "keep me"

    below = a_file / "converted"
    assert cli_main(["convert", str(OFFICIAL), str(below), "--num-heads", HEADS]) == 1
    err = capsys.readouterr().err
    assert f"is below {a_file}, which is a file" in err and "elsewhere" in err
    assert a_file.read_text() == "keep me"

    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o500)
        try:
            assert cli_main(["convert", str(OFFICIAL), str(locked / "out"), "--num-heads", HEADS]) == 1
            assert "is not writable" in capsys.readouterr().err
            assert list(locked.iterdir()) == []
        finally:
            locked.chmod(0o700)


def test_a_previous_result_survives_a_failed_conversion(tmp_path, capsys):
    output = tmp_path / "out"
    assert cli_main(["convert", str(OFFICIAL), str(output), "--num-heads", HEADS]) == 0
    before = {path.name: path.read_bytes() for path in output.iterdir()}
    capsys.readouterr()
    # without --overwrite: refused; with it, a bad checkpoint fails before the first write
    assert cli_main(["convert", str(OFFICIAL), str(output), "--num-heads", HEADS]) == 1
    assert "not empty" in capsys.readouterr().err
    for kind in ("truncated", "NaN prompts", "hostile pickle"):
        checkpoint = _write(kind, tmp_path)
        assert cli_main(["convert", str(checkpoint), str(output), "--num-heads", HEADS, "--overwrite"]) == 1
        assert {path.name: path.read_bytes() for path in output.iterdir()} == before, kind
    assert cli_main(["convert", str(OFFICIAL), str(output), "--num-heads", "3", "--overwrite"]) == 1
    assert {path.name: path.read_bytes() for path in output.iterdir()} == before
