# Copyright 2026 The modeling-promptcam authors. Licensed under the Apache License, Version 2.0.
"""Prompt-CAM configuration."""

from __future__ import annotations

import copy

from transformers import AutoConfig, PreTrainedConfig

# Backbone families the Prompt-CAM forward pass knows how to drive: the keys of `modeling_promptcam.BACKBONE_DRIVERS`,
# in the same order (tests/test_model_registries.py ties the two; this file cannot import the model file).
SUPPORTED_BACKBONE_TYPES = (
    "vit",
    "dinov2",
    "dinov2_with_registers",
    "dinov3_vit",
    "clip_vision_model",
    "siglip_vision_model",
)
# image-text models whose vision tower is the backbone
VISION_TOWER_OF = {"clip": "clip_vision_model", "siglip": "siglip_vision_model"}
PROMPT_MODES = ("deep", "shallow")
# transformers' classification problem types that Prompt-CAM's loss supports (one prompt scores each class; a
# regression target has no classes to give prompts to)
PROBLEM_TYPES = ("single_label_classification", "multi_label_classification")
# How integer class labels are scored in training, name -> what it does (the loss functions themselves are
# `modeling_promptcam.CLASSIFICATION_LOSS_FUNCTIONS`, keyed by these names)
CLASSIFICATION_LOSSES = {
    "cross_entropy": "softmax cross-entropy over the classes (the paper's and the official code's loss)",
    "one_vs_rest": "binary cross-entropy of every class's logit against 'is this image of that class', summed over "
    "the classes: each class prompt must answer for its own class, so none can stay constant while its siblings "
    "decide (docs/taxonomy.md, the default for taxonomy models)",
}
# How `pipeline("prompt-cam", model=folder, trust_remote_code=True)` finds the pipeline code saved in the folder.
PROMPT_CAM_CUSTOM_PIPELINES = {
    "prompt-cam": {
        "impl": "pipeline_promptcam.PromptCamImageClassificationPipeline",
        "pt": ["AutoModelForImageClassification"],
        "type": "image",
    }
}


class PromptCamConfig(PreTrainedConfig):
    r"""
    Configuration of a [`PromptCamForImageClassification`]: a frozen Vision Transformer backbone with one learned
    prompt per class and a shared scoring vector (Prompt-CAM, Chowdhury et al., CVPR 2025).

    Args:
        backbone_config (`PreTrainedConfig` or `dict`, *optional*):
            Configuration of the frozen backbone: a `ViTConfig` (DINO, ViT), `Dinov2Config`,
            `Dinov2WithRegistersConfig`, `DINOv3ViTConfig`, `CLIPVisionConfig` or `SiglipVisionConfig` (a full
            `CLIPConfig` / `SiglipConfig` gives its vision tower), as an object or as its dict (with `model_type`).
            Defaults to a `Dinov2Config()` (ViT-B/14 shape).
        prompt_mode (`str`, *optional*, defaults to `"deep"`):
            `"deep"` (the paper's main variant): every layer gets its own C prompts, whose outputs are dropped after
            the layer; the last layer's C prompts are the class prompts that are scored. `"shallow"`: C class prompts
            enter the first layer and are carried through all layers.
        prompt_dropout (`float`, *optional*, defaults to 0.0):
            Dropout on the prompt embeddings while training (one mask per batch, as the official code). The paper's
            recipe uses 0.1 for DINO and 0.0 for DINOv2.
        drop_path_rate (`float`, *optional*, defaults to 0.0):
            Stochastic depth applied by Prompt-CAM's forward to the residual branches of every backbone layer while
            training (the paper's recipe: 0.1 for DINO, 0.0 for DINOv2). The backbone config's own `drop_path_rate`
            must stay 0 so that there is one setting only.
        initializer_range (`float`, *optional*, defaults to 0.02):
            Standard deviation of the truncated normal initialiser of the shared scoring head.
        num_agnostic_prompts (`int`, *optional*):
            Deep mode only. `None` (the paper's and the official code's semantics): each of layers 1..L-1 gets C
            class-agnostic prompts, so cost and parameters grow with C in every layer. An integer K: each of layers
            1..L-1 gets K prompts whatever C is, and only the last layer keeps its C class prompts (docs/model.md,
            "Many classes"). Refused with `prompt_mode="shallow"`, which has no class-agnostic prompts.
        classification_loss (`str`, *optional*, defaults to `"cross_entropy"`):
            How integer labels are scored in training: `"cross_entropy"` (softmax over the classes, the paper's) or
            `"one_vs_rest"` (binary cross-entropy of each class's logit against whether the image is of that class,
            summed over the classes, averaged over the images). Inference is the same either way (logits, softmax).
            `problem_type="multi_label_classification"` is binary cross-entropy on multi-hot targets already and
            takes the default only.
        class_chunk_size (`int`, *optional*, defaults to 1024):
            How many class-prompt rows the last layer computes at once. Chunking bounds the memory of the last layer
            at large C (no `(batch, C, heads, patches)` tensor is formed) and changes no number.
        num_labels, id2label, label2id:
            The classes; one prompt is learned per class. At least 2 (`num_labels=1`, transformers' regression
            head, has no classes to give prompts to and is refused).
        problem_type (`str`, *optional*):
            As in transformers: `"single_label_classification"` (integer labels `(batch_size,)`, cross-entropy; the
            default when labels are integers) or `"multi_label_classification"` (float multi-hot labels
            `(batch_size, num_labels)`, binary cross-entropy on each class's logit). `"regression"` is refused.

    Example:

    ```python
    >>> from transformers import AutoConfig
    >>> from modeling_promptcam import PromptCamConfig, PromptCamForImageClassification

    >>> config = PromptCamConfig(backbone_config={"model_type": "dinov2"}, num_labels=200)
    >>> model = PromptCamForImageClassification(config)
    ```
    """

    model_type = "prompt_cam"
    sub_configs = {"backbone_config": AutoConfig}

    def __init__(
        self,
        backbone_config: PreTrainedConfig | dict | None = None,
        prompt_mode: str = "deep",
        prompt_dropout: float = 0.0,
        drop_path_rate: float = 0.0,
        initializer_range: float = 0.02,
        num_agnostic_prompts: int | None = None,
        class_chunk_size: int = 1024,
        classification_loss: str = "cross_entropy",
        **kwargs,
    ):
        self.backbone_config = _resolve_backbone_config(backbone_config)
        self.prompt_mode = prompt_mode
        self.prompt_dropout = prompt_dropout
        self.drop_path_rate = drop_path_rate
        self.initializer_range = initializer_range
        self.num_agnostic_prompts = num_agnostic_prompts
        self.class_chunk_size = class_chunk_size
        self.classification_loss = classification_loss
        saved_pipelines = kwargs.pop("custom_pipelines", None) or {}
        super().__init__(**kwargs)
        self._validate_promptcam()
        # Saved folders always name the pipeline code (see `to_dict`). Where the task is registered in this process
        # (`import modeling_promptcam` does it), the attribute is left out: transformers would otherwise insist on
        # trust_remote_code for a pipeline the installed package already provides.
        # copies: transformers' pipeline() rewrites the entry it uses in place
        pipelines = {**saved_pipelines, **copy.deepcopy(PROMPT_CAM_CUSTOM_PIPELINES)}
        if _prompt_cam_task_registered():
            pipelines = {task: spec for task, spec in pipelines.items() if task not in PROMPT_CAM_CUSTOM_PIPELINES}
        if pipelines:
            self.custom_pipelines = pipelines

    def _validate_promptcam(self) -> None:
        if self.prompt_mode not in PROMPT_MODES:
            raise ValueError(f"prompt_mode must be one of {PROMPT_MODES}, got {self.prompt_mode!r}.")
        for name in ("prompt_dropout", "drop_path_rate"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0.0 <= value < 1.0:
                raise ValueError(f"{name} must be a number in [0, 1), got {value!r}.")
        if not isinstance(self.initializer_range, (int, float)) or self.initializer_range <= 0:
            raise ValueError(f"initializer_range must be a positive number, got {self.initializer_range!r}.")
        for name in ("num_agnostic_prompts", "class_chunk_size"):
            value = getattr(self, name)
            if name == "num_agnostic_prompts" and value is None:
                continue
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                unset = " (or None for the paper's C prompts per layer)" if name == "num_agnostic_prompts" else ""
                raise ValueError(f"{name} must be an integer >= 1{unset}, got {value!r}.")
        if self.num_agnostic_prompts is not None and self.prompt_mode != "deep":
            raise ValueError(
                f"num_agnostic_prompts={self.num_agnostic_prompts} does not apply to prompt_mode={self.prompt_mode!r}: "
                "shallow mode has no class-agnostic prompts (its C class prompts enter layer 1 and flow through every "
                "layer). Leave num_agnostic_prompts unset, or use prompt_mode='deep'."
            )
        if self.num_labels is None or self.num_labels < 2:
            regression = " (num_labels=1 is transformers' regression head, which Prompt-CAM does not provide)"
            raise ValueError(
                f"Prompt-CAM learns one prompt per class and needs at least 2 classes, got num_labels={self.num_labels}"
                f"{regression if self.num_labels == 1 else ''}. Pass num_labels=... or id2label={{0: 'name', ...}}."
            )
        if self.problem_type is not None and self.problem_type not in PROBLEM_TYPES:
            raise ValueError(
                f"problem_type={self.problem_type!r} is not supported: Prompt-CAM learns one prompt per class (at "
                f"least two classes) and scores each, so it classifies; use one of {PROBLEM_TYPES} (or leave it unset)."
            )
        if self.classification_loss not in CLASSIFICATION_LOSSES:
            raise ValueError(
                f"classification_loss must be one of {', '.join(CLASSIFICATION_LOSSES)}, got {self.classification_loss!r}."
            )
        if self.classification_loss != "cross_entropy" and self.problem_type == "multi_label_classification":
            raise ValueError(
                f"classification_loss={self.classification_loss!r} applies to integer labels; "
                "problem_type='multi_label_classification' is binary cross-entropy on multi-hot targets already: "
                "leave classification_loss at 'cross_entropy' (its default)."
            )
        self._validate_class_names()
        backbone_drop_path = getattr(self.backbone_config, "drop_path_rate", 0.0) or 0.0
        if backbone_drop_path:
            raise ValueError(
                f"backbone_config.drop_path_rate={backbone_drop_path} is not used by Prompt-CAM's forward pass; set "
                "PromptCamConfig(drop_path_rate=...) instead and leave the backbone's at 0."
            )

    def _validate_class_names(self) -> None:
        """`id2label` numbers the classes 0..num_labels-1 with distinct names, and `label2id` is its inverse.

        A gap or a duplicate name would load and then fail (or answer the same label twice) in the pipelines, so it
        is refused here, naming the entries. A missing `label2id` is derived from `id2label`.
        """
        class_ids = sorted(self.id2label)
        missing = sorted(set(range(self.num_labels)) - set(class_ids))
        if missing:
            out_of_range = [class_id for class_id in class_ids if not 0 <= class_id < self.num_labels]
            raise ValueError(
                f"id2label must number its {self.num_labels} classes 0..{self.num_labels - 1} without gaps, but ids "
                f"{missing} are missing and {out_of_range} are out of range (ids given: {class_ids}). Renumber the "
                "classes consecutively from 0."
            )
        ids_of_name: dict[str, list[int]] = {}
        for class_id in class_ids:
            ids_of_name.setdefault(self.id2label[class_id], []).append(class_id)
        duplicates = {name: ids for name, ids in ids_of_name.items() if len(ids) > 1}
        if duplicates:
            listed = "; ".join(f"{name!r} for ids {ids}" for name, ids in duplicates.items())
            raise ValueError(
                f"id2label gives the same class name to several classes ({listed}); the predictions could not be told "
                "apart. Give every class its own name."
            )
        expected = {name: class_id for class_id, name in self.id2label.items()}
        if self.label2id is None:
            self.label2id = expected
            return
        if len(self.label2id) != self.num_labels:
            raise ValueError(
                f"label2id has {len(self.label2id)} entries but there are {self.num_labels} classes (id2label); "
                "give both maps for the same classes."
            )
        # JSON and older saves may hold the ids as strings ("0"); they name the same class
        mismatched = {
            name: class_id for name, class_id in self.label2id.items() if str(expected.get(name)) != str(class_id)
        }
        if mismatched:
            listed = "; ".join(
                f"label2id[{name!r}] = {class_id!r} but "
                + (
                    f"id2label gives {name!r} the id {expected[name]}"
                    if name in expected
                    else "id2label has no such class"
                )
                for name, class_id in mismatched.items()
            )
            raise ValueError(
                f"label2id disagrees with id2label: {listed}. Give label2id as the inverse of id2label "
                "({name: id for id, name in id2label.items()}), or leave it out to have it derived."
            )

    @property
    def num_prompt_layers(self) -> int:
        """How many layers receive their own prompts: all of them in deep mode, the first one in shallow mode."""
        return self.backbone_config.num_hidden_layers if self.prompt_mode == "deep" else 1

    def to_dict(self) -> dict:
        output = super().to_dict()
        output["backbone_config"] = self.backbone_config.to_dict()
        output["custom_pipelines"] = {
            **output.get("custom_pipelines", {}),
            **copy.deepcopy(PROMPT_CAM_CUSTOM_PIPELINES),
        }
        return output


# `from_pretrained` keywords that say where the files are (they go to the config reader too)
_HUB_KWARGS = ("cache_dir", "force_download", "proxies", "token", "revision", "local_files_only", "subfolder")
# `from_pretrained` keywords that describe the Prompt-CAM config to build around a stock backbone folder
_PROMPT_CAM_KWARGS = (
    "num_labels",
    "id2label",
    "label2id",
    "problem_type",
    "prompt_mode",
    "prompt_dropout",
    "drop_path_rate",
    "initializer_range",
    "num_agnostic_prompts",
    "class_chunk_size",
    "classification_loss",
)


def config_for_backbone_folder(pretrained_model_name_or_path, kwargs: dict) -> tuple[PromptCamConfig | None, dict]:
    """The config to load a folder with when `from_pretrained` got no `config=`, and the keywords left for it.

    A Prompt-CAM folder: `(None, kwargs)`, transformers reads its own config. A stock backbone folder of a supported
    family (its `config.json` has `model_type` "vit", "dinov2", ..., or a full "clip" / "siglip"): a
    `PromptCamConfig` whose backbone is that folder's config, with the classes (`num_labels` or `id2label`, required)
    and any other Prompt-CAM settings taken from the call's keywords. Anything else is refused with a message saying
    to pass `config=PromptCamConfig(...)`.
    """
    hub_kwargs = {key: kwargs[key] for key in _HUB_KWARGS if key in kwargs}
    folder_config, _ = PreTrainedConfig.get_config_dict(pretrained_model_name_or_path, **hub_kwargs)
    model_type = folder_config.get("model_type")
    if model_type == PromptCamConfig.model_type:
        return None, kwargs
    if model_type not in SUPPORTED_BACKBONE_TYPES and model_type not in VISION_TOWER_OF:
        raise ValueError(
            f"{pretrained_model_name_or_path!s} holds a {model_type!r} checkpoint, neither a Prompt-CAM folder nor a "
            f"backbone Prompt-CAM supports ({', '.join(SUPPORTED_BACKBONE_TYPES)}, or a full CLIP / SigLIP model). "
            "Pass config=PromptCamConfig(backbone_config=..., num_labels=...) for a backbone of a supported family."
        )
    settings = {key: kwargs[key] for key in _PROMPT_CAM_KWARGS if key in kwargs}
    if "num_labels" not in settings and "id2label" not in settings:
        raise ValueError(
            f"{pretrained_model_name_or_path!s} is a stock {model_type!r} backbone, not a Prompt-CAM folder, and "
            "the classes to learn prompts for are not given: pass num_labels=... or id2label={0: 'name', ...} "
            "(the backbone's config is used as it is), or config=PromptCamConfig(backbone_config=..., num_labels=...)."
        )
    remaining = {key: value for key, value in kwargs.items() if key not in _PROMPT_CAM_KWARGS}
    return PromptCamConfig(backbone_config=folder_config, **settings), remaining


def _prompt_cam_task_registered() -> bool:
    from transformers.pipelines import PIPELINE_REGISTRY

    return "prompt-cam" in PIPELINE_REGISTRY.get_supported_tasks()


def _resolve_backbone_config(backbone_config: PreTrainedConfig | dict | None) -> PreTrainedConfig:
    """Turn `backbone_config` (object, dict with `model_type`, or None) into a supported backbone config object."""
    if backbone_config is None:
        backbone_config = {"model_type": "dinov2"}
    if isinstance(backbone_config, dict) and backbone_config.get("model_type") in VISION_TOWER_OF:
        vision = backbone_config.get("vision_config") or {}
        backbone_config = {**vision, "model_type": VISION_TOWER_OF[backbone_config["model_type"]]}
    if isinstance(backbone_config, PreTrainedConfig) and backbone_config.model_type in VISION_TOWER_OF:
        backbone_config = backbone_config.vision_config  # a full CLIP / SigLIP config: its vision tower
    if isinstance(backbone_config, dict):
        model_type = backbone_config.get("model_type")
        if model_type not in SUPPORTED_BACKBONE_TYPES:
            raise ValueError(
                f"Unsupported backbone model_type {model_type!r} in backbone_config; Prompt-CAM supports "
                f"{', '.join(SUPPORTED_BACKBONE_TYPES)}. Give a dict with one of these as 'model_type' or a config object."
            )
        fields = {key: value for key, value in backbone_config.items() if key != "model_type"}
        backbone_config = AutoConfig.for_model(model_type, **fields)
    if not isinstance(backbone_config, PreTrainedConfig):
        raise ValueError(
            f"backbone_config must be a transformers config object or a dict, got {type(backbone_config).__name__}."
        )
    if backbone_config.model_type not in SUPPORTED_BACKBONE_TYPES:
        raise ValueError(
            f"Unsupported backbone type {backbone_config.model_type!r} ({type(backbone_config).__name__}); Prompt-CAM "
            f"supports {', '.join(SUPPORTED_BACKBONE_TYPES)}."
        )
    return backbone_config


__all__ = ["PromptCamConfig", "SUPPORTED_BACKBONE_TYPES", "config_for_backbone_folder"]
