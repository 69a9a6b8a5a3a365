"""hub_configs/: each released (backbone, dataset) pair says what its converted checkpoint needs."""

import json
from pathlib import Path

import pytest
import torch

from modeling_promptcam import promptcam_image_processor
from modeling_promptcam.convert import infer_official_config

HUB_CONFIGS = sorted((Path(__file__).resolve().parents[1] / "hub_configs").glob("*.json"))


def meta_official_state_dict(family: str, num_classes: int, patch: int, image_size: int = 224, width: int = 768):
    """Shapes of a released ViT-B checkpoint, without memory (meta tensors): enough for the config inference."""
    grid = image_size // patch
    shapes = {
        "cls_token": (1, 1, width),
        "pos_embed": (1, grid * grid + 1, width),
        "patch_embed.proj.weight": (width, 3, patch, patch),
        "patch_embed.proj.bias": (width,),
        "norm.weight": (width,),
        "norm.bias": (width,),
        "head.weight": (1, width),
        "head.bias": (1,),
        "vpt.prompt_embeddings": (12, num_classes, width),
    }
    for i in range(12):
        block = {
            "norm1.weight": (width,),
            "norm1.bias": (width,),
            "attn.qkv.weight": (3 * width, width),
            "attn.qkv.bias": (3 * width,),
            "attn.proj.weight": (width, width),
            "attn.proj.bias": (width,),
            "norm2.weight": (width,),
            "norm2.bias": (width,),
            "mlp.fc1.weight": (4 * width, width),
            "mlp.fc1.bias": (4 * width,),
            "mlp.fc2.weight": (width, 4 * width),
            "mlp.fc2.bias": (width,),
        }
        if family == "dinov2":
            block.update({"ls1.gamma": (width,), "ls2.gamma": (width,)})
        shapes.update({f"blocks.{i}.{key}": shape for key, shape in block.items()})
    return {key: torch.empty(shape, device="meta") for key, shape in shapes.items()}


@pytest.mark.parametrize("path", HUB_CONFIGS, ids=lambda p: p.stem)
def test_hub_configs_describe_what_the_conversion_reads_from_a_released_checkpoint(path):
    hub = json.loads(path.read_text())
    assert path.stem == hub["name"]
    backbone, dataset, recipe = hub["backbone"], hub["dataset"], hub["recipe"]
    state_dict = meta_official_state_dict(backbone["family"], dataset["num_classes"], backbone["patch_size"])
    config = infer_official_config(state_dict, num_heads=backbone["num_heads"], backbone=backbone["family"])
    assert config.backbone_config.model_type == backbone["transformers_model_type"]
    assert config.num_labels == dataset["num_classes"]
    assert config.backbone_config.image_size == hub["image_processor"]["image_size"] == 224
    assert (config.prompt_dropout, config.drop_path_rate) == (recipe["prompt_dropout"], recipe["drop_path_rate"])
    assert f"--backbone {backbone['family']}" in hub["convert"]
    # the saved image processor of a converted model is the one the hub config states
    processor = promptcam_image_processor(config)
    assert [processor.size["height"], processor.size["width"]] == hub["image_processor"]["resize"]
    assert list(processor.image_mean) == hub["image_processor"]["image_mean"]
    assert list(processor.image_std) == hub["image_processor"]["image_std"]
    assert processor.crop_size is None or not getattr(processor, "do_center_crop", False)
    assert 0 < hub["published_top1_accuracy"] < 100
    for key in ("learning_rate", "epochs", "warmup_epochs", "batch_size", "weight_decay", "momentum", "lr_min"):
        assert isinstance(recipe[key], (int, float)), key


BACKBONE_CONFIGS = sorted((Path(__file__).resolve().parents[1] / "hub_configs" / "backbones").glob("*.json"))


@pytest.mark.parametrize("path", BACKBONE_CONFIGS, ids=lambda p: p.stem)
def test_backbone_entries_name_supported_families(path):
    from modeling_promptcam import SUPPORTED_BACKBONE_TYPES

    entry = json.loads(path.read_text())
    assert path.stem == entry["name"]
    assert entry["transformers_model_type"] in SUPPORTED_BACKBONE_TYPES
    assert entry["train"].startswith("promptcam train --backbone ")
    assert len(BACKBONE_CONFIGS) >= 7
