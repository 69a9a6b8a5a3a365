"""Prompt-CAM for transformers: interpretable fine-grained classification with frozen Vision Transformers.

Importing the package registers `PromptCamConfig` / `PromptCamForImageClassification` with the Auto classes, so
folders saved by this package load with `AutoModel*.from_pretrained(...)` and `pipeline(...)` without
`trust_remote_code`. Saved folders also carry the model code for users who only have the Hub.
"""

from transformers import AutoConfig, AutoModel, AutoModelForImageClassification
from transformers.pipelines import PIPELINE_REGISTRY

from .configuration_promptcam import SUPPORTED_BACKBONE_TYPES, PromptCamConfig
from .modeling_promptcam import (
    BLUR_MODES,
    PromptCamForImageClassification,
    PromptCamImageClassifierOutput,
    PromptCamPreTrainedModel,
    PromptCamPromptHead,
    TraitRanking,
    promptcam_image_processor,
)
from .pipeline_promptcam import PROMPT_CAM_TASK, PromptCamImageClassificationPipeline


def load_prompt_adapter(directory: str, backbone: str | None = None) -> PromptCamForImageClassification:
    """Rebuild a plain model from a prompt-only (PEFT) folder; see `modeling_promptcam.adapters` (needs peft)."""
    from .training.adapters import load_prompt_adapter as load

    return load(directory, backbone)


def merge_prompt_adapter(
    directory: str, output_dir: str, backbone: str | None = None
) -> PromptCamForImageClassification:
    """Write a standalone full checkpoint from a prompt-only folder; see `modeling_promptcam.adapters`."""
    from .training.adapters import merge_prompt_adapter as merge

    return merge(directory, output_dir, backbone)


def __getattr__(name: str):
    # the taxonomy room needs the training room (and peft to load): imported on first use, not with the package
    if name == "PromptCamTaxonomy":
        from .taxonomy.model import PromptCamTaxonomy

        return PromptCamTaxonomy
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__version__ = "0.1.0"

AutoConfig.register(PromptCamConfig.model_type, PromptCamConfig, exist_ok=True)
AutoModel.register(PromptCamConfig, PromptCamForImageClassification, exist_ok=True)
AutoModelForImageClassification.register(PromptCamConfig, PromptCamForImageClassification, exist_ok=True)
PIPELINE_REGISTRY.register_pipeline(
    PROMPT_CAM_TASK,
    pipeline_class=PromptCamImageClassificationPipeline,
    pt_model=AutoModelForImageClassification,
    type="image",
)
# saved folders carry the code and an auto_map, for loading with trust_remote_code where the package is absent
PromptCamConfig.register_for_auto_class()
PromptCamForImageClassification.register_for_auto_class("AutoModelForImageClassification")

__all__ = [
    "BLUR_MODES",
    "PROMPT_CAM_TASK",
    "SUPPORTED_BACKBONE_TYPES",
    "PromptCamImageClassificationPipeline",
    "TraitRanking",
    "load_prompt_adapter",
    "merge_prompt_adapter",
    "PromptCamConfig",
    "PromptCamForImageClassification",
    "PromptCamImageClassifierOutput",
    "PromptCamPreTrainedModel",
    "PromptCamPromptHead",
    "PromptCamTaxonomy",
    "promptcam_image_processor",
]
