"""Bad input to every `promptcam` command: one `error: ...` line naming the problem and the fix, the documented exit
code, and nothing written (or the previous result intact). Table-driven per entry point (issue 15, items 1 and 2)."""

from __future__ import annotations

import math
import os
import shutil

import numpy as np
import pytest
from PIL import Image
from transformers import ViTConfig, ViTModel

from modeling_promptcam.cli import COMMANDS
from modeling_promptcam.cli import main as cli_main
from modeling_promptcam.cli.errors import DEBUG_VARIABLE
from modeling_promptcam.convert.options import BackboneOptions, ConvertOptions
from modeling_promptcam.explain.options import ExplainOptions
from modeling_promptcam.files import check_model_folder
from modeling_promptcam.ranges import describe_range
from modeling_promptcam.training.options import TrainOptions
from tests.helpers.models import save_tiny_model

CLASS_NAMES = ["Red_Finch", "Green_Finch"]


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("model")
    save_tiny_model(folder, CLASS_NAMES)
    return folder


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    path = tmp_path_factory.mktemp("images") / "bird.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(path)
    return path


def _truncate(folder, name="model.safetensors"):
    path = folder / name
    path.write_bytes(path.read_bytes()[: os.path.getsize(path) // 2])


def _not_json(name):
    return lambda folder: (folder / name).write_text('{"model_type": "prompt_cam", ')


def _stock_backbone(folder):
    for entry in folder.iterdir():
        entry.unlink()
    ViTModel(
        ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
    ).save_pretrained(folder)


# how a model folder gets broken -> what the message must name (the file / the problem, and the fix)
BROKEN_FOLDERS = {
    "truncated weights": (_truncate, ["model.safetensors", "damaged or incomplete", "copy the model folder again"]),
    "config not JSON": (_not_json("config.json"), ["config.json", "not valid JSON", "save the model again"]),
    "processor not JSON": (
        _not_json("preprocessor_config.json"),
        ["preprocessor_config.json", "not valid JSON", "save the model again"],
    ),
    "stock backbone": (_stock_backbone, ["vit model", "not a Prompt-CAM model", "promptcam train --backbone"]),
    "no config": (lambda folder: (folder / "config.json").unlink(), ["no config.json", "not a saved Prompt-CAM"]),
}


@pytest.fixture(params=sorted(BROKEN_FOLDERS))
def broken(request, model_folder, tmp_path):
    folder = tmp_path / "broken"
    shutil.copytree(model_folder, folder)
    damage, named = BROKEN_FOLDERS[request.param]
    damage(folder)
    return folder, named


def _run(argv, capsys) -> tuple[int, str]:
    try:
        code = cli_main(argv)
    except SystemExit as exit_:
        code = exit_.code
    return code, capsys.readouterr().err


def _assert_one_error_line(err: str, named: list[str]) -> None:
    lines = [line for line in err.splitlines() if line.startswith("error:") or "error:" in line]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for text in named:
        assert text in err, (text, err)


def test_explain_on_a_broken_or_foreign_model_folder_names_the_file_and_writes_nothing(
    broken, image, tmp_path, capsys
):
    folder, named = broken
    out = tmp_path / "explained"
    code, err = _run(
        ["explain", "--model", str(folder), str(image), "--output-dir", str(out), "--no-progress"], capsys
    )
    assert code == 1
    _assert_one_error_line(err, named)
    assert not out.exists()


def test_app_on_a_broken_or_foreign_model_folder_names_the_file_and_serves_nothing(broken, capsys, monkeypatch):
    from modeling_promptcam.app import ui

    launched = []
    monkeypatch.setattr(ui, "launch", lambda *args, **kwargs: launched.append(args))
    folder, named = broken
    code, err = _run(["app", "--model", str(folder)], capsys)
    assert code == 1
    _assert_one_error_line(err, named)
    assert not launched


def test_the_library_check_names_the_same_problems(broken):
    folder, named = broken
    with pytest.raises((ValueError, FileNotFoundError)) as raised:
        check_model_folder(folder)
    for text in named:
        assert text in str(raised.value)


def test_the_intact_folder_passes_the_check(model_folder):
    check_model_folder(model_folder)


# command line -> (exit code, texts the message names); every case refused before any work
OUT_OF_RANGE = [
    (["convert", "ckpt.pt", "{out}", "--num-heads", "0"], ["--num-heads", "integer >= 1", "got '0'"]),
    (["convert", "ckpt.pt", "{out}", "--num-heads", "-4"], ["--num-heads", "integer >= 1", "got '-4'"]),
    (["backbone", "bioclip", "--out", "{out}", "--num-heads", "0"], ["--num-heads", "integer >= 1"]),
    (
        ["train", "--backbone", "b", "--data-dir", "d", "--output-dir", "{out}", "--gradient-accumulation-steps", "0"],
        ["--gradient-accumulation-steps", "integer >= 1"],
    ),
    (
        ["train", "--backbone", "b", "--data-dir", "d", "--output-dir", "{out}", "--lr", "inf"],
        ["--lr", "finite number > 0", "'inf'"],
    ),
    (
        ["train", "--backbone", "b", "--data-dir", "d", "--output-dir", "{out}", "--lr", "nan"],
        ["--lr", "finite number > 0"],
    ),
    (["train", "--backbone", "b", "--data-dir", "d", "--output-dir", "{out}", "--lr", "0"], ["--lr", "> 0"]),
    (
        ["train", "--backbone", "b", "--data-dir", "d", "--output-dir", "{out}", "--momentum", "1.5"],
        ["--momentum", "[0, 1]"],
    ),
    (
        ["train", "--backbone", "b", "--data-dir", "d", "--output-dir", "{out}", "--epochs", "0"],
        ["--epochs", "integer >= 1"],
    ),
    (
        ["train", "--backbone", "b", "--data-dir", "d", "--output-dir", "{out}", "--weight-decay", "-1"],
        ["--weight-decay", ">= 0"],
    ),
    (["train", "--backbone", "b", "--data-dir", "d", "--output-dir", "{out}", "--seed", "-3"], ["--seed", ">= 0"]),
    (["explain", "--model", "m", "x.png", "--output-dir", "{out}", "--alpha", "2"], ["--alpha", "[0, 1]", "got '2'"]),
    (["explain", "--model", "m", "x.png", "--output-dir", "{out}", "--alpha", "nan"], ["--alpha", "finite"]),
    (["explain", "--model", "m", "x.png", "--output-dir", "{out}", "--top-k", "0"], ["--top-k", "integer >= 1"]),
    (["explain", "--model", "m", "x.png", "--output-dir", "{out}", "--stop", "0"], ["--stop", "integer >= 1"]),
    (["app", "--model", "m", "--port", "70000"], ["--port", "[0, 65535]"]),
    (["synthetic", "--out", "{out}", "--train-per-class", "0"], ["--train-per-class", "integer >= 1"]),
    (["demo", "--out", "{out}", "--learning-rate=-inf"], ["--learning-rate", "finite number > 0"]),
    (["faithfulness", "--model", "m", "--data", "d", "--out", "{out}", "--blur-sigma", "0"], ["--blur-sigma", "> 0"]),
    (["atlas", "--model", "m", "--data", "d", "--out", "{out}", "--threshold", "1.5"], ["--threshold", "(0, 1]"]),
    (["atlas", "--model", "m", "--data", "d", "--out", "{out}", "--box-size", "0"], ["--box-size", "(0, 224]"]),
    (["atlas", "--model", "m", "--data", "d", "--out", "{out}", "--gallery", "-1"], ["--gallery", "integer >= 0"]),
]


@pytest.mark.parametrize(
    ("argv", "named"), OUT_OF_RANGE, ids=[" ".join(argv[:1] + argv[-2:]) for argv, _ in OUT_OF_RANGE]
)
def test_out_of_range_numbers_are_usage_errors_before_any_work(argv, named, tmp_path, capsys):
    out = tmp_path / "out"
    code, err = _run([token.format(out=out) for token in argv], capsys)
    assert code == 2
    assert "Traceback" not in err
    for text in named:
        assert text in err, (text, err)
    assert not out.exists()


def test_help_shows_every_range(capsys):
    for argv, texts in (
        (["explain", "--help"], ["(a finite number in [0, 1])", "(an integer >= 1)"]),
        (["train", "--help"], ["(a finite number > 0)", "(an integer >= 1)", "(a finite number in [0, 1])"]),
        (["convert", "--help"], ["(an integer >= 1)"]),
    ):
        with pytest.raises(SystemExit):
            cli_main(argv)
        shown = " ".join(capsys.readouterr().out.split())
        for text in texts:
            assert text in shown, (argv, text)


@pytest.mark.parametrize(
    ("options_class", "arguments", "named"),
    [
        (TrainOptions, {"learning_rate": math.inf}, "learning_rate must be a finite number > 0, got inf"),
        (TrainOptions, {"learning_rate": math.nan}, "learning_rate must be a finite number > 0, got nan"),
        (TrainOptions, {"gradient_accumulation_steps": 0}, "gradient_accumulation_steps must be an integer >= 1"),
        (TrainOptions, {"epochs": 2.5}, "epochs must be an integer >= 1"),
        (ExplainOptions, {"alpha": 2.0}, "alpha must be a finite number in [0, 1], got 2.0"),
        (ExplainOptions, {"top_k": 0}, "top_k must be an integer >= 1, got 0"),
        (ConvertOptions, {"num_heads": -4}, "num_heads must be an integer >= 1, got -4"),
        (BackboneOptions, {"num_heads": 0}, "num_heads must be an integer >= 1, got 0"),
    ],
)
def test_the_library_options_check_the_same_ranges(options_class, arguments, named):
    required = {
        TrainOptions: {"backbone": "b", "data_dir": "d", "output_dir": "o"},
        ExplainOptions: {"model": "m", "images": ("x.png",)},
        ConvertOptions: {"checkpoint": "c", "output_dir": "o"},
        BackboneOptions: {"kind": "bioclip", "output_dir": "o"},
    }[options_class]
    with pytest.raises(ValueError) as raised:
        options_class(**required, **arguments)
    assert named in str(raised.value)


def test_the_range_words_are_one_rule():
    assert describe_range({"min": 1}, integer=True) == "an integer >= 1"
    assert describe_range({"min": 0, "max": 1}, integer=False) == "a finite number in [0, 1]"
    assert describe_range({"above": 0}, integer=False) == "a finite number > 0"


def test_convert_to_a_path_that_is_a_file_leaves_the_file_alone(tmp_path, capsys):
    target = tmp_path / "taken.txt"
    target.write_text("keep me")
    code, err = _run(["convert", str(tmp_path / "model.pt"), str(target)], capsys)
    assert code == 1
    _assert_one_error_line(err, [str(target), "is a file, not a folder", "choose a folder path"])
    assert target.read_text() == "keep me"


def test_explain_of_an_image_named_like_the_report_keeps_both(model_folder, tmp_path, capsys):
    path = tmp_path / "report.html.png"
    Image.fromarray(np.full((40, 40, 3), 128, dtype=np.uint8)).save(path)
    out = tmp_path / "explained"
    code, err = _run(
        ["explain", "--model", str(model_folder), str(path), "--output-dir", str(out), "--no-progress"], capsys
    )
    assert code == 0, err
    assert (out / "report.html").is_file()
    figures = [entry for entry in out.iterdir() if entry.is_dir()]
    assert len(figures) == 1 and (figures[0] / "top_traits.png").is_file()


def test_explain_top_k_above_the_class_count_lists_every_class(model_folder, image, tmp_path, capsys):
    out = tmp_path / "explained"
    code, err = _run(
        [
            "explain",
            "--model",
            str(model_folder),
            str(image),
            "--output-dir",
            str(out),
            "--top-k",
            "50",
            "--no-progress",
        ],
        capsys,
    )
    assert code == 0, err
    assert (out / "report.html").is_file()


def test_an_unexpected_failure_is_one_line_saying_where_to_report_it(monkeypatch, capsys):
    def broken_run(options):
        raise RuntimeError("something the package did not expect")

    monkeypatch.setattr(COMMANDS["synthetic"], "run", broken_run)
    monkeypatch.delenv(DEBUG_VARIABLE, raising=False)
    code, err = _run(["synthetic", "--out", "unused"], capsys)
    assert code == 1
    _assert_one_error_line(
        err, ["unexpected RuntimeError", "something the package did not expect", "bug", "report it", DEBUG_VARIABLE]
    )
    # the traceback on request: the exception goes on to Python, which prints it and exits with 1
    monkeypatch.setenv(DEBUG_VARIABLE, "1")
    with pytest.raises(RuntimeError, match="did not expect"):
        cli_main(["synthetic", "--out", "unused"])
    assert "unexpected RuntimeError" in capsys.readouterr().err
