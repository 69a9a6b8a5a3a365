"""A Prompt-CAM model as an ONNX graph: `pixel_values` in (any batch, the export resolution), `logits`, the top-k
classes' `trait_maps` and their `trait_map_classes` out, with the saved image processor's preprocessing in the graph's
metadata, checked against the PyTorch model under onnxruntime before anything is written.

The graph is written by `torch.onnx.export(..., dynamo=False)`, the TorchScript-based exporter: it needs nothing
beyond torch, whereas the torch.export-based exporter (`dynamo=True`, torch's default since 2.9) needs onnxscript,
which this package does not depend on (docs/export.md).

Which backbones export is a property of their driver: `BackboneFamily.exports_to_onnx` in `BACKBONE_DRIVERS`, read by
[`exportable_backbones`] and [`check_exportable`].
"""

from __future__ import annotations

import contextlib
import io
import json
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from ..configuration_promptcam import PromptCamConfig
from ..extras import require
from ..modeling_promptcam import BACKBONE_DRIVERS, PromptCamForImageClassification
from .options import DEFAULT_OPSET, DEFAULT_TOP_K

ONNX_FILE = "model.onnx"
INPUT_NAME = "pixel_values"
# the names of the graph's outputs, as the model's output fields are named
OUTPUT_NAMES = ("logits", "trait_maps", "trait_map_classes")
# every key the export adds to the graph's metadata starts with this
METADATA_PREFIX = "promptcam."
# the graph is checked against PyTorch on a seeded batch (not the batch of 1 it was traced with: the batch is dynamic)
PARITY_TOLERANCE = 1e-4
PARITY_SEED = 0
PARITY_BATCH = 2
# one ONNX file written in one piece holds at most 2 GiB (protobuf's limit); weights beyond it need external data
MAX_GRAPH_BYTES = 2**31 - 2**26
# PIL's resampling filters by the number transformers' image processors store
RESAMPLE_NAMES = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box", 5: "hamming"}


class BackboneNotExportableError(ValueError):
    """The model's backbone family is not one that exports to ONNX (names it, and the families that do)."""


class OnnxParityError(ValueError):
    """The exported graph does not reproduce the PyTorch model within the tolerance under onnxruntime."""


@dataclass
class OnnxGraph:
    """An exported graph: its serialised bytes, the metadata written into it, and its parity with PyTorch.

    Attributes:
        data: the `model.onnx` bytes.
        metadata: the `promptcam.*` keys of the graph's `metadata_props` (strings; JSON where structured).
        preprocessing: what a reader does to an image before the graph ([`onnx_preprocessing`]).
        parity: `seed`, `batch`, `tolerance`, `logits_max_abs_difference`, `trait_maps_max_abs_difference` and
            `classes_agree` (whether onnxruntime picked the same top-k classes as PyTorch), from [`check_parity`].
        position_embeddings_pinned: whether the backbone's position embeddings were interpolated once, at export.
    """

    data: bytes
    metadata: dict[str, str]
    preprocessing: dict
    parity: dict = field(default_factory=dict)
    position_embeddings_pinned: bool = False


def exportable_backbones() -> tuple[str, ...]:
    """The backbone `model_type`s that export to ONNX: the entries of `BACKBONE_DRIVERS` marked `exports_to_onnx`."""
    return tuple(model_type for model_type, family in BACKBONE_DRIVERS.items() if family.exports_to_onnx)


def check_exportable(config: PromptCamConfig) -> None:
    """Raise [`BackboneNotExportableError`] naming the backbone when `config`'s backbone family does not export."""
    model_type = config.backbone_config.model_type
    family = BACKBONE_DRIVERS.get(model_type)
    if family is None or not family.exports_to_onnx:
        exportable = ", ".join(exportable_backbones()) or "none"
        raise BackboneNotExportableError(
            f"The model's {model_type} backbone does not export to ONNX; the backbones that export are: {exportable}."
        )


def check_top_k(top_k: int | None, num_labels: int) -> int:
    """The number of trait maps per image the graph returns: `top_k`, or `DEFAULT_TOP_K` (every class when the model
    has fewer) when None. Raises `ValueError` when `top_k` is not an integer in [1, num_labels]."""
    if top_k is None:
        return min(DEFAULT_TOP_K, num_labels)
    if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= num_labels:
        raise ValueError(
            f"top_k (--top-k) {top_k} is not possible for a model of {num_labels} classes: the graph returns the maps of at "
            f"most every class; give --top-k between 1 and {num_labels}."
        )
    return top_k


def onnx_preprocessing(processor) -> dict:
    """What the image processor `processor` does to an image, as a reader without transformers redoes it: convert to
    RGB, resize to `size` (`height`, `width`) with PIL filter `resample`, multiply by `rescale_factor`, subtract
    `image_mean` and divide by `image_std` per channel, channels first.

    Raises `ValueError` for a processor that does something else (a shortest-edge resize, a centre crop, no resize):
    the graph takes one resolution, the one `size` gives.
    """
    size = dict(getattr(processor, "size", None) or {})
    if not getattr(processor, "do_resize", False) or set(size) != {"height", "width"}:
        raise ValueError(
            f"The model's image processor ({type(processor).__name__}, size {size}) does not resize to a fixed "
            "height x width, which is the one input size of the exported graph; save the model with "
            "promptcam_image_processor(config) (what promptcam train and promptcam convert write) and export again."
        )
    if getattr(processor, "do_center_crop", False):
        raise ValueError(
            f"The model's image processor ({type(processor).__name__}) centre-crops after resizing; the export "
            "carries a resize to height x width only. Save the model with promptcam_image_processor(config) "
            "(what promptcam train and promptcam convert write) and export again."
        )
    resample = int(getattr(processor, "resample", 2))
    do_rescale = bool(getattr(processor, "do_rescale", True))
    do_normalize = bool(getattr(processor, "do_normalize", True))
    return {
        "do_convert_rgb": bool(getattr(processor, "do_convert_rgb", True)),
        "size": {"height": int(size["height"]), "width": int(size["width"])},
        "resample": resample,
        "resample_name": RESAMPLE_NAMES.get(resample, str(resample)),
        "rescale_factor": float(processor.rescale_factor) if do_rescale else 1.0,
        "image_mean": [float(value) for value in processor.image_mean] if do_normalize else [0.0, 0.0, 0.0],
        "image_std": [float(value) for value in processor.image_std] if do_normalize else [1.0, 1.0, 1.0],
        "channels": "first",
    }


@contextlib.contextmanager
def pinned_position_embeddings(
    model: PromptCamForImageClassification, pixel_values: torch.Tensor, interpolate_pos_encoding: bool
) -> Iterator[bool]:
    """Inside the block, the backbone's position embeddings are constants: the ones PyTorch uses at the resolution of
    `pixel_values`, computed once by an eager forward pass. Yields whether the backbone interpolated any.

    Why: traced, transformers' DINOv2 embeddings always interpolate their position embeddings (to follow any input
    size), and the registers variant resamples with antialiased bicubic, which the TorchScript exporter cannot write
    (`aten::_upsample_bicubic2d_aa` has no ONNX conversion there). The graph takes one resolution anyway, so the
    interpolated embeddings are computed here, where PyTorch computes them exactly, and the graph carries them as
    they are. Backbones that do not interpolate at this resolution are left unchanged.
    """
    embeddings = getattr(model.backbone, "embeddings", None)
    original = getattr(embeddings, "interpolate_pos_encoding", None)
    if not callable(original):
        yield False
        return
    own = "interpolate_pos_encoding" in vars(embeddings)  # an instance attribute to put back, not the class method
    recorded: list[torch.Tensor] = []

    def record(*args, **kwargs) -> torch.Tensor:
        value = original(*args, **kwargs)
        recorded.append(value.detach().clone())
        return value

    def pinned(*args, **kwargs) -> torch.Tensor:
        return recorded[0]

    embeddings.interpolate_pos_encoding = record
    try:
        with torch.no_grad():
            model(pixel_values, interpolate_pos_encoding=interpolate_pos_encoding)
        embeddings.interpolate_pos_encoding = pinned if recorded else original
        yield bool(recorded)
    finally:
        if own:
            embeddings.interpolate_pos_encoding = original
        else:
            del embeddings.interpolate_pos_encoding


class PromptCamOnnxGraph(nn.Module):
    """The computation the ONNX graph holds: `pixel_values` `(B, 3, H, W)` -> `logits` `(B, C)`, `trait_maps`
    `(B, K, heads, grid_height, grid_width)` of each image's K highest-scoring classes in score order, and those
    classes `trait_map_classes` `(B, K)` (int64): the model's forward with `trait_map_top_k=K`."""

    def __init__(self, model: PromptCamForImageClassification, top_k: int, interpolate_pos_encoding: bool):
        super().__init__()
        self.model = model
        self.top_k = top_k
        self.interpolate_pos_encoding = interpolate_pos_encoding

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        outputs = self.model(
            pixel_values, trait_map_top_k=self.top_k, interpolate_pos_encoding=self.interpolate_pos_encoding
        )
        return outputs.logits, outputs.trait_maps, outputs.trait_map_classes


def export_onnx(
    model: PromptCamForImageClassification,
    processor,
    top_k: int | None = None,
    opset: int = DEFAULT_OPSET,
    tolerance: float = PARITY_TOLERANCE,
) -> OnnxGraph:
    """Export `model` (float32, eval mode) as an ONNX graph for images preprocessed by `processor`.

    Args:
        model: the Prompt-CAM model; its backbone must be one of [`exportable_backbones`].
        processor: its image processor (the one saved with it): its `size` is the graph's one input resolution, and
            what it does is written into the graph's metadata (`promptcam.preprocessing`, [`onnx_preprocessing`]).
        top_k: trait maps of each image's K best classes (default: `DEFAULT_TOP_K`, or every class if fewer).
        opset: the ONNX opset.
        tolerance: the largest difference from PyTorch, in logits and trait maps, accepted by [`check_parity`].
    Returns:
        [`OnnxGraph`]: the graph's bytes (input `pixel_values` with a dynamic batch, outputs `OUTPUT_NAMES`), its
        metadata and its measured parity with PyTorch.
    Raises:
        [`BackboneNotExportableError`], `ValueError` (a `top_k` out of range, a float16 / bfloat16 model, a processor
        the graph cannot carry, weights beyond one ONNX file's 2 GiB), [`OnnxParityError`], and `ImportError` without
        onnx / onnxruntime (the `export` extra).
    """
    config = model.config
    check_exportable(config)
    top_k = check_top_k(top_k, config.num_labels)
    preprocessing = onnx_preprocessing(processor)
    height, width = preprocessing["size"]["height"], preprocessing["size"]["width"]
    # the ViT, CLIP and SigLIP embeddings interpolate only when asked; DINOv2 / DINOv3 take any multiple of the patch
    interpolate_pos_encoding = (height, width) != model.driver.image_size
    model.driver.check_image_size(height, width, interpolate_pos_encoding)
    dtypes = {parameter.dtype for parameter in model.parameters()}
    if dtypes != {torch.float32}:
        raise ValueError(
            f"The model's weights are {', '.join(sorted(map(str, dtypes)))}; the ONNX export is of float32 weights: "
            "load the model with from_pretrained(..., dtype=torch.float32)."
        )
    weight_bytes = sum(tensor.numel() * tensor.element_size() for tensor in (*model.parameters(), *model.buffers()))
    if weight_bytes > MAX_GRAPH_BYTES:
        raise ValueError(
            f"The model's weights take {weight_bytes / 2**30:.1f} GiB; one ONNX file holds at most 2 GiB and this "
            "export does not write external data files: export a smaller backbone."
        )
    onnx = require("onnx", "export", "The ONNX export")
    require("onnxruntime", "export", "The ONNX export's parity check")

    model.eval()
    example = torch.zeros(1, config.backbone_config.num_channels, height, width, device=model.device)
    buffer = io.BytesIO()
    with pinned_position_embeddings(model, example, interpolate_pos_encoding) as pinned, warnings.catch_warnings():
        # the input checks of the forward pass read tensor values in Python; the tracer warns that they become
        # constants of the graph, which is what they should be (they check the example, not the graph's inputs)
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        # the TorchScript exporter is chosen on purpose (module docstring): its deprecation notices are not news
        warnings.filterwarnings("ignore", message=".*TorchScript-based ONNX export", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message="The feature will be removed", category=DeprecationWarning)
        torch.onnx.export(
            PromptCamOnnxGraph(model, top_k, interpolate_pos_encoding),
            (example,),
            buffer,
            dynamo=False,
            input_names=[INPUT_NAME],
            output_names=list(OUTPUT_NAMES),
            dynamic_axes={name: {0: "batch"} for name in (INPUT_NAME, *OUTPUT_NAMES)},
            opset_version=opset,
            do_constant_folding=True,
        )
    proto = onnx.load_from_string(buffer.getvalue())
    patch_h, patch_w = model.driver.patch_size
    metadata = graph_metadata(config, top_k, preprocessing, pinned, (height // patch_h, width // patch_w))
    onnx.helper.set_model_props(proto, metadata)
    proto.doc_string = (
        f"Prompt-CAM ({config.backbone_config.model_type} backbone, {config.num_labels} classes): pixel_values "
        f"(batch, 3, {height}, {width}) -> logits (batch, {config.num_labels}), trait_maps of the top {top_k} classes "
        f"and their indices trait_map_classes. Preprocessing: metadata promptcam.preprocessing."
    )
    graph = OnnxGraph(proto.SerializeToString(), metadata, preprocessing, position_embeddings_pinned=pinned)
    graph.parity = check_parity(model, graph.data, top_k, interpolate_pos_encoding, tolerance)
    return graph


def position_embeddings_note(config: PromptCamConfig, height: int, width: int, pinned: bool) -> str:
    """What the graph's `promptcam.position_embeddings` says: why the graph takes only one resolution."""
    if pinned:
        return (
            f"pinned: the {config.backbone_config.model_type} position embeddings were interpolated once, at export, "
            f"to the {height}x{width} input; the graph takes {height}x{width} images only (export again for another "
            "size)"
        )
    return f"the backbone's own, for {height}x{width} inputs; the graph takes {height}x{width} images only"


def graph_metadata(
    config: PromptCamConfig, top_k: int, preprocessing: dict, pinned: bool, grid: tuple[int, int]
) -> dict[str, str]:
    """The `promptcam.*` entries of the graph's `metadata_props` (ONNX metadata values are strings); `grid` is the
    patch grid `(grid_height, grid_width)` of the export resolution."""
    height, width = preprocessing["size"]["height"], preprocessing["size"]["width"]
    heads = config.backbone_config.num_attention_heads
    outputs = {
        "logits": ["batch", config.num_labels],
        "trait_maps": ["batch", top_k, heads, *grid],
        "trait_map_classes": ["batch", top_k],
    }
    values = {
        "backbone": config.backbone_config.model_type,
        "num_labels": str(config.num_labels),
        "top_k": str(top_k),
        "image_size": f"{height}x{width}",
        "position_embeddings": position_embeddings_note(config, height, width, pinned),
        "preprocessing": json.dumps(preprocessing),
        "outputs": json.dumps(outputs),
    }
    return {METADATA_PREFIX + key: value for key, value in values.items()}


def check_parity(
    model: PromptCamForImageClassification,
    data: bytes,
    top_k: int,
    interpolate_pos_encoding: bool,
    tolerance: float = PARITY_TOLERANCE,
) -> dict:
    """Run the graph `data` under onnxruntime and `model` in PyTorch on the same seeded batch (`PARITY_BATCH` images
    of standard-normal pixels, seed `PARITY_SEED`; a batch other than the traced one) and compare.

    The trait maps are compared class for class: when onnxruntime's top-k classes differ from PyTorch's (a near tie
    of two logits), PyTorch's maps of onnxruntime's classes are computed and compared.
    Returns `seed`, `batch`, `tolerance`, `logits_max_abs_difference`, `trait_maps_max_abs_difference` and
    `classes_agree`; raises [`OnnxParityError`] when a difference exceeds `tolerance`.
    """
    onnxruntime = require("onnxruntime", "export", "The ONNX export's parity check")
    session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
    (height, width) = session.get_inputs()[0].shape[2:]
    generator = torch.Generator().manual_seed(PARITY_SEED)
    channels = model.config.backbone_config.num_channels
    pixel_values = torch.randn(PARITY_BATCH, channels, height, width, generator=generator)
    logits, trait_maps, classes = session.run(list(OUTPUT_NAMES), {INPUT_NAME: pixel_values.numpy()})
    pixel_values = pixel_values.to(model.device)
    with torch.no_grad():
        reference = model(pixel_values, trait_map_top_k=top_k, interpolate_pos_encoding=interpolate_pos_encoding)
        classes_agree = bool(np.array_equal(classes, reference.trait_map_classes.cpu().numpy()))
        reference_maps = reference.trait_maps
        if not classes_agree:
            reference_maps = model(
                pixel_values,
                trait_map_classes=torch.from_numpy(classes).to(model.device),
                interpolate_pos_encoding=interpolate_pos_encoding,
            ).trait_maps
    parity = {
        "seed": PARITY_SEED,
        "batch": PARITY_BATCH,
        "tolerance": tolerance,
        "logits_max_abs_difference": float(np.abs(logits - reference.logits.cpu().numpy()).max()),
        "trait_maps_max_abs_difference": float(np.abs(trait_maps - reference_maps.cpu().numpy()).max()),
        "classes_agree": classes_agree,
    }
    worst = max(parity["logits_max_abs_difference"], parity["trait_maps_max_abs_difference"])
    if not worst <= tolerance:  # also catches NaN
        raise OnnxParityError(
            f"The exported graph differs from the PyTorch model by up to {worst:.3g} under onnxruntime (logits "
            f"{parity['logits_max_abs_difference']:.3g}, trait maps {parity['trait_maps_max_abs_difference']:.3g}; "
            f"tolerance {tolerance:g}); nothing was written. Please report it to the modeling-promptcam issue "
            "tracker with the model's config.json."
        )
    return parity


__all__ = [
    "INPUT_NAME",
    "METADATA_PREFIX",
    "ONNX_FILE",
    "OUTPUT_NAMES",
    "PARITY_TOLERANCE",
    "BackboneNotExportableError",
    "OnnxGraph",
    "OnnxParityError",
    "PromptCamOnnxGraph",
    "check_exportable",
    "check_parity",
    "check_top_k",
    "export_onnx",
    "exportable_backbones",
    "graph_metadata",
    "onnx_preprocessing",
    "pinned_position_embeddings",
]
