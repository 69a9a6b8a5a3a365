"""Saving, loading (stock backbones, own checkpoints, remote code) and the stock image-classification pipeline."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open
from transformers import (
    AutoModel,
    AutoModelForImageClassification,
    CLIPConfig,
    CLIPModel,
    Dinov2Model,
    DINOv3ViTModel,
    SiglipConfig,
    SiglipModel,
    ViTModel,
    pipeline,
)

from modeling_promptcam import PromptCamConfig, PromptCamForImageClassification
from tests.helpers.models import ALL_FAMILIES, IMAGE_SIZE, MORE_FAMILIES, randomize_, tiny_backbone_config, tiny_model

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("family", ["vit", "dinov2", "dinov3_vit"])
def test_stock_backbone_checkpoint_loads_unchanged_and_prompts_are_initialised(tmp_path, family):
    backbone_class = {"vit": ViTModel, "dinov2": Dinov2Model, "dinov3_vit": DINOv3ViTModel}[family]
    stock = randomize_(backbone_class(tiny_backbone_config(family)), seed=3)
    stock.save_pretrained(tmp_path)
    config = PromptCamConfig(backbone_config=tiny_backbone_config(family), num_labels=4)

    model = PromptCamForImageClassification.from_pretrained(tmp_path, config=config)

    stock_state = stock.state_dict()
    for name, value in model.backbone.state_dict().items():
        assert torch.equal(value, stock_state[name]), name
    prompts = model.prompt_head.prompt_embeddings
    assert prompts.shape == (3, 4, 32)
    # xavier-uniform bound of the official / VPT initialiser: sqrt(6 / (3 * patch * patch + D))
    bound = (6.0 / (3 * 8 * 8 + 32)) ** 0.5
    assert prompts.abs().max() <= bound
    assert prompts.std() > bound / 4
    assert 0.005 < model.prompt_head.score.weight.std() < 0.05
    # frozen backbone, prompt-only trainable parameters
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"prompt_head.prompt_embeddings", "prompt_head.score.weight", "prompt_head.score.bias"}


@pytest.mark.parametrize("family", ALL_FAMILIES)
def test_save_and_reload_gives_identical_outputs(tmp_path, family):
    model = tiny_model(family)
    pixel_values = torch.randn(2, 3, IMAGE_SIZE, IMAGE_SIZE)
    expected = model(pixel_values, output_trait_maps=True)
    model.save_pretrained(tmp_path)

    files = set(os.listdir(tmp_path))
    assert {"config.json", "model.safetensors", "preprocessor_config.json"} <= files
    assert {"modeling_promptcam.py", "configuration_promptcam.py"} <= files
    assert not any(name.endswith((".bin", ".pt", ".pth")) for name in files)
    auto_map = json.loads((tmp_path / "config.json").read_text())["auto_map"]
    assert set(auto_map) == {"AutoConfig", "AutoModel", "AutoModelForImageClassification"}
    processor = json.loads((tmp_path / "preprocessor_config.json").read_text())
    assert processor["size"] == {"height": IMAGE_SIZE, "width": IMAGE_SIZE}
    assert processor["image_mean"] == processor["image_std"] == [0.5, 0.5, 0.5]
    assert processor["do_convert_rgb"] is True

    for loader in (PromptCamForImageClassification, AutoModelForImageClassification, AutoModel):
        reloaded = loader.from_pretrained(tmp_path).eval()
        assert isinstance(reloaded, PromptCamForImageClassification)
        output = reloaded(pixel_values, output_trait_maps=True)
        torch.testing.assert_close(output.logits, expected.logits, atol=1e-6, rtol=0)
        torch.testing.assert_close(output.trait_maps, expected.trait_maps, atol=1e-6, rtol=0)


def test_checkpoint_with_another_class_count_gets_a_clear_error(tmp_path):
    tiny_model("vit", num_labels=5).save_pretrained(tmp_path)
    config = PromptCamConfig(backbone_config=tiny_backbone_config("vit"), num_labels=7)
    with pytest.raises(RuntimeError, match="7 classes.*ignore_mismatched_sizes=True"):
        PromptCamForImageClassification.from_pretrained(tmp_path, config=config)
    # the advertised fix works: backbone kept, prompts re-initialised for 7 classes
    model = PromptCamForImageClassification.from_pretrained(tmp_path, config=config, ignore_mismatched_sizes=True)
    assert model.prompt_head.prompt_embeddings.shape == (3, 7, 32)
    with safe_open(os.path.join(tmp_path, "model.safetensors"), "pt") as stored:
        stored_patch = stored.get_tensor("backbone.embeddings.patch_embeddings.projection.weight")
    assert torch.equal(model.backbone.embeddings.patch_embeddings.projection.weight, stored_patch)


@pytest.mark.parametrize("family", ("dinov2_with_registers",) + MORE_FAMILIES)
def test_remote_code_without_the_package_gives_identical_logits(tmp_path, family):
    model = tiny_model(family)
    model.save_pretrained(tmp_path / "model")
    pixel_values = torch.randn(2, 3, IMAGE_SIZE, IMAGE_SIZE, generator=torch.Generator().manual_seed(0))
    torch.save(pixel_values, tmp_path / "pixels.pt")
    expected = model(pixel_values, output_trait_maps=True)

    script = textwrap.dedent(
        f"""
        import sys
        sys.modules["modeling_promptcam"] = None  # the package cannot be imported in this process
        import torch
        from transformers import AutoModel, AutoModelForImageClassification
        pixels = torch.load({str(tmp_path / "pixels.pt")!r}, weights_only=True)
        a = AutoModelForImageClassification.from_pretrained({str(tmp_path / "model")!r}, trust_remote_code=True)
        b = AutoModel.from_pretrained({str(tmp_path / "model")!r}, trust_remote_code=True)
        assert type(a).__module__.startswith("transformers_modules"), type(a).__module__
        maps = a(pixels, output_trait_maps=True).trait_maps
        torch.save({{"a": a(pixels).logits, "b": b(pixels).logits, "maps": maps}}, {str(tmp_path / "out.pt")!r})
        """
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": str(tmp_path / "modules")}
    subprocess.run([sys.executable, "-c", script], check=True, cwd=tmp_path, env=env)
    remote = torch.load(tmp_path / "out.pt", weights_only=True)
    assert torch.equal(remote["a"], remote["b"])
    torch.testing.assert_close(remote["a"], expected.logits, atol=1e-6, rtol=0)
    torch.testing.assert_close(remote["maps"], expected.trait_maps, atol=1e-6, rtol=0)


def _images():
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 256, (45, 61, 3), dtype=np.uint8))
    return {
        "RGB": rgb,
        "RGBA": rgb.convert("RGBA"),
        "L": rgb.convert("L"),
        "CMYK": rgb.convert("CMYK"),
        "P": rgb.convert("P"),
        "large": rgb.resize((640, 480)),
        "tiny": rgb.resize((5, 3)),
    }


@pytest.mark.parametrize("family", ALL_FAMILIES)
def test_stock_pipeline_returns_softmax_scores_for_any_image_mode_and_size(tmp_path, family):
    model = tiny_model(family)
    model.save_pretrained(tmp_path)
    classifier = pipeline("image-classification", model=str(tmp_path))
    processor = classifier.image_processor
    for name, image in _images().items():
        predictions = classifier(image, top_k=5)
        assert [p["label"] for p in predictions] != [] and len(predictions) == 5, name
        assert {p["label"] for p in predictions} == {f"class_{i}" for i in range(5)}
        pixel_values = processor(image.convert("RGB"), return_tensors="pt").pixel_values
        expected = torch.softmax(model(pixel_values).logits[0], dim=-1)
        for prediction in predictions:
            index = int(prediction["label"].split("_")[1])
            assert prediction["score"] == pytest.approx(expected[index].item(), abs=1e-5), name
        assert sum(p["score"] for p in predictions) == pytest.approx(1.0, abs=1e-5)
    # batching works and gives the same answers
    images = list(_images().values())
    batched = classifier(images, batch_size=3)
    assert [b[0]["label"] for b in batched] == [classifier(image)[0]["label"] for image in images]


def test_pipeline_through_remote_code_in_a_process_without_the_package(tmp_path):
    tiny_model("dinov2").save_pretrained(tmp_path / "model")
    _images()["CMYK"].save(tmp_path / "image.jpg")
    script = textwrap.dedent(
        f"""
        import sys, json
        sys.modules["modeling_promptcam"] = None
        from transformers import pipeline
        from PIL import Image
        classifier = pipeline("image-classification", model={str(tmp_path / "model")!r}, trust_remote_code=True)
        print(json.dumps(classifier(Image.open({str(tmp_path / "image.jpg")!r}), top_k=2)))
        """
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": str(tmp_path / "modules")}
    result = subprocess.run([sys.executable, "-c", script], check=True, cwd=tmp_path, env=env, capture_output=True)
    predictions = json.loads(result.stdout.decode().strip().splitlines()[-1])
    assert len(predictions) == 2 and all(p["label"].startswith("class_") for p in predictions)
    assert predictions[0]["score"] >= predictions[1]["score"]


@pytest.mark.parametrize("kind", ["clip", "siglip"])
def test_a_full_image_text_checkpoint_gives_its_vision_tower(tmp_path, kind):
    vision = tiny_backbone_config(f"{kind}_vision_model")
    text = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 4, "intermediate_size": 64}
    if kind == "clip":
        full = CLIPModel(CLIPConfig(vision_config=vision.to_dict(), text_config=text, projection_dim=16))
    else:
        full = SiglipModel(SiglipConfig(vision_config=vision.to_dict(), text_config=text))
    randomize_(full, seed=4).save_pretrained(tmp_path)
    config = PromptCamConfig(backbone_config=full.config, num_labels=3)
    assert config.backbone_config.model_type == f"{kind}_vision_model"
    model = PromptCamForImageClassification.from_pretrained(tmp_path, config=config)
    tower = full.vision_model.state_dict()
    loaded = model.backbone.state_dict()
    assert set(loaded) <= set(tower)
    for name, value in loaded.items():
        assert torch.equal(value, tower[name]), name
