"""Backbones from other formats, rebuilt as transformers folders Prompt-CAM trains on.

`promptcam backbone bioclip --checkpoint open_clip_pytorch_model.bin --out DIR` turns the vision tower of an OpenCLIP
checkpoint (BioCLIP: an OpenCLIP ViT-B/16 trained on the Tree of Life, `imageomics/bioclip`) into a
`CLIPVisionModel` folder with the matching image processor.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping

import torch
from transformers import CLIPVisionConfig, CLIPVisionModel

# OpenCLIP's preprocessing: bicubic resize of the shorter side, centre crop, OpenAI CLIP's mean / std
OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
OPEN_CLIP_LAYER_NORM_EPS = 1e-5  # torch.nn.LayerNorm's default, which OpenCLIP uses
OPEN_CLIP_HEAD_WIDTH = 64  # OpenCLIP's default width per attention head
# the MLP activations of OpenCLIP ViTs: GELU (OpenCLIP's default) and OpenAI CLIP's quick-GELU (`-quickgelu` models)
ACTIVATIONS = ("gelu", "quick_gelu")


class NotAnOpenClipCheckpointError(ValueError):
    """The state dict does not hold an OpenCLIP vision tower (says what was found and what was expected)."""


def _load_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No checkpoint file at {path!s}.")
    if str(path).endswith(".safetensors"):
        from safetensors.torch import load_file

        return load_file(path)
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(checkpoint, Mapping) and "state_dict" in checkpoint:
        checkpoint = checkpoint["state_dict"]
    return {key.removeprefix("module."): value for key, value in checkpoint.items()}


def open_clip_vision_config(
    state_dict: Mapping[str, torch.Tensor], num_heads: int | None = None, activation: str = "gelu"
) -> CLIPVisionConfig:
    """Read the vision tower's architecture off an OpenCLIP state dict (`visual.*` keys)."""
    required = ("visual.conv1.weight", "visual.class_embedding", "visual.positional_embedding", "visual.ln_pre.weight")
    missing = [key for key in required + ("visual.ln_post.weight",) if key not in state_dict]
    if missing:
        found = ", ".join(sorted(state_dict)[:6])
        raise NotAnOpenClipCheckpointError(
            f"Not an OpenCLIP ViT checkpoint: missing {', '.join(missing)} (found {found}, ...). Expected visual.conv1, "
            "visual.class_embedding, visual.positional_embedding, visual.ln_pre, visual.transformer.resblocks.N.*, "
            "visual.ln_post."
        )
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be {' or '.join(map(repr, ACTIVATIONS))}, got {activation!r}.")
    width = state_dict["visual.conv1.weight"].shape[0]
    patch = state_dict["visual.conv1.weight"].shape[-1]
    positions = state_dict["visual.positional_embedding"].shape[0] - 1
    grid = int(round(positions**0.5))
    if grid * grid != positions:
        raise NotAnOpenClipCheckpointError(
            f"visual.positional_embedding has {positions} patch positions: not a square."
        )
    blocks = {
        int(m.group(1)) for key in state_dict if (m := re.match(r"visual\.transformer\.resblocks\.(\d+)\.", key))
    }
    if not blocks or sorted(blocks) != list(range(len(blocks))):
        raise NotAnOpenClipCheckpointError("visual.transformer.resblocks.N.* are missing or not numbered 0..N-1.")
    num_heads = num_heads or width // OPEN_CLIP_HEAD_WIDTH
    if width % num_heads:
        raise ValueError(f"num_heads={num_heads} does not divide the width {width}.")
    return CLIPVisionConfig(
        hidden_size=width,
        intermediate_size=state_dict["visual.transformer.resblocks.0.mlp.c_fc.weight"].shape[0],
        num_hidden_layers=len(blocks),
        num_attention_heads=num_heads,
        image_size=grid * patch,
        patch_size=patch,
        hidden_act=activation,
        layer_norm_eps=OPEN_CLIP_LAYER_NORM_EPS,
        projection_dim=state_dict["visual.proj"].shape[1] if "visual.proj" in state_dict else width,
    )


def convert_open_clip_vision(
    checkpoint: str | os.PathLike | Mapping[str, torch.Tensor],
    num_heads: int | None = None,
    activation: str | None = None,
    open_clip_config: str | os.PathLike | None = None,
) -> CLIPVisionModel:
    """An OpenCLIP vision tower as a `CLIPVisionModel`.

    Args:
        checkpoint: `open_clip_pytorch_model.bin` / `.safetensors` (or a loaded state dict).
        num_heads: attention heads (default: width / 64, OpenCLIP's default head width).
        activation: `"gelu"` (OpenCLIP's default) or `"quick_gelu"` (OpenAI CLIP and `-quickgelu` models); default:
            `open_clip_config`'s `quick_gelu` setting when given, else `"gelu"`.
        open_clip_config: the checkpoint's `open_clip_config.json`, read for `quick_gelu`.
    """
    state_dict = checkpoint if isinstance(checkpoint, Mapping) else _load_state_dict(checkpoint)
    if activation is None:
        activation = "gelu"
        if open_clip_config is not None:
            with open(open_clip_config, encoding="utf-8") as handle:
                model_config = json.load(handle).get("model_cfg", {})
            activation = "quick_gelu" if model_config.get("quick_gelu") else "gelu"
    config = open_clip_vision_config(state_dict, num_heads, activation)
    converted = {
        "embeddings.class_embedding": state_dict["visual.class_embedding"],
        "embeddings.patch_embedding.weight": state_dict["visual.conv1.weight"],
        "embeddings.position_embedding.weight": state_dict["visual.positional_embedding"],
        "pre_layrnorm.weight": state_dict["visual.ln_pre.weight"],
        "pre_layrnorm.bias": state_dict["visual.ln_pre.bias"],
        "post_layernorm.weight": state_dict["visual.ln_post.weight"],
        "post_layernorm.bias": state_dict["visual.ln_post.bias"],
    }
    for i in range(config.num_hidden_layers):
        source, target = f"visual.transformer.resblocks.{i}.", f"encoder.layers.{i}."
        for name in ("weight", "bias"):
            # nn.MultiheadAttention keeps q, k, v stacked on the output dimension
            for projection, chunk in zip(
                ("q_proj", "k_proj", "v_proj"), state_dict[f"{source}attn.in_proj_{name}"].chunk(3)
            ):
                converted[f"{target}self_attn.{projection}.{name}"] = chunk
            converted[f"{target}self_attn.out_proj.{name}"] = state_dict[f"{source}attn.out_proj.{name}"]
            converted[f"{target}layer_norm1.{name}"] = state_dict[f"{source}ln_1.{name}"]
            converted[f"{target}layer_norm2.{name}"] = state_dict[f"{source}ln_2.{name}"]
            converted[f"{target}mlp.fc1.{name}"] = state_dict[f"{source}mlp.c_fc.{name}"]
            converted[f"{target}mlp.fc2.{name}"] = state_dict[f"{source}mlp.c_proj.{name}"]
    model = CLIPVisionModel(config)
    missing, unexpected = model.load_state_dict(converted, strict=False)
    missing = [key for key in missing if not key.endswith("position_ids")]
    if missing or unexpected:
        raise NotAnOpenClipCheckpointError(
            f"Converted weights do not fit: missing {missing[:5]}, unexpected {unexpected[:5]}."
        )
    return model.eval()


def open_clip_image_processor(image_size: int):
    """OpenCLIP's evaluation preprocessing: RGB, bicubic resize of the shorter side, centre crop, OpenAI mean / std."""
    from transformers.utils import is_torchvision_available

    if is_torchvision_available():
        from transformers import CLIPImageProcessor as processor_class
    else:
        from transformers import CLIPImageProcessorPil as processor_class
    return processor_class(
        size={"shortest_edge": image_size},
        crop_size={"height": image_size, "width": image_size},
        resample=3,  # PIL.Image.BICUBIC
        do_center_crop=True,
        image_mean=list(OPENAI_CLIP_MEAN),
        image_std=list(OPENAI_CLIP_STD),
        do_convert_rgb=True,
    )


def save_open_clip_vision(model: CLIPVisionModel, out_dir: str | os.PathLike) -> None:
    model.save_pretrained(out_dir)
    open_clip_image_processor(model.config.image_size).save_pretrained(out_dir)


__all__ = [
    "ACTIVATIONS",
    "NotAnOpenClipCheckpointError",
    "convert_open_clip_vision",
    "open_clip_image_processor",
    "open_clip_vision_config",
    "save_open_clip_vision",
]
