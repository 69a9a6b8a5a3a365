# Copyright 2026 The modeling-promptcam authors. Licensed under the Apache License, Version 2.0.
"""PyTorch Prompt-CAM model (Chowdhury et al., "Making Vision Transformers Interpretable for Fine-Grained Analysis",
CVPR 2025), over the transformers ViT (DINO), DINOv2 (with or without registers), DINOv3, CLIP (BioCLIP) and SigLIP
vision backbones.

This file is one of the remote-code files copied next to saved checkpoints: it imports nothing beyond torch,
transformers and its siblings `configuration_promptcam` and `pipeline_promptcam`.

It reads top to bottom:
1. outputs (`PromptCamImageClassifierOutput`, `TraitRanking`);
2. the registries: blur modes (`BLUR_MODE_TABLE`, `BLUR_MODES`) and stop rules (`STOP_RULES`, `parse_stop_rule`) of
   the trait ranking, one small named function per entry;
3. attention kernels (module functions over a transformers attention module);
4. backbone drivers: each family composed of small parts, keyed by `model_type` in `BACKBONE_DRIVERS`;
5. input checks;
6. the greedy head ranking over tensors;
7. the model: prompt head, `PromptCamForImageClassification` (fast path, ranking, loading and saving);
8. the image processor.
"""

from __future__ import annotations

import contextlib
import math
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from operator import attrgetter

import torch
from torch import nn
from transformers import AutoModel, PreTrainedConfig, PreTrainedModel
from transformers import initialization as init
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.utils import ModelOutput, can_return_tuple, is_torchvision_available

from .configuration_promptcam import PromptCamConfig, config_for_backbone_folder

# imported so that saved folders carry the `prompt-cam` pipeline code next to the model code
from .pipeline_promptcam import PromptCamImageClassificationPipeline  # noqa: F401

IMAGE_PROCESSOR_FILE = "preprocessor_config.json"
# Prompt-CAM's recipe normalises with mean = std = 0.5 for DINO and DINOv2 alike (official data transforms).
PROMPTCAM_IMAGE_MEAN = (0.5, 0.5, 0.5)
PROMPTCAM_IMAGE_STD = (0.5, 0.5, 0.5)


# ==================================================================================================== 1. outputs
@dataclass
class PromptCamImageClassifierOutput(ModelOutput):
    r"""
    Output of [`PromptCamForImageClassification`].

    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*, returned when `labels` is given):
            Cross-entropy of the class scores.
        logits (`torch.FloatTensor` of shape `(batch_size, num_labels)`, or `(batch_size, K)` with `score_classes`):
            One score per class: the shared head applied to the class prompt's output of the last layer (with
            `score_classes`, entry `[b, k]` is the score of class `score_classes[b, k]`).
        trait_maps (`torch.FloatTensor` of shape `(batch_size, num_classes, num_heads, grid_height, grid_width)`, *optional*):
            Returned with `output_trait_maps=True`. Last-layer attention of each class prompt to each patch token, per
            head; the softmax runs over all keys (prompts, CLS, registers, patches) and the patch slice is not
            renormalised (official semantics). `num_classes` is `num_labels`, or `K` when `trait_map_classes` of shape
            `(batch_size, K)` was given (or `score_classes`), in which case entry `[b, k]` is the map of class
            `trait_map_classes[b, k]`.
        trait_map_classes (`torch.LongTensor` of shape `(batch_size, K)`, *optional*):
            The classes of `trait_maps` along dim 1, when the caller restricted them.
        hidden_states (`tuple(torch.FloatTensor)`, *optional*, returned with `output_hidden_states=True`):
            `num_hidden_layers + 1` tensors: the embedding output and the output of each layer (before the final
            LayerNorm), as in transformers' vision models. Deep mode: the image tokens [CLS, registers, patches]
            `(batch_size, 1 + R + M, hidden_size)`, the tokens that flow from layer to layer (each layer's prompts are
            inserted in front of them and their outputs dropped). Shallow mode: the whole sequence
            `(batch_size, C + 1 + R + M, hidden_size)`, the class prompts first, since they flow on like any token.
        attentions (`tuple(torch.FloatTensor)`, *optional*, returned with `output_attentions=True`):
            `num_hidden_layers` tensors `(batch_size, num_heads, C + 1 + R + M, C + 1 + R + M)`: the softmax attention
            of every token of that layer's Prompt-CAM sequence [C prompts, CLS, registers, patches] (the official
            order) over all of them, in both modes and in every layer, the last one included: what the official model,
            which runs each layer on the whole sequence, computes. These rows are computed explicitly when asked for
            (the fast path does not otherwise compute the prompt rows of layers 1..L-1 nor the image rows of the last
            layer); the last layer's first C rows, patch columns, are `trait_maps`.
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    # transformers' order (`ImageClassifierOutput`): loss, logits, hidden_states, attentions; then Prompt-CAM's own
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None
    trait_maps: torch.FloatTensor | None = None
    trait_map_classes: torch.LongTensor | None = None


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


# ==================================================================================================== 2. registries
# The trait ranking's variants are entries of two tables, in the spirit of pytorch-grad-cam's one class per method:
# a blur mode says what a blurred head outputs, a stop rule which ranked heads are the top traits. The greedy loop
# (section 6) is written once over them; `BLUR_MODES`, the docstrings of `rank_traits` and the app's choices are
# derived from the tables.


@dataclass(frozen=True)
class BlurMode:
    """One way of blurring a head of the target prompt's last-layer attention (an entry of `BLUR_MODE_TABLE`).

    Attributes:
        name: what `rank_traits(blur=...)` takes.
        description: one line, what the target prompt's attention in a blurred head becomes (docstrings, the app).
        blur_heads: `(weights, values, first_patch) -> blurred`. `weights` `(B, heads, 1, keys)` is the target
            prompt's attention over the keys [prompts, CLS, registers, patches] (the patches start at index
            `first_patch`), `values` `(B, heads, keys, head_dim)` the values of those keys; `blurred`
            `(B, heads, head_dim)` is what each head outputs for the target prompt once blurred.
    """

    name: str
    description: str
    blur_heads: Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]


BLUR_MODE_TABLE: dict[str, BlurMode] = {}
BLUR_MODES: tuple[str, ...] = ()  # the names in `BLUR_MODE_TABLE`, in its order (kept in step by `register_blur_mode`)


def register_blur_mode(name: str, description: str) -> Callable:
    """Decorator: add a `blur_heads` function (see [`BlurMode`]) to `BLUR_MODE_TABLE` as `name`; `BLUR_MODES` and
    `rank_traits(blur=name)` pick it up. Modules that copied `BLUR_MODES` before keep their copy."""

    def register(blur_heads: Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]) -> Callable:
        global BLUR_MODES
        if name in BLUR_MODE_TABLE:
            raise ValueError(f"A blur mode named {name!r} is already registered; give the new one another name.")
        BLUR_MODE_TABLE[name] = BlurMode(name, description, blur_heads)
        BLUR_MODES = tuple(BLUR_MODE_TABLE)
        return blur_heads

    return register


@register_blur_mode("paper", "uniform over the patches (the paper)")
def blur_to_uniform_over_patches(weights: torch.Tensor, values: torch.Tensor, first_patch: int) -> torch.Tensor:
    """Attention 1/M on each of the M patches and 0 on prompts, CLS and registers: the mean of the patch values."""
    return values[:, :, first_patch:].mean(dim=2)


@register_blur_mode("official", "uniform over all tokens (the official code)")
def blur_to_uniform_over_all_tokens(weights: torch.Tensor, values: torch.Tensor, first_patch: int) -> torch.Tensor:
    """Pre-softmax logits set to 0, i.e. attention uniform over all keys: the mean of all values."""
    return values.mean(dim=2)


@register_blur_mode("spatial", "only the patch part spread evenly; prompts, CLS, registers kept")
def blur_patch_part_only(weights: torch.Tensor, values: torch.Tensor, first_patch: int) -> torch.Tensor:
    """Keep the attention to prompts, CLS and registers; spread the head's attention mass on the patches evenly over
    them. A head that reads the class from CLS loses little and ranks low: the top heads are those whose trait map
    (the patch part) carries the evidence."""
    kept = torch.matmul(weights[..., :first_patch], values[:, :, :first_patch])[:, :, 0]
    patch_mass = weights[..., first_patch:].sum(dim=-1)  # (B, heads, 1)
    return kept + patch_mass * values[:, :, first_patch:].mean(dim=2)


@dataclass(frozen=True)
class StopRule:
    """One way of choosing the top traits from a finished greedy ranking (an entry of `STOP_RULES`).

    Attributes:
        name: what `rank_traits(stop=...)` takes; the entry named `NUMBER_STOP_RULE` is the rule of an integer stop.
        description: one line, which heads are the top traits (docstrings).
        top_traits: `(ranked_heads, misclassified_after, stop) -> top traits`, from the ranking (all heads, most
            important first), [`TraitRanking.misclassified_after`] and the stop value.
    """

    name: str
    description: str
    top_traits: Callable[[list[int], int | None, str | int], list[int]]


STOP_RULES: dict[str, StopRule] = {}
NUMBER_STOP_RULE = "number"  # the entry used when `stop` is an integer k


def register_stop_rule(name: str, description: str) -> Callable:
    """Decorator: add a `top_traits` function (see [`StopRule`]) to `STOP_RULES` as `name`; `parse_stop_rule` and
    `rank_traits(stop=name)` accept it."""

    def register(top_traits: Callable[[list[int], int | None, str | int], list[int]]) -> Callable:
        if name in STOP_RULES:
            raise ValueError(f"A stop rule named {name!r} is already registered; give the new one another name.")
        STOP_RULES[name] = StopRule(name, description, top_traits)
        return top_traits

    return register


@register_stop_rule(
    "misclassified",
    "the heads still unblurred when another class first scores strictly higher than the target; at least one, all of "
    "them when the target is not the top class to begin with (the paper)",
)
def top_traits_until_misclassified(ranked_heads: list[int], misclassified_after: int | None, stop) -> list[int]:
    # the target stayed on top with every head blurred: the last head blurred (at least one trait)
    remaining = len(ranked_heads) - misclassified_after if misclassified_after is not None else 0
    return ranked_heads[: max(1, remaining)]


@register_stop_rule(NUMBER_STOP_RULE, "the k most important heads (the official code uses 4)")
def top_k_heads(ranked_heads: list[int], misclassified_after: int | None, stop: int) -> list[int]:
    return ranked_heads[:stop]


def parse_stop_rule(value: str | int, num_heads: int | None = None) -> str | int:
    """The one reader of the ranking's stop rule (model, pipeline, CLI, app, evaluation): `"misclassified"`, or a
    number of heads k (an int, or its decimal text as a command line gives it) in `[1, num_heads]`.

    Raises `ValueError` naming the allowed values."""
    named = tuple(name for name in STOP_RULES if name != NUMBER_STOP_RULE)
    allowed = " or ".join(repr(name) for name in named) + (
        f" or an integer in [1, {num_heads}]" if num_heads else " or an integer >= 1"
    )
    if isinstance(value, str) and value in named:
        return value
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1 or (num_heads and value > num_heads):
        raise ValueError(f"stop must be {allowed}, got {value!r}.")
    return value


def stop_rule_of(stop: str | int) -> StopRule:
    """The entry of `STOP_RULES` for a stop value that `parse_stop_rule` returned."""
    return STOP_RULES[stop if isinstance(stop, str) else NUMBER_STOP_RULE]


def _choice_lines(placeholder: str) -> list[str]:
    """The documented choices: one line per registered blur mode (`{blur_modes}`) or stop rule (`{stop_rules}`)."""
    if placeholder == "{blur_modes}":
        return [f'- `"{mode.name}"`: {mode.description}.' for mode in BLUR_MODE_TABLE.values()]
    lines = []
    for rule in STOP_RULES.values():
        value = "an integer k" if rule.name == NUMBER_STOP_RULE else f'`"{rule.name}"`'
        lines.append(f"- {value}: {rule.description}.")
    return lines


def _document_choices(function: Callable) -> Callable:
    """Replace the `{blur_modes}` / `{stop_rules}` lines of `function`'s docstring by the entries of the tables, so the
    documented choices are the registered ones."""
    if function.__doc__:
        lines = []
        for line in function.__doc__.splitlines():
            placeholder = line.strip()
            if placeholder in ("{blur_modes}", "{stop_rules}"):
                indent = line[: len(line) - len(line.lstrip())]
                lines.extend(indent + entry for entry in _choice_lines(placeholder))
            else:
                lines.append(line)
        function.__doc__ = "\n".join(lines)
    return function


# ==================================================================================================== 3. attention
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


def split_heads(attention: nn.Module, projection: nn.Linear, states: torch.Tensor) -> torch.Tensor:
    """Project `(b, n, D)` states and split the heads: `(b, heads, n, head_dim)`."""
    return projection(states).view(*states.shape[:-1], -1, attention.head_dim).transpose(1, 2)


def attention_probabilities(attention: nn.Module, query: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
    """Softmax over the keys (in float32, as the eager attention of transformers): `(B, heads, n_query, n_key)`."""
    scores = torch.matmul(query, key.transpose(-1, -2)) * attention_scaling(attention)
    return nn.functional.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)


def attend_with_weights(
    attention: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, training: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Explicit softmax attention. Returns `(B, n_query, heads * head_dim)` and weights `(B, heads, n_query, n_key)`."""
    weights = attention_probabilities(attention, query, key)
    dropped = nn.functional.dropout(weights, p=attention_dropout(attention), training=training)
    output = torch.matmul(dropped, value).transpose(1, 2)
    return output.reshape(*output.shape[:2], -1), weights


def attend(
    attention: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, training: bool
) -> torch.Tensor:
    """Attention without weights through the backbone's implementation. Returns `(B, n_query, heads * head_dim)`."""
    implementation = attention.config._attn_implementation or "sdpa"
    if implementation == "eager":
        output, _ = attend_with_weights(attention, query, key, value, training)
        return output
    attention_interface = ALL_ATTENTION_FUNCTIONS[implementation]
    dropout = attention_dropout(attention) if training else 0.0
    output, _ = attention_interface(
        attention, query, key, value, None, dropout=dropout, scaling=attention_scaling(attention)
    )
    return output.reshape(*output.shape[:2], -1)


def attention_qkv(attention: nn.Module) -> tuple[nn.Linear, nn.Linear, nn.Linear]:
    """The query, key and value projections of a transformers attention module."""
    return attention.q_proj, attention.k_proj, attention.v_proj


def softmax_parts(
    attention: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Softmax attention of `query` `(b, heads, n, head_dim)` over one part of the keys, in the pieces from which the
    attention over several parts is merged exactly (as flash attention merges its blocks): the log-sum-exp of the
    scores `(b, heads, n)`, the attention output over this part alone `(b, heads, n, head_dim)` and the scores
    `(b, heads, n, keys)`, all float32 (the softmax precision of transformers' eager attention)."""
    scores = (torch.matmul(query, key.transpose(-1, -2)) * attention_scaling(attention)).float()
    lse = scores.logsumexp(dim=-1)
    weights = torch.exp(scores - lse[..., None]).to(value.dtype)
    return lse, torch.matmul(weights, value).float(), scores


def softmax_parts_in_steps(
    attention: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, budget: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The log-sum-exp and attention output of [`softmax_parts`], `budget // keys` query rows at a time, so that at
    most about `budget` scores per image and head exist at once (the class prompts over the C prompt keys would
    otherwise form a `(heads, C, C)` tensor)."""
    step = max(1, budget // key.shape[2])
    parts = [
        softmax_parts(attention, query[:, :, s : s + step], key, value)[:2] for s in range(0, query.shape[2], step)
    ]
    return torch.cat([part[0] for part in parts], dim=2), torch.cat([part[1] for part in parts], dim=2)


# Inference on CPU computes the attention parts above with torch's fused flash-attention kernel for CPU, which also
# returns the log-sum-exp: no (rows, keys) score tensor is materialised and the exponentials stay in cache. Set to
# False to compute them with the explicit matmuls of `softmax_parts` (the reference the fused kernel is tested against).
USE_FUSED_ATTENTION_PARTS = True


def _fused_attention_kernel() -> Callable | None:
    """torch's CPU flash-attention operator `(query, key, value, dropout_p, is_causal, *, attn_mask, scale) ->
    (output, logsumexp)`, when this torch has it; None otherwise."""
    return getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)


# CPU inference finishes the last layer's class-prompt rows this many rows (images x classes) at a time: the MLP's
# (rows, intermediate size) activations then stay in cache and below the allocator's mmap threshold, instead of being
# page-faulted in afresh for every chunk of classes (about a tenth of the last layer's time at C = 10,000). Each row is
# computed on its own, so no number changes.
PROMPT_ROW_TILE = 512


def cpu_inference(*tensors: torch.Tensor) -> bool:
    """CPU tensors of a floating dtype, without autograd, and not while tracing, exporting or compiling (the graphs
    keep the operators they had): where the inference-only CPU paths below apply."""
    return (
        not torch.is_grad_enabled()
        and all(tensor.device.type == "cpu" and tensor.is_floating_point() for tensor in tensors)
        and not torch.jit.is_tracing()
        and not torch.compiler.is_compiling()
    )


def fused_attention_applies(*tensors: torch.Tensor) -> bool:
    """Whether [`attention_parts`] runs the fused kernel on these tensors: [`cpu_inference`], the kernel exists in this
    torch, and `USE_FUSED_ATTENTION_PARTS` is on."""
    return USE_FUSED_ATTENTION_PARTS and cpu_inference(*tensors) and _fused_attention_kernel() is not None


def attention_parts(
    attention: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, budget: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The log-sum-exp `(b, heads, n)` and attention output `(b, heads, n, head_dim)` (float32) of `query` over `key`,
    `value`, as [`softmax_parts_in_steps`] computes them (which runs where the fused kernel does not apply, see
    [`fused_attention_applies`]). `query` and `key` may have a batch of 1 where the other has B (shared by the batch):
    a query shared by B images is expanded; the queries of B images over shared keys are folded into one batch of
    B x n rows."""
    if not fused_attention_applies(query, key, value):
        return softmax_parts_in_steps(attention, query, key, value, budget)
    kernel = _fused_attention_kernel()
    scale = attention_scaling(attention)
    batch, num_heads, rows, head_dim = query.shape
    if batch > 1 and key.shape[0] == 1:  # shared keys: one batch of B x n query rows
        folded = query.transpose(0, 1).reshape(1, num_heads, batch * rows, head_dim)
        output, lse = kernel(folded, key, value, 0.0, False, scale=scale)
        output = output[0].view(num_heads, batch, rows, head_dim).transpose(0, 1)
        return lse[0].view(num_heads, batch, rows).transpose(0, 1).float(), output.float()
    if batch == 1 and key.shape[0] > 1:  # a query shared by the batch
        query = query.expand(key.shape[0], -1, -1, -1)
    output, lse = kernel(query, key, value, 0.0, False, scale=scale)
    return lse.float(), output.float()


def merge_attention_parts(
    first: tuple[torch.Tensor, torch.Tensor], second: tuple[torch.Tensor, torch.Tensor], dtype: torch.dtype
) -> torch.Tensor:
    """The attention over two parts of the keys from each part's `(log-sum-exp (b, heads, n), output (b, heads, n,
    head_dim))`: the outputs weighted by each part's share of the softmax mass, `sigmoid(lse_1 - lse_2)` for the
    first, in one pass written straight into the `(B, n, heads * head_dim)` layout the output projection reads.
    Without autograd only (it writes into a new tensor through `out=`)."""
    (first_lse, first_output), (second_lse, second_output) = first, second
    if torch.jit.is_tracing() or torch.compiler.is_compiling():  # graphs: the same merge without `out=`
        lse = torch.logaddexp(first_lse, second_lse)
        merged = (
            torch.exp(first_lse - lse)[..., None] * first_output
            + torch.exp(second_lse - lse)[..., None] * second_output
        ).to(dtype)
        return merged.transpose(1, 2).reshape(merged.shape[0], merged.shape[2], -1)
    share = torch.sigmoid(first_lse - second_lse)[..., None]
    shape = torch.broadcast_shapes(first_output.shape, second_output.shape, share.shape)
    merged = torch.empty(shape[0], shape[2], shape[1], shape[3], dtype=first_output.dtype, device=first_output.device)
    torch.lerp(second_output, first_output, share, out=merged.transpose(1, 2))
    return merged.to(dtype).view(shape[0], shape[2], -1)


def rows_of(tensor: torch.Tensor, rows: slice | torch.Tensor, batch: int, dim: int) -> torch.Tensor:
    """Rows of `tensor` `(1 or B, ...)` along `dim`: a slice, or `(B, n)` indices per image (the result then has B
    entries in dim 0)."""
    if isinstance(rows, slice):
        return tensor[(slice(None),) * dim + (rows,)]
    tensor = tensor.expand(batch, *tensor.shape[1:])
    view = [batch] + [1] * (tensor.ndim - 1)
    view[dim] = rows.shape[1]
    index = rows.reshape(view).expand(*tensor.shape[:dim], rows.shape[1], *tensor.shape[dim + 1 :])
    return torch.gather(tensor, dim, index)


@dataclass
class LastLayerState:
    """The last layer's projections in one forward (`PromptCamForImageClassification._last_layer_state`).

    Attributes:
        query, prompt_key, prompt_value: `(1 or B, heads, C, head_dim)` of the class prompts (1 in deep mode: the
            prompts are parameters, shared by the batch).
        image_key, image_value: `(B, heads, T, head_dim)` of the image tokens [CLS, registers, patches].
        split: attend to the prompt keys and to the image keys separately and merge the two exactly through their
            log-sum-exp (without autograd or attention dropout); otherwise the backbone's attention runs over all keys.
        prompt_part: on the split path, the log-sum-exp `(1 or B, heads, C)` and output `(1 or B, heads, C, head_dim)`
            of every class prompt's attention over the prompt keys alone, when computed for all of them (image-
            independent in deep mode).
        all_keys_values: otherwise, the keys and values of all tokens `(B, heads, C + T, head_dim)` in the official
            order [prompts, CLS, registers, patches].
    """

    query: torch.Tensor
    prompt_key: torch.Tensor
    prompt_value: torch.Tensor
    image_key: torch.Tensor
    image_value: torch.Tensor
    split: bool
    prompt_part: tuple[torch.Tensor, torch.Tensor] | None = None
    all_keys_values: tuple[torch.Tensor, torch.Tensor] | None = None


class PromptStateCache:
    """Image-independent prompt states of a model in eval, deep mode (the prompts' keys and values in layers 1..L-1,
    the class prompts' last-layer projections and their attention over the prompt keys), kept while the parameters'
    fingerprint (identity, storage and version counter of each) stays the same."""

    def __init__(self):
        self.fingerprint: tuple | None = None
        self.states: dict = {}

    def clear(self) -> None:
        self.fingerprint, self.states = None, {}

    def refresh(self, fingerprint: tuple) -> None:
        if fingerprint != self.fingerprint:
            self.fingerprint, self.states = fingerprint, {}

    def get(self, name, compute: Callable, *args):
        if name not in self.states:
            self.states[name] = compute(*args)
        return self.states[name]


def run_layer(layer: nn.Module, function: Callable, *args, checkpointed: bool = True):
    """Run `function(*args)`, the fast path's computation for backbone layer `layer`, as a call of the layer would run.

    The fast path computes a layer from its sub-modules instead of calling it, so what is attached to the layer's own
    call is honoured here, in the same way:
    - the hook accelerate places on the layer (`_hf_hook`, from `device_map` / `dispatch_model`): its `pre_forward`
      moves the tensors of `args` to the layer's device and loads offloaded weights, its `post_forward` moves the
      output back and offloads them again, once per layer per forward, as around the layer's `forward`;
    - activation checkpointing, when `gradient_checkpointing_enable()` set it on the layer (transformers'
      `GradientCheckpointingLayer` flag and function) and the model trains, with `checkpointed`: the activations of
      `function` are recomputed in backward instead of stored. Tensors that need gradients (image tokens, prompts)
      must be in `args`, as for reentrant checkpointing.
    """
    hook = getattr(layer, "_hf_hook", None)
    if hook is not None:
        args, _ = hook.pre_forward(layer, *args)
    # a hook may ask for the layer to run without autograd, as accelerate's own wrapper of `forward` honours it
    with torch.no_grad() if getattr(hook, "no_grad", False) else contextlib.nullcontext():
        if checkpointed and layer.training and getattr(layer, "gradient_checkpointing", False):
            output = layer._gradient_checkpointing_func(function, *args)
        else:
            output = function(*args)
    return hook.post_forward(layer, output) if hook is not None else output


def row_attention_weights(
    attention: nn.Module, query: torch.Tensor, key: torch.Tensor, rows: torch.Tensor
) -> torch.Tensor:
    """Softmax attention weights `(B, heads, K, keys)` of the query rows `rows` `(B, K)` only."""
    index = rows[:, None, :, None].expand(-1, query.shape[1], -1, query.shape[-1])
    return attention_probabilities(attention, torch.gather(query, 2, index), key)


# ==================================================================================================== 4. backbones
# The forward pass of Prompt-CAM is written once over the backbone's own sub-modules. A family is described by small
# parts (where its modules are, how it embeds, how its residual branches are scaled, how positions enter, how many
# tokens precede the patches), composed in one `BackboneFamily`; no family inherits from another.


@dataclass(frozen=True)
class ModuleNames:
    """Where a family keeps the modules Prompt-CAM drives: attribute paths on the backbone (`layers`, `final_norm`)
    and on one of its layers (`attention`, `attention_norm`, `mlp_norm`); every family's layer has its MLP at `mlp`.
    Every supported attention module has `q_proj`, `k_proj`, `v_proj` and an output projection (`attention_output`)."""

    layers: str
    final_norm: str
    attention: str
    attention_norm: str
    mlp_norm: str


@dataclass(frozen=True)
class ResidualStyle:
    """How a family scales its two residual branches before they are added back: `attention(layer, branch)` after
    the attention output projection, `mlp(layer, branch)` after the MLP (both before stochastic depth)."""

    name: str
    attention: Callable[[nn.Module, torch.Tensor], torch.Tensor]
    mlp: Callable[[nn.Module, torch.Tensor], torch.Tensor]


def _hidden_dropout(layer: nn.Module, branch: torch.Tensor) -> torch.Tensor:
    return layer.dropout(branch)


def _layer_scale_1(layer: nn.Module, branch: torch.Tensor) -> torch.Tensor:
    return layer.layer_scale1(branch)


def _layer_scale_2(layer: nn.Module, branch: torch.Tensor) -> torch.Tensor:
    return layer.layer_scale2(branch)


def _unscaled(layer: nn.Module, branch: torch.Tensor) -> torch.Tensor:
    return branch


DROPOUT_RESIDUALS = ResidualStyle("dropout", _hidden_dropout, _hidden_dropout)
LAYER_SCALE_RESIDUALS = ResidualStyle("layer scale", _layer_scale_1, _layer_scale_2)
PLAIN_RESIDUALS = ResidualStyle("plain", _unscaled, _unscaled)


@dataclass(frozen=True)
class PositionStyle:
    """How positions enter the attention. Absolute position embeddings are added by the embedding step, so they need
    nothing here; rotary ones need per-forward tables (`state(backbone, pixel_values)`) and `rotate(states, state)`,
    applied to the queries and keys `(B, heads, n, head_dim)`."""

    name: str
    state: Callable[[PreTrainedModel, torch.Tensor], object]
    rotate: Callable[[torch.Tensor, object], torch.Tensor]


def _no_position_state(backbone: PreTrainedModel, pixel_values: torch.Tensor) -> None:
    return None


def _not_rotated(states: torch.Tensor, position_state) -> torch.Tensor:
    return states


def _rotary_tables(backbone: PreTrainedModel, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return backbone.rope_embeddings(pixel_values)  # (cos, sin), each (M, head_dim)


def _rotate_patch_rows(states: torch.Tensor, position_state: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Rotate the patch rows (the last M) of `states`; prefix rows (prompts, CLS, registers) are not rotated."""
    cos, sin = position_state
    num_patches = sin.shape[-2]
    prefix, patches = states.split((states.shape[-2] - num_patches, num_patches), dim=-2)
    half = patches.shape[-1] // 2
    rotated_half = torch.cat((-patches[..., half:], patches[..., :half]), dim=-1)
    return torch.cat((prefix, patches * cos + rotated_half * sin), dim=-2)


ABSOLUTE_POSITIONS = PositionStyle("absolute", _no_position_state, _not_rotated)
ROTARY_PATCH_POSITIONS = PositionStyle("rotary on the patch tokens", _rotary_tables, _rotate_patch_rows)


# Embedding steps: `(backbone, pixel_values (B, 3, H, W), interpolate_pos_encoding) -> tokens (B, prefix + M, D)`,
# [CLS, registers, patches] with absolute positions added.
def embed_with_interpolation_flag(
    backbone: PreTrainedModel, pixel_values: torch.Tensor, interpolate_pos_encoding: bool | None
) -> torch.Tensor:
    return backbone.embeddings(pixel_values, interpolate_pos_encoding=bool(interpolate_pos_encoding))


def embed_vit(
    backbone: PreTrainedModel, pixel_values: torch.Tensor, interpolate_pos_encoding: bool | None
) -> torch.Tensor:
    # `ViTModel.forward` casts the pixels to the weights' dtype, not its embeddings, which are called directly here
    pixel_values = pixel_values.to(backbone.embeddings.patch_embeddings.projection.weight.dtype)
    return embed_with_interpolation_flag(backbone, pixel_values, interpolate_pos_encoding)


def embed_always_interpolated(
    backbone: PreTrainedModel, pixel_values: torch.Tensor, interpolate_pos_encoding: bool | None
) -> torch.Tensor:
    # DINOv2 / DINOv3 embeddings interpolate their position embeddings for any image size (no flag to pass)
    return backbone.embeddings(pixel_values)


def embed_then_pre_layernorm(
    backbone: PreTrainedModel, pixel_values: torch.Tensor, interpolate_pos_encoding: bool | None
) -> torch.Tensor:
    # CLIP normalises the embedded tokens before the encoder (`pre_layrnorm`, transformers' spelling)
    return backbone.pre_layrnorm(embed_with_interpolation_flag(backbone, pixel_values, interpolate_pos_encoding))


# Tokens before the patches: `backbone_config -> count`.
def cls_and_register_tokens(backbone_config: PreTrainedConfig) -> int:
    return 1 + getattr(backbone_config, "num_register_tokens", 0)


def no_prefix_tokens(backbone_config: PreTrainedConfig) -> int:
    return 0


@dataclass(frozen=True, eq=False)
class BackboneFamily:
    """How Prompt-CAM drives one backbone family (an entry of `BACKBONE_DRIVERS`), composed of small parts.

    Attributes:
        description: the transformers model and what sets the family apart.
        modules: where its layers, norms and attention are ([`ModuleNames`]).
        embed: its embedding step (pixels -> [CLS, registers, patches] tokens with absolute positions).
        residuals: how its residual branches are scaled ([`ResidualStyle`]).
        positions: absolute or rotary ([`PositionStyle`]).
        prefix_tokens: how many tokens precede the patches (CLS and registers, or none).
        needs_config_image_size: absolute position embeddings of the config's grid that are interpolated only with
            `interpolate_pos_encoding=True`; otherwise any multiple of the patch size is accepted.
        from_config_kwargs: passed to `AutoModel.from_config` when the model builds its backbone.
        exports_to_onnx: whether `promptcam export --format onnx` writes this family as an ONNX graph (every family
            marked so is exported and checked against PyTorch under onnxruntime by tests/test_export.py); the export
            refuses the others by name.

    Calling a family with a backbone gives its [`BackboneDriver`] (as the classes of the former registry did).
    """

    description: str
    modules: ModuleNames
    embed: Callable[[PreTrainedModel, torch.Tensor, bool | None], torch.Tensor]
    residuals: ResidualStyle
    positions: PositionStyle = ABSOLUTE_POSITIONS
    prefix_tokens: Callable[[PreTrainedConfig], int] = cls_and_register_tokens
    needs_config_image_size: bool = False
    from_config_kwargs: dict = field(default_factory=dict)
    exports_to_onnx: bool = True

    def build_backbone(self, backbone_config: PreTrainedConfig) -> PreTrainedModel:
        return AutoModel.from_config(backbone_config, **self.from_config_kwargs)

    def __call__(self, backbone: PreTrainedModel) -> BackboneDriver:
        return BackboneDriver(backbone, self)


class BackboneDriver:
    """One backbone and the [`BackboneFamily`] that says how to drive it (`model.driver`): the accessors the forward
    pass of Prompt-CAM is written over."""

    def __init__(self, backbone: PreTrainedModel, family: BackboneFamily):
        self.backbone = backbone
        self.config = backbone.config
        self.family = family

    @property
    def num_prefix_tokens(self) -> int:
        """Image-side tokens before the patches: CLS plus register tokens (none for SigLIP)."""
        return self.family.prefix_tokens(self.config)

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
        if self.family.needs_config_image_size and not interpolate_pos_encoding and (height, width) != self.image_size:
            raise ValueError(
                f"Image size {height}x{width} does not match the ViT backbone's {self.image_size[0]}x"
                f"{self.image_size[1]}; resize the images (the saved image processor does this) or pass "
                "interpolate_pos_encoding=True to interpolate the position embeddings."
            )

    def layers(self) -> nn.ModuleList:
        return attrgetter(self.family.modules.layers)(self.backbone)

    def final_layernorm(self) -> nn.Module:
        """The norm before the scoring head (`post_layernorm` for CLIP / SigLIP: the norm of the pooled token)."""
        return attrgetter(self.family.modules.final_norm)(self.backbone)

    def attention(self, layer: nn.Module) -> nn.Module:
        return attrgetter(self.family.modules.attention)(layer)

    def attention_norm(self, layer: nn.Module) -> nn.Module:
        return attrgetter(self.family.modules.attention_norm)(layer)

    def embed(self, pixel_values: torch.Tensor, interpolate_pos_encoding: bool | None) -> torch.Tensor:
        """`(B, 3, H, W)` pixels -> `(B, prefix + M, D)` tokens [CLS, registers, patches] with positions added."""
        return self.family.embed(self.backbone, pixel_values, interpolate_pos_encoding)

    def position_state(self, pixel_values: torch.Tensor) -> object:
        """Per-forward positional state the attention needs (rotary tables); None for absolute position embeddings."""
        return self.family.positions.state(self.backbone, pixel_values)

    def rotate(self, states: torch.Tensor, position_state) -> torch.Tensor:
        """Apply rotary position embeddings to the patch rows (the last M) of queries or keys `(B, heads, n, head_dim)`;
        prefix rows (prompts, CLS, registers) are not rotated. Identity for absolute position embeddings."""
        return self.family.positions.rotate(states, position_state)

    def attention_branch(self, layer: nn.Module, attention_output: torch.Tensor) -> torch.Tensor:
        """Residual branch after the attention output projection (before stochastic depth)."""
        return self.family.residuals.attention(layer, attention_output)

    def mlp_branch(self, layer: nn.Module, hidden_states: torch.Tensor) -> torch.Tensor:
        """Residual branch of the MLP for `hidden_states` (before stochastic depth)."""
        mlp_norm = attrgetter(self.family.modules.mlp_norm)(layer)
        return self.family.residuals.mlp(layer, layer.mlp(mlp_norm(hidden_states)))


_DINOV2 = BackboneFamily(
    description="Dinov2Model / Dinov2WithRegistersModel: pre-norm layers with layer scale, registers after CLS; the "
    "embeddings always interpolate their position embeddings",
    modules=ModuleNames(
        layers="encoder.layer", final_norm="layernorm", attention="attention", attention_norm="norm1", mlp_norm="norm2"
    ),
    embed=embed_always_interpolated,
    residuals=LAYER_SCALE_RESIDUALS,
)
_VISION_TOWER_MODULES = ModuleNames(
    layers="encoder.layers",
    final_norm="post_layernorm",
    attention="self_attn",
    attention_norm="layer_norm1",
    mlp_norm="layer_norm2",
)

# keyed by `model_type`, in the order of `configuration_promptcam.SUPPORTED_BACKBONE_TYPES` (a test ties the two)
BACKBONE_DRIVERS: dict[str, BackboneFamily] = {
    "vit": BackboneFamily(
        description="ViTModel (DINO ViT checkpoints, google/vit-*), without its pooler: pre-norm layers, hidden "
        "dropout on the residual branches",
        modules=ModuleNames(
            layers="layers",
            final_norm="layernorm",
            attention="attention",
            attention_norm="layernorm_before",
            mlp_norm="layernorm_after",
        ),
        embed=embed_vit,
        residuals=DROPOUT_RESIDUALS,
        needs_config_image_size=True,
        from_config_kwargs={"add_pooling_layer": False},
    ),
    "dinov2": _DINOV2,
    "dinov2_with_registers": _DINOV2,
    "dinov3_vit": BackboneFamily(
        description="DINOv3ViTModel: rotary position embeddings on the patch tokens only (prompts are prefix tokens, "
        "like CLS and the registers, and are not rotated), registers after CLS, layer scale, MLP or gated MLP",
        modules=ModuleNames(
            layers="model.layer", final_norm="norm", attention="attention", attention_norm="norm1", mlp_norm="norm2"
        ),
        embed=embed_always_interpolated,
        residuals=LAYER_SCALE_RESIDUALS,
        positions=ROTARY_PATCH_POSITIONS,
    ),
    "clip_vision_model": BackboneFamily(
        description="CLIPVisionModel (CLIP, OpenCLIP / BioCLIP towers converted to it): a LayerNorm before the "
        "encoder (`pre_layrnorm`), quick-GELU MLPs, and `post_layernorm`, which CLIP applies to the token it pools, "
        "as the final LayerNorm of the class prompts",
        modules=_VISION_TOWER_MODULES,
        embed=embed_then_pre_layernorm,
        residuals=PLAIN_RESIDUALS,
        needs_config_image_size=True,
    ),
    "siglip_vision_model": BackboneFamily(
        description="SiglipVisionModel: no CLS token (every token is a patch) and no LayerNorm before the encoder; "
        "`post_layernorm` is the final LayerNorm, the attention-pooling head is not used",
        modules=_VISION_TOWER_MODULES,
        embed=embed_with_interpolation_flag,
        residuals=PLAIN_RESIDUALS,
        prefix_tokens=no_prefix_tokens,
        needs_config_image_size=True,
    ),
}


def __getattr__(name: str):
    # the registry's former name, from when "adapter" also meant the per-backbone driver
    if name == "BACKBONE_ADAPTERS":
        warnings.warn(
            "BACKBONE_ADAPTERS is deprecated; use BACKBONE_DRIVERS (same registry).", DeprecationWarning, stacklevel=2
        )
        return BACKBONE_DRIVERS
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ==================================================================================================== 5. input checks
def _check_pixel_values(pixel_values: torch.Tensor, num_channels: int) -> None:
    if not isinstance(pixel_values, torch.Tensor) or pixel_values.ndim != 4:
        shape = tuple(pixel_values.shape) if isinstance(pixel_values, torch.Tensor) else type(pixel_values).__name__
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
    # NaN / inf would give non-finite logits and a meaningless trait ranking without a word. One reduction keeps the
    # fast path's cost; reading its value would break a compiled graph, so under torch.compile it is not checked.
    if not torch.compiler.is_compiling() and not torch.isfinite(pixel_values).all():
        bad_images = (~torch.isfinite(pixel_values)).flatten(1).any(dim=1).nonzero().flatten().tolist()
        raise ValueError(
            f"pixel_values holds NaN or infinite values in the images at batch indices {bad_images}; check how these "
            "images were decoded and normalised (the image processor saved with the model gives finite values)."
        )


def _check_class_indices(name: str, indices: torch.Tensor, num_labels: int) -> None:
    # reading the values would break a compiled graph (data-dependent); under torch.compile the range is not checked
    if torch.compiler.is_compiling():
        return
    if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= num_labels):
        raise ValueError(
            f"{name} holds class indices outside [0, {num_labels}) (min {int(indices.min())}, max "
            f"{int(indices.max())}); the model has num_labels={num_labels}."
        )


def cross_entropy_loss(
    model: PreTrainedModel, labels: torch.Tensor, logits: torch.Tensor, num_items_in_batch=None
) -> torch.Tensor:
    """transformers' loss of the model's `problem_type` (softmax cross-entropy for integer labels)."""
    return model.loss_function(labels, logits, model.config, num_items_in_batch=num_items_in_batch)


def one_vs_rest_loss(
    model: PreTrainedModel, labels: torch.Tensor, logits: torch.Tensor, num_items_in_batch=None
) -> torch.Tensor:
    """Binary cross-entropy of every class's logit against whether the image is of that class (integer labels
    `(B,)`), summed over the classes and averaged over the images (over `num_items_in_batch` images under gradient
    accumulation, as transformers' losses do). With a softmax, two classes need only their difference: one class's
    prompt can read a constant and leave the decision to its sibling's; here each prompt must answer for itself."""
    if model.config.problem_type == "multi_label_classification":  # multi-hot targets: BCE already
        return cross_entropy_loss(model, labels, logits, num_items_in_batch)
    targets = nn.functional.one_hot(labels, logits.shape[-1]).to(torch.float32)
    total = nn.functional.binary_cross_entropy_with_logits(logits.float(), targets, reduction="sum")
    return total / (num_items_in_batch if num_items_in_batch is not None else labels.shape[0])


# `PromptCamConfig.classification_loss` -> the loss (`CLASSIFICATION_LOSSES` in the config module names and describes
# each; a test keeps the two key sets equal)
CLASSIFICATION_LOSS_FUNCTIONS: dict[str, Callable[..., torch.Tensor]] = {
    "cross_entropy": cross_entropy_loss,
    "one_vs_rest": one_vs_rest_loss,
}


def _check_labels(labels: torch.Tensor, batch_size: int, num_labels: int, problem_type: str | None = None) -> None:
    """Integer class indices `(batch_size,)`, or with `problem_type="multi_label_classification"` float multi-hot
    targets `(batch_size, num_labels)` in [0, 1] (transformers' BCE loss takes them as they are)."""
    if problem_type == "multi_label_classification":
        if labels.shape != (batch_size, num_labels) or not labels.is_floating_point():
            raise ValueError(
                f"labels must be float multi-hot targets of shape ({batch_size}, {num_labels}) with "
                f"problem_type='multi_label_classification', got {labels.dtype} {tuple(labels.shape)}."
            )
        if labels.numel() and (float(labels.min()) < 0.0 or float(labels.max()) > 1.0):
            raise ValueError(
                f"multi-label targets must lie in [0, 1] (1 = the class is present), got min {float(labels.min())}, "
                f"max {float(labels.max())}."
            )
        return
    if labels.shape != (batch_size,) or labels.is_floating_point():
        hint = ""
        if labels.is_floating_point() and labels.shape == (batch_size, num_labels):
            hint = (
                " For multi-hot targets set config.problem_type='multi_label_classification' (binary cross-entropy)."
            )
        raise ValueError(
            f"labels must be integer class indices of shape ({batch_size},), got {labels.dtype} {tuple(labels.shape)}."
            + hint
        )
    _check_class_indices("labels", labels, num_labels)


def _check_trait_map_classes(trait_map_classes: torch.Tensor, batch_size: int, num_labels: int) -> None:
    if trait_map_classes.ndim != 2 or trait_map_classes.shape[0] != batch_size:
        raise ValueError(
            f"trait_map_classes must have shape (batch_size={batch_size}, K), got {tuple(trait_map_classes.shape)}."
        )
    if trait_map_classes.is_floating_point():
        raise ValueError(f"trait_map_classes must hold integer class indices, got {trait_map_classes.dtype}.")
    _check_class_indices("trait_map_classes", trait_map_classes, num_labels)


def _check_forward_options(
    kwargs: dict,
    trait_map_classes: torch.Tensor | None,
    trait_map_top_k: int | None,
    num_labels: int,
    score_classes: torch.Tensor | None = None,
) -> None:
    """The keyword arguments of `forward` besides the tensors: nothing unknown, and a valid `trait_map_top_k`."""
    if kwargs:
        raise TypeError(
            f"PromptCamForImageClassification.forward got unsupported arguments {sorted(kwargs)}; trait maps come "
            "from output_trait_maps=True, per-layer attentions and hidden states from output_attentions=True and "
            "output_hidden_states=True."
        )
    if trait_map_top_k is not None:
        if trait_map_classes is not None:
            raise ValueError("Give trait_map_classes or trait_map_top_k, not both.")
        if not isinstance(trait_map_top_k, int) or not 1 <= trait_map_top_k <= num_labels:
            raise ValueError(f"trait_map_top_k must be an integer in [1, {num_labels}], got {trait_map_top_k!r}.")
        scored = score_classes.shape[-1] if isinstance(score_classes, torch.Tensor) else None
        if scored is not None and trait_map_top_k > scored:
            raise ValueError(
                f"trait_map_top_k={trait_map_top_k} is more than the {scored} classes of score_classes it picks from; "
                f"give trait_map_top_k <= {scored}."
            )


def _check_score_classes(
    score_classes: torch.Tensor, batch_size: int, num_labels: int, labels: torch.Tensor | None
) -> None:
    if (
        not isinstance(score_classes, torch.Tensor)
        or score_classes.is_floating_point()
        or score_classes.dtype == torch.bool
        or score_classes.ndim != 2
        or score_classes.shape[0] != batch_size
        or score_classes.shape[1] < 1
    ):
        shape = (
            f"{score_classes.dtype} {tuple(score_classes.shape)}"
            if isinstance(score_classes, torch.Tensor)
            else type(score_classes).__name__
        )
        raise ValueError(
            f"score_classes must hold integer class indices of shape (batch_size={batch_size}, K) with K >= 1, got "
            f"{shape}; e.g. torch.tensor([[3, 17]] * batch_size) to score classes 3 and 17 of every image."
        )
    if labels is not None:
        raise ValueError(
            "score_classes cannot be combined with labels: the loss needs the logits of every class. Leave "
            "score_classes out to train or evaluate a loss."
        )
    _check_class_indices("score_classes", score_classes, num_labels)


def _check_blur(blur: str) -> None:
    if blur not in BLUR_MODES:
        raise ValueError(f"blur must be one of {', '.join(BLUR_MODES)}, got {blur!r}.")


def _check_target_classes(target_classes: torch.Tensor, batch_size: int, num_labels: int) -> None:
    if (
        target_classes.is_floating_point()
        or target_classes.ndim not in (1, 2)
        or target_classes.shape[0] != batch_size
    ):
        raise ValueError(
            f"target_classes must hold integer class indices of shape ({batch_size},) or ({batch_size}, K), got "
            f"{target_classes.dtype} {tuple(target_classes.shape)}."
        )
    _check_class_indices("target_classes", target_classes, num_labels)


# ==================================================================================================== 6. ranking
def greedy_blur_order(
    target_scores: Callable[[torch.Tensor], torch.Tensor], attended_heads: torch.Tensor, blurred_heads: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The greedy loop of the head ranking (paper section 2.3, the official code), batched over images and candidates.

    Starting from no blurred head, each step tries blurring every remaining head and keeps blurred the one whose
    blurring leaves the target score highest (the least important; ties go to the lower head index), until every
    head is blurred.

    Args:
        target_scores: `(B, n, heads * head_dim)` per-head outputs of the target prompt (n candidate sets per image)
            -> the target logit `(B, n)`.
        attended_heads: `(B, heads, head_dim)` the target prompt's output of each head as computed.
        blurred_heads: `(B, heads, head_dim)` the same, blurred (a [`BlurMode`]'s `blur_heads`).
    Returns:
        the blur order `(B, heads)` (least important first) and the target logit after each step `(B, heads)`.
    """
    batch, num_heads, head_dim = attended_heads.shape
    device = attended_heads.device
    images = torch.arange(batch, device=device)
    blurred = torch.zeros(batch, num_heads, dtype=torch.bool, device=device)
    candidates = torch.eye(num_heads, dtype=torch.bool, device=device)
    blur_order, step_scores = [], []
    for _ in range(num_heads):
        masks = blurred[:, None, :] | candidates  # (B, candidate, head): blurred set if the candidate is added
        heads = torch.where(masks[..., None], blurred_heads[:, None], attended_heads[:, None])
        scores = target_scores(heads.reshape(batch, num_heads, num_heads * head_dim))
        scores = scores.masked_fill(blurred, float("-inf"))
        chosen = scores.argmax(dim=-1)  # the least important remaining head (first index on ties)
        blurred[images, chosen] = True
        blur_order.append(chosen)
        step_scores.append(scores[images, chosen])
    return torch.stack(blur_order, dim=1), torch.stack(step_scores, dim=1)


def best_other_scores(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The highest logit of a class other than the target, per image: `(B, C)`, `(B,)` -> `(B,)`."""
    images = torch.arange(logits.shape[0], device=logits.device)
    other_logits = logits.clone()
    other_logits[images, targets] = float("-inf")
    return other_logits.max(dim=-1).values


def steps_until_misclassified(
    initial_score: torch.Tensor, step_scores: torch.Tensor, best_other: torch.Tensor
) -> int | None:
    """How many heads were blurred when another class first scored strictly higher than the target (one image):
    0 when the target is not the top class to begin with, None when it stays on top with every head blurred."""
    if initial_score < best_other:
        return 0
    flipped = (step_scores < best_other).nonzero()
    return int(flipped[0]) + 1 if len(flipped) else None


# ==================================================================================================== 7. the model
class PromptCamPromptHead(nn.Module):
    """Everything Prompt-CAM learns, in one module (prompt-only checkpoints and PEFT's `modules_to_save` use it).

    - `prompt_embeddings`: with `num_agnostic_prompts=None`, `(num_prompt_layers, num_labels, hidden_size)`: deep
      mode has one set of C prompts per backbone layer (the last set are the class prompts); shallow mode has the C
      class prompts of layer 1. With `num_agnostic_prompts=K` (deep mode), `(1, num_labels, hidden_size)`: the class
      prompts of the last layer.
    - `agnostic_prompt_embeddings` `(num_hidden_layers - 1, K, hidden_size)`, only with `num_agnostic_prompts=K`: the
      K class-agnostic prompts of each of layers 1..L-1.
    - `score`: the shared `Linear(hidden_size, 1)` that turns each class prompt's final output into its logit.
    """

    def __init__(self, config: PromptCamConfig):
        super().__init__()
        hidden_size = config.backbone_config.hidden_size
        agnostic = config.num_agnostic_prompts
        class_prompt_layers = config.num_prompt_layers if agnostic is None else 1
        self.prompt_embeddings = nn.Parameter(torch.zeros(class_prompt_layers, config.num_labels, hidden_size))
        self.agnostic_prompt_embeddings = None
        if agnostic is not None:
            self.agnostic_prompt_embeddings = nn.Parameter(
                torch.zeros(config.num_prompt_layers - 1, agnostic, hidden_size)
            )
        self.deep = config.prompt_mode == "deep"
        self.prompt_dropout = nn.Dropout(config.prompt_dropout)
        self.score = nn.Linear(hidden_size, 1)

    def forward(self) -> tuple[torch.Tensor | None, torch.Tensor]:
        """The prompts of this batch, dropout applied in training: `(layer_prompts, class_prompts)`.

        `layer_prompts` `(num_hidden_layers - 1, n, hidden_size)` are the prompts of layers 1..L-1 in deep mode (n is
        C, or `num_agnostic_prompts`), None in shallow mode; `class_prompts` `(num_labels, hidden_size)` are the
        class prompts (of the last layer in deep mode, of layer 1 in shallow mode)."""
        prompts = self.prompt_dropout(self.prompt_embeddings)
        if self.agnostic_prompt_embeddings is not None:
            return self.prompt_dropout(self.agnostic_prompt_embeddings), prompts[-1]
        if self.deep:
            return prompts[:-1], prompts[-1]
        return None, prompts[0]


class PromptCamPreTrainedModel(PreTrainedModel):
    config_class = PromptCamConfig
    config: PromptCamConfig
    base_model_prefix = "backbone"
    main_input_name = "pixel_values"
    input_modalities = ("image",)
    # The fast path calls the backbone's attention implementation (`ALL_ATTENTION_FUNCTIONS`) without a mask, and
    # computes attention weights explicitly where they are returned; eager and SDPA are tested equal. Flash and flex
    # attention are not claimed: they are not tested here (flash needs a GPU; flex compiles a kernel per shape).
    _supports_sdpa = True
    _supports_flash_attn = False
    _supports_flex_attn = False
    # `torch.compile(model, fullgraph=True)` captures forward (with or without labels, maps, attentions) in one graph
    _can_compile_fullgraph = True
    # the per-layer computations of the fast path run under `gradient_checkpointing_enable()` (see `run_layer`)
    supports_gradient_checkpointing = True
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

    def _prompt_init_bound(self) -> float:
        """VPT / official Prompt-CAM: the prompts start uniform in +-bound, the xavier bound of a patch-projection
        fan-in."""
        patch_h, patch_w = _pair(self.config.backbone_config.patch_size)
        return math.sqrt(6.0 / float(3 * patch_h * patch_w + self.config.backbone_config.hidden_size))

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, PromptCamPromptHead):
            bound = self._prompt_init_bound()
            init.uniform_(module.prompt_embeddings, -bound, bound)
            if module.agnostic_prompt_embeddings is not None:
                init.uniform_(module.agnostic_prompt_embeddings, -bound, bound)
            init.trunc_normal_(module.score.weight, mean=0.0, std=self.config.initializer_range)
            init.zeros_(module.score.bias)


class PromptCamForImageClassification(PromptCamPreTrainedModel):
    r"""
    Prompt-CAM: a frozen Vision Transformer backbone (ViT / DINO, DINOv2 with or without registers, DINOv3, CLIP or
    SigLIP vision tower; see `BACKBONE_DRIVERS`), one learned prompt per class (per layer in deep mode) and one shared
    scoring vector. The logit of class c is the shared head applied to the final-LayerNorm output of class c's prompt
    in the last layer; the trait maps are that prompt's last-layer attention over the patches, per head.

    Token order in every layer is the official one, `[C prompts, CLS, (registers), patches]` (SigLIP has no CLS), and
    every token attends to every token. The backbone is frozen; `prompt_head` holds all trainable parameters;
    `driver` ([`BackboneDriver`]) says where the backbone's modules are.

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
        family = BACKBONE_DRIVERS[config.backbone_config.model_type]
        self.backbone = family.build_backbone(config.backbone_config)
        self.driver = BackboneDriver(self.backbone, family)
        self.prompt_head = PromptCamPromptHead(config)
        self.backbone.requires_grad_(False)
        self._prompt_states = PromptStateCache()
        self.post_init()

    @property
    def adapter(self) -> BackboneDriver:
        """Deprecated name of `driver` ("adapter" now means only the PEFT prompt checkpoint)."""
        warnings.warn(
            "PromptCamForImageClassification.adapter is deprecated; use model.driver (the same BackboneDriver).",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.driver

    # ----------------------------------------------------------------------------------------------- input checks
    def _check_inputs(
        self,
        pixel_values: torch.Tensor,
        labels: torch.Tensor | None,
        trait_map_classes: torch.Tensor | None,
        interpolate_pos_encoding: bool | None,
        score_classes: torch.Tensor | None = None,
    ) -> None:
        _check_pixel_values(pixel_values, self.config.backbone_config.num_channels)
        self.driver.check_image_size(pixel_values.shape[2], pixel_values.shape[3], interpolate_pos_encoding)
        batch_size, num_labels = pixel_values.shape[0], self.config.num_labels
        if labels is not None:
            _check_labels(labels, batch_size, num_labels, self.config.problem_type)
        if trait_map_classes is not None:
            _check_trait_map_classes(trait_map_classes, batch_size, num_labels)
        if score_classes is not None:
            _check_score_classes(score_classes, batch_size, num_labels, labels)

    # ----------------------------------------------------------------------------------------------- attention kernels
    # The module functions of section 3 in this model's training mode. They stay methods so that a test can replace
    # them on one model and see which ones a call runs.
    def _attend(
        self, attention: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor
    ) -> torch.Tensor:
        return attend(attention, query, key, value, self.training)

    def _attend_with_weights(
        self, attention: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return attend_with_weights(attention, query, key, value, self.training)

    def _row_attention_weights(
        self, attention: nn.Module, query: torch.Tensor, key: torch.Tensor, rows: torch.Tensor
    ) -> torch.Tensor:
        return row_attention_weights(attention, query, key, rows)

    def _residual(self, states: torch.Tensor, branch: torch.Tensor) -> torch.Tensor:
        return states + drop_path(branch, self.config.drop_path_rate, self.training)

    # ----------------------------------------------------------------------------------------------- fast path
    def _prompt_keys_values(self, layer: nn.Module, prompts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values `(1, heads, n, head_dim)` of a layer's prompts `(n, D)`: they depend on the parameters
        only (deep mode), so they are computed once per batch, or once per model in eval ([`PromptStateCache`])."""
        attention = self.driver.attention(layer)
        normed_prompts = self.driver.attention_norm(layer)(prompts[None])
        return (
            split_heads(attention, attention.k_proj, normed_prompts),
            split_heads(attention, attention.v_proj, normed_prompts),
        )

    def _image_token_layer(
        self,
        layer: nn.Module,
        hidden_states: torch.Tensor,
        prompts: torch.Tensor | None,
        position_state=None,
        output_attentions: bool = False,
        prompt_keys_values: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One backbone layer for the rows of `hidden_states` `(B, N, D)`, which also attend to `prompts` `(n, D)`.

        The prompts' own outputs are not needed (they are dropped after the layer), so only their keys and values are
        computed, once for the whole batch (or taken from `prompt_keys_values`, the cached ones). With `prompts=None`
        this is the plain layer over `hidden_states`. Returns the new `hidden_states` `(B, N, D)` and, with
        `output_attentions`, the attention weights of the whole sequence `(B, heads, n + N, n + N)` (the prompts'
        query rows are then computed too, explicitly); else None.
        """
        attention = self.driver.attention(layer)
        normed = self.driver.attention_norm(layer)(hidden_states)
        query = split_heads(attention, attention.q_proj, normed)
        key = split_heads(attention, attention.k_proj, normed)
        value = split_heads(attention, attention.v_proj, normed)
        query = self.driver.rotate(query, position_state)
        key = self.driver.rotate(key, position_state)
        batch = hidden_states.shape[0]
        split = None
        if prompts is not None:
            prompt_key, prompt_value = prompt_keys_values or self._prompt_keys_values(layer, prompts)
            if not output_attentions and self._splits_prompt_attention(attention, prompt_key, key):
                # the prompts' keys are shared by the batch: attended apart, without a per-image copy of them
                budget = self.config.class_chunk_size * key.shape[2]
                split = merge_attention_parts(
                    attention_parts(attention, query, prompt_key, prompt_value, budget),
                    attention_parts(attention, query, key, value, budget),
                    query.dtype,
                )
            else:
                key = torch.cat((prompt_key.expand(batch, -1, -1, -1), key), dim=2)
                value = torch.cat((prompt_value.expand(batch, -1, -1, -1), value), dim=2)
        attention_weights = None
        if split is not None:
            attended = split
        elif output_attentions:
            if prompts is not None:  # prompt rows (not rotated: prompts are prefix tokens), for the weights only
                normed_prompts = self.driver.attention_norm(layer)(prompts[None])
                prompt_query = split_heads(attention, attention.q_proj, normed_prompts).expand(batch, -1, -1, -1)
                query = torch.cat((prompt_query, query), dim=2)
            attended, attention_weights = self._attend_with_weights(attention, query, key, value)
            attended = attended[:, attended.shape[1] - hidden_states.shape[1] :]
        else:
            attended = self._attend(attention, query, key, value)
        attended = attention_output(attention)(attended)
        hidden_states = self._residual(hidden_states, self.driver.attention_branch(layer, attended))
        hidden_states = self._residual(hidden_states, self.driver.mlp_branch(layer, hidden_states))
        return hidden_states, attention_weights

    def _splits_prompt_attention(self, attention: nn.Module, prompt_key: torch.Tensor, key: torch.Tensor) -> bool:
        """Whether the image tokens of a deep-mode layer attend to the layer's prompts and to each other apart, merged
        exactly through the log-sum-exp ([`merge_attention_parts`]) instead of over the concatenated keys: in inference
        where the fused kernel applies, when the prompts outnumber the image tokens (the paper's C prompts per layer at
        large C), where copying the prompts' keys and values for every image would cost more than the attention."""
        return (
            prompt_key.shape[2] > key.shape[2]
            and not (self.training and attention_dropout(attention) > 0)
            and fused_attention_applies(prompt_key, key)
        )

    def _prompt_state_cache(self) -> PromptStateCache | None:
        """The model's cache of image-independent prompt states, when it may be used: in eval, deep mode, without
        autograd, not under torch.compile, and without accelerate hooks (which may swap the weights in per call).
        It is emptied when any parameter changes (in place or replaced, e.g. an optimizer step, `load_state_dict`,
        `.to()`), and by `train()`."""
        if self.training or self.config.prompt_mode != "deep" or torch.is_grad_enabled():
            return None
        if torch.compiler.is_compiling() or any(hasattr(layer, "_hf_hook") for layer in self.driver.layers()):
            return None
        parameters = list(self.parameters())
        if any(parameter.is_inference() for parameter in parameters):
            return None  # inference tensors (a model built under torch.inference_mode) have no version counter
        self._prompt_states.refresh(tuple((id(p), p.data_ptr(), p._version) for p in parameters))
        return self._prompt_states

    def clear_prompt_state_cache(self) -> None:
        """Drop the cached image-independent prompt states (they are recomputed by the next eval forward). Needed
        only after editing parameters in a way their version counters do not see, e.g. through `parameter.data`."""
        self._prompt_states.clear()

    @torch.no_grad()
    def init_agnostic_prompts_from_images(
        self,
        pixel_values: torch.Tensor,
        generator: torch.Generator | None = None,
        interpolate_pos_encoding: bool | None = None,
    ) -> None:
        """Start the class-agnostic prompts of layers 1..L-1 as patch tokens of those layers (deep mode).

        `pixel_values` `(B, 3, H, W)`: sample images of the task, preprocessed as for the model. They run through the
        plain backbone (no prompts, eval mode); each prompt of layer l becomes one patch token entering layer l, drawn
        at random (`generator`) from all B * M of them without repetition (with repetition only when B * M is fewer
        than the prompts), rescaled to the expected norm of the uniform initialisation (`_init_weights`).

        Why: a prompt acts on the image tokens of its layer only through its key and value (its own output is
        dropped), and LayerNorm removes its scale. Uniform random prompts are directions the frozen layers have never
        seen, and many of them divert the image tokens' attention: with `num_agnostic_prompts=50` at C = 8 (DINOv2-S,
        168 px) they held 20-60% of it at initialisation and more after training, and the model learned far less
        than with eight (docs/model.md, "Many classes"). Patch tokens are keys and values the layer was trained on.
        Keeping the uniform initialisation's norm keeps the learning rate's effect on the prompts unchanged.

        Works for both layouts (`num_agnostic_prompts` None: the first L-1 sets of C prompts; K: the K of each layer);
        the class prompts of the last layer and the scoring head are left as they are. Refused in shallow mode, which
        has no class-agnostic prompts.
        """
        if self.config.prompt_mode != "deep":
            raise ValueError(
                "init_agnostic_prompts_from_images: prompt_mode='shallow' has no class-agnostic prompts (its class "
                "prompts enter layer 1 and flow through every layer); use prompt_mode='deep'."
            )
        head = self.prompt_head
        layer_prompts = head.agnostic_prompt_embeddings
        if layer_prompts is None:
            layer_prompts = head.prompt_embeddings[:-1]  # the paper's layout: sets 1..L-1 are the agnostic ones
        num_prompts, hidden_size = layer_prompts.shape[1:]
        # E|x|^2 of uniform(-b, b) is b^2 / 3 per element
        target_norm = self._prompt_init_bound() * math.sqrt(hidden_size / 3.0)
        was_training = self.training
        self.eval()
        try:
            pixel_values = pixel_values.to(device=layer_prompts.device, dtype=layer_prompts.dtype)
            height, width = pixel_values.shape[-2:]
            self.driver.check_image_size(height, width, interpolate_pos_encoding)
            hidden_states = self.driver.embed(pixel_values, interpolate_pos_encoding)
            position_state = self.driver.position_state(pixel_values)
            prefix = self.driver.num_prefix_tokens
            for index, layer in enumerate(self.driver.layers()[:-1]):
                patches = hidden_states[:, prefix:].reshape(-1, hidden_size).float()
                count = patches.shape[0]
                if count >= num_prompts:
                    picked = torch.randperm(count, generator=generator)[:num_prompts]
                else:
                    picked = torch.randint(count, (num_prompts,), generator=generator)
                tokens = patches[picked.to(patches.device)]
                tokens = tokens * (target_norm / tokens.norm(dim=-1, keepdim=True).clamp_min(1e-12))
                layer_prompts[index].copy_(tokens.to(layer_prompts.dtype))
                hidden_states, _ = run_layer(
                    layer, self._image_token_layer, layer, hidden_states, None, position_state, checkpointed=False
                )
        finally:
            self.train(was_training)

    def train(self, mode: bool = True):
        # the cached prompt states are for eval only; training changes the parameters they come from
        states = getattr(self, "_prompt_states", None)
        if mode and states is not None:
            states.clear()
        return super().train(mode)

    def _last_layer_inputs(
        self,
        pixel_values: torch.Tensor,
        interpolate_pos_encoding: bool | None,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor, object, list[torch.Tensor], list[torch.Tensor]]:
        """Run the backbone up to its last layer.

        Returns the class prompts entering the last layer, `(1, C, D)` in deep mode (the learned ones, shared by the
        batch) or `(B, C, D)` in shallow mode, the image tokens [CLS, registers, patches] entering it, `(B, T, D)`, the
        backbone's positional state for the attention (rotary tables; None for absolute position embeddings), and the
        hidden states (embeddings and layers 1..L-1) and attentions (layers 1..L-1) asked for (empty lists otherwise;
        see [`PromptCamImageClassifierOutput`]).

        Each layer runs through [`run_layer`] (accelerate's hooks on the layer, activation checkpointing).
        """
        num_labels = self.config.num_labels
        layer_prompts, class_prompts = self.prompt_head()
        layers = self.driver.layers()
        hidden_states = self.driver.embed(pixel_values, interpolate_pos_encoding)
        position_state = self.driver.position_state(pixel_values)
        cache = self._prompt_state_cache()
        all_hidden_states, all_attentions = [], []

        def image_token_layer(
            layer: nn.Module, hidden_states: torch.Tensor, layer_prompts: torch.Tensor | None, keys_values=None
        ):
            def compute(hidden_states, layer_prompts, position_state):
                return self._image_token_layer(
                    layer, hidden_states, layer_prompts, position_state, output_attentions, keys_values
                )

            hidden_states, attention_weights = run_layer(layer, compute, hidden_states, layer_prompts, position_state)
            if output_hidden_states:
                all_hidden_states.append(hidden_states)
            if output_attentions:
                all_attentions.append(attention_weights)
            return hidden_states

        if self.config.prompt_mode == "deep":
            if output_hidden_states:
                all_hidden_states.append(hidden_states)
            for index, (layer, prompts) in enumerate(zip(layers[:-1], layer_prompts)):
                keys_values = None
                if cache is not None:
                    keys_values = cache.get(("prompt keys, values", index), self._prompt_keys_values, layer, prompts)
                hidden_states = image_token_layer(layer, hidden_states, prompts, keys_values)
            return class_prompts[None], hidden_states, position_state, all_hidden_states, all_attentions
        # shallow: the class prompts are ordinary tokens of every layer; only the last layer is cut to their rows
        batch = hidden_states.shape[0]
        hidden_states = torch.cat((class_prompts[None].expand(batch, -1, -1), hidden_states), dim=1)
        if output_hidden_states:
            all_hidden_states.append(hidden_states)
        for layer in layers[:-1]:
            hidden_states = image_token_layer(layer, hidden_states, None)
        return (
            hidden_states[:, :num_labels],
            hidden_states[:, num_labels:],
            position_state,
            all_hidden_states,
            all_attentions,
        )

    def _last_layer_projections(
        self, layer: nn.Module, prompt_states: torch.Tensor, image_states: torch.Tensor, position_state=None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Queries of the class prompts `(B, heads, C, head_dim)`; keys and values of all tokens
        `(B, heads, C + T, head_dim)`, in the official order [prompts, CLS, registers, patches]."""
        attention = self.driver.attention(layer)
        batch = image_states.shape[0]
        norm = self.driver.attention_norm(layer)
        normed_prompts, normed_image = norm(prompt_states), norm(image_states)

        def heads(projection: nn.Linear, states: torch.Tensor) -> torch.Tensor:
            return split_heads(attention, projection, states).expand(batch, -1, -1, -1)

        query = heads(attention.q_proj, normed_prompts)
        image_keys = self.driver.rotate(heads(attention.k_proj, normed_image), position_state)
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
        batch, num_rows = attended.shape[:2]
        step = max(1, PROMPT_ROW_TILE // batch)
        if num_rows > step and not self.training and cpu_inference(attended):
            tiles = []
            for start in range(0, num_rows, step):
                prompts = prompt_states if prompt_states.shape[1] == 1 else prompt_states[:, start : start + step]
                # a tile of every image's rows is strided across images: copied to one block, the output projection
                # and MLP can run as one matrix multiply with the bias fused (addmm) instead of a batched one and an
                # add (measured at C = 10,000: within the run-to-run noise, docs/benchmarks.md)
                tile = attended[:, start : start + step].contiguous()
                tiles.append(self._prompt_row_logits(layer, prompts, tile))
            return torch.cat(tiles, dim=1)
        return self._prompt_row_logits(layer, prompt_states, attended)

    def _prompt_row_logits(
        self, layer: nn.Module, prompt_states: torch.Tensor, attended: torch.Tensor
    ) -> torch.Tensor:
        """[`_prompt_logits`] for one tile of rows (each row is computed on its own: LayerNorms and MLP are per row)."""
        projected = attention_output(self.driver.attention(layer))(attended)
        hidden_states = self._residual(prompt_states, self.driver.attention_branch(layer, projected))
        hidden_states = self._residual(hidden_states, self.driver.mlp_branch(layer, hidden_states))
        return self.prompt_head.score(self.driver.final_layernorm()(hidden_states)).squeeze(-1)

    def _last_layer_state(
        self,
        layer: nn.Module,
        class_prompts: torch.Tensor,
        image_states: torch.Tensor,
        position_state,
        every_row: bool,
    ) -> LastLayerState:
        """The last layer's projections and, on the split path, the class prompts' attention over the prompt keys
        (image-independent in deep mode: once per batch, or once per model in eval; see [`LastLayerState`])."""
        attention = self.driver.attention(layer)
        norm = self.driver.attention_norm(layer)
        cache = self._prompt_state_cache()

        def prompt_projections(class_prompts):
            normed_prompts = norm(class_prompts)
            return tuple(split_heads(attention, projection, normed_prompts) for projection in attention_qkv(attention))

        if cache is not None:
            query, prompt_key, prompt_value = cache.get(
                "last layer prompt projections", prompt_projections, class_prompts
            )
        else:
            query, prompt_key, prompt_value = prompt_projections(class_prompts)
        normed_image = norm(image_states)
        image_key = self.driver.rotate(split_heads(attention, attention.k_proj, normed_image), position_state)
        image_value = split_heads(attention, attention.v_proj, normed_image)
        needs_grad = torch.is_grad_enabled() and (class_prompts.requires_grad or image_states.requires_grad)
        split = not needs_grad and not (self.training and attention_dropout(attention) > 0)
        state = LastLayerState(query, prompt_key, prompt_value, image_key, image_value, split)
        if not split:  # once per forward: autograd keeps one copy for every chunk of classes
            batch = image_key.shape[0]
            state.all_keys_values = (
                torch.cat((prompt_key.expand(batch, -1, -1, -1), image_key), dim=2),
                torch.cat((prompt_value.expand(batch, -1, -1, -1), image_value), dim=2),
            )
        if split and (every_row or cache is not None):
            budget = self.config.class_chunk_size * image_key.shape[2]
            if cache is not None:
                state.prompt_part = cache.get(
                    "last layer prompt part", attention_parts, attention, query, prompt_key, prompt_value, budget
                )
            else:
                state.prompt_part = attention_parts(attention, query, prompt_key, prompt_value, budget)
        return state

    def _class_rows(
        self, attention: nn.Module, state: LastLayerState, rows: slice | torch.Tensor, with_weights: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The last-layer attention of some class-prompt rows: a slice of the classes, or `(B, n)` class indices.

        Returns their attention output `(B, n, heads * head_dim)` (before the output projection) and, with
        `with_weights`, their attention weights over the image keys [CLS, registers, patches] `(B, heads, n, T)`.
        """
        batch, num_classes = state.image_key.shape[0], state.prompt_key.shape[2]
        query = rows_of(state.query, rows, batch, dim=2)
        if not state.split:  # autograd or attention dropout: the backbone's attention over all keys
            key, value = state.all_keys_values
            query = query.expand(batch, -1, -1, -1)
            if not with_weights:
                return self._attend(attention, query, key, value), None
            attended, weights = self._attend_with_weights(attention, query, key, value)
            return attended, weights[..., num_classes:]
        budget = self.config.class_chunk_size * state.image_key.shape[2]
        if state.prompt_part is not None:
            prompt_part = tuple(rows_of(part, rows, batch, dim=2) for part in state.prompt_part)
        else:
            prompt_part = attention_parts(attention, query, state.prompt_key, state.prompt_value, budget)
        if with_weights:  # the weights over the image keys are returned: their scores are formed explicitly
            image_lse, image_attended, image_scores = softmax_parts(
                attention, query, state.image_key, state.image_value
            )
        else:
            image_lse, image_attended = attention_parts(attention, query, state.image_key, state.image_value, budget)
        attended = merge_attention_parts(prompt_part, (image_lse, image_attended), query.dtype)
        weights = None
        if with_weights:
            lse = torch.logaddexp(prompt_part[0], image_lse)
            weights = torch.exp(image_scores - lse[..., None]).to(query.dtype)
        return attended, weights

    def _last_layer(
        self,
        class_prompts: torch.Tensor,
        image_states: torch.Tensor,
        position_state,
        all_trait_maps: bool,
        trait_map_classes: torch.Tensor | None,
        trait_map_top_k: int | None,
        score_classes: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """The last layer for the class prompts' rows, `class_chunk_size` rows at a time.

        Every class (logits `(B, C)`), or with `score_classes` `(B, K)` those classes only (logits `(B, K)`). Returns
        the logits, the attention weights over the image keys of the rows whose trait maps are asked for (`(B, heads,
        n, T)`: every class, or the score classes, with `all_trait_maps`; K classes per image otherwise; None without
        maps) and the classes of those rows `(B, n)` (None for every class).
        """
        layer = self.driver.layers()[-1]
        attention = self.driver.attention(layer)
        batch = image_states.shape[0]
        state = self._last_layer_state(layer, class_prompts, image_states, position_state, score_classes is None)
        chunk = self.config.class_chunk_size
        num_rows = class_prompts.shape[1] if score_classes is None else score_classes.shape[1]
        logits, weights = [], []
        for start in range(0, num_rows, chunk):
            rows = slice(start, start + chunk) if score_classes is None else score_classes[:, start : start + chunk]
            attended, row_weights = self._class_rows(attention, state, rows, all_trait_maps)
            logits.append(self._prompt_logits(layer, rows_of(class_prompts, rows, batch, dim=1), attended))
            weights.append(row_weights)
        logits = torch.cat(logits, dim=1)
        attention_weights = torch.cat(weights, dim=2) if all_trait_maps else None
        if all_trait_maps:
            return logits, attention_weights, score_classes
        if trait_map_top_k is not None:
            top = logits.detach().topk(trait_map_top_k, dim=-1).indices
            trait_map_classes = top if score_classes is None else torch.gather(score_classes, 1, top)
        if trait_map_classes is not None:
            attention_weights = torch.cat(
                [
                    self._class_rows(attention, state, trait_map_classes[:, start : start + chunk], True)[1]
                    for start in range(0, trait_map_classes.shape[1], chunk)
                ],
                dim=2,
            )
        return logits, attention_weights, trait_map_classes

    def _last_layer_whole_sequence(
        self,
        class_prompts: torch.Tensor,
        image_states: torch.Tensor,
        position_state,
        output_attentions: bool,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The last layer over every row, for `output_hidden_states` / `output_attentions` only (the logits come from
        the class prompts' rows in `_last_layer`). Returns the layer's output in the layout of `hidden_states` (deep:
        the image tokens `(B, T, D)`; shallow: `(B, C + T, D)`) and the weights `(B, heads, C + T, C + T)` (or None)."""
        layer = self.driver.layers()[-1]
        if self.config.prompt_mode == "deep":
            return self._image_token_layer(layer, image_states, class_prompts[0], position_state, output_attentions)
        sequence = torch.cat((class_prompts, image_states), dim=1)
        return self._image_token_layer(layer, sequence, None, position_state, output_attentions)

    def _trait_maps(self, image_weights: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
        """`(B, heads, K, T)` weights over the image keys -> patch keys only -> `(B, K, heads, grid_h, grid_w)`."""
        patch_h, patch_w = self.driver.patch_size
        grid = (image_size[0] // patch_h, image_size[1] // patch_w)
        patch_weights = image_weights[..., self.driver.num_prefix_tokens :]
        per_class = patch_weights.transpose(1, 2)
        return per_class.reshape(*per_class.shape[:3], *grid)

    @can_return_tuple
    def forward(
        self,
        pixel_values: torch.Tensor,
        labels: torch.Tensor | None = None,
        output_trait_maps: bool = False,
        trait_map_classes: torch.Tensor | None = None,
        trait_map_top_k: int | None = None,
        interpolate_pos_encoding: bool | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        score_classes: torch.Tensor | None = None,
        **kwargs,
    ) -> PromptCamImageClassifierOutput:
        r"""
        Args:
            pixel_values (`torch.FloatTensor` of shape `(batch_size, num_channels, height, width)`):
                Normalised images (see the image processor saved with the model).
            labels (`torch.LongTensor` of shape `(batch_size,)`, *optional*):
                Class indices in `[0, num_labels)`; the loss is the standard image-classification cross-entropy
                (with `num_items_in_batch`, as `Trainer` passes it, it stays correct under gradient accumulation).
                With `config.problem_type="multi_label_classification"`: float multi-hot targets
                `(batch_size, num_labels)` in [0, 1], and the loss is binary cross-entropy on each class's logit.
            output_trait_maps (`bool`, *optional*, defaults to `False`):
                Return `trait_maps` `(batch_size, num_labels, num_heads, grid_height, grid_width)`.
            trait_map_classes (`torch.LongTensor` of shape `(batch_size, K)`, *optional*):
                Restrict the trait maps to K classes per image (implies `output_trait_maps`).
            trait_map_top_k (`int`, *optional*):
                Maps for each image's K highest-scoring classes, in score order (implies `output_trait_maps`); the
                chosen classes come back in `trait_map_classes`. Cannot be combined with `trait_map_classes`.
            interpolate_pos_encoding (`bool`, *optional*):
                ViT, CLIP and SigLIP backbones: interpolate the position embeddings for images of another size than
                the config's. DINOv2 and DINOv3 backbones take any multiple of the patch size.
            output_attentions (`bool`, *optional*, defaults to `config.output_attentions`):
                Return `attentions`, every layer's attention over the whole Prompt-CAM sequence (computed explicitly,
                under any attention implementation; see [`PromptCamImageClassifierOutput`]).
            output_hidden_states (`bool`, *optional*, defaults to `config.output_hidden_states`):
                Return `hidden_states`, the embeddings and every layer's output (see [`PromptCamImageClassifierOutput`]).
            score_classes (`torch.LongTensor` of shape `(batch_size, K)`, *optional*):
                Score only these classes per image: `logits` is then `(batch_size, K)`, entry `[b, k]` the logit of
                class `score_classes[b, k]`, equal to the full forward's logit of that class (a class's logit depends
                only on its own last-layer row). The last layer computes these K rows only, so its cost grows with K,
                not C ("is it A or B?", hierarchical prediction). With `output_trait_maps=True` the maps are those
                of the K classes; `trait_map_top_k` picks among them. Cannot be combined with `labels` (the loss
                needs every class's logit).
            return_dict (`bool`, *optional*, defaults to `config.return_dict`):
                Return a tuple instead of a [`PromptCamImageClassifierOutput`] when `False` (transformers' order: loss,
                logits, hidden_states, attentions, trait_maps, trait_map_classes; the ones not computed are left out).

        Returns:
            [`PromptCamImageClassifierOutput`]: `loss`, `logits` `(batch_size, num_labels)` (or `(batch_size, K)`
            with `score_classes`), `hidden_states`,
            `attentions`, `trait_maps`, `trait_map_classes`.
        """
        num_items_in_batch = kwargs.pop("num_items_in_batch", None)
        _check_forward_options(kwargs, trait_map_classes, trait_map_top_k, self.config.num_labels, score_classes)
        output_attentions = output_attentions if output_attentions is not None else self.config.output_attentions
        output_hidden_states = (
            output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states
        )
        all_trait_maps = output_trait_maps and trait_map_classes is None and trait_map_top_k is None
        self._check_inputs(pixel_values, labels, trait_map_classes, interpolate_pos_encoding, score_classes)

        class_prompts, image_states, position_state, all_hidden_states, all_attentions = self._last_layer_inputs(
            pixel_values, interpolate_pos_encoding, output_hidden_states, output_attentions
        )

        def last_layer(class_prompts, image_states, position_state, trait_map_classes, score_classes):
            outputs = self._last_layer(
                class_prompts,
                image_states,
                position_state,
                all_trait_maps,
                trait_map_classes,
                trait_map_top_k,
                score_classes,
            )
            if not (output_hidden_states or output_attentions):
                return outputs, None
            return outputs, self._last_layer_whole_sequence(
                class_prompts, image_states, position_state, output_attentions
            )

        # the last layer is not checkpointed: it computes C prompt rows, whose activations are small
        (logits, attention_weights, trait_map_classes), whole_sequence = run_layer(
            self.driver.layers()[-1],
            last_layer,
            class_prompts,
            image_states,
            position_state,
            trait_map_classes,
            score_classes,
            checkpointed=False,
        )
        if whole_sequence is not None:
            last_hidden_states, last_attention_weights = whole_sequence
            all_hidden_states.append(last_hidden_states)
            all_attentions.append(last_attention_weights)
        trait_maps = None
        if attention_weights is not None:
            trait_maps = self._trait_maps(attention_weights, pixel_values.shape[2:])
        loss = None
        if labels is not None:
            loss_function = CLASSIFICATION_LOSS_FUNCTIONS[self.config.classification_loss]
            loss = loss_function(self, labels, logits, num_items_in_batch)

        return PromptCamImageClassifierOutput(
            loss=loss,
            logits=logits,
            hidden_states=tuple(all_hidden_states) if output_hidden_states else None,
            attentions=tuple(all_attentions) if output_attentions else None,
            trait_maps=trait_maps,
            trait_map_classes=trait_map_classes,
        )

    # ----------------------------------------------------------------------------------------------- trait ranking
    def ranking_settings(self, blur: str = "paper", stop: str | int = "misclassified") -> tuple[str, str | int]:
        """`(blur, stop)` as [`rank_traits`] reads them (the stop rule through `parse_stop_rule`), checked without
        running the model: a caller (the `prompt-cam` pipeline) refuses bad settings before it reads any image.
        Raises `ValueError` naming the allowed values."""
        _check_blur(blur)
        return blur, parse_stop_rule(stop, self.config.backbone_config.num_attention_heads)

    @torch.no_grad()
    @_document_choices
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
                What the target prompt's attention in a blurred head becomes (one of `BLUR_MODES`; only the target's
                row changes, so the other classes' scores are not affected):
                {blur_modes}
            stop (`str` or `int`, *optional*, defaults to `"misclassified"`):
                Which heads are the top traits (read by `parse_stop_rule`):
                {stop_rules}
            interpolate_pos_encoding (`bool`, *optional*): as in `forward`.
        Returns:
            one [`TraitRanking`] per image, or per image a list of K of them when `target_classes` is `(B, K)`.
        """
        blur, stop = self.ranking_settings(blur, stop)
        self._check_inputs(pixel_values, None, None, interpolate_pos_encoding)
        batch = pixel_values.shape[0]
        if target_classes is not None:
            _check_target_classes(target_classes, batch, self.config.num_labels)

        was_training = self.training
        self.eval()
        try:
            class_prompts, image_states, position_state, _, _ = self._last_layer_inputs(
                pixel_values, interpolate_pos_encoding
            )
            layer = self.driver.layers()[-1]

            def rank_in_last_layer(class_prompts, image_states, position_state, target_classes):
                # the logits of every class, class_chunk_size rows at a time; keys and values of all tokens for the
                # target rows' attention
                logits, _, _ = self._last_layer(class_prompts, image_states, position_state, False, None, None)
                query, key, value = self._last_layer_projections(layer, class_prompts, image_states, position_state)
                columns = logits.argmax(-1)[:, None] if target_classes is None else target_classes.reshape(batch, -1)
                return [
                    self._greedy_head_ranking(
                        layer, class_prompts, query, key, value, logits, columns[:, k], blur, stop
                    )
                    for k in range(columns.shape[1])
                ]

            # the whole greedy loop re-evaluates the last layer: it runs as one call of it (accelerate's hooks)
            rankings = run_layer(
                layer, rank_in_last_layer, class_prompts, image_states, position_state, target_classes
            )
        finally:
            self.train(was_training)
        if target_classes is not None and target_classes.ndim == 2:
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
        """The ranking for one target class per image (`targets` `(B,)`): the target prompt's per-head outputs as
        computed and as blurred, the greedy loop over them, and the stop rule."""
        batch = query.shape[0]
        images = torch.arange(batch, device=query.device)
        weights = self._row_attention_weights(self.driver.attention(layer), query, key, targets[:, None])
        attended_heads = torch.matmul(weights, value)[:, :, 0]  # (B, heads, head_dim)
        first_patch = self.config.num_labels + self.driver.num_prefix_tokens
        blurred_heads = BLUR_MODE_TABLE[blur].blur_heads(weights, value, first_patch)
        target_prompts = class_prompts.expand(batch, -1, -1)[images, targets][:, None]  # (B, 1, D)

        def target_scores(heads: torch.Tensor) -> torch.Tensor:
            return self._prompt_logits(layer, target_prompts, heads)

        blur_order, step_scores = greedy_blur_order(target_scores, attended_heads, blurred_heads)
        initial_scores = logits[images, targets]
        best_other = best_other_scores(logits, targets)
        top_traits = stop_rule_of(stop).top_traits
        rankings = []
        for b, order in enumerate(blur_order.tolist()):
            ranked_heads = order[::-1]
            misclassified_after = steps_until_misclassified(initial_scores[b], step_scores[b], best_other[b])
            rankings.append(
                TraitRanking(
                    target_class=int(targets[b]),
                    ranked_heads=ranked_heads,
                    top_traits=top_traits(ranked_heads, misclassified_after, stop),
                    target_scores=step_scores[b].tolist(),
                    initial_score=float(initial_scores[b]),
                    misclassified_after=misclassified_after,
                    blur=blur,
                    stop=stop,
                )
            )
        return rankings

    # ----------------------------------------------------------------------------------------------- loading, saving
    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        """`PreTrainedModel.from_pretrained`, with a clear message when the checkpoint's prompts do not fit the config.

        A stock backbone checkpoint of a supported family (ViT, DINOv2, DINOv3, a CLIP / SigLIP vision tower or a full
        CLIP / SigLIP model) with `config=PromptCamConfig(...)` loads the backbone unchanged and initialises the
        prompts and head. Without `config=`, the config is built from the folder's own backbone config and the call's
        `num_labels` / `id2label` (and any other `PromptCamConfig` setting given as a keyword), e.g.
        `from_pretrained("facebook/dinov2-base", num_labels=200)`; without the classes it is refused.
        """
        if kwargs.get("config") is None:
            config, kwargs = config_for_backbone_folder(pretrained_model_name_or_path, kwargs)
            if config is not None:
                kwargs["config"] = config
        try:
            model = super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)
        except RuntimeError as error:
            if "ignore_mismatched_sizes" not in str(error):
                raise
            raise _mismatched_prompts_error(pretrained_model_name_or_path, kwargs.get("config")) from error
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


def _mismatched_prompts_error(pretrained_model_name_or_path, config) -> RuntimeError:
    classes = f"{config.num_labels} classes, " if isinstance(config, PromptCamConfig) else ""
    return RuntimeError(
        f"The checkpoint at {pretrained_model_name_or_path!s} does not fit the config ({classes}see the load "
        "report above for the shapes): its prompts were trained for another class count or prompt mode. To "
        "start new prompts on the same backbone, pass ignore_mismatched_sizes=True: the backbone loads "
        "unchanged and the mismatched prompts are re-initialised (they need training)."
    )


# ==================================================================================================== 8. preprocessing
def promptcam_image_processor(config: PromptCamConfig, image_size: int | tuple[int, int] | None = None):
    """Prompt-CAM's evaluation preprocessing for `config`'s backbone (official test transform).

    Any PIL mode is converted to RGB, the image is resized to `image_size` (default: the backbone's image size)
    without cropping (bilinear, as torchvision's `Resize` on PIL images), rescaled to [0, 1] and normalised with
    mean = std = 0.5. The conversion is PIL's `convert("RGB")`, which clips 16-bit and float grey images; every path
    of the package (and the `prompt-cam` pipeline) hands the processor an image already decoded by
    `pipeline_promptcam.decode_image` (EXIF applied, wide grey rescaled by its range), so the conversion is a no-op.
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


def _pair(value) -> tuple[int, int]:
    return tuple(value) if isinstance(value, (list, tuple)) else (value, value)


__all__ = [
    "BACKBONE_DRIVERS",
    "BLUR_MODES",
    "BLUR_MODE_TABLE",
    "CLASSIFICATION_LOSS_FUNCTIONS",
    "STOP_RULES",
    "BackboneDriver",
    "BackboneFamily",
    "BlurMode",
    "StopRule",
    "parse_stop_rule",
    "register_blur_mode",
    "register_stop_rule",
    "TraitRanking",
    "PromptCamForImageClassification",
    "PromptCamImageClassifierOutput",
    "PromptCamPreTrainedModel",
    "PromptCamPromptHead",
    "promptcam_image_processor",
]
