"""Figures, the HTML report and `promptcam explain` on a tiny saved model."""

import base64
import io
import re

import numpy as np
import pytest
from PIL import Image
from transformers import AutoImageProcessor

from modeling_promptcam.cli import main as cli_main
from modeling_promptcam.explain import explain_image, resolve_class
from modeling_promptcam.explain.figures import (
    DPI,
    figures_for,
    overlay,
    plot_top_traits,
    png_bytes,
    save_png,
    upsample_map,
)
from tests.helpers.models import save_tiny_model

CLASS_NAMES = ["001.Black_footed_Albatross", "002.Laysan_Albatross", "003.Sooty_Albatross", "004.Groove_billed_Ani"]


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    folder = tmp_path_factory.mktemp("model")
    model = save_tiny_model(folder, [name.split(".", 1)[1] for name in CLASS_NAMES])
    return folder, model, AutoImageProcessor.from_pretrained(folder)


def random_image(seed, size=(90, 60)):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def test_upsampled_maps_are_normalised_per_map_and_keep_their_peak():
    trait_map = np.zeros((4, 4), dtype=np.float32)
    trait_map[1, 3] = 0.02
    upsampled = upsample_map(trait_map, (80, 40))
    assert upsampled.shape == (40, 80)
    assert upsampled.min() == 0.0 and upsampled.max() == pytest.approx(1.0)
    row, column = np.unravel_index(upsampled.argmax(), upsampled.shape)
    assert 10 <= row < 20 and 60 <= column < 80  # the peak stays in patch (1, 3)
    blended = overlay(Image.new("RGB", (80, 40)), trait_map, alpha=0.5)
    assert blended.shape == (40, 80, 3) and 0.0 <= blended.min() and blended.max() <= 0.5 + 1e-6
    with pytest.raises(ValueError, match="alpha must be in"):
        overlay(Image.new("RGB", (8, 8)), trait_map, alpha=2.0)


def test_explanation_and_figures(saved, tmp_path):
    _, model, processor = saved
    image = random_image(0)
    true_class = 3
    explanation = explain_image(model, processor, image, top_k=3, classes=[1, 2], true_class=true_class)
    pixel_values = processor(image, return_tensors="pt").pixel_values
    logits = model(pixel_values).logits[0].detach()
    predicted = int(logits.argmax())
    assert explanation.predicted.class_index == predicted
    assert [name for name, _ in explanation.predictions] == [
        model.config.id2label[int(i)] for i in logits.topk(3).indices
    ]
    assert explanation.predictions[0][1] == pytest.approx(float(logits.softmax(-1).max()), abs=1e-6)
    maps = model(pixel_values, output_trait_maps=True).trait_maps[0]
    np.testing.assert_allclose(explanation.predicted.trait_maps, maps[predicted].detach().numpy(), atol=1e-6)
    assert explanation.misclassified == (predicted != true_class)

    figures = figures_for(explanation)
    expected = {"top_traits", "heads"} | ({"misclassified"} if predicted != true_class else set())
    expected |= {f"class_{model.config.id2label[c]}" for c in (1, 2) if c != predicted}
    assert set(figures) == expected
    for stem, figure in figures.items():
        path = tmp_path / f"{stem}.png"
        save_png(figure, path)
        with Image.open(path) as png:
            assert png.format == "PNG"
            width, height = figure.get_size_inches() * DPI
            assert png.size == (round(width), round(height))
    strip = plot_top_traits(explanation.image, explanation.predicted)
    assert len([axis for axis in strip.axes if axis.images]) == len(explanation.predicted.ranking.top_traits) + 1
    titles = [axis.get_title() for axis in strip.axes if axis.get_title().startswith("rank")]
    assert titles == [f"rank {r + 1}: head {h}" for r, h in enumerate(explanation.predicted.ranking.top_traits)]
    assert Image.open(io.BytesIO(png_bytes(strip))).format == "PNG"


def test_class_names_resolve_from_plain_and_numbered_names(saved):
    _, model, _ = saved
    assert resolve_class(model, "Sooty_Albatross") == 2
    assert resolve_class(model, "003.Sooty_Albatross") == 2
    assert resolve_class(model, "Sooty") is None
    from modeling_promptcam.explain.explanation import resolve_classes

    names = ["Sooty", "003.Sooty_Albatross", "Nowhere", "Sooty_Albatross"]
    assert resolve_classes(model, names) == ({"003.Sooty_Albatross": 2, "Sooty_Albatross": 2}, ["Sooty", "Nowhere"])


def test_cli_explain_end_to_end_with_bad_inputs(saved, tmp_path, capsys):
    folder, model, _ = saved
    images = tmp_path / "images"
    (images / CLASS_NAMES[3]).mkdir(parents=True)
    good = images / "bird.jpg"
    random_image(1).save(good)
    labelled = images / CLASS_NAMES[3] / "ani.png"
    random_image(2, (64, 64)).save(labelled)
    corrupt = images / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8 not really a jpeg")
    missing = images / "missing.png"
    out = tmp_path / "out"

    code = cli_main(
        ["explain", "--model", str(folder), str(good), str(corrupt), str(missing), str(labelled)]
        + ["--classes", "Laysan_Albatross", "Unknown_Bird", "--top-k", "2", "--out", str(out)]
    )
    assert code == 1  # something failed, the rest was processed
    err = capsys.readouterr().err
    assert "unknown class name 'Unknown_Bird'" in err
    assert f"{corrupt}: not a readable image" in err
    assert f"{missing}: no such file" in err

    for stem in ("bird", "ani"):
        for figure in ("top_traits", "heads"):
            with Image.open(out / stem / f"{figure}.png") as png:
                assert png.format == "PNG" and png.size[0] > 100
    pixel_values = AutoImageProcessor.from_pretrained(folder)(Image.open(labelled), return_tensors="pt").pixel_values
    predicted = int(model(pixel_values).logits.argmax())
    assert (out / "ani" / "misclassified.png").exists() == (predicted != 3)

    report = (out / "report.html").read_text()
    embedded = re.findall(r"src='data:image/png;base64,([^']+)'", report)
    assert len(embedded) == sum(1 for _ in out.glob("*/*.png"))
    assert Image.open(io.BytesIO(base64.b64decode(embedded[0]))).format == "PNG"
    assert "corrupt.jpg" in report and "no such file" in report and "<h2>" in report
    assert str(tmp_path) not in re.sub(r"<h2>[^<]*</h2>|<li>[^<]*</li>", "", report)  # no links to other files


def test_cli_explain_all_good_exits_zero_and_rejects_a_missing_model(saved, tmp_path, capsys):
    folder, _, _ = saved
    image = tmp_path / "x.png"
    random_image(4).save(image)
    assert cli_main(["explain", "--model", str(folder), str(image), "--out", str(tmp_path / "o"), "--stop", "2"]) == 0
    assert cli_main(["explain", "--model", str(tmp_path / "nothing"), str(image)]) == 1
    assert "not a saved Prompt-CAM model folder" in capsys.readouterr().err
    with pytest.raises(SystemExit) as usage:
        cli_main(["explain", "--model", str(folder), str(image), "--stop", "many"])
    assert usage.value.code == 2


def test_a_16_bit_image_is_explained_as_its_rescaled_8_bit_version(saved):
    """`explain_image` converts through `data.images.to_rgb` (as training does): a 16-bit grey image is rescaled by
    its value range, not clipped at 255."""
    _, model, processor = saved
    values = np.random.default_rng(7).integers(1000, 60000, (60, 90)).astype(np.uint16)
    sixteen = Image.fromarray(values)
    assert sixteen.mode == "I;16"
    low, high = int(values.min()), int(values.max())
    eight = Image.fromarray(np.round((values - low) / (high - low) * 255.0).astype(np.uint8), mode="L")
    from_sixteen = explain_image(model, processor, sixteen, top_k=4, classes=[1, 2])
    from_eight = explain_image(model, processor, eight, top_k=4, classes=[1, 2])
    assert from_sixteen.image.mode == "RGB" and from_sixteen.image.size == (90, 60)
    assert np.array_equal(np.asarray(from_sixteen.image), np.asarray(from_eight.image))
    assert [name for name, _ in from_sixteen.predictions] == [name for name, _ in from_eight.predictions]
    for (_, p16), (_, p8) in zip(from_sixteen.predictions, from_eight.predictions):
        assert p16 == pytest.approx(p8, abs=1e-6)
    for view16, view8 in zip(
        [from_sixteen.predicted, *from_sixteen.requested], [from_eight.predicted, *from_eight.requested]
    ):
        np.testing.assert_allclose(view16.trait_maps, view8.trait_maps, atol=1e-6)
        assert view16.ranking.ranked_heads == view8.ranking.ranked_heads
    # PIL's own conversion clips every value above 255: the image the model would have seen is white
    assert np.asarray(sixteen.convert("RGB")).min() == 255


def test_the_one_html_writer_lays_out_sections_and_embeds_figures(tmp_path):
    from modeling_promptcam.explain.figures import plot_trait_map
    from modeling_promptcam.explain.report import ReportSection, write_html_page

    png = png_bytes(plot_trait_map(Image.new("RGB", (16, 16)), np.eye(4)))
    sections = [
        ReportSection(paragraphs=["intro with <b>markup</b>"], table=[("accuracy", "0.900")]),
        ReportSection(
            heading="Class <A>",
            level=3,
            warnings=["careful"],
            paragraphs=["text"],
            table=[("a", "1")],
            table_header=("class", "probability"),
            items=["one", "two"],
            figures=[("top traits", png), ("", png)],
        ),
        ReportSection(heading="Not explained", is_warning=True, items=["x.png: no such file"]),
    ]
    path = tmp_path / "report.html"
    write_html_page(path, "Title & co", sections)
    page = path.read_text()
    expected = [
        "<title>Title &amp; co</title>",
        "<h1>Title &amp; co</h1>",
        "<p>intro with <b>markup</b></p>",  # paragraphs are HTML fragments
        "<table><tr><th>accuracy</th><td>0.900</td></tr></table>",  # no header: each row headed by its first cell
        "<h3>Class &lt;A&gt;</h3>",  # headings are text
        "<p class='bad'>careful</p>",
        "<p>text</p>",
        "<table><tr><th>class</th><th>probability</th></tr><tr><td>a</td><td>1</td></tr></table>",
        "<ul><li>one</li><li>two</li></ul>",
        "<h4>top traits</h4><img alt='top traits' src='data:image/png;base64,",
        "<h2 class='bad'>Not explained</h2>",
    ]
    positions = [page.index(part) for part in expected]
    assert positions == sorted(positions)  # in the order given
    embedded = re.findall(r"src='data:image/png;base64,([^']+)'", page)
    assert [base64.b64decode(data) for data in embedded] == [png, png]
    assert not list(tmp_path.glob("*.tmp"))  # written atomically
