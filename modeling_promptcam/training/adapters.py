"""Prompt-only checkpoints in PEFT's format.

PEFT 0.21 cannot register a new adapter type, and its prompt-learning methods expect text embeddings. What works,
and what is used here: a LoRA config whose target modules are PEFT's dummy placeholder (so no LoRA layer is
created) with `modules_to_save=["prompt_head"]`. PEFT then trains and saves exactly Prompt-CAM's prompt head
(prompts and scoring vector), which is why `adapter_config.json` says `"peft_type": "LORA"` although the folder holds
no LoRA weights. The adapter folder also carries `promptcam_config.json` (classes, prompt mode, backbone config) so
that it can be rebuilt into a plain model on the recorded backbone.
"""

from __future__ import annotations

import json
import os

from ..configuration_promptcam import PromptCamConfig
from ..extras import require
from ..files import write_json_atomically
from ..modeling_promptcam import PromptCamForImageClassification

PROMPT_MODULE = "prompt_head"
PROMPTCAM_CONFIG_FILE = "promptcam_config.json"
ADAPTER_CONFIG_FILE = "adapter_config.json"


def _peft():
    return require("peft", "peft", "A prompt-only checkpoint")


def wrap_for_prompt_training(model: PromptCamForImageClassification, backbone: str | None = None):
    """A `PeftModel` that trains and saves only the prompt head. `backbone` is recorded as the base model."""
    peft = _peft()
    from peft.utils.constants import DUMMY_TARGET_MODULES

    config = peft.LoraConfig(target_modules=DUMMY_TARGET_MODULES, modules_to_save=[PROMPT_MODULE])
    wrapped = peft.get_peft_model(model, config)
    if backbone is not None:
        wrapped.peft_config["default"].base_model_name_or_path = backbone
    return wrapped


def save_prompt_adapter(peft_model, directory: str) -> None:
    """Save the adapter (PEFT's files) plus the Prompt-CAM config needed to rebuild the model."""
    peft_model.save_pretrained(directory)
    base = peft_model.get_base_model()
    write_json_atomically(os.path.join(directory, PROMPTCAM_CONFIG_FILE), base.config.to_dict())


def load_prompt_adapter(directory: str, backbone: str | None = None) -> PromptCamForImageClassification:
    """Rebuild a plain [`PromptCamForImageClassification`] from a prompt adapter folder.

    Args:
        directory: a folder written with `--save-prompts-only` (or [`save_prompt_adapter`]).
        backbone: the backbone checkpoint to load under the prompts; default: the one recorded at training time.
    """
    peft = _peft()
    config_path = os.path.join(directory, PROMPTCAM_CONFIG_FILE)
    adapter_path = os.path.join(directory, ADAPTER_CONFIG_FILE)
    for path in (config_path, adapter_path):
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"{directory} is not a Prompt-CAM adapter folder: {os.path.basename(path)} is missing."
            )
    with open(config_path, encoding="utf-8") as handle:
        config = PromptCamConfig.from_dict(json.load(handle))
    if backbone is None:
        with open(adapter_path, encoding="utf-8") as handle:
            backbone = json.load(handle).get("base_model_name_or_path")
        if not backbone:
            raise ValueError(f"{directory} does not record its backbone; pass backbone=<checkpoint> explicitly.")
    from .backbone import BACKBONE_KEY_MAPPING

    base = PromptCamForImageClassification.from_pretrained(backbone, config=config, key_mapping=BACKBONE_KEY_MAPPING)
    model = peft.PeftModel.from_pretrained(base, directory).merge_and_unload()
    model.backbone.requires_grad_(False)
    return model.eval()


def merge_prompt_adapter(
    directory: str, output_dir: str, backbone: str | None = None
) -> PromptCamForImageClassification:
    """Write a standalone full checkpoint (weights, config, code, image processor) from a prompt adapter folder."""
    from transformers import AutoImageProcessor

    model = load_prompt_adapter(directory, backbone)
    processor = None
    if os.path.isfile(os.path.join(directory, "preprocessor_config.json")):
        processor = AutoImageProcessor.from_pretrained(directory)
    model.save_pretrained(output_dir, image_processor=processor)
    return model


__all__ = ["load_prompt_adapter", "merge_prompt_adapter", "save_prompt_adapter", "wrap_for_prompt_training"]
