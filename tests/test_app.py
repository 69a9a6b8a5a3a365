"""The trait explorer app without a browser: what it shows for an image, and readable messages for bad input."""

import importlib.util
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import AutoImageProcessor, pipeline

from modeling_promptcam.app import (
    DEFAULT_HOST,
    ExampleImage,
    InputError,
    TraitExplorer,
    build_app,
    find_examples,
    open_image,
)
from modeling_promptcam.app.ui import _first_of_each
from modeling_promptcam.cli import build_parser
from modeling_promptcam.cli import main as cli_main
from modeling_promptcam.data import to_rgb
from tests.helpers.app import CLASS_NAMES, huge_png, make_atlas, make_examples, random_image, save_model


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    folder = tmp_path_factory.mktemp("model")
    model = save_model(folder)
    examples = make_examples(tmp_path_factory.mktemp("examples") / "birds")
    explorer = TraitExplorer.load(str(folder), examples)
    return folder, model, explorer


def expected_ranking(model, folder, image):
    pixel_values = AutoImageProcessor.from_pretrained(folder)(image, return_tensors="pt").pixel_values
    return model.rank_traits(pixel_values)[0]


def test_explain_shows_the_pipeline_prediction_and_the_traits_in_rank_order(saved, tmp_path):
    folder, model, explorer = saved
    path = tmp_path / "bird.png"
    random_image(1).save(path)
    top = pipeline("image-classification", model=str(folder), top_k=4)(str(path))

    view = explorer.explain(str(path), top_k=3)
    assert list(view.predictions) == [entry["label"] for entry in top[:3]]
    assert list(view.predictions.values()) == pytest.approx([entry["score"] for entry in top[:3]], abs=1e-5)
    ranking = expected_ranking(model, folder, Image.open(path))
    assert [caption for _, caption in view.top_traits] == [
        f"rank {rank + 1}: head {head}" for rank, head in enumerate(ranking.top_traits)
    ]
    assert all(overlay.size == (160, 120) and overlay.mode == "RGB" for overlay, _ in view.top_traits)
    # the grid: an image panel and one panel per head, one row (5 columns of 2.4 inches at 100 dpi)
    assert view.heads.size == (1200, 290)
    assert view.misclassified is None and view.comparison is None
    assert view.summary.replace("\\", "").startswith(f"**Predicted: {top[0]['label']}**")  # Markdown-escaped


def test_true_class_and_class_picker_views(saved, tmp_path):
    folder, _, explorer = saved
    path = tmp_path / "bird.png"
    random_image(2).save(path)
    predicted = explorer.explain(str(path)).explanation.predicted.class_index
    other = (predicted + 1) % len(CLASS_NAMES)

    wrong = explorer.explain(
        str(path), true_class=CLASS_NAMES[other], compare_class=f"00{other + 1}.{CLASS_NAMES[other]}"
    )
    assert wrong.explanation.true.class_index == other
    assert wrong.misclassified is not None and wrong.misclassified.size[0] > 500
    assert wrong.comparison is not None and wrong.comparison.size == wrong.misclassified.size
    assert "Misclassified: the true class is" in wrong.summary

    right = explorer.explain(str(path), true_class=CLASS_NAMES[predicted], compare_class=CLASS_NAMES[predicted])
    assert right.misclassified is None and right.comparison is None
    assert "Correct" in right.summary and "its maps are the ones above" in right.summary


def test_fixed_number_of_traits_and_official_blur(saved, tmp_path):
    _, model, explorer = saved
    path = tmp_path / "bird.png"
    random_image(3).save(path)
    view = explorer.explain(str(path), blur="official", stop=explorer.stop_rule("number", 3), alpha=0.0)
    ranking = view.explanation.predicted.ranking
    assert (ranking.blur, ranking.stop, len(ranking.top_traits)) == ("official", 3, 3)
    spatial = explorer.explain(str(path), blur="spatial").explanation.predicted.ranking
    assert spatial.blur == "spatial" and len(spatial.ranked_heads) == 4
    assert len(view.top_traits) == 3
    # opacity 0: the overlays are the image itself
    image = np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)
    assert np.abs(np.asarray(view.top_traits[0][0], dtype=np.int16) - image).max() <= 1


@pytest.mark.parametrize("mode", ["L", "RGBA", "I;16"])
def test_grayscale_rgba_and_16_bit_images_work(saved, tmp_path, mode):
    folder, _, explorer = saved
    path = tmp_path / f"bird_{mode.replace(';', '')}.png"
    if mode == "I;16":
        values = np.random.default_rng(5).integers(0, 4096, (120, 160), dtype=np.uint16)  # 12-bit sensor values
        Image.fromarray(values).save(path)
    else:
        random_image(4, mode=mode).save(path)
    view = explorer.explain(str(path))
    assert all(overlay.size == (160, 120) for overlay, _ in view.top_traits)
    # the pipeline's reading of a file (alpha dropped); 16-bit grey rescaled by its range as in training, where the
    # stock conversion would clip it to white
    reference = to_rgb(Image.open(path)) if mode == "I;16" else str(path)
    top = pipeline("image-classification", model=str(folder), top_k=1)(reference)[0]
    assert next(iter(view.predictions)) == top["label"]
    assert next(iter(view.predictions.values())) == pytest.approx(top["score"], abs=1e-5)


def test_bad_files_get_readable_messages(saved, tmp_path):
    _, _, explorer = saved
    text = tmp_path / "notes.png"
    text.write_text("these are field notes, not a photo")
    with pytest.raises(InputError, match=r"notes.png is not an image this app can read.*upload a JPEG, PNG"):
        explorer.explain(str(text))
    truncated = tmp_path / "cut.jpg"
    random_image(6).save(tmp_path / "full.jpg")
    truncated.write_bytes((tmp_path / "full.jpg").read_bytes()[:300])
    with pytest.raises(InputError, match="cut.jpg is not an image this app can read"):
        explorer.explain(str(truncated))
    with pytest.raises(InputError, match="gone.png: no such file"):
        explorer.explain(str(tmp_path / "gone.png"))


def test_huge_images_are_refused_before_decoding(saved, tmp_path):
    _, _, explorer = saved
    # 400 megapixels: beyond twice PIL's limit, PIL itself refuses to open it (a decompression bomb)
    bomb = huge_png(tmp_path / "bomb.png", 20000, 20000)
    assert bomb.stat().st_size < 1_000_000
    with pytest.raises(
        InputError, match=r"bomb.png is too large \(over 179 megapixels.*up to 89 megapixels. Downscale it"
    ):
        explorer.explain(str(bomb))
    # 100 megapixels: PIL only warns; the app refuses it from the header, before decoding
    big = huge_png(tmp_path / "big.png", 10000, 10000)
    with pytest.raises(InputError, match=r"big.png is too large \(10000 x 10000 pixels\); the app accepts images up"):
        explorer.explain(str(big))
    with pytest.raises(InputError, match=r"small.png is too large \(160 x 120 pixels\).*up to 1000 pixels"):
        random_image(7).save(tmp_path / "small.png")
        open_image(tmp_path / "small.png", max_pixels=1000)


def test_unknown_classes_and_bad_settings_get_readable_messages(saved, tmp_path):
    _, _, explorer = saved
    path = tmp_path / "bird.png"
    random_image(8).save(path)
    cases = [
        ({"true_class": "Dodo"}, r"Unknown true class 'Dodo': pick one of the model's classes \(for example Black"),
        ({"compare_class": "Sooty"}, "Unknown class to compare 'Sooty'"),
        ({"blur": "gaussian"}, "Unknown blur mode 'gaussian': use one of paper, official, spatial"),
        ({"alpha": 1.5}, "map opacity must be between 0 and 1, got 1.5"),
    ]
    for options, message in cases:
        with pytest.raises(InputError, match=message):
            explorer.explain(str(path), **options)
    with pytest.raises(InputError, match="number of traits must be a whole number from 1 to 4, got 9"):
        explorer.stop_rule("number", 9)
    with pytest.raises(InputError, match="Unknown stop rule 'sometimes'"):
        explorer.stop_rule("sometimes", 2)
    assert explorer.stop_rule("misclassified", 9) == "misclassified" and explorer.stop_rule("number", 2.0) == 2


def test_stop_rule_choices_come_from_the_models_registry(saved, monkeypatch):
    from modeling_promptcam.app.explorer import BLUR_LABELS, STOP_LABELS
    from modeling_promptcam.modeling_promptcam import BLUR_MODES, STOP_RULES, StopRule

    _, _, explorer = saved
    assert list(STOP_LABELS) == list(STOP_RULES) and list(BLUR_LABELS) == list(BLUR_MODES)
    assert all(STOP_RULES[name].description in label for name, label in STOP_LABELS.items())
    # a rule registered with the model is accepted by the app's control without any change to the app
    monkeypatch.setitem(STOP_RULES, "all", StopRule("all", "every head", lambda ranked, flipped, stop: ranked))
    assert explorer.stop_rule("all", None) == "all"
    with pytest.raises(InputError, match="Unknown stop rule 'sometimes': use 'misclassified' or 'number' or 'all'"):
        explorer.stop_rule("sometimes", 2)


def test_example_folders_and_the_class_gallery(saved, caplog):
    _, _, explorer = saved
    find_examples(os.path.dirname(os.path.dirname(explorer.examples[0].path)), explorer.model)
    assert "Not_A_Model_Class is not a class of the model; its images get no true class" in caplog.text
    found = [(example.label, example.class_index) for example in explorer.examples]
    assert (
        found == [("003.Sooty_Albatross", 2)] * 2 + [("Laysan_Albatross", 1)] * 2 + [("Not_A_Model_Class", None)] * 2
    )
    assert all(example.path.endswith(".png") for example in explorer.examples)

    figures = explorer.gallery("Sooty_Albatross", count=5)
    assert [caption.split(":")[0] for _, caption in figures] == ["bird0.png", "bird1.png"]
    assert all(" predicted " in caption for _, caption in figures)
    for (figure, _), example in zip(figures, explorer.examples[:2]):
        # one strip: the image and the class's top traits on it, 2.4 inches each at 100 dpi
        pixel_values = explorer.image_processor(Image.open(example.path), return_tensors="pt").pixel_values
        ranking = explorer.model.rank_traits(pixel_values, target_classes=torch.tensor([2]))[0]
        assert figure.size == (240 * (len(ranking.top_traits) + 1), 290)
    assert len(explorer.gallery("Laysan_Albatross", count=1)) == 1
    with pytest.raises(InputError, match="no example images of Groove_billed_Ani"):
        explorer.gallery("Groove_billed_Ani")
    with pytest.raises(InputError, match="Unknown class 'Not_A_Model_Class'"):
        explorer.gallery("Not_A_Model_Class")
    # the Explain tab's table shows at most EXAMPLES_PER_CLASS images of each folder
    many = [ExampleImage(f"a{number}.png", "A", 0) for number in range(3)] + [ExampleImage("b.png", "B", None)]
    assert [example.path for example in _first_of_each(many)] == ["a0.png", "a1.png", "b.png"]
    with pytest.raises(FileNotFoundError, match="examples folder .* does not exist"):
        find_examples("/nonexistent/examples", explorer.model)


def test_app_events_show_bad_input_as_messages_and_keep_serving(saved, tmp_path):
    import gradio as gr

    folder, _, explorer = saved
    demo = build_app(explorer)
    events = {function.api_name: function.fn for function in demo.fns.values()}
    assert {"explain", "gallery"} <= set(events)
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    settings = ("paper", "misclassified", 2, 0.5, 3)
    with pytest.raises(gr.Error, match="notes.png is not an image this app can read"):
        events["explain"]({"path": str(text)}, None, None, *settings)
    with pytest.raises(gr.Error) as shown:
        events["explain"]({"path": str(text)}, "<b>Dodo</b>", None, *settings)
    assert shown.value.message.startswith("Unknown true class '&lt;b&gt;Dodo&lt;/b&gt;'")  # shown as typed
    with pytest.raises(gr.Error, match="no example images of Groove_billed_Ani"):
        events["gallery"]("Groove_billed_Ani", 4, "paper", "number", 2, 0.5)

    good = tmp_path / "bird.png"
    random_image(9).save(good)
    predictions, summary, traits, heads, misclassified, comparison = events["explain"](
        {"path": str(good)}, None, None, *settings
    )
    assert list(predictions) == list(explorer.explain(str(good), top_k=3).predictions)
    assert summary.startswith("**Predicted:") and heads.size == (1200, 290)
    assert misclassified["visible"] is False and comparison["visible"] is False
    assert events["explain"](None, None, None, *settings)[1] == "Upload an image or pick an example."


def test_missing_gradio_names_the_extra(saved, monkeypatch, capsys):
    folder, _, explorer = saved
    monkeypatch.setitem(sys.modules, "gradio", None)  # import gradio now raises ImportError
    with pytest.raises(ImportError, match=r'pip install "modeling-promptcam\[app\]"'):
        build_app(explorer)
    assert cli_main(["app", "--model", str(folder)]) == 1
    assert 'pip install "modeling-promptcam[app]"' in capsys.readouterr().err


def test_cli_app_arguments(saved, tmp_path, capsys):
    folder, _, _ = saved
    args = build_parser().parse_args(["app", "--model", str(folder)])
    assert (args.host, args.port, args.examples) == (DEFAULT_HOST, 7860, None) == ("127.0.0.1", 7860, None)
    assert cli_main(["app", "--model", str(folder), "--examples", str(tmp_path / "none")]) == 1
    assert "is not a folder (expected DIR/<class name>/<image>)" in capsys.readouterr().err
    assert cli_main(["app", "--model", str(tmp_path)]) == 1
    assert "not a saved Prompt-CAM model folder" in capsys.readouterr().err
    with pytest.raises(SystemExit) as shown:
        cli_main(["app", "--help"])
    assert shown.value.code == 0
    assert "127.0.0.1" in capsys.readouterr().out


def load_space_app():
    path = Path(__file__).resolve().parents[1] / "examples" / "space_app.py"
    spec = importlib.util.spec_from_file_location("space_app", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_space_entry_point_reads_the_model_from_the_environment(saved, monkeypatch):
    folder, _, explorer = saved
    space_app = load_space_app()
    monkeypatch.delenv("PROMPTCAM_MODEL", raising=False)
    with pytest.raises(SystemExit, match="Set PROMPTCAM_MODEL to the Prompt-CAM model to serve"):
        space_app.create_app()

    examples = os.path.dirname(os.path.dirname(explorer.examples[0].path))
    monkeypatch.setenv("PROMPTCAM_MODEL", str(folder))
    monkeypatch.setenv("PROMPTCAM_EXAMPLES", examples)
    monkeypatch.delenv("GRADIO_SERVER_NAME", raising=False)
    launched = {}
    monkeypatch.setattr(space_app, "launch", lambda app, **options: launched.update(app=app, **options))
    space_app.main()
    assert (launched["host"], launched["port"]) == ("127.0.0.1", 7860)  # off Spaces: this machine only
    events = {function.api_name for function in launched["app"].fns.values()}
    assert {"explain", "gallery"} <= events
    monkeypatch.setenv("GRADIO_SERVER_NAME", "0.0.0.0")  # what a Space sets
    monkeypatch.setenv("GRADIO_SERVER_PORT", "7861")
    space_app.main()
    assert (launched["host"], launched["port"]) == ("0.0.0.0", 7861)


def test_the_class_atlas_shows_the_heads_in_rank_order_with_their_most_confident_image(saved, tmp_path):
    from modeling_promptcam.app import ATLAS_COLUMNS, read_atlas
    from modeling_promptcam.evaluation.atlas import AtlasFileError

    folder, model, explorer = saved
    atlas_file = tmp_path / "atlas.json"
    atlas = make_atlas(atlas_file, model, Path(explorer.examples[0].path).parents[1])
    with_atlas = TraitExplorer.load(str(folder), None, atlas_file=atlas_file)
    assert with_atlas.atlas_classes == ["Laysan_Albatross", "Sooty_Albatross"]
    view = with_atlas.class_atlas("Sooty_Albatross", count=2)
    entry = atlas.classes["Sooty_Albatross"]
    assert len(ATLAS_COLUMNS) == len(view.rows[0])
    assert [row[:3] for row in view.rows] == [
        [rank + 1, head.head, head.named_part] for rank, head in enumerate(entry.heads)
    ]
    assert view.rows[0][4] == f"{entry.heads[0].consistency:.2f}" and view.rows[0][-1] == 2
    assert "**Sooty\\_Albatross**: 2 image(s), 4 heads in rank order." in view.summary
    assert [caption.split(" (")[0] for _, caption in view.gallery] == [
        f"rank {rank + 1}: head {head.head}, {head.named_part}" for rank, head in enumerate(entry.heads[:2])
    ]
    assert all(image.size == (160, 120) for image, _ in view.gallery)  # the example's own size
    with pytest.raises(InputError, match="no images of Groove_billed_Ani"):
        with_atlas.class_atlas("Groove_billed_Ani")
    with pytest.raises(InputError, match="No atlas loaded"):
        explorer.class_atlas("Sooty_Albatross")
    foreign = tmp_path / "foreign.json"
    foreign.write_text('{"Dodo": {"images": 1, "heads": []}}')
    with pytest.raises(AtlasFileError, match="classes the model does not know: Dodo"):
        read_atlas(foreign, model)
    foreign.write_text('{"Dodo": [1, 2]}')
    with pytest.raises(AtlasFileError, match="is it an atlas.json"):
        read_atlas(foreign, model)
    demo = build_app(with_atlas, warm_up=False)
    events = {function.api_name: function.fn for function in demo.fns.values()}
    summary, table, gallery = events["atlas"]("Sooty_Albatross", 1, 0.5)
    assert table["value"] == view.rows and len(gallery) == 1
    assert cli_main(["app", "--model", str(folder), "--atlas", str(tmp_path / "none.json")]) == 1
