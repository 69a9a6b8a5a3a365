"""Labels and problem types (single- and multi-label), and loading a stock backbone folder without `config=`."""

import math

import pytest
import torch
from transformers import Dinov2Model, ViTModel

from modeling_promptcam import PromptCamConfig, PromptCamForImageClassification
from tests.helpers.models import IMAGE_SIZE, randomize_, tiny_backbone_config, tiny_model
from tests.helpers.training import write_tiny_backbone


def multi_label_model(family: str = "vit", num_labels: int = 4):
    model = tiny_model(family, num_labels=num_labels)
    model.config.problem_type = "multi_label_classification"
    return model


def hand_bce(logits: torch.Tensor, targets: torch.Tensor) -> float:
    """Mean binary cross-entropy written out from its definition, one term per (image, class)."""
    total = 0.0
    for z, y in zip(logits.flatten().tolist(), targets.flatten().tolist()):
        p = 1.0 / (1.0 + math.exp(-z))
        total -= y * math.log(p) + (1.0 - y) * math.log(1.0 - p)
    return total / logits.numel()


@pytest.mark.parametrize("family", ["vit", "dinov2"])
def test_multi_label_targets_get_binary_cross_entropy(family):
    model = multi_label_model(family)
    pixel_values = torch.randn(3, 3, IMAGE_SIZE, IMAGE_SIZE)
    targets = torch.tensor([[1.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0], [1.0, 1.0, 1.0, 1.0]])

    output = model(pixel_values, labels=targets)

    assert output.logits.shape == (3, 4)
    assert output.loss.item() == pytest.approx(hand_bce(output.logits, targets), rel=1e-5)
    # the prompts and the head learn from it
    output.loss.backward()
    assert model.prompt_head.prompt_embeddings.grad.abs().sum() > 0
    assert model.config.problem_type == "multi_label_classification"


def test_multi_label_config_round_trips_through_save_and_load(tmp_path):
    model = multi_label_model()
    model.save_pretrained(tmp_path)
    reloaded = PromptCamForImageClassification.from_pretrained(tmp_path)
    assert reloaded.config.problem_type == "multi_label_classification"
    targets = torch.tensor([[0.0, 1.0, 0.0, 1.0]])
    pixel_values = torch.randn(1, 3, IMAGE_SIZE, IMAGE_SIZE)
    torch.testing.assert_close(reloaded(pixel_values, labels=targets).loss, model(pixel_values, labels=targets).loss)


def test_single_label_loss_is_still_cross_entropy():
    model = tiny_model("vit", num_labels=4)
    pixel_values = torch.randn(2, 3, IMAGE_SIZE, IMAGE_SIZE)
    labels = torch.tensor([2, 0])
    output = model(pixel_values, labels=labels)
    log_probs = output.logits.log_softmax(-1)
    assert output.loss.item() == pytest.approx(-(log_probs[0, 2] + log_probs[1, 0]).item() / 2, rel=1e-5)


@pytest.mark.parametrize(
    "targets, message",
    [
        (torch.tensor([1, 0]), r"float multi-hot targets of shape \(2, 4\).*got torch.int64 \(2,\)"),
        (torch.ones(2, 3), r"float multi-hot targets of shape \(2, 4\).*got torch.float32 \(2, 3\)"),
        (torch.ones(2, 4, dtype=torch.long), r"float multi-hot targets of shape \(2, 4\).*got torch.int64"),
        (torch.tensor([[0.0, 1.0, 2.0, 0.0], [0.0] * 4]), r"must lie in \[0, 1\].*max 2.0"),
        (torch.tensor([[0.0, -0.5, 1.0, 0.0], [0.0] * 4]), r"must lie in \[0, 1\].*min -0.5"),
    ],
)
def test_malformed_multi_label_targets_are_refused(targets, message):
    with pytest.raises(ValueError, match=message):
        multi_label_model()(torch.randn(2, 3, IMAGE_SIZE, IMAGE_SIZE), labels=targets)


def test_multi_hot_targets_without_the_problem_type_say_how_to_set_it():
    model = tiny_model("vit", num_labels=4)
    with pytest.raises(
        ValueError,
        match=r"labels must be integer class indices of shape \(2,\).*problem_type='multi_label_classification'",
    ):
        model(torch.randn(2, 3, IMAGE_SIZE, IMAGE_SIZE), labels=torch.ones(2, 4))
    # the config was not switched behind the user's back
    assert model.config.problem_type is None


def test_regression_is_refused_at_config_time():
    with pytest.raises(ValueError, match=r"one prompt per class and needs at least 2 classes.*regression"):
        PromptCamConfig(num_labels=1)
    with pytest.raises(ValueError, match=r"problem_type='regression' is not supported.*one prompt per class"):
        PromptCamConfig(num_labels=3, problem_type="regression")
    assert PromptCamConfig(num_labels=3, problem_type="multi_label_classification").problem_type == (
        "multi_label_classification"
    )


# ------------------------------------------------------------------------------------- a stock backbone folder
def write_tiny_dinov2(folder, seed: int = 0):
    backbone = randomize_(Dinov2Model(tiny_backbone_config("dinov2")), seed)
    backbone.save_pretrained(folder)
    return backbone


@pytest.mark.parametrize("family", ["vit", "dinov2"])
def test_stock_folder_without_config_builds_the_config_from_the_folder_and_the_call(tmp_path, family):
    if family == "vit":
        write_tiny_backbone(tmp_path, seed=4)
        stock = ViTModel.from_pretrained(tmp_path)
    else:
        stock = write_tiny_dinov2(tmp_path, seed=4)
    id2label = {0: "cardinal", 1: "blue jay", 2: "wren"}

    model = PromptCamForImageClassification.from_pretrained(tmp_path, id2label=id2label, prompt_mode="shallow")

    backbone_config = model.config.backbone_config
    assert backbone_config.model_type == family
    assert (backbone_config.hidden_size, backbone_config.num_hidden_layers, backbone_config.patch_size) == (32, 3, 8)
    assert model.config.num_labels == 3 and model.config.id2label == id2label
    assert model.config.prompt_mode == "shallow"
    assert model.prompt_head.prompt_embeddings.shape == (1, 3, 32)
    stock_state = stock.state_dict()
    for name, value in model.backbone.state_dict().items():
        assert torch.equal(value, stock_state[name]), name
    assert not any(p.requires_grad for p in model.backbone.parameters())
    assert model(torch.randn(2, 3, IMAGE_SIZE, IMAGE_SIZE)).logits.shape == (2, 3)


def test_stock_folder_with_num_labels_only(tmp_path):
    write_tiny_backbone(tmp_path)
    model = PromptCamForImageClassification.from_pretrained(tmp_path, num_labels=6)
    assert model.config.num_labels == 6
    assert model.prompt_head.prompt_embeddings.shape == (3, 6, 32)


@pytest.mark.parametrize("family", ["vit", "dinov2"])
def test_stock_folder_without_config_or_classes_is_refused_with_the_fix(tmp_path, family):
    write_tiny_backbone(tmp_path) if family == "vit" else write_tiny_dinov2(tmp_path)
    with pytest.raises(ValueError, match=rf"stock '{family}' backbone.*num_labels=.*config=PromptCamConfig\("):
        PromptCamForImageClassification.from_pretrained(tmp_path)


def test_a_folder_of_an_unsupported_type_is_refused_naming_config(tmp_path):
    from transformers import BertConfig, BertModel

    BertModel(
        BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
    ).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match=r"holds a 'bert' checkpoint.*Pass config=PromptCamConfig"):
        PromptCamForImageClassification.from_pretrained(tmp_path, num_labels=3)


# ------------------------------------------------------------------------------------ one-vs-rest classification
def test_one_vs_rest_loss_is_binary_cross_entropy_per_class_summed_over_classes():
    model = tiny_model("vit", num_labels=4)
    model.config.classification_loss = "one_vs_rest"
    pixel_values = torch.randn(3, 3, IMAGE_SIZE, IMAGE_SIZE)
    labels = torch.tensor([2, 0, 3])
    output = model(pixel_values, labels=labels)
    targets = torch.nn.functional.one_hot(labels, 4).float()
    # hand_bce is the mean over the 12 (image, class) terms; one-vs-rest sums the 4 classes of each image
    assert output.loss.item() == pytest.approx(4 * hand_bce(output.logits, targets), rel=1e-5)
    # under gradient accumulation the sum is divided by the images of all micro-batches, as transformers' losses are
    accumulated = model(pixel_values, labels=labels, num_items_in_batch=6)
    assert accumulated.loss.item() == pytest.approx(output.loss.item() / 2, rel=1e-5)
    output.loss.backward()
    assert model.prompt_head.prompt_embeddings.grad.abs().sum() > 0
    # inference does not depend on the loss
    model.config.classification_loss = "cross_entropy"
    torch.testing.assert_close(model(pixel_values).logits, output.logits)
    assert model(pixel_values, labels=labels).loss.item() == pytest.approx(
        torch.nn.functional.cross_entropy(output.logits, labels).item(), rel=1e-5
    )


def test_classification_loss_is_validated_and_round_trips(tmp_path):
    from modeling_promptcam.configuration_promptcam import CLASSIFICATION_LOSSES
    from modeling_promptcam.modeling_promptcam import CLASSIFICATION_LOSS_FUNCTIONS

    assert set(CLASSIFICATION_LOSSES) == set(CLASSIFICATION_LOSS_FUNCTIONS)
    with pytest.raises(ValueError, match="classification_loss must be one of cross_entropy, one_vs_rest, got 'hinge'"):
        PromptCamConfig(backbone_config=tiny_backbone_config("vit"), num_labels=3, classification_loss="hinge")
    with pytest.raises(ValueError, match="multi-hot targets already"):
        PromptCamConfig(
            backbone_config=tiny_backbone_config("vit"),
            num_labels=3,
            classification_loss="one_vs_rest",
            problem_type="multi_label_classification",
        )
    model = tiny_model("vit", num_labels=3)
    model.config.classification_loss = "one_vs_rest"
    model.save_pretrained(tmp_path / "m")
    assert PromptCamForImageClassification.from_pretrained(tmp_path / "m").config.classification_loss == "one_vs_rest"
    assert PromptCamConfig(backbone_config=tiny_backbone_config("vit"), num_labels=3).classification_loss == (
        "cross_entropy"
    )
