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


@pytest.mark.parametrize(
    "id2label, label2id, message",
    [
        # gaps and out-of-range ids: name the missing and the stray ids
        ({0: "a", 2: "b", 5: "c"}, None, r"without gaps.*ids \[1\] are missing and \[5\] are out of range"),
        ({1: "a", 2: "b"}, None, r"ids \[0\] are missing and \[2\] are out of range.*Renumber"),
        ({0: "a", -1: "b", 2: "c"}, None, r"ids \[1\] are missing and \[-1\] are out of range"),
        # duplicate names: name each repeated name with its ids
        ({0: "a", 1: "a", 2: "b"}, None, r"same class name.*'a' for ids \[0, 1\].*its own name"),
        ({0: "x", 1: "y", 2: "x", 3: "y"}, None, r"'x' for ids \[0, 2\]; 'y' for ids \[1, 3\]"),
        # label2id that is not the inverse of id2label
        ({0: "a", 1: "b"}, {"a": 1, "b": 0}, r"label2id\['a'\] = 1 but id2label gives 'a' the id 0.*inverse"),
        ({0: "a", 1: "b"}, {"a": 0, "c": 1}, r"label2id\['c'\] = 1 but id2label has no such class"),
        ({0: "a", 1: "b", 2: "c"}, {"a": 0, "b": 1}, "label2id has 2 entries but there are 3 classes"),
    ],
)
def test_inconsistent_class_maps_are_refused_naming_the_entries(id2label, label2id, message):
    with pytest.raises(ValueError, match=message):
        PromptCamConfig(id2label=id2label, label2id=label2id)


def test_label2id_is_derived_and_string_ids_from_json_are_accepted(tmp_path):
    names = {0: "a", 1: "b", 2: "c"}
    assert PromptCamConfig(id2label=names).label2id == {"a": 0, "b": 1, "c": 2}
    # JSON keys are strings; older saves may hold label2id's ids as strings too: the same classes
    config = PromptCamConfig(id2label={"0": "a", "1": "b", "2": "c"}, label2id={"a": "0", "b": "1", "c": "2"})
    assert config.id2label == names
    # defaults built by transformers from num_labels are consistent
    assert PromptCamConfig(num_labels=4).label2id == {f"LABEL_{i}": i for i in range(4)}


@pytest.mark.parametrize(
    "id2label, message",
    [({"0": "a", "2": "b", "5": "c"}, "without gaps"), ({"0": "a", "1": "a", "2": "b"}, "same class name")],
)
def test_a_saved_config_with_bad_class_names_is_refused_on_load(tmp_path, id2label, message):
    PromptCamConfig(num_labels=3).save_pretrained(tmp_path)
    stored = json.loads((tmp_path / "config.json").read_text())
    stored["id2label"] = id2label
    stored["label2id"] = {name: int(class_id) for class_id, name in id2label.items()}
    (tmp_path / "config.json").write_text(json.dumps(stored))
    with pytest.raises(ValueError, match=message):
        PromptCamConfig.from_pretrained(tmp_path)
