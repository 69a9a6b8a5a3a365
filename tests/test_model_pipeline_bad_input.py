"""The `prompt-cam` pipeline off the happy path (docs/bad-input.md): wrong types, missing, corrupt and truncated files,
non-finite images and arrays, and out-of-range settings each raise one exception type whose message names the
problem and the fix, before the model runs; the pipeline keeps working afterwards."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image, UnidentifiedImageError
from transformers import pipeline

from modeling_promptcam import PromptCamForImageClassification
from tests.helpers.models import save_tiny_model

CLASSES = ["a", "b", "c"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipeline_bad_input")
    save_tiny_model(root / "model", CLASSES)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(root / "fine.png")
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(root / "full.jpg")
    (root / "cut.jpg").write_bytes((root / "full.jpg").read_bytes()[:400])
    (root / "text.jpg").write_bytes(b"not an image at all\n" * 20)
    (root / "empty.png").write_bytes(b"")
    values = rng.uniform(0, 1, (20, 20)).astype(np.float32)
    values[2, 3] = np.nan
    Image.fromarray(values).save(root / "nan.tif")
    (root / "folder.png").mkdir()
    return root


@pytest.fixture(scope="module")
def explainer(files):
    return pipeline("prompt-cam", model=str(files / "model"))


@pytest.fixture
def model_never_runs(monkeypatch):
    """Fail the test if the model is called: each refusal comes before any model work."""

    def refuse(*args, **kwargs):
        raise AssertionError("the model ran on bad input")

    monkeypatch.setattr(PromptCamForImageClassification, "forward", refuse)
    monkeypatch.setattr(PromptCamForImageClassification, "rank_traits", refuse)


NAN_ARRAY = np.full((30, 40, 3), np.nan, dtype=np.float32)
INF_TENSOR = torch.zeros(3, 30, 40).index_fill_(1, torch.tensor([4]), float("inf"))

# (case id, input (a file name of the fixture's folder is resolved there), call arguments, exception, message parts)
IMAGE_CASES = [
    ("an int", 42, {}, TypeError, ["got int", "PIL image, a file path"]),
    ("a dict", {"image": "x"}, {}, TypeError, ["got dict", "PIL image, a file path, an open binary file"]),
    ("bytes", b"\x89PNG", {}, TypeError, ["got bytes", "base64 string"]),
    ("a list with an int", ["fine.png", 7], {}, TypeError, ["item 1 of the images is of type int", "PIL image"]),
    ("a missing file", "nope.jpg", {}, FileNotFoundError, ["nope.jpg", "no such image file", "check the path"]),
    ("a mistyped name that is valid base64", "cats", {}, FileNotFoundError, ["cats", "no such image file"]),
    ("a folder", "folder.png", {}, IsADirectoryError, ["folder.png", "is a folder", "path of an image file"]),
    ("a text file", "text.jpg", {}, UnidentifiedImageError, ["text.jpg", "not an image PIL can identify", "JPEG"]),
    ("an empty file", "empty.png", {}, UnidentifiedImageError, ["empty.png", "not an image PIL can identify"]),
    ("a truncated JPEG", "cut.jpg", {}, OSError, ["cut.jpg", "not a readable image", "fix or replace"]),
    ("an open file of text", "open text file", {}, UnidentifiedImageError, ["not an image PIL can identify"]),
    ("a float TIFF with NaN", "nan.tif", {}, ValueError, ["nan.tif", "1 NaN or infinite pixel", "nan_to_num"]),
    ("a NaN array", NAN_ARRAY, {}, ValueError, ["array holds NaN or infinite", "nan_to_num"]),
    ("an inf tensor", INF_TENSOR, {}, ValueError, ["array holds NaN or infinite", "pass the image file"]),
]
SETTING_CASES = [
    ("top_k 0", {"top_k": 0}, ["top_k", ">= 1", "got 0"]),
    ("top_k negative", {"top_k": -2}, ["top_k", ">= 1", "got -2"]),
    ("top_k a float", {"top_k": 2.5}, ["top_k", "whole number", "got 2.5"]),
    ("top_k a bool", {"top_k": True}, ["top_k", "got True"]),
    ("top_k text", {"top_k": "3"}, ["top_k", "got '3'"]),
    ("rank_traits text", {"rank_traits": "False"}, ["rank_traits must be True or False", "got 'False'"]),
    ("rank_traits 1", {"rank_traits": 1}, ["rank_traits must be True or False"]),
    ("an unknown blur", {"rank_traits": True, "blur": "gauss"}, ["blur must be one of paper, official", "'gauss'"]),
    ("stop 0", {"rank_traits": True, "stop": 0}, ["stop must be 'misclassified' or an integer in [1, 4]", "got 0"]),
    ("stop above the heads", {"rank_traits": True, "stop": 5}, ["integer in [1, 4]", "got 5"]),
    ("stop an unknown word", {"rank_traits": True, "stop": "often"}, ["stop must be", "'often'"]),
    ("blur without ranking", {"blur": "official"}, ["blur='official'", "rank_traits=True"]),
    ("stop without ranking", {"stop": 2}, ["stop=2", "rank_traits=True"]),
    ("an unknown function_to_apply", {"function_to_apply": "relu"}, ["relu", "softmax"]),
]


def _resolve(files, value):
    if isinstance(value, str) and value == "open text file":
        return io.BytesIO(b"plain text, not an image")
    if isinstance(value, str) and value != "cats":  # file names live in the fixture's folder; "cats" stays bare
        return str(files / value)
    if isinstance(value, list):
        return [_resolve(files, item) for item in value]
    return value


@pytest.mark.parametrize(
    ("source", "arguments", "error", "named"),
    [case[1:] for case in IMAGE_CASES],
    ids=[case[0] for case in IMAGE_CASES],
)
def test_bad_images_are_refused_naming_the_problem_and_the_fix(
    explainer, files, model_never_runs, source, arguments, error, named
):
    before = sorted(path.name for path in files.iterdir())
    with pytest.raises(error) as raised:
        explainer(_resolve(files, source), **arguments)
    assert type(raised.value) is error  # the documented type, not a subclass standing in for another
    for part in named:
        assert part in str(raised.value)
    assert sorted(path.name for path in files.iterdir()) == before  # nothing written beside the inputs


@pytest.mark.parametrize(
    ("arguments", "named"), [case[1:] for case in SETTING_CASES], ids=[case[0] for case in SETTING_CASES]
)
def test_bad_settings_are_refused_before_the_model_runs(explainer, files, model_never_runs, arguments, named):
    with pytest.raises(ValueError) as raised:
        explainer(str(files / "fine.png"), **arguments)
    for part in named:
        assert part in str(raised.value)


def test_settings_at_construction_are_checked_too(files):
    with pytest.raises(ValueError, match="top_k must be a whole number >= 1"):
        pipeline("prompt-cam", model=str(files / "model"), top_k=0)


def test_the_pipeline_still_works_after_each_refusal_and_caps_top_k(explainer, files):
    for source, arguments, error, _ in [case[1:] for case in IMAGE_CASES]:
        with pytest.raises(error):
            explainer(_resolve(files, source), **arguments)
    results = explainer(str(files / "fine.png"), top_k=50)  # above the class count: every class, as the stock one
    assert sorted(result["label"] for result in results) == CLASSES
    assert all(np.isfinite(result["trait_maps"]).all() for result in results)


def test_open_files_are_image_sources_alone_and_in_lists(explainer, files):
    data = (files / "fine.png").read_bytes()
    single = explainer(io.BytesIO(data), top_k=2)
    listed = explainer([io.BytesIO(data), str(files / "fine.png")], top_k=2)
    assert [r["label"] for r in single] == [r["label"] for r in listed[0]] == [r["label"] for r in listed[1]]


def test_a_finite_array_still_goes_to_the_processor_unchanged(explainer):
    array = np.random.default_rng(1).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    from_array = explainer(array, top_k=3)
    from_image = explainer(Image.fromarray(array), top_k=3)
    assert [r["label"] for r in from_array] == [r["label"] for r in from_image]
    for left, right in zip(from_array, from_image):
        assert left["score"] == pytest.approx(right["score"], abs=1e-6)
