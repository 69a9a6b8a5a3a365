import json

import pytest
from transformers import AutoConfig, BertConfig, Dinov2Config, ViTConfig

from modeling_promptcam import PromptCamConfig
from tests.helpers.models import ALL_FAMILIES, tiny_backbone_config


def test_defaults_follow_the_paper():
    config = PromptCamConfig(num_labels=200)
    assert config.model_type == "prompt_cam"
    assert config.prompt_mode == "deep"
    assert isinstance(config.backbone_config, Dinov2Config)
    assert config.num_prompt_layers == config.backbone_config.num_hidden_layers
    assert PromptCamConfig(num_labels=3, prompt_mode="shallow").num_prompt_layers == 1


@pytest.mark.parametrize("family", ALL_FAMILIES)
def test_backbone_config_as_object_or_dict_round_trips(tmp_path, family):
    backbone = tiny_backbone_config(family)
    from_object = PromptCamConfig(backbone_config=backbone, num_labels=3, prompt_mode="shallow", prompt_dropout=0.1)
    from_dict = PromptCamConfig(backbone_config=backbone.to_dict(), num_labels=3, prompt_mode="shallow")
    assert type(from_dict.backbone_config) is type(backbone)
    assert from_dict.backbone_config.hidden_size == 32

    from_object.save_pretrained(tmp_path)
    stored = json.loads((tmp_path / "config.json").read_text())
    assert stored["backbone_config"]["model_type"] == family
    reloaded = PromptCamConfig.from_pretrained(tmp_path)
    assert type(reloaded.backbone_config) is type(backbone)
    assert reloaded.backbone_config.to_dict() == from_object.backbone_config.to_dict()
    assert (reloaded.prompt_mode, reloaded.prompt_dropout, reloaded.num_labels) == ("shallow", 0.1, 3)
    # the Auto class knows the type once the package is imported
    assert isinstance(AutoConfig.from_pretrained(tmp_path), PromptCamConfig)


def test_class_names_round_trip(tmp_path):
    names = {0: "Black_footed_Albatross", 1: "Laysan_Albatross", 2: "Sooty_Albatross"}
    config = PromptCamConfig(backbone_config=ViTConfig(), id2label=names, label2id={v: k for k, v in names.items()})
    config.save_pretrained(tmp_path)
    reloaded = PromptCamConfig.from_pretrained(tmp_path)
    assert reloaded.num_labels == 3
    assert reloaded.id2label == names
    assert reloaded.label2id["Sooty_Albatross"] == 2


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"backbone_config": BertConfig()}, "Unsupported backbone type 'bert'.*vit, dinov2, dinov2_with_registers"),
        ({"backbone_config": {"model_type": "swin"}}, "Unsupported backbone model_type 'swin'.*vit, dinov2"),
        ({"backbone_config": {"hidden_size": 8}}, "Unsupported backbone model_type None"),
        ({"backbone_config": 12}, "must be a transformers config object or a dict"),
        ({"prompt_mode": "partial"}, "prompt_mode must be one of"),
        ({"prompt_dropout": 1.0}, r"prompt_dropout must be a number in \[0, 1\)"),
        ({"prompt_dropout": -0.1}, r"prompt_dropout must be a number in \[0, 1\)"),
        ({"drop_path_rate": "0.1"}, r"drop_path_rate must be a number in \[0, 1\)"),
        ({"initializer_range": 0}, "initializer_range must be a positive number"),
        ({"num_labels": 1}, "needs at least 2 classes"),
        ({"backbone_config": Dinov2Config(drop_path_rate=0.1)}, "PromptCamConfig\\(drop_path_rate=...\\) instead"),
    ],
)
def test_bad_values_are_refused_with_a_clear_message(kwargs, message):
    kwargs = {"num_labels": 3, **kwargs}
    with pytest.raises(ValueError, match=message):
        PromptCamConfig(**kwargs)


def test_a_full_clip_or_siglip_config_gives_its_vision_tower():
    from transformers import CLIPConfig

    assert (
        PromptCamConfig(backbone_config=CLIPConfig(), num_labels=3).backbone_config.model_type == "clip_vision_model"
    )
    as_dict = PromptCamConfig(backbone_config={"model_type": "siglip"}, num_labels=3)
    assert as_dict.backbone_config.model_type == "siglip_vision_model"
