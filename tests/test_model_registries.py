"""The model file's registries: blur modes, stop rules and backbone drivers, and the names derived from them."""

import re
import warnings

import pytest
import torch

from modeling_promptcam import PromptCamImageClassificationPipeline
from modeling_promptcam import modeling_promptcam as modeling
from modeling_promptcam.configuration_promptcam import SUPPORTED_BACKBONE_TYPES
from modeling_promptcam.modeling_promptcam import (
    BACKBONE_DRIVERS,
    BLUR_MODE_TABLE,
    STOP_RULES,
    BackboneDriver,
    BackboneFamily,
    PromptCamForImageClassification,
    parse_stop_rule,
    register_blur_mode,
    register_stop_rule,
)
from tests.helpers.models import ALL_FAMILIES, IMAGE_SIZE, _final_norm, _layers, _prefix_tokens, tiny_model

# ------------------------------------------------------------------------------------------------- blur modes


def test_blur_modes_are_the_names_of_the_table_in_order():
    assert modeling.BLUR_MODES == tuple(BLUR_MODE_TABLE) == ("paper", "official", "spatial")
    for name, mode in BLUR_MODE_TABLE.items():
        assert mode.name == name
        assert mode.description and "\n" not in mode.description


def test_every_blur_mode_and_stop_rule_is_documented():
    ranking_doc = PromptCamForImageClassification.rank_traits.__doc__
    pipeline_doc = PromptCamImageClassificationPipeline.__doc__
    for mode in BLUR_MODE_TABLE.values():
        assert f'`"{mode.name}"`: {mode.description}.' in ranking_doc
        assert f'`"{mode.name}"`' in pipeline_doc
    for rule in STOP_RULES.values():
        assert f"{rule.description}." in ranking_doc
    assert '`"misclassified"`' in pipeline_doc
    assert "{blur_modes}" not in ranking_doc and "{stop_rules}" not in ranking_doc


def test_the_apps_blur_labels_come_from_the_table():
    from modeling_promptcam.app.explorer import BLUR_LABELS

    assert tuple(BLUR_LABELS) == modeling.BLUR_MODES
    for name, label in BLUR_LABELS.items():
        assert label.startswith(name) and BLUR_MODE_TABLE[name].description in label


@pytest.fixture
def scratch_registries(monkeypatch):
    """Registrations made in a test are undone afterwards."""
    monkeypatch.setattr(modeling, "BLUR_MODE_TABLE", dict(modeling.BLUR_MODE_TABLE))
    monkeypatch.setattr(modeling, "BLUR_MODES", modeling.BLUR_MODES)
    monkeypatch.setattr(modeling, "STOP_RULES", dict(modeling.STOP_RULES))


def test_a_registered_blur_mode_is_picked_up_by_blur_modes_and_rank_traits(scratch_registries):
    @register_blur_mode("unchanged", "the head's own output (blurring changes nothing)")
    def keep_heads(weights, values, first_patch):
        return torch.matmul(weights, values)[:, :, 0]

    assert modeling.BLUR_MODES == ("paper", "official", "spatial", "unchanged")
    model = tiny_model("dinov2_with_registers", num_labels=4)
    pixel_values = torch.randn(2, 3, IMAGE_SIZE, IMAGE_SIZE, generator=torch.Generator().manual_seed(2))
    for ranking in model.rank_traits(pixel_values, blur="unchanged", stop=2):
        # no candidate changes the score: every step ties, and ties go to the lower head index
        assert ranking.blur == "unchanged"
        assert ranking.blur_order == [0, 1, 2, 3] and ranking.top_traits == [3, 2]
        torch.testing.assert_close(
            torch.tensor(ranking.target_scores), torch.full((4,), ranking.initial_score), atol=1e-5, rtol=0
        )
    with pytest.raises(ValueError, match=re.escape("one of paper, official, spatial, unchanged, got 'gaussian'")):
        model.rank_traits(pixel_values, blur="gaussian")
    with pytest.raises(ValueError, match="blur mode named 'paper' is already registered"):
        register_blur_mode("paper", "again")(keep_heads)


def test_a_registered_stop_rule_is_accepted_by_the_reader_and_rank_traits(scratch_registries):
    @register_stop_rule("all", "every head")
    def all_heads(ranked_heads, misclassified_after, stop):
        return list(ranked_heads)

    assert parse_stop_rule("all", 4) == "all"
    with pytest.raises(ValueError, match=re.escape("stop must be 'misclassified' or 'all' or an integer in [1, 4]")):
        parse_stop_rule("some", 4)
    model = tiny_model("vit")
    ranking = model.rank_traits(torch.randn(1, 3, IMAGE_SIZE, IMAGE_SIZE), stop="all")[0]
    assert ranking.stop == "all" and ranking.top_traits == ranking.ranked_heads and len(ranking.top_traits) == 4
    with pytest.raises(ValueError, match="stop rule named 'misclassified' is already registered"):
        register_stop_rule("misclassified", "again")(all_heads)


# ------------------------------------------------------------------------------------------------- stop rules


@pytest.mark.parametrize(
    "value, num_heads, expected",
    [("misclassified", 4, "misclassified"), ("misclassified", None, "misclassified"), (1, 4, 1), (4, 4, 4)]
    + [("3", 4, 3), (" 2 ", 4, 2), (12, None, 12), ("12", None, 12)],
)
def test_stop_rule_reader_accepts(value, num_heads, expected):
    parsed = parse_stop_rule(value, num_heads)
    assert parsed == expected and type(parsed) is type(expected)


@pytest.mark.parametrize(
    "value, num_heads, message",
    [
        (0, 4, "stop must be 'misclassified' or an integer in [1, 4], got 0."),
        (5, 4, "stop must be 'misclassified' or an integer in [1, 4], got 5."),
        ("5", 4, "stop must be 'misclassified' or an integer in [1, 4], got 5."),
        ("-1", 4, "stop must be 'misclassified' or an integer in [1, 4], got '-1'."),
        ("two", 4, "stop must be 'misclassified' or an integer in [1, 4], got 'two'."),
        ("", 4, "stop must be 'misclassified' or an integer in [1, 4], got ''."),
        ("Misclassified", 4, "stop must be 'misclassified' or an integer in [1, 4], got 'Misclassified'."),
        (True, 4, "stop must be 'misclassified' or an integer in [1, 4], got True."),
        (2.0, 4, "stop must be 'misclassified' or an integer in [1, 4], got 2.0."),
        (None, 4, "stop must be 'misclassified' or an integer in [1, 4], got None."),
        (0, None, "stop must be 'misclassified' or an integer >= 1, got 0."),
        ("number", None, "stop must be 'misclassified' or an integer >= 1, got 'number'."),
    ],
)
def test_stop_rule_reader_refuses_with_the_allowed_values(value, num_heads, message):
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        parse_stop_rule(value, num_heads)


def test_rank_traits_reads_the_stop_rule_as_the_reader_does():
    model = tiny_model("vit")
    pixel_values = torch.randn(1, 3, IMAGE_SIZE, IMAGE_SIZE)
    from_text = model.rank_traits(pixel_values, stop="3")[0]
    assert from_text.stop == 3 and from_text.top_traits == from_text.ranked_heads[:3]
    with pytest.raises(ValueError, match=re.escape("stop must be 'misclassified' or an integer in [1, 4], got 0.")):
        model.rank_traits(pixel_values, stop=0)


# ------------------------------------------------------------------------------------------------- backbone drivers


def test_driver_registry_keys_are_the_supported_backbone_types():
    assert tuple(BACKBONE_DRIVERS) == SUPPORTED_BACKBONE_TYPES
    assert all(type(family) is BackboneFamily for family in BACKBONE_DRIVERS.values())


@pytest.mark.parametrize("family", ALL_FAMILIES)
def test_each_driver_finds_the_backbones_own_modules(family):
    model = tiny_model(family)
    driver = model.driver
    assert isinstance(driver, BackboneDriver) and driver.family is BACKBONE_DRIVERS[family]
    assert driver.backbone is model.backbone
    assert driver.layers() is _layers(model)
    assert driver.final_layernorm() is _final_norm(model)
    assert driver.num_prefix_tokens == _prefix_tokens(model.config.backbone_config)
    assert driver.patch_size == (8, 8) and driver.image_size == (IMAGE_SIZE, IMAGE_SIZE)
    layer = driver.layers()[-1]
    attention = driver.attention(layer)
    assert all(isinstance(getattr(attention, name), torch.nn.Linear) for name in ("q_proj", "k_proj", "v_proj"))
    assert isinstance(driver.attention_norm(layer), torch.nn.LayerNorm)
    # calling a registry entry with a backbone gives a driver (the call form of the former registry of classes)
    assert BACKBONE_DRIVERS[family](model.backbone).layers() is driver.layers()


def test_the_former_adapter_names_still_work_with_a_deprecation_warning():
    model = tiny_model("dinov2")
    with pytest.warns(DeprecationWarning, match="use model.driver"):
        assert model.adapter is model.driver
    with pytest.warns(DeprecationWarning, match="use BACKBONE_DRIVERS"):
        from modeling_promptcam.modeling_promptcam import BACKBONE_ADAPTERS
    assert BACKBONE_ADAPTERS is BACKBONE_DRIVERS
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert model.driver.num_prefix_tokens == 1  # the new name does not warn
