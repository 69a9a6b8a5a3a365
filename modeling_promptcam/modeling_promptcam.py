"""PyTorch Prompt-CAM model (Chowdhury et al., "Making Vision Transformers Interpretable for Fine-Grained Analysis",
CVPR 2025), over the transformers ViT / DINOv2 backbones.

This file is one of the remote-code files copied next to saved checkpoints: it imports nothing beyond torch,
transformers and its siblings `configuration_promptcam` and `pipeline_promptcam`.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import torch
from torch import nn
from transformers import AutoModel, PreTrainedModel
from transformers import initialization as init
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.utils import ModelOutput, is_torchvision_available

from .configuration_promptcam import PromptCamConfig

# imported so that saved folders carry the `prompt-cam` pipeline code next to the model code
from .pipeline_promptcam import PromptCamImageClassificationPipeline  # noqa: F401

IMAGE_PROCESSOR_FILE = "preprocessor_config.json"
# Prompt-CAM's recipe normalises with mean = std = 0.5 for DINO and DINOv2 alike (official data transforms).
PROMPTCAM_IMAGE_MEAN = (0.5, 0.5, 0.5)
PROMPTCAM_IMAGE_STD = (0.5, 0.5, 0.5)


@dataclass
class PromptCamImageClassifierOutput(ModelOutput):
    r"""
    Output of [`PromptCamForImageClassification`].

    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*, returned when `labels` is given):
            Cross-entropy of the class scores.
        logits (`torch.FloatTensor` of shape `(batch_size, num_labels)`):
            One score per class: the shared head applied to the class prompt's output of the last layer.
        trait_maps (`torch.FloatTensor` of shape `(batch_size, num_classes, num_heads, grid_height, grid_width)`, *optional*):
            Returned with `output_trait_maps=True`. Last-layer attention of each class prompt to each patch token, per
            head; the softmax runs over all keys (prompts, CLS, registers, patches) and the patch slice is not
            renormalised (official semantics). `num_classes` is `num_labels`, or `K` when `trait_map_classes` of shape
            `(batch_size, K)` was given, in which case entry `[b, k]` is the map of class `trait_map_classes[b, k]`.
        trait_map_classes (`torch.LongTensor` of shape `(batch_size, K)`, *optional*):
            The classes of `trait_maps` along dim 1, when the caller restricted them.
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    trait_maps: torch.FloatTensor | None = None
    trait_map_classes: torch.LongTensor | None = None


BLUR_MODES = ("paper", "official", "spatial")


@dataclass
class TraitRanking:
    """Greedy head ranking of one image for one target class ([`PromptCamForImageClassification.rank_traits`]).

    Attributes:
        target_class: the class whose prompt's heads were ranked.
        ranked_heads: all heads of the last layer, most important first (the greedy blur order reversed).
        top_traits: the heads left when the stop rule fired, most important first.
        target_scores: the target logit after each greedy step (step i: i + 1 heads blurred), in blur order.
        initial_score: the target logit with no head blurred.
        misclassified_after: how many heads were blurred when another class first scored strictly higher than the
            target (0: not the top class to begin with; None: still the top class with every head blurred).
        blur, stop: the settings used.
    """

    target_class: int
    ranked_heads: list[int]
    top_traits: list[int]
    target_scores: list[float]
    initial_score: float
    misclassified_after: int | None
    blur: str
    stop: str | int

    @property
    def blur_order(self) -> list[int]:
        """Heads in the order the greedy loop blurred them (least important first)."""
        return self.ranked_heads[::-1]


def drop_path(hidden_states: torch.Tensor, drop_prob: float, training: bool) -> torch.Tensor:
    """Stochastic depth per sample: zero the whole residual branch of a random subset of samples (and rescale)."""
    if drop_prob == 0.0 or not training:
        return hidden_states
    keep_prob = 1.0 - drop_prob
    shape = (hidden_states.shape[0],) + (1,) * (hidden_states.ndim - 1)
    keep = torch.rand(shape, dtype=hidden_states.dtype, device=hidden_states.device).add_(keep_prob).floor_()
    return hidden_states.div(keep_prob) * keep


def attention_scaling(attention: nn.Module) -> float:
    """The softmax scale of a transformers attention module (`scaling` in most, `scale` in CLIP / SigLIP)."""
    return attention.scaling if hasattr(attention, "scaling") else attention.scale


def attention_dropout(attention: nn.Module) -> float:
    """The attention-probability dropout of a transformers attention module."""
    value = getattr(attention, "attention_dropout", None)
    return value if value is not None else getattr(attention, "dropout", 0.0)


def attention_output(attention: nn.Module) -> nn.Linear:
    """The output projection (`o_proj`, or `out_proj` in CLIP / SigLIP)."""
    return attention.o_proj if hasattr(attention, "o_proj") else attention.out_proj


class PromptCamBackboneAdapter:
    """How Prompt-CAM drives the modules of one backbone family.

    The forward pass of Prompt-CAM is written once (in [`PromptCamForImageClassification`]) over the backbone's own
    sub-modules; each family only says where those sub-modules are, how its residual branches are scaled and how
    positions enter. Every supported attention module has `q_proj`, `k_proj`, `v_proj` and an output projection
    (see `attention_output`).
    """

    def __init__(self, backbone: PreTrainedModel):
        self.backbone = backbone
        self.config = backbone.config

    @classmethod
    def build_backbone(cls, backbone_config) -> PreTrainedModel:
        return AutoModel.from_config(backbone_config)

    @property
    def num_prefix_tokens(self) -> int:
        """Image-side tokens before the patches: CLS plus register tokens."""
        return 1 + getattr(self.config, "num_register_tokens", 0)

    @property
    def patch_size(self) -> tuple[int, int]:
        return _pair(self.config.patch_size)

    @property
    def image_size(self) -> tuple[int, int]:
        return _pair(self.config.image_size)

    def check_image_size(self, height: int, width: int, interpolate_pos_encoding: bool | None) -> None:
        patch_h, patch_w = self.patch_size
        if height % patch_h or width % patch_w:
            raise ValueError(
                f"Image size {height}x{width} is not divisible by the backbone's patch size {patch_h}x{patch_w}; "
                "resize the images to a multiple of the patch size (the saved image processor does this)."
            )

    def layers(self) -> nn.ModuleList:
        raise NotImplementedError

    def final_layernorm(self) -> nn.Module:
        return self.backbone.layernorm

    def attention(self, layer: nn.Module) -> nn.Module:
        return layer.attention

    def embed(self, pixel_values: torch.Tensor, interpolate_pos_encoding: bool | None) -> torch.Tensor:
        """`(B, 3, H, W)` pixels -> `(B, prefix + M, D)` tokens [CLS, registers, patches] with positions added."""
        raise NotImplementedError

    def position_state(self, pixel_values: torch.Tensor):
        """Per-forward positional state the attention needs (rotary tables); None for absolute position embeddings."""
        return None

    def rotate(self, states: torch.Tensor, position_state) -> torch.Tensor:
        """Apply rotary position embeddings to the patch rows (the last M) of queries or keys `(B, heads, n, head_dim)`;
        prefix rows (prompts, CLS, registers) are not rotated. Identity for absolute position embeddings."""
        return states

    def attention_norm(self, layer: nn.Module) -> nn.Module:
        raise NotImplementedError

    def attention_branch(self, layer: nn.Module, attention_output: torch.Tensor) -> torch.Tensor:
        """Residual branch after the attention output projection (before stochastic depth)."""
        raise NotImplementedError

    def mlp_branch(self, layer: nn.Module, hidden_states: torch.Tensor) -> torch.Tensor:
        """Residual branch of the MLP for `hidden_states` (before stochastic depth)."""
        raise NotImplementedError


class ViTAdapter(PromptCamBackboneAdapter):
    """`ViTModel` (DINO ViT checkpoints, google/vit-*): pre-norm layers without layer scale."""

    @classmethod
    def build_backbone(cls, backbone_config) -> PreTrainedModel:
        return AutoModel.from_config(backbone_config, add_pooling_layer=False)

    def check_image_size(self, height: int, width: int, interpolate_pos_encoding: bool | None) -> None:
        super().check_image_size(height, width, interpolate_pos_encoding)
        if not interpolate_pos_encoding and (height, width) != self.image_size:
            raise ValueError(
                f"Image size {height}x{width} does not match the ViT backbone's {self.image_size[0]}x"
                f"{self.image_size[1]}; resize the images (the saved image processor does this) or pass "
                "interpolate_pos_encoding=True to interpolate the position embeddings."
            )

    def layers(self) -> nn.ModuleList:
        return self.backbone.layers

    def embed(self, pixel_values: torch.Tensor, interpolate_pos_encoding: bool | None) -> torch.Tensor:
        pixel_values = pixel_values.to(self.backbone.embeddings.patch_embeddings.projection.weight.dtype)
        return self.backbone.embeddings(pixel_values, interpolate_pos_encoding=bool(interpolate_pos_encoding))

    def attention_norm(self, layer: nn.Module) -> nn.Module:
        return layer.layernorm_before

    def attention_branch(self, layer: nn.Module, attention_output: torch.Tensor) -> torch.Tensor:
        return layer.dropout(attention_output)

    def mlp_branch(self, layer: nn.Module, hidden_states: torch.Tensor) -> torch.Tensor:
        return layer.dropout(layer.mlp(layer.layernorm_after(hidden_states)))


class Dinov2Adapter(PromptCamBackboneAdapter):
    """`Dinov2Model` and `Dinov2WithRegistersModel`: pre-norm layers with layer scale; registers follow CLS.

    DINOv2 embeddings always interpolate their position embeddings, so any multiple of the patch size is accepted.
    """

    def layers(self) -> nn.ModuleList:
        return self.backbone.encoder.layer

    def embed(self, pixel_values: torch.Tensor, interpolate_pos_encoding: bool | None) -> torch.Tensor:
        return self.backbone.embeddings(pixel_values)

    def attention_norm(self, layer: nn.Module) -> nn.Module:
        return layer.norm1

    def attention_branch(self, layer: nn.Module, attention_output: torch.Tensor) -> torch.Tensor:
        return layer.layer_scale1(attention_output)

    def mlp_branch(self, layer: nn.Module, hidden_states: torch.Tensor) -> torch.Tensor:
        return layer.layer_scale2(layer.mlp(layer.norm2(hidden_states)))


class Dinov3Adapter(Dinov2Adapter):
    """`DINOv3ViTModel`: rotary position embeddings on the patch tokens only, registers after CLS, layer scale, MLP or
    gated MLP. Prompts are prefix tokens, like CLS and the registers, so they are not rotated."""

    def layers(self) -> nn.ModuleList:
        return self.backbone.model.layer

    def final_layernorm(self) -> nn.Module:
        return self.backbone.norm

    def position_state(self, pixel_values: torch.Tensor):
        return self.backbone.rope_embeddings(pixel_values)  # (cos, sin), each (M, head_dim)

    def rotate(self, states: torch.Tensor, position_state) -> torch.Tensor:
        cos, sin = position_state
        num_patches = sin.shape[-2]
        prefix, patches = states.split((states.shape[-2] - num_patches, num_patches), dim=-2)
        half = patches.shape[-1] // 2
        rotated_half = torch.cat((-patches[..., half:], patches[..., :half]), dim=-1)
        return torch.cat((prefix, patches * cos + rotated_half * sin), dim=-2)


class ClipVisionAdapter(ViTAdapter):
    """`CLIPVisionModel` (CLIP, OpenCLIP / BioCLIP towers converted to it): a LayerNorm before the encoder
    (`pre_layrnorm`), quick-GELU MLPs, and `post_layernorm`, which CLIP applies to the token it pools, used here as
    the final LayerNorm of the class prompts (the role the backbone's final norm has for ViT / DINOv2)."""

    @classmethod
    def build_backbone(cls, backbone_config) -> PreTrainedModel:
        return AutoModel.from_config(backbone_config)

    def layers(self) -> nn.ModuleList:
        return self.backbone.encoder.layers

    def final_layernorm(self) -> nn.Module:
        return self.backbone.post_layernorm

    def attention(self, layer: nn.Module) -> nn.Module:
        return layer.self_attn

    def embed(self, pixel_values: torch.Tensor, interpolate_pos_encoding: bool | None) -> torch.Tensor:
        embeddings = self.backbone.embeddings(pixel_values, interpolate_pos_encoding=bool(interpolate_pos_encoding))
        return self.backbone.pre_layrnorm(embeddings)

    def attention_norm(self, layer: nn.Module) -> nn.Module:
        return layer.layer_norm1

    def attention_branch(self, layer: nn.Module, attention_output: torch.Tensor) -> torch.Tensor:
        return attention_output

    def mlp_branch(self, layer: nn.Module, hidden_states: torch.Tensor) -> torch.Tensor:
        return layer.mlp(layer.layer_norm2(hidden_states))


class SiglipVisionAdapter(ClipVisionAdapter):
    """`SiglipVisionModel`: no CLS token (every token is a patch) and no LayerNorm before the encoder; the prompts
    read the patches directly. `post_layernorm` is the final LayerNorm; the attention-pooling head is not used."""

    @property
    def num_prefix_tokens(self) -> int:
        return 0

    def embed(self, pixel_values: torch.Tensor, interpolate_pos_encoding: bool | None) -> torch.Tensor:
        return self.backbone.embeddings(pixel_values, interpolate_pos_encoding=bool(interpolate_pos_encoding))


BACKBONE_ADAPTERS: dict[str, type[PromptCamBackboneAdapter]] = {
    "vit": ViTAdapter,
    "dinov2": Dinov2Adapter,
    "dinov2_with_registers": Dinov2Adapter,
    "dinov3_vit": Dinov3Adapter,
    "clip_vision_model": ClipVisionAdapter,
    "siglip_vision_model": SiglipVisionAdapter,
}


class PromptCamPromptHead(nn.Module):
    """Everything Prompt-CAM learns, in one module (prompt-only checkpoints and PEFT's `modules_to_save` use it).

    - `prompt_embeddings` `(num_prompt_layers, num_labels, hidden_size)`: deep mode has one set of C prompts per
      backbone layer (the last set are the class prompts); shallow mode has the C class prompts of layer 1.
    - `score`: the shared `Linear(hidden_size, 1)` that turns each class prompt's final output into its logit.
    """

    def __init__(self, config: PromptCamConfig):
        super().__init__()
        hidden_size = config.backbone_config.hidden_size
        self.prompt_embeddings = nn.Parameter(torch.zeros(config.num_prompt_layers, config.num_labels, hidden_size))
        self.prompt_dropout = nn.Dropout(config.prompt_dropout)
        self.score = nn.Linear(hidden_size, 1)

    def forward(self) -> torch.Tensor:
        """The prompts of this batch: `(num_prompt_layers, num_labels, hidden_size)`, dropout applied in training."""
        return self.prompt_dropout(self.prompt_embeddings)


class PromptCamPreTrainedModel(PreTrainedModel):
    config_class = PromptCamConfig
    config: PromptCamConfig
    base_model_prefix = "backbone"
    main_input_name = "pixel_values"
    input_modalities = ("image",)
    _supports_sdpa = True
    _no_split_modules = [
        "ViTLayer",
        "Dinov2Layer",
        "Dinov2WithRegistersLayer",
        "DINOv3ViTLayer",
        "CLIPEncoderLayer",
        "SiglipEncoderLayer",
    ]
    # parts of stock checkpoints Prompt-CAM does not use: ViT's pooler, a CLIP / SigLIP model's text side and heads
    _keys_to_ignore_on_load_unexpected = [
        r"pooler\.",
        r"text_model\.",
        r"text_projection",
        r"visual_projection",
        r"logit_scale",
        r"logit_bias",
        r"backbone\.head\.",
    ]

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, PromptCamPromptHead):
            # VPT / official Prompt-CAM: uniform with the xavier bound of a patch-projection fan-in
            patch_h, patch_w = _pair(self.config.backbone_config.patch_size)
            hidden_size = module.prompt_embeddings.shape[-1]
            bound = math.sqrt(6.0 / float(3 * patch_h * patch_w + hidden_size))
            init.uniform_(module.prompt_embeddings, -bound, bound)
            init.trunc_normal_(module.score.weight, mean=0.0, std=self.config.initializer_range)
            init.zeros_(module.score.bias)


class PromptCamForImageClassification(PromptCamPreTrainedModel):
    r"""
    Prompt-CAM: a frozen ViT / DINOv2 backbone, one learned prompt per class (per layer in deep mode) and one shared
    scoring vector. The logit of class c is the shared head applied to the final-LayerNorm output of class c's prompt
    in the last layer; the trait maps are that prompt's last-layer attention over the patches, per head.

    Token order in every layer is the official one, `[C prompts, CLS, (registers), patches]`, and every token attends to
    every token. The backbone is frozen; `prompt_head` holds all trainable parameters.

    Fast path (exact, not approximate): in deep mode the prompts of layers 1..L-1 do not depend on the image and their
    outputs are dropped, so only their keys and values are computed (once per batch); queries, attention rows and MLP
    run for the image tokens only. In the last layer only the C prompt rows are computed. Attention weights are
    materialised only for the last layer's prompt rows, and only when trait maps are asked for; every other attention
    goes through the backbone's attention implementation (SDPA by default).
    """

    # `Trainer` reloads its own checkpoints (best model, resume) without key conversion, so training sets this to False
    # while it runs; otherwise `save_pretrained` writes transformers' portable original key layout.
    save_in_original_format: bool = True

    def __init__(self, config: PromptCamConfig):
        super().__init__(config)
        adapter_class = BACKBONE_ADAPTERS[config.backbone_config.model_type]
        self.backbone = adapter_class.build_backbone(config.backbone_config)
        self.adapter = adapter_class(self.backbone)
        self.prompt_head = PromptCamPromptHead(config)
        self.backbone.requires_grad_(False)
        self.post_init()

    # ----------------------------------------------------------------------------------------------- validation
    def _check_inputs(
        self,
        pixel_values: torch.Tensor,
        labels: torch.Tensor | None,
        trait_map_classes: torch.Tensor | None,
        interpolate_pos_encoding: bool | None,
    ) -> None:
        num_channels = self.config.backbone_config.num_channels
        if not isinstance(pixel_values, torch.Tensor) or pixel_values.ndim != 4:
            shape = (
                tuple(pixel_values.shape) if isinstance(pixel_values, torch.Tensor) else type(pixel_values).__name__
            )
            raise ValueError(
                f"pixel_values must be a (batch, {num_channels}, height, width) tensor, got {shape}; add the batch "
                "dimension with pixel_values[None] or use the image processor saved with the model."
            )
        if pixel_values.shape[1] != num_channels:
            raise ValueError(
                f"pixel_values has {pixel_values.shape[1]} channels but the backbone expects {num_channels}; convert "
                "images to RGB first (the saved image processor does, for any PIL mode)."
            )
        if not pixel_values.is_floating_point():
            raise ValueError(
                f"pixel_values must be floating point (normalised), got {pixel_values.dtype}; use the image processor."
            )
        self.adapter.check_image_size(pixel_values.shape[2], pixel_values.shape[3], interpolate_pos_encoding)
        batch_size, num_labels = pixel_values.shape[0], self.config.num_labels
        if labels is not None:
            if labels.shape != (batch_size,) or labels.is_floating_point():
                raise ValueError(
                    f"labels must be integer class indices of shape ({batch_size},), got {labels.dtype} "
                    f"{tuple(labels.shape)}."
                )
            _check_class_indices("labels", labels, num_labels)
        if trait_map_classes is not None:
            if trait_map_classes.ndim != 2 or trait_map_classes.shape[0] != batch_size:
                raise ValueError(
                    f"trait_map_classes must have shape (batch_size={batch_size}, K), got {tuple(trait_map_classes.shape)}."
                )
            if trait_map_classes.is_floating_point():
                raise ValueError(f"trait_map_classes must hold integer class indices, got {trait_map_classes.dtype}.")
            _check_class_indices("trait_map_classes", trait_map_classes, num_labels)

    # ----------------------------------------------------------------------------------------------- attention
    def _split_heads(self, attention: nn.Module, projection: nn.Linear, states: torch.Tensor) -> torch.Tensor:
        """`(b, n, D)` -> `(b, heads, n, head_dim)`."""
        return projection(states).view(*states.shape[:-1], -1, attention.head_dim).transpose(1, 2)

    def _attend(
        self, attention: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor
    ) -> torch.Tensor:
        """Attention without weights through the backbone's implementation. Returns `(B, n_query, heads * head_dim)`."""
        implementation = attention.config._attn_implementation or "sdpa"
        dropout = attention_dropout(attention) if self.training else 0.0
        if implementation == "eager":
            output, _ = self._attend_with_weights(attention, query, key, value)
            return output
        attention_interface = ALL_ATTENTION_FUNCTIONS[implementation]
        output, _ = attention_interface(
            attention, query, key, value, None, dropout=dropout, scaling=attention_scaling(attention)
        )
        return output.reshape(*output.shape[:2], -1)

    def _attend_with_weights(
        self, attention: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Explicit softmax attention. Returns `(B, n_query, heads * head_dim)` and weights `(B, heads, n_query, n_key)`."""
        weights = self._attention_probabilities(attention, query, key)
        dropped = nn.functional.dropout(weights, p=attention_dropout(attention), training=self.training)
        output = torch.matmul(dropped, value).transpose(1, 2)
        return output.reshape(*output.shape[:2], -1), weights

    def _attention_probabilities(self, attention: nn.Module, query: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
        """Softmax over the keys (in float32, as the eager attention of transformers): `(B, heads, n_query, n_key)`."""
        scores = torch.matmul(query, key.transpose(-1, -2)) * attention_scaling(attention)
        return nn.functional.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)

    def _residual(self, states: torch.Tensor, branch: torch.Tensor) -> torch.Tensor:
        return states + drop_path(branch, self.config.drop_path_rate, self.training)

    # ----------------------------------------------------------------------------------------------- layers
    def _image_token_layer(
        self, layer: nn.Module, hidden_states: torch.Tensor, prompts: torch.Tensor | None, position_state=None
    ) -> torch.Tensor:
        """One backbone layer for the rows of `hidden_states` `(B, N, D)`, which also attend to `prompts` `(C, D)`.

        The prompts' own outputs are not needed (they are dropped after the layer), so only their keys and values are
        computed, once for the whole batch. With `prompts=None` this is the plain layer over `hidden_states`.
        """
        attention = self.adapter.attention(layer)
        normed = self.adapter.attention_norm(layer)(hidden_states)
        query = self._split_heads(attention, attention.q_proj, normed)
        key = self._split_heads(attention, attention.k_proj, normed)
        value = self._split_heads(attention, attention.v_proj, normed)
        query = self.adapter.rotate(query, position_state)
        key = self.adapter.rotate(key, position_state)
        if prompts is not None:
            normed_prompts = self.adapter.attention_norm(layer)(prompts[None])
            batch = hidden_states.shape[0]
            prompt_key = self._split_heads(attention, attention.k_proj, normed_prompts).expand(batch, -1, -1, -1)
            prompt_value = self._split_heads(attention, attention.v_proj, normed_prompts).expand(batch, -1, -1, -1)
            key = torch.cat((prompt_key, key), dim=2)
            value = torch.cat((prompt_value, value), dim=2)
        attended = attention_output(attention)(self._attend(attention, query, key, value))
        hidden_states = self._residual(hidden_states, self.adapter.attention_branch(layer, attended))
        return self._residual(hidden_states, self.adapter.mlp_branch(layer, hidden_states))

    def _last_layer_inputs(
        self, pixel_values: torch.Tensor, interpolate_pos_encoding: bool | None
    ) -> tuple[torch.Tensor, torch.Tensor, object]:
        """Run the backbone up to its last layer.

        Returns the class prompts entering the last layer, `(1, C, D)` in deep mode (the learned ones, shared by the
        batch) or `(B, C, D)` in shallow mode, the image tokens [CLS, registers, patches] entering it, `(B, T, D)`, and
        the backbone's positional state for the attention (rotary tables; None for absolute position embeddings).
        """
        num_labels = self.config.num_labels
        prompts = self.prompt_head()
        layers = self.adapter.layers()
        hidden_states = self.adapter.embed(pixel_values, interpolate_pos_encoding)
        position_state = self.adapter.position_state(pixel_values)
        if self.config.prompt_mode == "deep":
            for layer, layer_prompts in zip(layers[:-1], prompts[:-1]):
                hidden_states = self._image_token_layer(layer, hidden_states, layer_prompts, position_state)
            return prompts[-1][None], hidden_states, position_state
        # shallow: the class prompts are ordinary tokens of every layer; only the last layer is cut to their rows
        batch = hidden_states.shape[0]
        hidden_states = torch.cat((prompts[0][None].expand(batch, -1, -1), hidden_states), dim=1)
        for layer in layers[:-1]:
            hidden_states = self._image_token_layer(layer, hidden_states, None, position_state)
        return hidden_states[:, :num_labels], hidden_states[:, num_labels:], position_state

    def _last_layer_projections(
        self, layer: nn.Module, prompt_states: torch.Tensor, image_states: torch.Tensor, position_state=None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Queries of the class prompts `(B, heads, C, head_dim)`; keys and values of all tokens
        `(B, heads, C + T, head_dim)`, in the official order [prompts, CLS, registers, patches]."""
        attention = self.adapter.attention(layer)
        batch = image_states.shape[0]
        norm = self.adapter.attention_norm(layer)
        normed_prompts, normed_image = norm(prompt_states), norm(image_states)

        def heads(projection: nn.Linear, states: torch.Tensor) -> torch.Tensor:
            return self._split_heads(attention, projection, states).expand(batch, -1, -1, -1)

        query = heads(attention.q_proj, normed_prompts)
        image_keys = self.adapter.rotate(heads(attention.k_proj, normed_image), position_state)
        key = torch.cat((heads(attention.k_proj, normed_prompts), image_keys), dim=2)
        value = torch.cat((heads(attention.v_proj, normed_prompts), heads(attention.v_proj, normed_image)), dim=2)
        return query, key, value

    def _prompt_logits(self, layer: nn.Module, prompt_states: torch.Tensor, attended: torch.Tensor) -> torch.Tensor:
        """Finish the last layer for prompt rows and score them.

        Args:
            prompt_states: `(1 or B, n, D)` the prompts entering the last layer (broadcast over `attended`'s rows).
            attended: `(B, n, heads * head_dim)` their attention outputs before the output projection.
        Returns:
            logits `(B, n)`: output projection, residuals, MLP, the backbone's final LayerNorm, the shared head.
        """
        projected = attention_output(self.adapter.attention(layer))(attended)
        hidden_states = self._residual(prompt_states, self.adapter.attention_branch(layer, projected))
        hidden_states = self._residual(hidden_states, self.adapter.mlp_branch(layer, hidden_states))
        return self.prompt_head.score(self.adapter.final_layernorm()(hidden_states)).squeeze(-1)

    def _row_attention_weights(
        self, attention: nn.Module, query: torch.Tensor, key: torch.Tensor, rows: torch.Tensor
    ) -> torch.Tensor:
        """Softmax attention weights `(B, heads, K, keys)` of the prompt rows `rows` `(B, K)` only."""
        index = rows[:, None, :, None].expand(-1, query.shape[1], -1, query.shape[-1])
        return self._attention_probabilities(attention, torch.gather(query, 2, index), key)

    def _trait_maps(self, attention_weights: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
        """`(B, heads, K, keys)` weights -> patch keys only -> `(B, K, heads, grid_h, grid_w)` trait maps."""
        patch_h, patch_w = self.adapter.patch_size
        grid = (image_size[0] // patch_h, image_size[1] // patch_w)
        patch_weights = attention_weights[..., self.config.num_labels + self.adapter.num_prefix_tokens :]
        per_class = patch_weights.transpose(1, 2)
        return per_class.reshape(*per_class.shape[:3], *grid)

    # ----------------------------------------------------------------------------------------------- forward
    def forward(
        self,
        pixel_values: torch.Tensor,
        labels: torch.Tensor | None = None,
        output_trait_maps: bool = False,
        trait_map_classes: torch.Tensor | None = None,
        trait_map_top_k: int | None = None,
        interpolate_pos_encoding: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> PromptCamImageClassifierOutput | tuple:
        r"""
        Args:
            pixel_values (`torch.FloatTensor` of shape `(batch_size, num_channels, height, width)`):
                Normalised images (see the image processor saved with the model).
            labels (`torch.LongTensor` of shape `(batch_size,)`, *optional*):
                Class indices in `[0, num_labels)`; the loss is the standard image-classification cross-entropy
                (with `num_items_in_batch`, as `Trainer` passes it, it stays correct under gradient accumulation).
            output_trait_maps (`bool`, *optional*, defaults to `False`):
                Return `trait_maps` `(batch_size, num_labels, num_heads, grid_height, grid_width)`.
            trait_map_classes (`torch.LongTensor` of shape `(batch_size, K)`, *optional*):
                Restrict the trait maps to K classes per image (implies `output_trait_maps`).
            trait_map_top_k (`int`, *optional*):
                Maps for each image's K highest-scoring classes, in score order (implies `output_trait_maps`); the
                chosen classes come back in `trait_map_classes`. Cannot be combined with `trait_map_classes`.
            interpolate_pos_encoding (`bool`, *optional*):
                ViT backbones: interpolate the position embeddings for images of another size than the config's.
                DINOv2 backbones always interpolate.
            return_dict (`bool`, *optional*):
                Return a tuple instead of a [`PromptCamImageClassifierOutput`] when `False`.

        Returns:
            [`PromptCamImageClassifierOutput`]: `loss`, `logits` `(batch_size, num_labels)`, `trait_maps`.
        """
        num_items_in_batch = kwargs.pop("num_items_in_batch", None)
        if kwargs:
            raise TypeError(
                f"PromptCamForImageClassification.forward got unsupported arguments {sorted(kwargs)}; trait maps come "
                "from output_trait_maps=True (per-layer attentions and hidden states are not returned)."
            )
        if trait_map_top_k is not None:
            if trait_map_classes is not None:
                raise ValueError("Give trait_map_classes or trait_map_top_k, not both.")
            if not isinstance(trait_map_top_k, int) or not 1 <= trait_map_top_k <= self.config.num_labels:
                raise ValueError(
                    f"trait_map_top_k must be an integer in [1, {self.config.num_labels}], got {trait_map_top_k!r}."
                )
        output_trait_maps = output_trait_maps or trait_map_classes is not None or trait_map_top_k is not None
        self._check_inputs(pixel_values, labels, trait_map_classes, interpolate_pos_encoding)

        class_prompts, image_states, position_state = self._last_layer_inputs(pixel_values, interpolate_pos_encoding)
        layer = self.adapter.layers()[-1]
        attention = self.adapter.attention(layer)
        query, key, value = self._last_layer_projections(layer, class_prompts, image_states, position_state)
        attention_weights = None
        if output_trait_maps and trait_map_classes is None and trait_map_top_k is None:
            attended, attention_weights = self._attend_with_weights(attention, query, key, value)
        else:
            attended = self._attend(attention, query, key, value)
        logits = self._prompt_logits(layer, class_prompts, attended)
        if trait_map_top_k is not None:
            trait_map_classes = logits.detach().topk(trait_map_top_k, dim=-1).indices
        if trait_map_classes is not None:
            attention_weights = self._row_attention_weights(attention, query, key, trait_map_classes)
        trait_maps = None
        if attention_weights is not None:
            trait_maps = self._trait_maps(attention_weights, pixel_values.shape[2:])

        loss = None
        if labels is not None:
            loss = self.loss_function(labels, logits, self.config, num_items_in_batch=num_items_in_batch)

        output = PromptCamImageClassifierOutput(
            loss=loss, logits=logits, trait_maps=trait_maps, trait_map_classes=trait_map_classes
        )
        if return_dict is False:
            return output.to_tuple()
        return output

    # ----------------------------------------------------------------------------------------------- trait ranking
    @torch.no_grad()
    def rank_traits(
        self,
        pixel_values: torch.Tensor,
        target_classes: torch.Tensor | None = None,
        blur: str = "paper",
        stop: str | int = "misclassified",
        interpolate_pos_encoding: bool | None = None,
    ) -> list[TraitRanking] | list[list[TraitRanking]]:
        r"""
        Rank the attention heads of the last layer by how much the target class's score needs them (greedy head
        blurring, paper section 2.3 and the official code).

        Starting from no blurred head, each step tries blurring every remaining head of the target prompt's attention
        and keeps blurred the one whose blurring leaves the target score highest (the least important); the loop runs
        until every head is blurred, so the ranking is complete. Ties go to the lower head index.

        Cost: the backbone runs once per image; each greedy step re-evaluates only the target prompt's row of the last
        layer (output projection, MLP, final norm, head), batched over the candidate heads and the images.

        Args:
            pixel_values (`torch.FloatTensor` of shape `(batch_size, 3, height, width)`): normalised images.
            target_classes (`torch.LongTensor` of shape `(batch_size,)` or `(batch_size, K)`, *optional*):
                The class whose traits are ranked, per image (or K classes per image). Default: the predicted class.
            blur (`str`, *optional*, defaults to `"paper"`):
                `"paper"`: the target's attention in a blurred head becomes 1/M over the M patches (0 on prompts, CLS,
                registers). `"official"`: its pre-softmax logits are set to 0, i.e. uniform over all keys (what the
                official code does). `"spatial"`: only where the head looks among the patches is blurred: its
                attention mass on the patches is spread evenly over them, its attention to prompts, CLS and registers
                is kept. A head that reads the class mostly from the CLS token then loses little when blurred and
                ranks low, so the top-ranked heads are those whose trait map (the patch part) carries the evidence.
            stop (`str` or `int`, *optional*, defaults to `"misclassified"`):
                `"misclassified"` (paper): the top traits are the heads still unblurred when another class first
                scores strictly higher than the target (at least one head; all heads if the target is not the top
                class to begin with). An integer k: the k most important heads (the official code uses 4).
        Returns:
            one [`TraitRanking`] per image, or per image a list of K of them when `target_classes` is `(B, K)`.
        """
        if blur not in BLUR_MODES:
            raise ValueError(f"blur must be one of {BLUR_MODES}, got {blur!r}.")
        num_heads = self.config.backbone_config.num_attention_heads
        stop = parse_stop_rule(stop, num_heads)
        self._check_inputs(pixel_values, None, None, interpolate_pos_encoding)
        batch = pixel_values.shape[0]
        targets = target_classes
        if targets is not None:
            if targets.is_floating_point() or targets.ndim not in (1, 2) or targets.shape[0] != batch:
                raise ValueError(
                    f"target_classes must hold integer class indices of shape ({batch},) or ({batch}, K), got "
                    f"{targets.dtype} {tuple(targets.shape)}."
                )
            _check_class_indices("target_classes", targets, self.config.num_labels)

        was_training = self.training
        self.eval()
        try:
            class_prompts, image_states, position_state = self._last_layer_inputs(
                pixel_values, interpolate_pos_encoding
            )
            layer = self.adapter.layers()[-1]
            query, key, value = self._last_layer_projections(layer, class_prompts, image_states, position_state)
            attention = self.adapter.attention(layer)
            logits = self._prompt_logits(layer, class_prompts, self._attend(attention, query, key, value))
            columns = logits.argmax(-1)[:, None] if targets is None else targets.reshape(batch, -1)
            rankings = [
                self._greedy_head_ranking(layer, class_prompts, query, key, value, logits, columns[:, k], blur, stop)
                for k in range(columns.shape[1])
            ]
        finally:
            self.train(was_training)
        if targets is not None and targets.ndim == 2:
            return [[ranking[b] for ranking in rankings] for b in range(batch)]
        return rankings[0]

    def _greedy_head_ranking(
        self,
        layer: nn.Module,
        class_prompts: torch.Tensor,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        logits: torch.Tensor,
        targets: torch.Tensor,
        blur: str,
        stop: str | int,
    ) -> list[TraitRanking]:
        """The greedy loop for one target class per image (`targets` `(B,)`), batched over images and candidates."""
        attention = self.adapter.attention(layer)
        batch, num_heads, _, head_dim = query.shape
        images = torch.arange(batch, device=query.device)
        # the target prompt's attention output per head, as computed, and as blurred
        weights = self._row_attention_weights(attention, query, key, targets[:, None])  # (B, heads, 1, keys)
        attended_heads = torch.matmul(weights, value)[:, :, 0]  # (B, heads, head_dim)
        first_patch = self.config.num_labels + self.adapter.num_prefix_tokens
        if blur == "spatial":
            # keep the attention to prompts / CLS / registers; spread the patch mass evenly over the patches
            kept = torch.matmul(weights[..., :first_patch], value[:, :, :first_patch])[:, :, 0]
            patch_mass = weights[..., first_patch:].sum(dim=-1)  # (B, heads, 1)
            blurred_heads = kept + patch_mass * value[:, :, first_patch:].mean(dim=2)
        else:
            blurred_keys = value[:, :, first_patch:] if blur == "paper" else value
            blurred_heads = blurred_keys.mean(dim=2)  # uniform attention = the mean of the values it spreads over
        target_prompts = class_prompts.expand(batch, -1, -1)[images, targets][:, None]  # (B, 1, D)

        other_logits = logits.clone()
        other_logits[images, targets] = float("-inf")
        best_other = other_logits.max(dim=-1).values
        initial_scores = logits[images, targets]

        blurred = torch.zeros(batch, num_heads, dtype=torch.bool, device=query.device)
        candidates = torch.eye(num_heads, dtype=torch.bool, device=query.device)
        blur_order, step_scores = [], []
        for _ in range(num_heads):
            masks = blurred[:, None, :] | candidates  # (B, candidate, head): blurred set if the candidate is added
            heads = torch.where(masks[..., None], blurred_heads[:, None], attended_heads[:, None])
            scores = self._prompt_logits(layer, target_prompts, heads.reshape(batch, num_heads, num_heads * head_dim))
            scores = scores.masked_fill(blurred, float("-inf"))
            chosen = scores.argmax(dim=-1)  # the least important remaining head (first index on ties)
            blurred[images, chosen] = True
            blur_order.append(chosen)
            step_scores.append(scores[images, chosen])
        blur_order = torch.stack(blur_order, dim=1).tolist()
        step_scores = torch.stack(step_scores, dim=1)

        results = []
        for b in range(batch):
            ranked_heads = blur_order[b][::-1]
            scores = step_scores[b].tolist()
            if initial_scores[b] < best_other[b]:
                misclassified_after = 0
            else:
                flipped = (step_scores[b] < best_other[b]).nonzero()
                misclassified_after = int(flipped[0]) + 1 if len(flipped) else None
            if stop == "misclassified":
                remaining = num_heads - misclassified_after if misclassified_after is not None else 0
                top_traits = ranked_heads[: max(1, remaining)]
            else:
                top_traits = ranked_heads[:stop]
            results.append(
                TraitRanking(
                    target_class=int(targets[b]),
                    ranked_heads=ranked_heads,
                    top_traits=top_traits,
                    target_scores=scores,
                    initial_score=float(initial_scores[b]),
                    misclassified_after=misclassified_after,
                    blur=blur,
                    stop=stop,
                )
            )
        return results

    # ----------------------------------------------------------------------------------------------- loading, saving
    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        """`PreTrainedModel.from_pretrained`, with a clear message when the checkpoint's prompts do not fit the config.

        A stock ViT / DINOv2 checkpoint with `config=PromptCamConfig(...)` loads the backbone unchanged and initialises
        the prompts and head.
        """
        try:
            model = super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)
        except RuntimeError as error:
            if "ignore_mismatched_sizes" not in str(error):
                raise
            config = kwargs.get("config")
            classes = f"{config.num_labels} classes, " if isinstance(config, PromptCamConfig) else ""
            raise RuntimeError(
                f"The checkpoint at {pretrained_model_name_or_path!s} does not fit the config ({classes}see the load "
                "report above for the shapes): its prompts were trained for another class count or prompt mode. To "
                "start new prompts on the same backbone, pass ignore_mismatched_sizes=True: the backbone loads "
                "unchanged and the mismatched prompts are re-initialised (they need training)."
            ) from error
        # loading swaps in fresh parameter tensors, which would make the backbone trainable again
        loaded = model[0] if isinstance(model, tuple) else model  # (model, loading_info) with output_loading_info
        loaded.backbone.requires_grad_(False)
        return model

    def save_pretrained(
        self, save_directory: str | os.PathLike, is_main_process: bool = True, image_processor=None, **kwargs
    ) -> None:
        """Save weights (safetensors), config, the remote-code files and an image processor.

        The folder is self-sufficient: `AutoModelForImageClassification` / `AutoModel` with `trust_remote_code=True`
        and `pipeline("image-classification", model=folder)` work from it alone. `image_processor` is saved when
        given; otherwise Prompt-CAM's evaluation preprocessing for this backbone ([`promptcam_image_processor`]) is
        written, unless the folder already holds a `preprocessor_config.json` (e.g. one a trainer saved).
        """
        kwargs.setdefault("save_original_format", self.save_in_original_format)
        auto_map = dict(getattr(self.config, "auto_map", None) or {})
        auto_map.setdefault("AutoModel", "modeling_promptcam.PromptCamForImageClassification")
        self.config.auto_map = auto_map
        super().save_pretrained(save_directory, is_main_process=is_main_process, **kwargs)
        if not is_main_process:
            return
        if image_processor is not None:
            image_processor.save_pretrained(save_directory)
        elif not os.path.exists(os.path.join(save_directory, IMAGE_PROCESSOR_FILE)):
            promptcam_image_processor(self.config).save_pretrained(save_directory)


def promptcam_image_processor(config: PromptCamConfig, image_size: int | tuple[int, int] | None = None):
    """Prompt-CAM's evaluation preprocessing for `config`'s backbone (official test transform).

    Any PIL mode is converted to RGB, the image is resized to `image_size` (default: the backbone's image size)
    without cropping (bilinear, as torchvision's `Resize` on PIL images), rescaled to [0, 1] and normalised with
    mean = std = 0.5.
    """
    # the torchvision backend when torchvision is installed, the PIL one otherwise (same resize: PIL's bilinear)
    if is_torchvision_available():
        from transformers import ViTImageProcessor as processor_class
    else:
        from transformers import ViTImageProcessorPil as processor_class
    height, width = _pair(image_size if image_size is not None else config.backbone_config.image_size)
    return processor_class(
        do_resize=True,
        size={"height": height, "width": width},
        resample=2,  # PIL.Image.BILINEAR
        do_rescale=True,
        rescale_factor=1 / 255,
        do_normalize=True,
        image_mean=list(PROMPTCAM_IMAGE_MEAN),
        image_std=list(PROMPTCAM_IMAGE_STD),
        do_convert_rgb=True,
    )


def parse_stop_rule(value: str | int, num_heads: int | None = None) -> str | int:
    """The one reader of the ranking's stop rule (model, pipeline, CLI, app, evaluation): `"misclassified"`, or a
    number of heads k (an int, or its decimal text as a command line gives it) in `[1, num_heads]`.

    Raises `ValueError` naming the allowed values."""
    allowed = (
        f"'misclassified' or an integer in [1, {num_heads}]" if num_heads else "'misclassified' or an integer >= 1"
    )
    if value == "misclassified":
        return value
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1 or (num_heads and value > num_heads):
        raise ValueError(f"stop must be {allowed}, got {value!r}.")
    return value


def _pair(value) -> tuple[int, int]:
    return tuple(value) if isinstance(value, (list, tuple)) else (value, value)


def _check_class_indices(name: str, indices: torch.Tensor, num_labels: int) -> None:
    if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= num_labels):
        raise ValueError(
            f"{name} holds class indices outside [0, {num_labels}) (min {int(indices.min())}, max "
            f"{int(indices.max())}); the model has num_labels={num_labels}."
        )


__all__ = [
    "BLUR_MODES",
    "parse_stop_rule",
    "TraitRanking",
    "PromptCamForImageClassification",
    "PromptCamImageClassifierOutput",
    "PromptCamPreTrainedModel",
    "PromptCamPromptHead",
    "promptcam_image_processor",
]
