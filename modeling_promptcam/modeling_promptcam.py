"""PyTorch Prompt-CAM model (Chowdhury et al., "Making Vision Transformers Interpretable for Fine-Grained Analysis",
CVPR 2025), over the transformers ViT / DINOv2 backbones.

This file is one of the remote-code files copied next to saved checkpoints: it imports nothing beyond torch,
transformers and its sibling `configuration_promptcam`.
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


def drop_path(hidden_states: torch.Tensor, drop_prob: float, training: bool) -> torch.Tensor:
    """Stochastic depth per sample: zero the whole residual branch of a random subset of samples (and rescale)."""
    if drop_prob == 0.0 or not training:
        return hidden_states
    keep_prob = 1.0 - drop_prob
    shape = (hidden_states.shape[0],) + (1,) * (hidden_states.ndim - 1)
    keep = torch.rand(shape, dtype=hidden_states.dtype, device=hidden_states.device).add_(keep_prob).floor_()
    return hidden_states.div(keep_prob) * keep


class PromptCamBackboneAdapter:
    """How Prompt-CAM drives the modules of one backbone family.

    The forward pass of Prompt-CAM is written once (in [`PromptCamForImageClassification`]) over the backbone's own
    sub-modules; each family only says where those sub-modules are and how its residual branches are scaled.
    Every supported family uses the transformers attention layout `attention.{q,k,v,o}_proj`.
    """

    model_type: str = ""

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

    def embed(self, pixel_values: torch.Tensor, interpolate_pos_encoding: bool | None) -> torch.Tensor:
        """`(B, 3, H, W)` pixels -> `(B, prefix + M, D)` tokens [CLS, registers, patches] with positions added."""
        raise NotImplementedError

    def attention_norm(self, layer: nn.Module) -> nn.Module:
        raise NotImplementedError

    def mlp_norm(self, layer: nn.Module) -> nn.Module:
        raise NotImplementedError

    def attention_branch(self, layer: nn.Module, attention_output: torch.Tensor) -> torch.Tensor:
        """Residual branch after the attention output projection (before stochastic depth)."""
        raise NotImplementedError

    def mlp_branch(self, layer: nn.Module, hidden_states: torch.Tensor) -> torch.Tensor:
        """Residual branch of the MLP for `hidden_states` (before stochastic depth)."""
        raise NotImplementedError


class ViTAdapter(PromptCamBackboneAdapter):
    """`ViTModel` (DINO ViT checkpoints, google/vit-*): pre-norm layers without layer scale."""

    model_type = "vit"

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

    def mlp_norm(self, layer: nn.Module) -> nn.Module:
        return layer.layernorm_after

    def attention_branch(self, layer: nn.Module, attention_output: torch.Tensor) -> torch.Tensor:
        return layer.dropout(attention_output)

    def mlp_branch(self, layer: nn.Module, hidden_states: torch.Tensor) -> torch.Tensor:
        return layer.dropout(layer.mlp(layer.layernorm_after(hidden_states)))


class Dinov2Adapter(PromptCamBackboneAdapter):
    """`Dinov2Model` and `Dinov2WithRegistersModel`: pre-norm layers with layer scale; registers follow CLS.

    DINOv2 embeddings always interpolate their position embeddings, so any multiple of the patch size is accepted.
    """

    model_type = "dinov2"

    def layers(self) -> nn.ModuleList:
        return self.backbone.encoder.layer

    def embed(self, pixel_values: torch.Tensor, interpolate_pos_encoding: bool | None) -> torch.Tensor:
        return self.backbone.embeddings(pixel_values)

    def attention_norm(self, layer: nn.Module) -> nn.Module:
        return layer.norm1

    def mlp_norm(self, layer: nn.Module) -> nn.Module:
        return layer.norm2

    def attention_branch(self, layer: nn.Module, attention_output: torch.Tensor) -> torch.Tensor:
        return layer.layer_scale1(attention_output)

    def mlp_branch(self, layer: nn.Module, hidden_states: torch.Tensor) -> torch.Tensor:
        return layer.layer_scale2(layer.mlp(layer.norm2(hidden_states)))


BACKBONE_ADAPTERS: dict[str, type[PromptCamBackboneAdapter]] = {
    "vit": ViTAdapter,
    "dinov2": Dinov2Adapter,
    "dinov2_with_registers": Dinov2Adapter,
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
    _no_split_modules = ["ViTLayer", "Dinov2Layer", "Dinov2WithRegistersLayer"]
    # stock ViT checkpoints carry a pooler that Prompt-CAM does not use
    _keys_to_ignore_on_load_unexpected = [r"pooler\."]

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
        dropout = attention.attention_dropout if self.training else 0.0
        if implementation == "eager":
            output, _ = self._attend_with_weights(attention, query, key, value)
            return output
        attention_interface = ALL_ATTENTION_FUNCTIONS[implementation]
        output, _ = attention_interface(attention, query, key, value, None, dropout=dropout, scaling=attention.scaling)
        return output.reshape(*output.shape[:2], -1)

    def _attend_with_weights(
        self, attention: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Explicit softmax attention. Returns `(B, n_query, heads * head_dim)` and weights `(B, heads, n_query, n_key)`."""
        scores = torch.matmul(query, key.transpose(-1, -2)) * attention.scaling
        weights = nn.functional.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
        dropped = nn.functional.dropout(weights, p=attention.attention_dropout, training=self.training)
        output = torch.matmul(dropped, value).transpose(1, 2)
        return output.reshape(*output.shape[:2], -1), weights

    def _residual(self, states: torch.Tensor, branch: torch.Tensor) -> torch.Tensor:
        return states + drop_path(branch, self.config.drop_path_rate, self.training)

    # ----------------------------------------------------------------------------------------------- layers
    def _image_token_layer(
        self, layer: nn.Module, hidden_states: torch.Tensor, prompts: torch.Tensor | None
    ) -> torch.Tensor:
        """One backbone layer for the rows of `hidden_states` `(B, N, D)`, which also attend to `prompts` `(C, D)`.

        The prompts' own outputs are not needed (they are dropped after the layer), so only their keys and values are
        computed, once for the whole batch. With `prompts=None` this is the plain layer over `hidden_states`.
        """
        attention = layer.attention
        normed = self.adapter.attention_norm(layer)(hidden_states)
        query = self._split_heads(attention, attention.q_proj, normed)
        key = self._split_heads(attention, attention.k_proj, normed)
        value = self._split_heads(attention, attention.v_proj, normed)
        if prompts is not None:
            normed_prompts = self.adapter.attention_norm(layer)(prompts[None])
            batch = hidden_states.shape[0]
            prompt_key = self._split_heads(attention, attention.k_proj, normed_prompts).expand(batch, -1, -1, -1)
            prompt_value = self._split_heads(attention, attention.v_proj, normed_prompts).expand(batch, -1, -1, -1)
            key = torch.cat((prompt_key, key), dim=2)
            value = torch.cat((prompt_value, value), dim=2)
        attended = attention.o_proj(self._attend(attention, query, key, value))
        hidden_states = self._residual(hidden_states, self.adapter.attention_branch(layer, attended))
        return self._residual(hidden_states, self.adapter.mlp_branch(layer, hidden_states))

    def _class_prompt_layer(
        self,
        layer: nn.Module,
        prompt_states: torch.Tensor,
        image_states: torch.Tensor,
        output_trait_maps: bool,
        trait_map_classes: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The last backbone layer, computed for the class-prompt rows only.

        Args:
            prompt_states: `(1 or B, C, D)` class prompts entering the layer (deep: the learned ones, shared by the batch).
            image_states: `(B, T, D)` image tokens [CLS, registers, patches] entering the layer.
        Returns:
            the prompts' outputs `(B, C, D)` and, when trait maps are asked for, attention weights
            `(B, heads, C or K, C + T)` of the requested prompt rows over the keys [prompts, CLS, registers, patches].
        """
        attention = layer.attention
        batch = image_states.shape[0]
        norm = self.adapter.attention_norm(layer)
        normed_prompts, normed_image = norm(prompt_states), norm(image_states)
        query = self._split_heads(attention, attention.q_proj, normed_prompts).expand(batch, -1, -1, -1)
        key = torch.cat(
            (
                self._split_heads(attention, attention.k_proj, normed_prompts).expand(batch, -1, -1, -1),
                self._split_heads(attention, attention.k_proj, normed_image),
            ),
            dim=2,
        )
        value = torch.cat(
            (
                self._split_heads(attention, attention.v_proj, normed_prompts).expand(batch, -1, -1, -1),
                self._split_heads(attention, attention.v_proj, normed_image),
            ),
            dim=2,
        )
        weights = None
        if output_trait_maps and trait_map_classes is None:
            attended, weights = self._attend_with_weights(attention, query, key, value)
        else:
            attended = self._attend(attention, query, key, value)
            if output_trait_maps:
                rows = trait_map_classes[:, None, :, None].expand(-1, query.shape[1], -1, query.shape[-1])
                selected_query = torch.gather(query, 2, rows)
                scores = torch.matmul(selected_query, key.transpose(-1, -2)) * attention.scaling
                weights = nn.functional.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
        prompt_states = self._residual(prompt_states, self.adapter.attention_branch(layer, attention.o_proj(attended)))
        prompt_states = self._residual(prompt_states, self.adapter.mlp_branch(layer, prompt_states))
        return prompt_states, weights

    # ----------------------------------------------------------------------------------------------- forward
    def forward(
        self,
        pixel_values: torch.Tensor,
        labels: torch.Tensor | None = None,
        output_trait_maps: bool = False,
        trait_map_classes: torch.Tensor | None = None,
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
        if trait_map_classes is not None:
            output_trait_maps = True
        self._check_inputs(pixel_values, labels, trait_map_classes, interpolate_pos_encoding)

        num_labels = self.config.num_labels
        prompts = self.prompt_head()
        layers = self.adapter.layers()
        hidden_states = self.adapter.embed(pixel_values, interpolate_pos_encoding)
        batch = hidden_states.shape[0]

        if self.config.prompt_mode == "deep":
            for layer, layer_prompts in zip(layers[:-1], prompts[:-1]):
                hidden_states = self._image_token_layer(layer, hidden_states, layer_prompts)
            class_prompts = prompts[-1][None]
        else:
            # shallow: the class prompts are ordinary tokens of every layer; only the last layer is cut to their rows
            hidden_states = torch.cat((prompts[0][None].expand(batch, -1, -1), hidden_states), dim=1)
            for layer in layers[:-1]:
                hidden_states = self._image_token_layer(layer, hidden_states, None)
            class_prompts, hidden_states = hidden_states[:, :num_labels], hidden_states[:, num_labels:]

        prompt_outputs, attention_weights = self._class_prompt_layer(
            layers[-1], class_prompts, hidden_states, output_trait_maps, trait_map_classes
        )
        prompt_outputs = self.adapter.final_layernorm()(prompt_outputs)
        logits = self.prompt_head.score(prompt_outputs).squeeze(-1)

        trait_maps = None
        if attention_weights is not None:
            patch_h, patch_w = self.adapter.patch_size
            grid = (pixel_values.shape[2] // patch_h, pixel_values.shape[3] // patch_w)
            # (B, heads, C or K, keys) -> patch keys only -> (B, C or K, heads, grid_h, grid_w)
            patch_weights = attention_weights[..., num_labels + self.adapter.num_prefix_tokens :]
            per_class = patch_weights.transpose(1, 2)
            trait_maps = per_class.reshape(*per_class.shape[:3], *grid)

        loss = None
        if labels is not None:
            loss = self.loss_function(labels, logits, self.config, num_items_in_batch=num_items_in_batch)

        output = PromptCamImageClassifierOutput(
            loss=loss, logits=logits, trait_maps=trait_maps, trait_map_classes=trait_map_classes
        )
        if return_dict is False:
            return output.to_tuple()
        return output

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
        model.backbone.requires_grad_(False)
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


def promptcam_image_processor(config: PromptCamConfig):
    """Prompt-CAM's evaluation preprocessing for `config`'s backbone (official test transform).

    Any PIL mode is converted to RGB, the image is resized to the backbone's image size without cropping (bilinear,
    as torchvision's `Resize` on PIL images), rescaled to [0, 1] and normalised with mean = std = 0.5.
    """
    # the torchvision backend when torchvision is installed, the PIL one otherwise (same resize: PIL's bilinear)
    if is_torchvision_available():
        from transformers import ViTImageProcessor as processor_class
    else:
        from transformers import ViTImageProcessorPil as processor_class
    height, width = _pair(config.backbone_config.image_size)
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


def _pair(value) -> tuple[int, int]:
    return tuple(value) if isinstance(value, (list, tuple)) else (value, value)


def _check_class_indices(name: str, indices: torch.Tensor, num_labels: int) -> None:
    if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= num_labels):
        raise ValueError(
            f"{name} holds class indices outside [0, {num_labels}) (min {int(indices.min())}, max "
            f"{int(indices.max())}); the model has num_labels={num_labels}."
        )


__all__ = [
    "PromptCamForImageClassification",
    "PromptCamImageClassifierOutput",
    "PromptCamPreTrainedModel",
    "PromptCamPromptHead",
    "promptcam_image_processor",
]
