"""The `prompt-cam` pipeline: labels, scores, trait maps (and rankings) per top-k label, with and without the package."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import pipeline

from modeling_promptcam import PromptCamImageClassificationPipeline
from tests.helpers.models import tiny_model


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    folder = tmp_path_factory.mktemp("model")
    model = tiny_model("dinov2_with_registers", num_labels=6)
    model.save_pretrained(folder)
    return folder, model


def image(seed=0, mode="RGB", size=(61, 45)):
    array = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(array).convert(mode)


def test_saved_folder_carries_the_pipeline(saved):
    folder, _ = saved
    assert (folder / "pipeline_promptcam.py").is_file()
    stored = json.loads((folder / "config.json").read_text())
    assert (
        stored["custom_pipelines"]["prompt-cam"]["impl"] == "pipeline_promptcam.PromptCamImageClassificationPipeline"
    )


def test_prompt_cam_pipeline_gives_stock_scores_and_the_maps_of_each_label(saved):
    folder, model = saved
    explainer = pipeline("prompt-cam", model=str(folder))
    assert isinstance(explainer, PromptCamImageClassificationPipeline)
    stock = pipeline("image-classification", model=str(folder))
    for mode in ("RGB", "RGBA", "L", "CMYK"):
        picture = image(1, mode)
        results = explainer(picture, top_k=3)
        expected = stock(picture, top_k=3)
        assert [r["label"] for r in results] == [e["label"] for e in expected]
        for result, reference in zip(results, expected):
            assert result["score"] == pytest.approx(reference["score"], abs=1e-6)
        pixel_values = explainer.image_processor(picture, return_tensors="pt").pixel_values
        classes = torch.tensor([[model.config.label2id[r["label"]] for r in results]])
        maps = model(pixel_values, trait_map_classes=classes).trait_maps[0]
        for k, result in enumerate(results):
            assert isinstance(result["trait_maps"], np.ndarray)
            assert result["trait_maps"].shape == (4, 4, 4)
            np.testing.assert_allclose(result["trait_maps"], maps[k].detach().numpy(), atol=1e-6)
            assert "ranked_heads" not in result


def test_rankings_on_request_and_batching(saved):
    folder, model = saved
    explainer = pipeline("prompt-cam", model=str(folder))
    pictures = [image(seed) for seed in range(4)]
    one_by_one = [explainer(p, top_k=2, rank_traits=True, blur="official", stop=2) for p in pictures]
    batched = explainer(pictures, top_k=2, rank_traits=True, blur="official", stop=2, batch_size=3)
    for single, batch in zip(one_by_one, batched):
        assert [r["label"] for r in single] == [r["label"] for r in batch]
        for a, b in zip(single, batch):
            assert a["ranked_heads"] == b["ranked_heads"] and a["top_traits"] == b["top_traits"]
            np.testing.assert_allclose(a["trait_maps"], b["trait_maps"], atol=1e-5)
    pixel_values = explainer.image_processor(pictures[0], return_tensors="pt").pixel_values
    first = one_by_one[0][0]
    ranking = model.rank_traits(
        pixel_values, target_classes=torch.tensor([model.config.label2id[first["label"]]]), blur="official", stop=2
    )[0]
    assert first["ranked_heads"] == ranking.ranked_heads
    assert first["top_traits"] == ranking.top_traits == ranking.ranked_heads[:2]
    assert len(first["target_scores"]) == 4


def test_stock_pipeline_stays_as_cheap_as_logits(saved, monkeypatch):
    folder, _ = saved
    stock = pipeline("image-classification", model=str(folder))

    def forbidden(*args, **kwargs):
        raise AssertionError("the stock pipeline computed attention weights")

    monkeypatch.setattr(stock.model, "_attend_with_weights", forbidden)
    monkeypatch.setattr(stock.model, "_row_attention_weights", forbidden)
    results = stock(image(3), top_k=2)
    assert len(results) == 2 and set(results[0]) == {"label", "score"}


def test_prompt_cam_pipeline_through_remote_code_without_the_package(saved, tmp_path):
    folder, model = saved
    picture_path = tmp_path / "bird.png"
    image(5).save(picture_path)
    script = textwrap.dedent(
        f"""
        import sys, json
        sys.modules["modeling_promptcam"] = None
        from transformers import pipeline
        explainer = pipeline("prompt-cam", model={str(folder)!r}, trust_remote_code=True)
        assert type(explainer).__module__.startswith("transformers_modules"), type(explainer).__module__
        results = explainer({str(picture_path)!r}, top_k=2, rank_traits=True)
        print(json.dumps([{{"label": r["label"], "score": r["score"], "shape": list(r["trait_maps"].shape),
                            "sum": float(r["trait_maps"].sum()), "top_traits": r["top_traits"]}} for r in results]))
        """
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": str(tmp_path / "modules")}
    completed = subprocess.run([sys.executable, "-c", script], check=True, cwd=tmp_path, env=env, capture_output=True)
    remote = json.loads(completed.stdout.decode().strip().splitlines()[-1])
    local = pipeline("prompt-cam", model=str(folder))(str(picture_path), top_k=2, rank_traits=True)
    assert [r["label"] for r in remote] == [r["label"] for r in local]
    for from_remote, from_package in zip(remote, local):
        assert from_remote["shape"] == [4, 4, 4]
        assert from_remote["score"] == pytest.approx(from_package["score"], abs=1e-6)
        assert from_remote["sum"] == pytest.approx(float(from_package["trait_maps"].sum()), abs=1e-5)
        assert from_remote["top_traits"] == from_package["top_traits"]
