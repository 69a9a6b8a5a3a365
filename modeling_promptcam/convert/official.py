"""Convert the authors' released Prompt-CAM checkpoints (timm `model.pt`) into [`PromptCamForImageClassification`].

The official trainer writes `torch.save({"model_state_dict": state_dict})` with timm ViT keys (`cls_token`,
`pos_embed`, `patch_embed.proj.*`, `blocks.{i}.{norm1, attn.qkv, attn.proj, ls1.gamma, norm2, mlp.fc1, mlp.fc2,
ls2.gamma}`, `norm.*`), the prompts `vpt.prompt_embeddings` `(depth, C, D)` and the shared head `head` `(1, D)`.
Everything but the head count can be read off the shapes; the head count is an argument (ViT-B: 12).
"""

from __future__ import annotations

import os
import pickle
import re
from collections.abc import Mapping

import torch
from transformers import Dinov2Config, ViTConfig

from ..configuration_promptcam import PromptCamConfig
from ..modeling_promptcam import PromptCamForImageClassification

BACKBONE_FAMILIES = ("dino", "dinov2")
# timm block parameters every official checkpoint has (DINOv2 adds ls1.gamma / ls2.gamma)
BLOCK_KEYS = (
    "norm1.weight",
    "norm1.bias",
    "attn.qkv.weight",
    "attn.proj.weight",
    "attn.proj.bias",
    "norm2.weight",
    "norm2.bias",
    "mlp.fc1.weight",
    "mlp.fc1.bias",
    "mlp.fc2.weight",
    "mlp.fc2.bias",
)
TOP_LEVEL_KEYS = (
    "cls_token",
    "pos_embed",
    "patch_embed.proj.weight",
    "patch_embed.proj.bias",
    "norm.weight",
    "norm.bias",
    "head.weight",
    "head.bias",
)
# the official models use timm's LayerNorm eps and exact (erf) GELU
LAYER_NORM_EPS = 1e-6
# official folder names `001.Black_footed_Albatross`, optionally behind CUB's `classes.txt` index (`1 001.Black...`)
_CLASS_FOLDER = re.compile(r"^(?:\d+\s+)?\d+\.(.+)$")


class NotAnOfficialCheckpointError(ValueError):
    """The state dict is not an official Prompt-CAM checkpoint (says what was found and what was expected)."""


def load_official_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read an official `model.pt` safely (`weights_only=True`); accepts the trainer's dict or a bare state dict."""
    if os.path.isdir(path):
        raise IsADirectoryError(f"{path!s} is a folder; give the checkpoint file itself (the official model.pt).")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No checkpoint file at {path!s}; check the path of the official model.pt.")
    if os.path.getsize(path) == 0:
        raise NotAnOfficialCheckpointError(f"{path!s} is empty (0 bytes); download or copy the model.pt again.")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:  # torch's weights-only reader names only an opcode: say what it means
        raise NotAnOfficialCheckpointError(
            f"Could not read {path!s} as a PyTorch checkpoint with weights_only=True: it is damaged, not one, or "
            "holds Python objects other than tensors (refused: nothing in the file was run). Expected the official "
            "trainer's model.pt ({'model_state_dict': state_dict}); copy it again, or if you trust the file, load it "
            "yourself and torch.save its state dict of tensors."
        ) from error
    except Exception as error:  # torch raises several types for corrupt / truncated files
        raise NotAnOfficialCheckpointError(
            f"Could not read {path!s} as a PyTorch checkpoint with weights_only=True ({type(error).__name__}: "
            f"{error}). Expected the official trainer's model.pt ({{'model_state_dict': state_dict}})."
        ) from error
    if isinstance(checkpoint, Mapping) and "model_state_dict" in checkpoint:
        checkpoint = checkpoint["model_state_dict"]
    if not isinstance(checkpoint, Mapping) or not all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
        raise NotAnOfficialCheckpointError(
            f"{path!s} does not hold a state dict of tensors (found {type(checkpoint).__name__}); expected the official "
            "trainer's model.pt ({'model_state_dict': state_dict})."
        )
    return dict(checkpoint)


def read_class_names(path: str | os.PathLike) -> list[str]:
    """Class names in class-index order, from a text file or a dataset folder.

    - A text file: one name per line (blank lines skipped). Official folder names `NNN.Class_Name`
      (e.g. `001.Black_footed_Albatross`) and CUB's `classes.txt` lines (`1 001.Black_footed_Albatross`) give
      `Class_Name`.
    - A folder (e.g. the prepared dataset's `train/`): its sub-folders in sorted order, the order in which the
      official data loaders number the classes; `NNN.` prefixes are stripped the same way.
    """
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"--labels {path!s}: no such file or folder; give a text file with one class name per line, or the "
            "dataset's train/ folder."
        )
    if os.path.isdir(path):
        lines = sorted(entry.name for entry in os.scandir(path) if entry.is_dir())
        if not lines:
            raise ValueError(f"{path!s} has no class sub-folders; give the dataset's train/ folder or a text file.")
    else:
        with open(path, encoding="utf-8") as handle:
            lines = [line.strip() for line in handle]
    names = [_CLASS_FOLDER.sub(r"\1", line) for line in lines if line]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"Class names in {path!s} must be unique; repeated: {', '.join(duplicates[:5])}.")
    return names


def _describe(keys) -> str:
    keys = sorted(keys)
    return ", ".join(keys[:6]) + (f", ... ({len(keys)} keys)" if len(keys) > 6 else "")


def infer_official_config(
    state_dict: Mapping[str, torch.Tensor],
    num_heads: int = 12,
    backbone: str | None = None,
    id2label: Mapping[int, str] | None = None,
) -> PromptCamConfig:
    """Read the architecture off an official state dict and build the matching [`PromptCamConfig`]."""
    expected = (
        "timm ViT keys (cls_token, pos_embed, patch_embed.proj.*, blocks.N.*, norm.*), "
        "vpt.prompt_embeddings (depth, C, D) and a shared head.weight (1, D)"
    )
    if "vpt.prompt_embeddings" not in state_dict:
        raise NotAnOfficialCheckpointError(
            f"Not an official Prompt-CAM checkpoint: there is no vpt.prompt_embeddings (found {_describe(state_dict)}). "
            f"Expected {expected}."
        )
    missing = [key for key in TOP_LEVEL_KEYS if key not in state_dict]
    if missing:
        raise NotAnOfficialCheckpointError(
            f"Not an official Prompt-CAM checkpoint: missing {', '.join(missing)}. Expected {expected}."
        )
    prompts = state_dict["vpt.prompt_embeddings"]
    hidden_size = state_dict["cls_token"].shape[-1]
    if prompts.ndim != 3 or prompts.shape[-1] != hidden_size:
        raise NotAnOfficialCheckpointError(
            f"vpt.prompt_embeddings has shape {tuple(prompts.shape)}; expected (depth, num_classes, {hidden_size})."
        )
    head = state_dict["head.weight"]
    if head.shape != (1, hidden_size):
        raise NotAnOfficialCheckpointError(
            f"head.weight has shape {tuple(head.shape)}: a {head.shape[0]}-way linear head, not Prompt-CAM's shared "
            f"scoring vector (1, {hidden_size}). This looks like a linear-probe or VPT checkpoint."
        )

    block_indices = {int(match.group(1)) for key in state_dict if (match := re.match(r"blocks\.(\d+)\.", key))}
    depth = max(block_indices) + 1 if block_indices else 0
    missing_blocks = [
        f"blocks.{i}.{key}" for i in range(depth) for key in BLOCK_KEYS if f"blocks.{i}.{key}" not in state_dict
    ]
    if depth == 0 or missing_blocks:
        found = f"missing {', '.join(missing_blocks[:6])}" if missing_blocks else "no blocks.N.* keys"
        raise NotAnOfficialCheckpointError(f"Incomplete checkpoint: {found}. Expected {expected}.")
    num_prompt_layers, num_classes = prompts.shape[0], prompts.shape[1]
    if num_prompt_layers != depth:
        raise NotAnOfficialCheckpointError(
            f"vpt.prompt_embeddings has {num_prompt_layers} prompt layers for a {depth}-block backbone; the released "
            f"Prompt-CAM models are deep (one prompt set per block: ({depth}, C, D))."
        )

    has_layer_scale = "blocks.0.ls1.gamma" in state_dict
    family = "dinov2" if has_layer_scale else "dino"
    if backbone is not None:
        if backbone not in BACKBONE_FAMILIES:
            raise ValueError(f"backbone must be one of {BACKBONE_FAMILIES}, got {backbone!r}.")
        if backbone != family:
            raise NotAnOfficialCheckpointError(
                f"--backbone {backbone} does not match the weights: layer scale (ls1.gamma) is "
                f"{'present (DINOv2)' if has_layer_scale else 'absent (DINO)'}."
            )
    if hidden_size % num_heads:
        raise ValueError(
            f"num_heads={num_heads} does not divide the width {hidden_size}; pass --num-heads with the backbone's head "
            "count, a divisor of the width (ViT-B has 12 heads, ViT-S 6)."
        )

    patch_size = state_dict["patch_embed.proj.weight"].shape[-1]
    num_positions = state_dict["pos_embed"].shape[1] - 1
    grid = int(round(num_positions**0.5))
    if grid * grid != num_positions:
        raise NotAnOfficialCheckpointError(f"pos_embed has {num_positions} patch positions, not a square grid.")
    common = {
        "hidden_size": hidden_size,
        "num_hidden_layers": depth,
        "num_attention_heads": num_heads,
        "image_size": grid * patch_size,
        "patch_size": patch_size,
        "layer_norm_eps": LAYER_NORM_EPS,
        "hidden_act": "gelu",
        "qkv_bias": "blocks.0.attn.qkv.bias" in state_dict,
    }
    intermediate_size = state_dict["blocks.0.mlp.fc1.weight"].shape[0]
    if family == "dinov2":
        if intermediate_size % hidden_size:
            raise NotAnOfficialCheckpointError(
                f"MLP width {intermediate_size} is not a whole multiple of the width {hidden_size}; DINOv2 configs "
                "express it as an integer mlp_ratio."
            )
        backbone_config = Dinov2Config(mlp_ratio=intermediate_size // hidden_size, **common)
    else:
        backbone_config = ViTConfig(intermediate_size=intermediate_size, **common)

    if id2label is None:
        id2label = {i: f"class_{i}" for i in range(num_classes)}
    id2label = {int(k): str(v) for k, v in id2label.items()}
    if sorted(id2label) != list(range(num_classes)):
        raise ValueError(
            f"The checkpoint has {num_classes} classes but {len(id2label)} class names were given; give one name per "
            "class, in class-index order."
        )
    return PromptCamConfig(
        backbone_config=backbone_config,
        id2label=id2label,
        label2id={name: index for index, name in id2label.items()},
        prompt_mode="deep",
        # the official recipe's training-time regularisers, kept for users who continue training
        prompt_dropout=0.1 if family == "dino" else 0.0,
        drop_path_rate=0.1 if family == "dino" else 0.0,
    )


def _rename(state_dict: Mapping[str, torch.Tensor], config: PromptCamConfig) -> dict[str, torch.Tensor]:
    """Map timm / official keys to ours; split the fused qkv projection into q, k, v."""
    is_vit = config.backbone_config.model_type == "vit"
    layer_prefix = "backbone.layers" if is_vit else "backbone.encoder.layer"
    norms = ("layernorm_before", "layernorm_after") if is_vit else ("norm1", "norm2")
    converted = {
        "backbone.embeddings.cls_token": state_dict["cls_token"],
        "backbone.embeddings.position_embeddings": state_dict["pos_embed"],
        "backbone.embeddings.patch_embeddings.projection.weight": state_dict["patch_embed.proj.weight"],
        "backbone.embeddings.patch_embeddings.projection.bias": state_dict["patch_embed.proj.bias"],
        "backbone.layernorm.weight": state_dict["norm.weight"],
        "backbone.layernorm.bias": state_dict["norm.bias"],
        "prompt_head.prompt_embeddings": state_dict["vpt.prompt_embeddings"],
        "prompt_head.score.weight": state_dict["head.weight"],
        "prompt_head.score.bias": state_dict["head.bias"],
    }
    for i in range(config.backbone_config.num_hidden_layers):
        source, target = f"blocks.{i}.", f"{layer_prefix}.{i}."
        for parameter in ("weight", "bias"):
            converted[f"{target}{norms[0]}.{parameter}"] = state_dict[f"{source}norm1.{parameter}"]
            converted[f"{target}{norms[1]}.{parameter}"] = state_dict[f"{source}norm2.{parameter}"]
            converted[f"{target}attention.o_proj.{parameter}"] = state_dict[f"{source}attn.proj.{parameter}"]
            converted[f"{target}mlp.fc1.{parameter}"] = state_dict[f"{source}mlp.fc1.{parameter}"]
            converted[f"{target}mlp.fc2.{parameter}"] = state_dict[f"{source}mlp.fc2.{parameter}"]
            fused = state_dict.get(f"{source}attn.qkv.{parameter}")
            if fused is not None:  # q, k, v stacked on the output dimension
                for name, chunk in zip(("q_proj", "k_proj", "v_proj"), fused.chunk(3, dim=0)):
                    converted[f"{target}attention.{name}.{parameter}"] = chunk
        if not is_vit:
            converted[f"{target}layer_scale1.lambda1"] = state_dict[f"{source}ls1.gamma"]
            converted[f"{target}layer_scale2.lambda1"] = state_dict[f"{source}ls2.gamma"]
    return converted


def convert_official_checkpoint(
    path: str | os.PathLike | Mapping[str, torch.Tensor],
    num_heads: int = 12,
    backbone: str | None = None,
    id2label: Mapping[int, str] | None = None,
) -> PromptCamForImageClassification:
    """Turn an official Prompt-CAM checkpoint into a [`PromptCamForImageClassification`] (eval mode).

    Args:
        path: the official `model.pt` (or an already loaded state dict).
        num_heads: attention heads of the backbone; the weights cannot tell it (ViT-B: 12, ViT-S: 6).
        backbone: `"dino"` or `"dinov2"` to check the family read from the weights (layer scale means DINOv2).
        id2label: class names by index; default `class_0`, `class_1`, ...
    Returns:
        the model, with the official evaluation preprocessing as its saved image processor
        (see [`promptcam_image_processor`]).
    """
    state_dict = path if isinstance(path, Mapping) else load_official_state_dict(path)
    # NaN / inf weights would be saved as a model whose every logit is NaN, without a word
    non_finite = sorted(
        key
        for key, value in state_dict.items()
        if isinstance(value, torch.Tensor) and value.is_floating_point() and not bool(torch.isfinite(value).all())
    )
    if non_finite:
        raise NotAnOfficialCheckpointError(
            f"The checkpoint holds NaN or infinite values in {_describe(non_finite)}; the training that wrote it "
            "diverged or the file is damaged: convert an earlier or re-downloaded checkpoint."
        )
    config = infer_official_config(state_dict, num_heads=num_heads, backbone=backbone, id2label=id2label)
    model = PromptCamForImageClassification(config)
    converted = _rename(state_dict, config)
    unused = sorted(set(state_dict) - _used_source_keys(state_dict, config))
    if unused:
        raise NotAnOfficialCheckpointError(
            f"The checkpoint has weights the conversion does not know: {_describe(unused)}; refusing to drop them."
        )
    missing, unexpected = model.load_state_dict(converted, strict=False)
    # DINOv2's mask token is only used for masked-image pre-training; official checkpoints do not carry it
    missing = [key for key in missing if key != "backbone.embeddings.mask_token"]
    if missing or unexpected:
        raise NotAnOfficialCheckpointError(
            f"Converted weights do not fit the model: missing {_describe(missing)}; unexpected {_describe(unexpected)}."
        )
    return model.eval()


def _used_source_keys(state_dict: Mapping[str, torch.Tensor], config: PromptCamConfig) -> set[str]:
    used = set(TOP_LEVEL_KEYS) | {"vpt.prompt_embeddings"}
    for i in range(config.backbone_config.num_hidden_layers):
        used |= {f"blocks.{i}.{key}" for key in BLOCK_KEYS} | {f"blocks.{i}.attn.qkv.bias"}
        if config.backbone_config.model_type == "dinov2":
            used |= {f"blocks.{i}.ls1.gamma", f"blocks.{i}.ls2.gamma"}
    return used & set(state_dict)


__all__ = [
    "NotAnOfficialCheckpointError",
    "convert_official_checkpoint",
    "infer_official_config",
    "load_official_state_dict",
    "read_class_names",
]
