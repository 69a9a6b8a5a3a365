"""The table of saliency methods (`evaluation.saliency.SALIENCY_METHODS`): its entries compute what the public
functions compute, every list of choices comes from it, a method registered in it is evaluated by
`run_faithfulness`, and the heads rule has one reader."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image
from transformers import AutoImageProcessor

from modeling_promptcam.data import EvalTransform
from modeling_promptcam.evaluation import (
    METHODS,
    PROBE,
    PROMPT_CAM,
    SALIENCY_METHODS,
    FaithfulnessOptions,
    LinearProbeForImageClassification,
    SaliencyMaps,
    SaliencyMethod,
    attention_rollout,
    eigen_cam,
    finer_cam,
    grad_cam,
    insertion_deletion,
    layer_cam,
    parse_heads,
    promptcam_saliency,
    run_faithfulness,
)
from modeling_promptcam.evaluation.options import METHODS as OPTION_METHODS
from modeling_promptcam.modeling_promptcam import PromptCamForImageClassification
from tests.helpers.evaluation import write_image_folder
from tests.helpers.models import IMAGE_SIZE, tiny_model


def test_methods_are_the_registry_in_table_order():
    # the default comparison is the registry's entries that are not opt-in (the paper's Table 1); Finer-CAM is opt-in
    assert METHODS == OPTION_METHODS == tuple(name for name, m in SALIENCY_METHODS.items() if not m.opt_in)
    assert METHODS == ("prompt-cam", "grad-cam", "layer-cam", "eigen-cam", "attention-rollout")
    assert tuple(SALIENCY_METHODS) == METHODS + ("finer-cam",)
    assert FaithfulnessOptions(model="m", data="d").methods == METHODS
    assert FaithfulnessOptions(model="m", data="d", methods=("finer-cam",)).methods == ("finer-cam",)
    for name, method in SALIENCY_METHODS.items():
        assert isinstance(method, SaliencyMethod) and method.name == name
    # only Prompt-CAM's maps explain the Prompt-CAM model; the baselines (class-agnostic ones too) explain the probe
    assert {name: method.explains for name, method in SALIENCY_METHODS.items()} == {
        "prompt-cam": PROMPT_CAM,
        "grad-cam": PROBE,
        "layer-cam": PROBE,
        "eigen-cam": PROBE,
        "attention-rollout": PROBE,
        "finer-cam": PROBE,
    }


def test_each_entry_computes_what_its_public_function_computes():
    model = tiny_model("dinov2_with_registers", num_labels=3)
    probe = LinearProbeForImageClassification(model.backbone, 3)
    pixel_values = torch.randn(2, 3, IMAGE_SIZE, IMAGE_SIZE, generator=torch.Generator().manual_seed(0))
    targets = torch.tensor([2, 0])
    settings = FaithfulnessOptions(model="m", data="d", heads=2, blur="official", stop=3)
    expected = {
        "prompt-cam": promptcam_saliency(
            model, pixel_values, targets, heads=2, blur="official", stop=3, return_heads=True
        ),
        "grad-cam": (grad_cam(probe, pixel_values, targets), None),
        "layer-cam": (layer_cam(probe, pixel_values, targets), None),
        "eigen-cam": (eigen_cam(probe, pixel_values), None),
        "attention-rollout": (attention_rollout(model.backbone, pixel_values), None),
        "finer-cam": (finer_cam(probe, pixel_values, targets), None),
    }
    for name, method in SALIENCY_METHODS.items():
        result = method(model, probe, pixel_values, targets, settings)
        assert isinstance(result, SaliencyMaps) and result.maps.shape == (2, IMAGE_SIZE, IMAGE_SIZE), name
        torch.testing.assert_close(result.maps, expected[name][0], rtol=0, atol=0)
        assert result.heads == expected[name][1], name
    assert [
        len(heads) for heads in SALIENCY_METHODS["prompt-cam"](model, None, pixel_values, targets, settings).heads
    ] == [2, 2]
    # without settings, each method's defaults (Prompt-CAM: the top traits with the paper's ranking)
    default = SALIENCY_METHODS["prompt-cam"](model, None, pixel_values, targets)
    torch.testing.assert_close(default.maps, promptcam_saliency(model, pixel_values, targets))
    with pytest.raises(ValueError, match="'grad-cam' explains the linear probe; pass one"):
        SALIENCY_METHODS["grad-cam"](model, None, pixel_values, targets)


class CentreBias(SaliencyMethod):
    """A class-agnostic map that peaks in the middle of the image (a method registered only by this test)."""

    name = "centre-bias"
    explains = PROBE

    def compute(self, model, probe, pixel_values, target_classes, settings=None):
        height, width = pixel_values.shape[2:]
        rows = torch.arange(height, dtype=torch.float32)[:, None] - (height - 1) / 2
        columns = torch.arange(width, dtype=torch.float32)[None, :] - (width - 1) / 2
        centre = -(rows**2 + columns**2)
        return SaliencyMaps(centre.expand(pixel_values.shape[0], height, width).clone(), None)


class WrongShape(SaliencyMethod):
    name = "wrong-shape"
    explains = PROMPT_CAM

    def compute(self, model, probe, pixel_values, target_classes, settings=None):
        return SaliencyMaps(torch.zeros(pixel_values.shape[0], 4, 4), None)


def _image_folder(root):
    """Two val images per class, both with a mask of value 1 (any value above the threshold is region) around the
    image centre."""
    write_image_folder(root, val_images=2, masked_val_images=2, mask_box=(15, 25, 18, 30), mask_value=1)
    return root


def test_a_method_registered_in_the_table_is_evaluated_by_run_faithfulness(saved_model, tmp_path, monkeypatch):
    monkeypatch.setitem(SALIENCY_METHODS, CentreBias.name, CentreBias())
    data = _image_folder(tmp_path / "data")
    options = FaithfulnessOptions(
        model=str(saved_model),
        data=str(data),
        output_dir=str(tmp_path / "out"),
        methods=("prompt-cam", "centre-bias"),
        steps=4,
        probe_epochs=5,
        progress=False,
    )
    result = run_faithfulness(options)
    assert list(result["methods"]) == ["prompt-cam", "centre-bias"]
    assert json.loads((tmp_path / "out" / "faithfulness.json").read_text())["methods"].keys() == {
        "prompt-cam",
        "centre-bias",
    }
    summary = result["methods"]["centre-bias"]
    assert summary["images"] == 6 and summary["localisation_images"] == 6
    assert "heads" not in result["per_image"][0]["methods"]["centre-bias"]

    # its maps were scored by the classifier it names (the probe, trained and saved by the run) on the same images
    model = PromptCamForImageClassification.from_pretrained(saved_model).eval()
    probe = LinearProbeForImageClassification.from_probe(model.backbone, tmp_path / "out" / "probe").eval()
    transform = EvalTransform(AutoImageProcessor.from_pretrained(saved_model))
    paths = [data / record["image"] for record in result["per_image"]]
    pixel_values = torch.stack([transform(Image.open(path)) for path in paths])
    targets = torch.tensor([record["true"] for record in result["per_image"]])
    maps = CentreBias()(model, probe, pixel_values, targets).maps
    scores = insertion_deletion(probe, pixel_values, maps, targets, steps=4)
    for k, record in enumerate(result["per_image"]):
        values = record["methods"]["centre-bias"]
        assert values["insertion"] == pytest.approx(float(scores["insertion"][k]), abs=1e-6)
        assert values["deletion"] == pytest.approx(float(scores["deletion"][k]), abs=1e-6)
    # the masks (value 1 counts: the one threshold) reached the pointing game: the centre lies in every mask
    assert all(record["methods"]["centre-bias"]["pointing_game"] for record in result["per_image"])

    # with --target predicted, the method's maps explain the prediction of the classifier it names
    options.target, options.output_dir = "predicted", str(tmp_path / "predicted")
    options.probe = str(tmp_path / "out" / "probe")
    for record in run_faithfulness(options)["per_image"]:
        assert record["methods"]["centre-bias"]["target"] == record["probe_predicted"]
        assert record["methods"]["prompt-cam"]["target"] == record["prompt_cam_predicted"]


def test_unregistered_methods_and_maps_of_the_wrong_shape_are_refused(saved_model, tmp_path, monkeypatch):
    data = _image_folder(tmp_path / "data")
    options = FaithfulnessOptions(model=str(saved_model), data=str(data), output_dir=str(tmp_path / "o"), steps=2)
    options.methods, options.progress = ("centre-bias",), False
    with pytest.raises(ValueError, match="methods must be a non-empty subset of prompt-cam, grad-cam"):
        run_faithfulness(options)
    monkeypatch.setitem(SALIENCY_METHODS, WrongShape.name, WrongShape())
    options.methods = ("wrong-shape",)
    with pytest.raises(ValueError, match=r"'wrong-shape' returned maps of shape \(6, 4, 4\), expected \(6, 32, 32\)"):
        run_faithfulness(options)


def test_the_heads_rule_has_one_reader(saved_model, tmp_path):
    assert parse_heads("top") == "top" and parse_heads("all", 4) == "all"
    assert parse_heads(3, 4) == 3 and parse_heads("2", 4) == 2  # a command line gives text
    for bad in (0, 5, "5", True, 2.0, "many", None):
        with pytest.raises(ValueError, match=r"heads must be 'top' or 'all' or a number of heads in \[1, 4\]"):
            parse_heads(bad, 4)
    with pytest.raises(ValueError, match="a number of heads >= 1, got 0"):
        parse_heads(0)
    # the faithfulness run checks heads and stop up front with the same readers (the model's stop rule)
    data = _image_folder(tmp_path / "data")
    for heads, stop, message in (
        (9, "misclassified", r"heads must be 'top' or 'all' or a number of heads in \[1, 4\], got 9"),
        ("top", 7, r"stop must be 'misclassified' or an integer in \[1, 4\], got 7"),
    ):
        options = FaithfulnessOptions(model=str(saved_model), data=str(data), output_dir=str(tmp_path / "o"))
        options.heads, options.stop, options.progress = heads, stop, False
        with pytest.raises(ValueError, match=message):
            run_faithfulness(options)
    assert not (tmp_path / "o").exists()  # refused before any work


def test_finer_cam_selects_the_nearest_classes_and_weights_them_as_hand_computed():
    from modeling_promptcam.evaluation.saliency import finer_comparison_classes, finer_objective

    logits = torch.tensor([[2.0, 1.0, 0.5, -3.0, 1.9], [0.0, 4.0, 3.0, 5.0, -1.0]])
    targets = torch.tensor([0, 1])
    # |y_k - y_t|: image 0: [-, 1.0, 1.5, 5.0, 0.1]; image 1: [4, -, 1, 1, 5] (ties keep the class order)
    comparisons = finer_comparison_classes(logits, targets, 3)
    assert comparisons.tolist() == [[4, 1, 2], [2, 3, 0]]
    assert finer_comparison_classes(logits, targets, 9).shape == (2, 4)  # capped at the other classes
    p = logits.softmax(-1)
    expected = (p[0, 4] * (2.0 - 1.9) + p[0, 1] * (2.0 - 1.0) + p[0, 2] * (2.0 - 0.5)) / (p[0, 4] + p[0, 1] + p[0, 2])
    value = finer_objective(logits, targets, comparisons, alpha=1.0)
    torch.testing.assert_close(value[0], expected, rtol=1e-6, atol=1e-9)
    # alpha = 0: the contrast vanishes and the objective is the target logit (Grad-CAM's)
    torch.testing.assert_close(finer_objective(logits, targets, comparisons, alpha=0.0), torch.tensor([2.0, 4.0]))


def test_finer_cam_of_two_classes_is_grad_cam_of_the_logit_difference():
    """With two classes the weighting cancels: the objective is y_t - y_other, and Grad-CAM is linear in the
    gradients before its ReLU, so Finer-CAM's raw map is the difference of the two classes' raw Grad-CAM maps."""
    from modeling_promptcam.evaluation.cams import FinerCAM, GradCAM, _finish_cam, _target_layer_activations

    model = tiny_model("dinov2", num_labels=2)
    probe = LinearProbeForImageClassification(model.backbone, 2)
    torch.nn.init.normal_(probe.classifier.weight, std=1.0, generator=torch.Generator().manual_seed(1))
    pixel_values = torch.randn(2, 3, IMAGE_SIZE, IMAGE_SIZE, generator=torch.Generator().manual_seed(0))
    targets, others = torch.tensor([0, 1]), torch.tensor([1, 0])
    activations, gradients_target = _target_layer_activations(probe, pixel_values, targets, with_gradients=True)
    _, gradients_other = _target_layer_activations(probe, pixel_values, others, with_gradients=True)
    raw = GradCAM().combine(activations, gradients_target) - GradCAM().combine(activations, gradients_other)
    expected = _finish_cam(raw, (IMAGE_SIZE, IMAGE_SIZE), upsample=True)
    torch.testing.assert_close(finer_cam(probe, pixel_values, targets), expected, rtol=1e-4, atol=1e-5)
    # alpha = 0 is Grad-CAM itself, up to the 1e-9 in the weighting's denominator
    torch.testing.assert_close(
        FinerCAM(alpha=0.0).cams(probe, pixel_values, targets),
        grad_cam(probe, pixel_values, targets),
        atol=1e-3,
        rtol=0,
    )
    with pytest.raises(ValueError, match="only one class"):
        finer_cam(LinearProbeForImageClassification(model.backbone, 1), pixel_values, torch.tensor([0, 0]))
