"""Tiny random Prompt-CAM models and the straightforward reference forward pass the fast path is tested against."""

from __future__ import annotations

import torch
from transformers import (
    CLIPVisionConfig,
    Dinov2Config,
    Dinov2WithRegistersConfig,
    DINOv3ViTConfig,
    SiglipVisionConfig,
    ViTConfig,
)

from modeling_promptcam import PromptCamConfig, PromptCamForImageClassification

FAMILIES = ("vit", "dinov2", "dinov2_with_registers")
# families added later; every test of the core battery runs on ALL_FAMILIES
MORE_FAMILIES = ("dinov3_vit", "clip_vision_model", "siglip_vision_model")
ALL_FAMILIES = FAMILIES + MORE_FAMILIES
IMAGE_SIZE = 32
PATCH_SIZE = 8


def tiny_backbone_config(family: str, **overrides):
    common = dict(
        hidden_size=32,
        num_hidden_layers=3,
        num_attention_heads=4,
        image_size=IMAGE_SIZE,
        patch_size=PATCH_SIZE,
        layer_norm_eps=1e-6,
    )
    common.update(overrides)
    if family == "vit":
        return ViTConfig(intermediate_size=64, **common)
    if family == "dinov2":
        return Dinov2Config(mlp_ratio=2, **common)
    if family == "dinov2_with_registers":
        return Dinov2WithRegistersConfig(mlp_ratio=2, num_register_tokens=2, **common)
    if family == "dinov3_vit":
        # no rotary augmentation (random rescaling while training), so train-mode outputs are comparable
        return DINOv3ViTConfig(
            intermediate_size=64, num_register_tokens=2, pos_embed_rescale=None, key_bias=True, **common
        )
    if family == "clip_vision_model":
        return CLIPVisionConfig(intermediate_size=64, hidden_act="quick_gelu", **common)
    if family == "siglip_vision_model":
        return SiglipVisionConfig(intermediate_size=64, vision_use_head=False, **common)
    raise ValueError(family)


def randomize_(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give every parameter (LayerNorm and layer scale included) random values, so a wrong mapping cannot pass."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            noise = torch.randn(parameter.shape, generator=generator)
            if name.endswith(
                ("norm1.weight", "norm2.weight", "norm.weight", "_before.weight", "_after.weight", "layrnorm.weight")
            ):
                parameter.copy_(1.0 + 0.2 * noise)
            elif name.endswith("lambda1"):
                parameter.copy_(0.5 + 0.3 * noise)
            elif any(
                part in name for part in ("prompt_embeddings", "cls_token", "register_tokens", "class_embedding")
            ):
                parameter.copy_(noise)
            else:
                parameter.copy_(0.15 * noise)
    return model


def tiny_model(
    family: str = "vit", num_labels: int = 5, prompt_mode: str = "deep", seed: int = 0, **backbone_overrides
):
    config = PromptCamConfig(
        backbone_config=tiny_backbone_config(family, **backbone_overrides),
        num_labels=num_labels,
        prompt_mode=prompt_mode,
        id2label={i: f"class_{i}" for i in range(num_labels)},
        label2id={f"class_{i}": i for i in range(num_labels)},
    )
    torch.manual_seed(seed)
    return randomize_(PromptCamForImageClassification(config), seed).eval()


def save_tiny_model(folder, class_names: list[str], family: str = "vit") -> PromptCamForImageClassification:
    """A tiny random model whose classes are `class_names`, saved to `folder` (config, weights, code, processor)."""
    model = tiny_model(family, num_labels=len(class_names))
    model.config.id2label = dict(enumerate(class_names))
    model.config.label2id = {name: i for i, name in enumerate(class_names)}
    model.save_pretrained(folder)
    return model


def straightforward_forward(
    model: PromptCamForImageClassification, pixel_values: torch.Tensor, capture_maps: bool = True
):
    """The official computation spelled out with the backbone's own HF layers (the test oracle).

    Prompts are concatenated in front of [CLS, registers, patches], each HF layer runs on the whole sequence, prompt
    outputs are dropped after each layer (deep) or carried (shallow); the class prompts' final outputs go through the
    final LayerNorm and the shared head. With `capture_maps`, the layers run with eager attention and the last layer's
    attention weights are captured; otherwise they run with the backbone's implementation (SDPA).
    Returns logits `(B, C)` and trait maps `(B, C, heads, gh, gw)` (None without `capture_maps`).
    """
    config = model.config
    num_labels = config.num_labels
    backbone = model.backbone
    family = config.backbone_config.model_type
    layers = _layers(model)
    prefix = _prefix_tokens(config.backbone_config)
    prompts = model.prompt_head.prompt_embeddings

    captured = {}
    hook = _attention_module(family, layers[-1]).register_forward_hook(
        lambda module, args, output: captured.update(weights=output[1])
    )
    previous = backbone.config._attn_implementation
    if capture_maps:
        backbone.config._attn_implementation = "eager"
    try:
        hidden, run_layer = _embed_and_layer_runner(model, pixel_values)
        batch = hidden.shape[0]
        if config.prompt_mode == "deep":
            for index, layer in enumerate(layers):
                sequence = run_layer(layer, torch.cat((prompts[index].expand(batch, -1, -1), hidden), dim=1))
                hidden, class_outputs = sequence[:, num_labels:], sequence[:, :num_labels]
        else:
            sequence = torch.cat((prompts[0].expand(batch, -1, -1), hidden), dim=1)
            for layer in layers:
                sequence = run_layer(layer, sequence)
            class_outputs = sequence[:, :num_labels]
    finally:
        hook.remove()
        backbone.config._attn_implementation = previous
    logits = model.prompt_head.score(_final_norm(model)(class_outputs)).squeeze(-1)
    if not capture_maps:
        return logits, None
    weights = captured["weights"]  # (B, heads, C + T, C + T)
    patch_size = config.backbone_config.patch_size
    grid = (pixel_values.shape[2] // patch_size, pixel_values.shape[3] // patch_size)
    maps = weights[:, :, :num_labels, num_labels + prefix :].transpose(1, 2)
    return logits, maps.reshape(*maps.shape[:3], *grid)


def _layers(model):
    backbone = model.backbone
    family = model.config.backbone_config.model_type
    if family == "vit":
        return backbone.layers
    if family == "dinov3_vit":
        return backbone.model.layer
    if family in ("clip_vision_model", "siglip_vision_model"):
        return backbone.encoder.layers
    return backbone.encoder.layer


def _prefix_tokens(backbone_config) -> int:
    if backbone_config.model_type == "siglip_vision_model":
        return 0
    return 1 + getattr(backbone_config, "num_register_tokens", 0)


def _attention_module(family, layer):
    return layer.self_attn if family in ("clip_vision_model", "siglip_vision_model") else layer.attention


def _final_norm(model):
    family = model.config.backbone_config.model_type
    if family in ("clip_vision_model", "siglip_vision_model"):
        return model.backbone.post_layernorm
    return model.backbone.norm if family == "dinov3_vit" else model.backbone.layernorm


def _embed_and_layer_runner(model, pixel_values):
    """The backbone's own embedding step, and how its HF layer is called on a full sequence."""
    backbone = model.backbone
    family = model.config.backbone_config.model_type
    if family == "dinov3_vit":
        rotary = backbone.rope_embeddings(pixel_values)
        return backbone.embeddings(pixel_values), lambda layer, x: layer(x, position_embeddings=rotary)
    if family == "clip_vision_model":
        return backbone.pre_layrnorm(backbone.embeddings(pixel_values)), lambda layer, x: layer(x, None)
    if family == "siglip_vision_model":
        return backbone.embeddings(pixel_values), lambda layer, x: layer(x, None)
    return backbone.embeddings(pixel_values), lambda layer, x: layer(x)


def naive_target_logits(model, pixel_values, target: int, blurred_heads, blur: str) -> torch.Tensor:
    """The official blur written out: one full straightforward forward pass in which, in the last layer only, the
    target prompt's attention row is blurred in `blurred_heads`. Returns the target logit per image `(B,)`."""
    config = model.config
    num_labels = config.num_labels
    family = config.backbone_config.model_type
    prefix = 1 + getattr(config.backbone_config, "num_register_tokens", 0)
    prompts = model.prompt_head.prompt_embeddings
    layers = _layers(model)
    hidden = model.backbone.embeddings(pixel_values)
    batch = hidden.shape[0]
    if config.prompt_mode == "deep":
        for index, layer in enumerate(layers[:-1]):
            hidden = layer(torch.cat((prompts[index].expand(batch, -1, -1), hidden), dim=1))[:, num_labels:]
        sequence = torch.cat((prompts[-1].expand(batch, -1, -1), hidden), dim=1)
    else:
        sequence = torch.cat((prompts[0].expand(batch, -1, -1), hidden), dim=1)
        for layer in layers[:-1]:
            sequence = layer(sequence)

    layer = layers[-1]
    attention = layer.attention
    norm1, norm2 = (layer.layernorm_before, layer.layernorm_after) if family == "vit" else (layer.norm1, layer.norm2)
    normed = norm1(sequence)
    shape = (batch, sequence.shape[1], attention.num_attention_heads, attention.head_dim)
    query, key, value = (
        proj(normed).view(shape).transpose(1, 2) for proj in (attention.q_proj, attention.k_proj, attention.v_proj)
    )
    scores = query @ key.transpose(-1, -2) * attention.scaling  # (B, heads, S, S)
    heads = list(blurred_heads)
    if blur == "official":
        scores[:, heads, target, :] = 0.0
    weights = scores.softmax(dim=-1)
    num_patches = sequence.shape[1] - num_labels - prefix
    if blur == "paper":
        weights[:, heads, target, :] = 0.0
        weights[:, heads, target, num_labels + prefix :] = 1.0 / num_patches
    if blur == "spatial":  # the patch mass spread evenly over the patches; prompts / CLS / registers untouched
        patch_mass = weights[:, heads, target, num_labels + prefix :].sum(dim=-1, keepdim=True)
        weights[:, heads, target, num_labels + prefix :] = patch_mass / num_patches
    attended = attention.o_proj((weights @ value).transpose(1, 2).reshape(batch, sequence.shape[1], -1))
    if family != "vit":
        attended = layer.layer_scale1(attended)
    sequence = sequence + attended
    mlp = layer.mlp(norm2(sequence))
    if family != "vit":
        mlp = layer.layer_scale2(mlp)
    sequence = sequence + mlp
    logits = model.prompt_head.score(model.backbone.layernorm(sequence[:, :num_labels])).squeeze(-1)
    return logits[:, target]


def naive_rank_traits(model, pixel_values, target: int, blur: str):
    """The official greedy loop with one full forward pass per candidate (for one image `(1, 3, H, W)`).

    Returns the blur order (least important first) and the target logit after each step."""
    num_heads = model.config.backbone_config.num_attention_heads
    blurred, scores = [], []
    for _ in range(num_heads):
        best_head, best_score = None, None
        for head in range(num_heads):
            if head in blurred:
                continue
            score = naive_target_logits(model, pixel_values, target, blurred + [head], blur).item()
            if best_score is None or score > best_score:
                best_head, best_score = head, score
        blurred.append(best_head)
        scores.append(best_score)
    return blurred, scores
