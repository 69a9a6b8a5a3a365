"""A new Prompt-CAM model on a stock backbone checkpoint: the stock weights load unchanged under `backbone.*`, the
prompts and head are initialised. Shared by training and by prompt-only adapters, which rebuild on the backbone."""

from __future__ import annotations

from ..configuration_promptcam import PromptCamConfig
from ..modeling_promptcam import PromptCamForImageClassification
from .options import TrainOptions
from .recipe import Recipe

# A stock ViTForImageClassification / Dinov2ForImageClassification checkpoint keeps its backbone under a prefix.
BACKBONE_KEY_MAPPING = {r"^(vit|dinov2|dinov2_with_registers)\.": "backbone."}


def build_model(
    options: TrainOptions, recipe: Recipe, class_names: list[str]
) -> tuple[PromptCamForImageClassification, Recipe]:
    """Load the stock backbone weights into a new Prompt-CAM model for these classes; returns it and the recipe with
    the backbone family's regularisers filled in."""
    from transformers import AutoConfig

    backbone_config = AutoConfig.from_pretrained(options.backbone)
    if getattr(backbone_config, "model_type", None) == "vit" and backbone_config.image_size != recipe.image_size:
        raise ValueError(
            f"The ViT backbone {options.backbone} takes {backbone_config.image_size} px images but the recipe uses "
            f"{recipe.image_size}; pass --image-size {backbone_config.image_size}. (DINOv2 backbones take any size.)"
        )
    recipe = recipe.resolved(getattr(backbone_config, "model_type", ""))
    config = PromptCamConfig(
        backbone_config=backbone_config,  # any other type is refused here, naming the supported ones
        id2label=dict(enumerate(class_names)),
        label2id={name: index for index, name in enumerate(class_names)},
        prompt_mode=recipe.prompt_mode,
        num_agnostic_prompts=recipe.num_agnostic_prompts,
        classification_loss=recipe.classification_loss,
        prompt_dropout=recipe.prompt_dropout,
        drop_path_rate=recipe.drop_path_rate,
    )
    model, info = PromptCamForImageClassification.from_pretrained(
        options.backbone, config=config, key_mapping=BACKBONE_KEY_MAPPING, output_loading_info=True
    )
    missing_backbone = [key for key in info["missing_keys"] if key.startswith("backbone.") and "mask_token" not in key]
    if missing_backbone:
        raise ValueError(
            f"{options.backbone}: {len(missing_backbone)} backbone weights were not in the checkpoint (e.g. "
            f"{missing_backbone[0]}); give a checkpoint of a supported backbone (ViT, DINOv2, DINOv3, CLIP, SigLIP) such as facebook/dino-vitb16 or facebook/dinov2-base."
        )
    return model, recipe
