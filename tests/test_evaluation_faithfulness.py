"""Faithfulness metrics on hand-built cases with known answers, the saliency baselines on tiny backbones (and against
maps pytorch-grad-cam computed), the linear probe, and `promptcam faithfulness` on a tiny saved model."""

import importlib.util
import json
import os

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from transformers import AutoModel

from modeling_promptcam.cli import main as cli_main
from modeling_promptcam.evaluation import (
    LinearProbeForImageClassification,
    attention_rollout,
    cam_target_layer,
    eigen_cam,
    energy_in_mask,
    extract_features,
    first_component_projection,
    fit_linear_probe,
    gaussian_blur,
    grad_cam,
    insertion_deletion,
    layer_cam,
    load_linear_probe,
    pixel_ranks,
    pointing_game,
    promptcam_saliency,
    save_linear_probe,
)
from tests.helpers.evaluation import CLASSES, write_image_folder
from tests.helpers.models import FAMILIES, IMAGE_SIZE, PATCH_SIZE, tiny_model

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "gradcam_parity")
BENCHMARK = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks", "bench_faithfulness.py"
)


# ------------------------------------------------------------------------------------------------ insertion / deletion
class RevealedFraction(torch.nn.Module):
    """A classifier whose target probability is exactly the fraction of a region's pixels that hold their original
    values (so insertion / deletion curves and AUCs are known in closed form)."""

    def __init__(self, original: torch.Tensor, region: torch.Tensor):
        super().__init__()
        self.original, self.region = original, region  # (1, C, H, W), (H, W) bool

    def forward(self, pixel_values):
        same = (pixel_values - self.original).abs().amax(dim=1) < 1e-6  # (n, H, W)
        fraction = same[:, self.region].float().mean(dim=1).clamp(1e-12, 1 - 1e-12)
        return torch.stack((fraction.log(), (1 - fraction).log()), dim=1)


class RegionClassifier(torch.nn.Module):
    """A classifier that looks at one region only: class 0's logit grows with the region's mean value."""

    def __init__(self, region: torch.Tensor, sharpness: float = 8.0, threshold: float = 1.0):
        super().__init__()
        self.region, self.sharpness, self.threshold = region, sharpness, threshold

    def forward(self, pixel_values):
        evidence = pixel_values[:, :, self.region].mean(dim=(1, 2))
        logit = self.sharpness * (evidence - self.threshold)
        return torch.stack((logit, torch.zeros_like(logit)), dim=1)


def _region(size=8, top=2, left=2, height=4, width=4):
    region = torch.zeros(size, size, dtype=torch.bool)
    region[top : top + height, left : left + width] = True
    return region


def test_insertion_and_deletion_match_closed_form_aucs():
    # 8x8 image, a 16-pixel region (r = 1/4), 16 steps of 4 pixels: the perfect order reveals the region in steps 1-4.
    region = _region()
    original = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(0)) + 0.5  # never 0, never blurred-equal
    classifier = RevealedFraction(original, region)
    perfect = region.float()[None]
    scores = insertion_deletion(classifier, original, perfect, torch.tensor([0]), steps=16, return_curves=True)
    # insertion: min(x / r, 1) -> 1 - r / 2; deletion: max(1 - x / r, 0) -> r / 2
    assert scores["insertion"].item() == pytest.approx(1 - 0.25 / 2, abs=1e-6)
    assert scores["deletion"].item() == pytest.approx(0.25 / 2, abs=1e-6)
    torch.testing.assert_close(scores["fraction"], torch.arange(17) / 16)
    torch.testing.assert_close(scores["insertion_curve"][0, :6], torch.tensor([0, 0.25, 0.5, 0.75, 1, 1]).clamp(1e-12))
    inverted = insertion_deletion(classifier, original, 1 - perfect, torch.tensor([0]), steps=16)
    # the region comes last: insertion r / 2, deletion 1 - r / 2
    assert inverted["insertion"].item() == pytest.approx(0.25 / 2, abs=1e-6)
    assert inverted["deletion"].item() == pytest.approx(1 - 0.25 / 2, abs=1e-6)


def test_region_classifier_ranks_perfect_over_constant_over_inverted():
    region = _region(16, top=5, left=9, height=5, width=5)
    image = torch.zeros(1, 3, 16, 16)
    image[:, :, region] = 2.0
    classifier = RegionClassifier(region)
    target = torch.tensor([0])
    assert classifier(image).softmax(-1)[0, 0] > 0.99  # the image is class 0; its blurred copy is not
    assert classifier(gaussian_blur(image)).softmax(-1)[0, 0] < 0.05

    perfect = region.float()[None] + 0.01 * torch.rand(1, 16, 16)
    results = {
        "perfect": insertion_deletion(classifier, image, perfect, target, steps=32),
        "constant": insertion_deletion(classifier, image, torch.ones(1, 16, 16), target, steps=32),
        "inverted": insertion_deletion(classifier, image, -perfect, target, steps=32),
    }
    insertion = {name: float(r["insertion"]) for name, r in results.items()}
    deletion = {name: float(r["deletion"]) for name, r in results.items()}
    assert insertion["perfect"] > 0.85 and insertion["inverted"] < 0.15
    assert deletion["perfect"] < 0.15 and deletion["inverted"] > 0.85
    # a constant map (random pixel order) sits in between, well away from both
    assert insertion["inverted"] + 0.2 < insertion["constant"] < insertion["perfect"] - 0.2
    assert deletion["perfect"] + 0.2 < deletion["constant"] < deletion["inverted"] - 0.2


def test_insertion_deletion_batching_upsampling_and_endpoints():
    model = tiny_model("vit", num_labels=3)
    pixel_values = torch.randn(3, 3, IMAGE_SIZE, IMAGE_SIZE, generator=torch.Generator().manual_seed(1))
    targets = torch.tensor([0, 2, 1])
    grid_maps = torch.rand(3, 4, 4, generator=torch.Generator().manual_seed(2))
    one = insertion_deletion(model, pixel_values, grid_maps, targets, steps=8, batch_size=1, return_curves=True)
    many = insertion_deletion(model, pixel_values, grid_maps, targets, steps=8, batch_size=1000, return_curves=True)
    for key in ("insertion", "deletion", "insertion_curve", "deletion_curve"):
        torch.testing.assert_close(one[key], many[key])
    probabilities = model(pixel_values).logits.softmax(-1)[torch.arange(3), targets]
    torch.testing.assert_close(one["insertion_curve"][:, -1], probabilities)  # everything revealed: the image
    torch.testing.assert_close(one["deletion_curve"][:, 0], probabilities)  # nothing removed: the image
    blurred = model(gaussian_blur(pixel_values)).logits.softmax(-1)[torch.arange(3), targets]
    torch.testing.assert_close(one["insertion_curve"][:, 0], blurred)
    grey = model(torch.zeros_like(pixel_values)).logits.softmax(-1)[torch.arange(3), targets]
    torch.testing.assert_close(one["deletion_curve"][:, -1], grey)
    # a low-resolution map gives the same result as the same map upsampled beforehand
    upsampled = torch.nn.functional.interpolate(grid_maps[:, None], size=(32, 32), mode="bilinear")[:, 0]
    at_image = insertion_deletion(model, pixel_values, upsampled, targets, steps=8)
    torch.testing.assert_close(at_image["insertion"], one["insertion"])
    assert ((one["insertion"] >= 0) & (one["insertion"] <= 1)).all()


def test_pixel_ranks_order_by_saliency_and_break_ties_by_seed():
    saliency = torch.tensor([[[0.1, 0.9], [0.5, 0.9]]])
    ranks = pixel_ranks(saliency).view(2, 2)
    assert ranks[0, 0] == 3 and ranks[1, 0] == 2 and {int(ranks[0, 1]), int(ranks[1, 1])} == {0, 1}
    flat = torch.zeros(1, 16, 16)
    orders = {tuple(pixel_ranks(flat, seed).flatten().tolist()) for seed in range(3)}
    assert len(orders) == 3  # ties: a seeded random order, not raster order
    assert pixel_ranks(flat, 5).equal(pixel_ranks(flat, 5))
    # an image's order does not depend on its batch
    maps = torch.rand(3, 6, 6).round()
    torch.testing.assert_close(pixel_ranks(maps)[2], pixel_ranks(maps[2:])[0])


def test_insertion_deletion_rejects_bad_input():
    model = tiny_model("vit", num_labels=3)
    pixel_values = torch.randn(2, 3, IMAGE_SIZE, IMAGE_SIZE)
    with pytest.raises(ValueError, match=r"saliency must be a \(2, height, width\)"):
        insertion_deletion(model, pixel_values, torch.rand(2, 4, 4, 4), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="one integer class index per image"):
        insertion_deletion(model, pixel_values, torch.rand(2, 4, 4), torch.tensor([0]))
    with pytest.raises(ValueError, match="pixel_values must be a floating-point"):
        insertion_deletion(model, pixel_values[0], torch.rand(2, 4, 4), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"target_classes must lie in \[0, 3\)"):
        insertion_deletion(model, pixel_values, torch.rand(2, 4, 4), torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="steps must be a positive integer"):
        insertion_deletion(model, pixel_values, torch.rand(2, 4, 4), torch.tensor([0, 1]), steps=0)
    with pytest.raises(ValueError, match="larger than the images"):
        insertion_deletion(model, pixel_values, torch.rand(2, 64, 64), torch.tensor([0, 1]))


# ------------------------------------------------------------------------------------------------ localisation
def test_pointing_game_and_energy_on_hand_built_maps():
    masks = torch.zeros(4, 8, 8, dtype=torch.bool)
    masks[:, 0:4, 0:4] = True  # the top-left quarter
    maps = torch.zeros(4, 8, 8)
    maps[0, 1, 1] = 1.0  # peak inside
    maps[1, 6, 6] = 1.0  # peak outside
    maps[2] = 1.0  # flat: the peak is everywhere
    maps[3, 0:4, 0:4] = 1.0  # all its mass inside
    maps[3, 4:8, 4:8] = 1.0  # ... and as much outside
    assert pointing_game(maps, masks).tolist() == [True, False, False, False]
    energy = energy_in_mask(maps, masks)
    torch.testing.assert_close(energy, torch.tensor([1.0, 0.0, 0.25, 0.5]))
    # negative values carry no energy; a map without positive values counts as uniform
    signed = torch.stack((maps[0] - maps[1], -torch.ones(8, 8)))
    torch.testing.assert_close(energy_in_mask(signed, masks[:2]), torch.tensor([1.0, 0.25]))
    # tolerance dilates the region: (6, 6) is 3 pixels from it
    assert not pointing_game(maps[1:2], masks[1:2], tolerance=2)[0]
    assert pointing_game(maps[1:2], masks[1:2], tolerance=3)[0]


def test_localisation_upsamples_low_resolution_maps_and_checks_shapes():
    masks = torch.zeros(1, 32, 32, dtype=torch.bool)
    masks[0, 8:16, 24:32] = True  # patch (1, 3) of a 4x4 grid
    grid = torch.zeros(1, 4, 4)
    grid[0, 1, 3] = 1.0
    assert pointing_game(grid, masks).item()
    assert energy_in_mask(grid, masks).item() > 0.5
    with pytest.raises(ValueError, match=r"saliency must be a \(1, height, width\)"):
        pointing_game(torch.zeros(2, 4, 4), masks)
    with pytest.raises(ValueError, match="masks must be a"):
        energy_in_mask(grid, masks[0])
    with pytest.raises(ValueError, match="larger than the images / masks"):
        energy_in_mask(torch.zeros(1, 64, 64), masks)


# ------------------------------------------------------------------------------------------------ saliency methods
@pytest.mark.parametrize("family", FAMILIES)
def test_baselines_give_maps_of_the_right_shape(family):
    model = tiny_model(family, num_labels=3)
    probe = LinearProbeForImageClassification(model.backbone, 3)
    pixel_values = torch.randn(2, 3, IMAGE_SIZE, IMAGE_SIZE, generator=torch.Generator().manual_seed(3))
    targets = torch.tensor([2, 0])
    grid = (IMAGE_SIZE // PATCH_SIZE,) * 2
    for method in (grad_cam, layer_cam):
        maps = method(probe, pixel_values, targets)
        assert maps.shape == (2, IMAGE_SIZE, IMAGE_SIZE) and maps.min() >= 0 and maps.max() <= 1 + 1e-6
        assert method(probe, pixel_values, targets, upsample=False).shape == (2, *grid)
    assert eigen_cam(probe, pixel_values).shape == (2, IMAGE_SIZE, IMAGE_SIZE)
    rollout = attention_rollout(model.backbone, pixel_values)
    assert rollout.shape == (2, IMAGE_SIZE, IMAGE_SIZE) and rollout.min() >= 0
    assert attention_rollout(model.backbone, pixel_values, upsample=False).shape == (2, *grid)
    # nothing left behind: frozen backbone, sdpa restored, no hooks, no gradients
    assert not any(p.requires_grad for p in model.backbone.parameters())
    assert all(p.grad is None for p in probe.parameters())
    assert model.backbone.config._attn_implementation != "eager"
    assert not cam_target_layer(model.backbone)._forward_hooks


def test_grad_cam_depends_on_the_target_class_and_eigen_cam_does_not():
    model = tiny_model("dinov2_with_registers", num_labels=3)
    probe = LinearProbeForImageClassification(model.backbone, 3)
    pixel_values = torch.randn(1, 3, IMAGE_SIZE, IMAGE_SIZE, generator=torch.Generator().manual_seed(4))
    first, second = (grad_cam(probe, pixel_values, torch.tensor([c]), upsample=False) for c in (0, 1))
    assert not torch.allclose(first, second)
    predicted = probe(pixel_values).argmax(-1)
    torch.testing.assert_close(grad_cam(probe, pixel_values), grad_cam(probe, pixel_values, predicted))
    torch.testing.assert_close(eigen_cam(probe, pixel_values, torch.tensor([0])), eigen_cam(model, pixel_values))


@pytest.mark.parametrize("case", ["vit", "dinov2_with_registers"])
def test_cams_match_pytorch_grad_cam(case):
    """Maps pytorch-grad-cam 1.5.7 computed (tests/fixtures/make_gradcam_parity.py; torch 2.14.1, torchvision
    0.29.1) for tiny probes: a square ViT, and DINOv2 with registers on a non-square image."""
    folder = os.path.join(FIXTURES, case)
    backbone = AutoModel.from_pretrained(folder)
    probe = LinearProbeForImageClassification.from_probe(backbone, folder).eval()
    stored = load_file(os.path.join(folder, "maps.safetensors"))
    pixel_values, targets = stored["pixel_values"], stored["targets"]
    torch.testing.assert_close(grad_cam(probe, pixel_values, targets), stored["library_grad_cam"], atol=1e-5, rtol=0)
    torch.testing.assert_close(layer_cam(probe, pixel_values, targets), stored["library_layer_cam"], atol=1e-5, rtol=0)
    # Eigen-CAM: the projection agrees up to the SVD's sign, and so does the map where the signs agree
    from modeling_promptcam.evaluation.saliency import _target_layer_activations

    activations, _ = _target_layer_activations(probe, pixel_values, None, with_gradients=False)
    ours, library = first_component_projection(activations), stored["library_eigen_projection"]
    same_sign = (ours - library).flatten(1).abs().amax(1) < 1e-4
    flipped = (ours + library).flatten(1).abs().amax(1) < 1e-4
    assert (same_sign | flipped).all()
    maps = eigen_cam(probe, pixel_values, sign_correction=False)
    torch.testing.assert_close(maps[same_sign], stored["library_eigen_cam"][same_sign], atol=1e-5, rtol=0)


def test_attention_rollout_matches_a_naive_loop():
    model = tiny_model("dinov2_with_registers", num_labels=3)
    backbone = model.backbone
    pixel_values = torch.randn(2, 3, IMAGE_SIZE, IMAGE_SIZE, generator=torch.Generator().manual_seed(5))
    backbone.config._attn_implementation = "eager"
    attentions = backbone(pixel_values, output_attentions=True).attentions
    backbone.config._attn_implementation = "sdpa"
    prefix = 1 + backbone.config.num_register_tokens
    for b in range(2):
        flow = np.eye(attentions[0].shape[-1])
        for layer_attention in attentions:
            mixed = 0.5 * layer_attention[b].mean(0).double().numpy() + 0.5 * np.eye(flow.shape[0])
            flow = (mixed / mixed.sum(axis=-1, keepdims=True)) @ flow
        expected = torch.from_numpy(flow[0, prefix:]).float().view(4, 4)
        torch.testing.assert_close(attention_rollout(backbone, pixel_values, upsample=False)[b], expected)
    with pytest.raises(ValueError, match="head_fusion"):
        attention_rollout(backbone, pixel_values, head_fusion="median")
    with pytest.raises(ValueError, match="no CLS token"):
        attention_rollout(tiny_model("siglip_vision_model").backbone, pixel_values)


def test_promptcam_saliency_averages_the_chosen_heads():
    model = tiny_model("dinov2", num_labels=4)
    pixel_values = torch.randn(2, 3, IMAGE_SIZE, IMAGE_SIZE, generator=torch.Generator().manual_seed(6))
    targets = torch.tensor([1, 3])
    maps = model(pixel_values, output_trait_maps=True).trait_maps[torch.arange(2), targets]  # (B, heads, 4, 4)
    rankings = model.rank_traits(pixel_values, target_classes=targets)
    top, heads = promptcam_saliency(model, pixel_values, targets, upsample=False, return_heads=True)
    assert heads == [r.top_traits for r in rankings]
    for b in range(2):
        torch.testing.assert_close(top[b], maps[b, heads[b]].mean(0))
    torch.testing.assert_close(
        promptcam_saliency(model, pixel_values, targets, heads="all", upsample=False), maps.mean(1)
    )
    two = promptcam_saliency(model, pixel_values, targets, heads=2, upsample=False)
    for b in range(2):
        torch.testing.assert_close(two[b], maps[b, rankings[b].ranked_heads[:2]].mean(0))
    assert promptcam_saliency(model, pixel_values, targets).shape == (2, IMAGE_SIZE, IMAGE_SIZE)
    with pytest.raises(ValueError, match=r"heads must be 'top' or 'all' or a number of heads in \[1, 4\], got 9"):
        promptcam_saliency(model, pixel_values, targets, heads=9)
    with pytest.raises(ValueError, match=r"target_classes must lie in \[0, 4\)"):
        promptcam_saliency(model, pixel_values, torch.tensor([1, 7]))


# ------------------------------------------------------------------------------------------------ linear probe
def _clusters(seed: int, per_class: int = 40, classes: int = 4, dim: int = 16):
    generator = torch.Generator().manual_seed(seed)
    centres = 3.0 * torch.randn(classes, dim, generator=generator)
    labels = torch.arange(classes).repeat_interleave(per_class)
    return centres[labels] + torch.randn(len(labels), dim, generator=generator), labels


def test_linear_probe_fits_separable_features_deterministically():
    features, labels = _clusters(0)
    classifier = fit_linear_probe(features, labels, 4, epochs=60, lr=1e-2)
    held_out, held_out_labels = _clusters(0)[0] + 0.3 * torch.randn(160, 16), labels
    assert (classifier(features).argmax(-1) == labels).float().mean() > 0.97
    assert (classifier(held_out).argmax(-1) == held_out_labels).float().mean() > 0.9
    again = fit_linear_probe(features, labels, 4, epochs=60, lr=1e-2)
    assert torch.equal(classifier.weight, again.weight)
    other = fit_linear_probe(features, labels, 4, epochs=60, lr=1e-2, seed=1)
    assert not torch.equal(classifier.weight, other.weight)
    untrained = fit_linear_probe(features, labels, 4, epochs=1, lr=1e-6)
    assert (untrained(features).argmax(-1) == labels).float().mean() < 0.9  # the training, not the init, separates
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
        fit_linear_probe(features, labels, 3)
    with pytest.raises(ValueError, match="one per feature row"):
        fit_linear_probe(features, labels[:5], 4)


@pytest.mark.parametrize("family", ["vit", "clip_vision_model"])
def test_linear_probe_reads_the_normed_cls_token_and_round_trips(family, tmp_path):
    model = tiny_model(family, num_labels=3)
    pixel_values = torch.randn(5, 3, IMAGE_SIZE, IMAGE_SIZE, generator=torch.Generator().manual_seed(7))
    features = extract_features(model.backbone, [pixel_values[:2], pixel_values[2:]])
    output = model.backbone(pixel_values)
    expected = output.pooler_output if family == "clip_vision_model" else output.last_hidden_state[:, 0]
    torch.testing.assert_close(features, expected)

    probe = LinearProbeForImageClassification(model.backbone, 3, {0: "a", 1: "b", 2: "c"})
    probe.classifier = fit_linear_probe(features, torch.tensor([0, 1, 2, 0, 1]), 3, epochs=5)
    probe.save_probe(tmp_path / "probe")
    assert sorted(os.listdir(tmp_path / "probe")) == ["probe.safetensors", "probe_config.json"]
    loaded = LinearProbeForImageClassification.from_probe(model.backbone, tmp_path / "probe")
    torch.testing.assert_close(loaded(pixel_values), probe(pixel_values))
    assert loaded.id2label == {0: "a", 1: "b", 2: "c"}
    classifier, id2label = load_linear_probe(tmp_path / "probe")
    assert classifier.weight.shape == (3, 32) and id2label[2] == "c"

    save_linear_probe(torch.nn.Linear(8, 3), tmp_path / "narrow")
    with pytest.raises(ValueError, match="reads 8-wide features but the backbone is 32 wide"):
        LinearProbeForImageClassification.from_probe(model.backbone, tmp_path / "narrow")
    with pytest.raises(FileNotFoundError, match="probe_config.json is missing"):
        os.remove(tmp_path / "narrow" / "probe_config.json")
        load_linear_probe(tmp_path / "narrow")


def test_linear_probe_is_differentiable_with_a_frozen_backbone():
    model = tiny_model("vit", num_labels=3)
    probe = LinearProbeForImageClassification(model.backbone, 3)
    pixel_values = torch.randn(2, 3, IMAGE_SIZE, IMAGE_SIZE, requires_grad=True)
    probe(pixel_values)[:, 1].sum().backward()
    assert pixel_values.grad is not None and pixel_values.grad.abs().sum() > 0
    assert not any(p.requires_grad for p in probe.backbone.parameters())
    assert probe.classifier.weight.requires_grad


# ------------------------------------------------------------------------------------------------ CLI
def test_cli_faithfulness_writes_every_method(saved_model, tmp_path, capsys):
    data = tmp_path / "data"
    write_image_folder(data)
    out = tmp_path / "out"
    code = cli_main(
        ["faithfulness", "--model", str(saved_model), "--data", str(data), "--out", str(out)]
        + ["--steps", "6", "--batch-size", "4", "--probe-epochs", "20", "--no-progress", "--max-images", "8"]
    )
    assert code == 0
    printed = capsys.readouterr().out
    result = json.loads((out / "faithfulness.json").read_text())
    methods = ["prompt-cam", "grad-cam", "layer-cam", "eigen-cam", "attention-rollout"]
    assert list(result["methods"]) == methods
    assert result["images"] == 8 and len(result["per_image"]) == 8
    with_masks = sum(1 for r in result["per_image"] if r["image"].split(os.sep)[-1] != "img2.png")
    assert result["localisation_images"] == with_masks
    for name, summary in result["methods"].items():
        for metric in ("insertion", "deletion", "pointing_game", "energy"):
            assert 0.0 <= summary[metric] <= 1.0, (name, metric)
        assert summary["images"] == 8 and summary["localisation_images"] == with_masks
        assert name in printed
    for record in result["per_image"]:
        assert set(record["methods"]) == set(methods)
        assert record["methods"]["grad-cam"]["target"] == record["true"]  # the true class, for every method
        has_mask = record["image"].split(os.sep)[-1] != "img2.png"
        assert ("pointing_game" in record["methods"]["eigen-cam"]) == has_mask
    insertion = np.mean([r["methods"]["layer-cam"]["insertion"] for r in result["per_image"]])
    assert result["methods"]["layer-cam"]["insertion"] == pytest.approx(insertion)
    assert result["settings"]["steps"] == 6 and result["settings"]["target"] == "true"
    assert (out / "probe" / "probe.safetensors").exists() and result["probe"]["train_images"] == 12
    assert "8 images" in printed and "with masks" in printed

    # the saved probe is reused; a subset of methods; no masks -> no localisation numbers
    write_image_folder(tmp_path / "plain", with_masks=False)
    code = cli_main(
        ["faithfulness", "--model", str(saved_model), "--data", str(tmp_path / "plain"), "--out", str(tmp_path / "o2")]
        + ["--steps", "4", "--probe", str(out / "probe"), "--methods", "grad-cam", "prompt-cam", "--no-progress"]
        + ["--markdown", "--scorer", "probe"]
    )
    assert code == 0
    second = json.loads((tmp_path / "o2" / "faithfulness.json").read_text())
    assert list(second["methods"]) == ["grad-cam", "prompt-cam"] and second["images"] == 9
    assert second["methods"]["grad-cam"]["pointing_game"] is None and second["localisation_images"] == 0
    assert second["probe"]["loaded_from"] == str(out / "probe")
    for record in second["per_image"]:  # one scorer, one target: the same whole-image probability for both methods
        by_method = record["methods"]
        assert by_method["grad-cam"]["probability"] == pytest.approx(by_method["prompt-cam"]["probability"])
    # with its own scorer, Prompt-CAM's maps were scored by the Prompt-CAM model
    own = {r["image"]: r["methods"]["prompt-cam"]["probability"] for r in result["per_image"]}
    probed = {r["image"]: r["methods"]["prompt-cam"]["probability"] for r in second["per_image"]}
    assert any(abs(own[image] - probed[image]) > 1e-3 for image in own)
    assert "| grad-cam |" in capsys.readouterr().out

    # each map explains its own classifier's prediction
    code = cli_main(
        ["faithfulness", "--model", str(saved_model), "--data", str(data), "--out", str(tmp_path / "o3"), "--steps"]
        + ["2", "--probe", str(out / "probe"), "--methods", "prompt-cam", "layer-cam", "--target", "predicted"]
        + ["--no-progress", "--heads", "2"]
    )
    assert code == 0
    third = json.loads((tmp_path / "o3" / "faithfulness.json").read_text())
    for record in third["per_image"]:
        assert record["methods"]["prompt-cam"]["target"] == record["prompt_cam_predicted"]
        assert record["methods"]["layer-cam"]["target"] == record["probe_predicted"]
        assert len(record["methods"]["prompt-cam"]["heads"]) == 2
    assert cli_main(["faithfulness", "--model", str(saved_model), "--data", str(data), "--heads", "9"]) == 1
    assert "heads must be 'top' or 'all' or a number of heads in [1, 4], got 9" in capsys.readouterr().err


def test_cli_faithfulness_reports_bad_data(saved_model, tmp_path, capsys):
    data = tmp_path / "data"
    (data / "train" / CLASSES[0]).mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(data / "train" / CLASSES[0] / "a.png")
    assert cli_main(["faithfulness", "--model", str(saved_model), "--data", str(data), "--no-progress"]) == 1
    assert "has no val/ folder" in capsys.readouterr().err
    (data / "val" / "Purple_bird").mkdir(parents=True)
    assert cli_main(["faithfulness", "--model", str(saved_model), "--data", str(data), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "classes that train/ does not" in err or "does not know" in err
    assert cli_main(["faithfulness", "--model", str(tmp_path / "none"), "--data", str(data)]) == 1
    assert "not a saved Prompt-CAM model folder" in capsys.readouterr().err
    # a mask that is not the size of its image
    mismatched = tmp_path / "mismatched"
    write_image_folder(mismatched)
    Image.new("L", (10, 10), 255).save(mismatched / "masks" / "val" / CLASSES[1] / "img0.png")
    arguments = ["faithfulness", "--model", str(saved_model), "--data", str(mismatched), "--out", str(tmp_path / "o")]
    assert cli_main(arguments + ["--steps", "2", "--methods", "eigen-cam", "--no-progress"]) == 1
    assert "is 10x10 but its image" in capsys.readouterr().err
    with pytest.raises(SystemExit) as usage:
        cli_main(["faithfulness", "--model", str(saved_model), "--data", str(data), "--methods", "rise"])
    assert usage.value.code == 2


def test_benchmark_script_checks_the_target(saved_model, tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("bench_faithfulness", BENCHMARK)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)

    def summary(insertion, deletion, pointing):
        return {"insertion": insertion, "deletion": deletion, "pointing_game": pointing}

    winning = {"methods": {"prompt-cam": summary(0.6, 0.1, 0.9), "grad-cam": summary(0.605, 0.2, 0.5)}}
    assert bench.target_check(winning) == {"deletion": True, "pointing_game": True, "insertion": True}
    losing = {"methods": {"prompt-cam": summary(0.5, 0.3, None), "grad-cam": summary(0.6, 0.2, None)}}
    assert bench.target_check(losing) == {"deletion": False, "pointing_game": None, "insertion": False}

    data = tmp_path / "data"
    write_image_folder(data)
    code = bench.main(
        ["--run", "tiny", str(saved_model), str(data), "--out", str(tmp_path / "results"), "--steps", "3"]
        + ["--max-images", "3", "--probe-epochs", "5"]
    )
    printed = capsys.readouterr().out
    assert code in (0, 1)  # 1: the random tiny model misses the target, which is reported, not hidden
    assert ("NOT met" in printed) == (code == 1)
    assert (tmp_path / "results" / "tiny" / "faithfulness.json").exists()
    assert "| prompt-cam |" in printed and "| attention-rollout |" in printed and "0.61" in printed
