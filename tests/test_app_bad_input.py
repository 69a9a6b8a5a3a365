"""The trait explorer's core off the happy path (docs/bad-input.md): every bad upload, setting or model folder is an
[`InputError`] (shown in the page) or a named error at load time, whose message names the problem and the fix; the
model never runs on bad input, nothing is written, and the explorer keeps answering afterwards."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from modeling_promptcam import PromptCamForImageClassification
from modeling_promptcam.app import InputError, TraitExplorer
from modeling_promptcam.files import ModelFolderError
from tests.helpers.app import CLASS_NAMES, make_examples, random_image, save_model


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    folder = tmp_path_factory.mktemp("model")
    save_model(folder)
    examples = make_examples(tmp_path_factory.mktemp("examples") / "birds")
    files = tmp_path_factory.mktemp("uploads")
    random_image(1).save(files / "bird.png")
    random_image(2).save(files / "full.jpg")
    (files / "cut.jpg").write_bytes((files / "full.jpg").read_bytes()[:300])
    (files / "notes.png").write_text("field notes, not a photo")
    (files / "empty.png").write_bytes(b"")
    values = np.random.default_rng(3).uniform(0, 1, (30, 40)).astype(np.float32)
    values[1, 1] = np.inf
    Image.fromarray(values).save(files / "inf.tif")
    (files / "album.png").mkdir()
    return folder, TraitExplorer.load(str(folder), examples), files


@pytest.fixture
def model_never_runs(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the model ran on bad input")

    monkeypatch.setattr(PromptCamForImageClassification, "forward", refuse)


# (case id, image: a file name of the uploads folder or an object, message parts)
UPLOADS = [
    ("no image", None, ["Upload an image file", "NoneType"]),
    ("a number", 3, ["Upload an image file", "int"]),
    ("a list", ["bird.png"], ["Upload an image file", "list"]),
    ("a missing file", "gone.png", ["gone.png: no such file"]),
    ("a folder", "album.png", ["album.png is a folder", "upload a JPEG, PNG"]),
    ("a text file", "notes.png", ["notes.png is not an image this app can read", "upload a JPEG, PNG"]),
    ("an empty file", "empty.png", ["empty.png is not an image this app can read"]),
    ("a truncated JPEG", "cut.jpg", ["cut.jpg is not an image this app can read"]),
    ("a float TIFF with inf", "inf.tif", ["inf.tif", "NaN or infinite pixel value", "nan_to_num"]),
    ("an image of a mode with no RGB conversion", Image.new("La", (20, 20)), ["mode La cannot be converted", "8-bit"]),
    (
        "a float image with NaN",
        Image.fromarray(np.full((20, 20), np.nan, dtype=np.float32)),
        ["400 NaN or infinite pixel value"],
    ),
]


@pytest.mark.parametrize(("image", "named"), [case[1:] for case in UPLOADS], ids=[case[0] for case in UPLOADS])
def test_bad_uploads_are_input_errors_naming_the_problem(saved, model_never_runs, image, named):
    _, explorer, files = saved
    before = sorted(path.name for path in files.iterdir())
    if isinstance(image, str):
        image = str(files / image)
    with pytest.raises(InputError) as raised:
        explorer.explain(image)
    for part in named:
        assert part in str(raised.value), (part, str(raised.value))
    assert sorted(path.name for path in files.iterdir()) == before


# (case id, explain() keywords, message parts)
SETTINGS = [
    ("top_k 0", {"top_k": 0}, ["number of predictions must be a whole number of at least 1", "got 0"]),
    ("top_k negative", {"top_k": -3}, ["got -3"]),
    ("top_k a fraction", {"top_k": 2.5}, ["whole number", "got 2.5"]),
    ("top_k NaN", {"top_k": float("nan")}, ["got nan"]),
    ("top_k text", {"top_k": "five"}, ["got 'five'"]),
    ("opacity above 1", {"alpha": 1.5}, ["map opacity must be between 0 and 1", "1.5"]),
    ("opacity negative", {"alpha": -0.1}, ["between 0 and 1"]),
    ("opacity NaN", {"alpha": float("nan")}, ["between 0 and 1", "nan"]),
    ("opacity text", {"alpha": "half"}, ["between 0 and 1", "half"]),
    ("an unknown blur", {"blur": "gaussian"}, ["Unknown blur mode 'gaussian'", "paper, official, spatial"]),
    ("stop 0", {"stop": 0}, ["stop must be 'misclassified' or an integer in [1, 4]", "got 0"]),
    ("stop above the heads", {"stop": 7}, ["integer in [1, 4]", "got 7"]),
    ("stop a word", {"stop": "often"}, ["got 'often'"]),
    ("an unknown true class", {"true_class": "Dodo"}, ["Unknown true class 'Dodo'", "Black_footed_Albatross"]),
    ("an unknown class to compare", {"compare_class": "Kiwi"}, ["Unknown class to compare 'Kiwi'"]),
]


@pytest.mark.parametrize(("options", "named"), [case[1:] for case in SETTINGS], ids=[case[0] for case in SETTINGS])
def test_bad_settings_are_input_errors_before_the_model_runs(saved, model_never_runs, options, named):
    _, explorer, files = saved
    with pytest.raises(InputError) as raised:
        explorer.explain(str(files / "bird.png"), **options)
    for part in named:
        assert part in str(raised.value), (part, str(raised.value))


@pytest.mark.parametrize(
    ("rule", "count", "named"),
    [
        ("number", 0, "from 1 to 4, got 0"),
        ("number", 9, "from 1 to 4, got 9"),
        ("number", 2.5, "got 2.5"),
        ("number", float("nan"), "got nan"),
        ("number", "x", "got 'x'"),
        ("number", None, "got None"),
        ("sometimes", 2, "Unknown stop rule 'sometimes'"),
    ],
)
def test_bad_stop_controls_are_input_errors(saved, rule, count, named):
    _, explorer, _ = saved
    with pytest.raises(InputError, match=named.replace("(", r"\(").replace("[", r"\[")):
        explorer.stop_rule(rule, count)


@pytest.mark.parametrize(
    ("arguments", "named"),
    [
        (("Laysan_Albatross",), None),
        (("",), "Pick a class first"),
        (("Dodo",), "Unknown class 'Dodo'"),
        (("Laysan_Albatross", 0), "number of gallery images must be a whole number of at least 1, got 0"),
        (("Laysan_Albatross", float("nan")), "got nan"),
        (("Laysan_Albatross", 2, "gaussian"), "Unknown blur mode"),
        (("Laysan_Albatross", 2, "paper", 0), "stop must be"),
    ],
)
def test_bad_gallery_requests_are_input_errors(saved, model_never_runs, arguments, named):
    _, explorer, _ = saved
    if named is None:  # the fixture's check that the model would run: it does for a good request
        with pytest.raises(AssertionError, match="the model ran"):
            explorer.gallery(*arguments)
        return
    with pytest.raises(InputError, match=named):
        explorer.gallery(*arguments)


def test_bad_model_folders_are_named_at_load_time(saved, tmp_path):
    folder, _, _ = saved
    with pytest.raises(FileNotFoundError, match="nope is not a model folder.*or a Hub model id"):
        TraitExplorer.load(str(tmp_path / "nope"))
    a_file = tmp_path / "model.safetensors"
    a_file.write_bytes(b"x")
    with pytest.raises(FileNotFoundError, match="model.safetensors is not a model folder"):
        TraitExplorer.load(str(a_file))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="not a saved Prompt-CAM model folder \\(no config.json\\)"):
        TraitExplorer.load(str(tmp_path / "empty"))
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    with pytest.raises(ModelFolderError, match="config.json is not valid JSON.*save the model again"):
        TraitExplorer.load(str(broken))
    with pytest.raises(FileNotFoundError, match="examples folder .* does not exist"):
        TraitExplorer.load(str(folder), str(tmp_path / "no-examples"))
    for max_pixels in (0, -5, 1.5):
        with pytest.raises(ValueError, match="max_pixels must be a whole number >= 1"):
            TraitExplorer.load(str(folder), max_pixels=max_pixels)


def test_the_explorer_keeps_answering_after_every_refusal(saved):
    _, explorer, files = saved
    for image, _ in [case[1:] for case in UPLOADS]:
        with pytest.raises(InputError):
            explorer.explain(str(files / image) if isinstance(image, str) else image)
    for options, _ in [case[1:] for case in SETTINGS]:
        with pytest.raises(InputError):
            explorer.explain(str(files / "bird.png"), **options)
    view = explorer.explain(str(files / "bird.png"), top_k=50)  # above the class count: every class
    assert sorted(view.predictions) == sorted(CLASS_NAMES)
    assert sum(view.predictions.values()) == pytest.approx(1.0, abs=1e-5)
