"""Bad inputs to the model get errors that say what is wrong and how to fix it."""

import re

import pytest
import torch

from tests.helpers.models import IMAGE_SIZE, tiny_model


@pytest.fixture(scope="module")
def vit():
    return tiny_model("vit")


@pytest.fixture(scope="module")
def dinov2():
    return tiny_model("dinov2")


def pixels(*shape):
    return torch.randn(*shape)


@pytest.mark.parametrize(
    "pixel_values, message",
    [
        (
            pixels(3, IMAGE_SIZE, IMAGE_SIZE),
            r"must be a \(batch, 3, height, width\) tensor, got \(3, 32, 32\).*pixel_values\[None\]",
        ),
        (pixels(1, 1, 3, IMAGE_SIZE, IMAGE_SIZE), r"got \(1, 1, 3, 32, 32\)"),
        (pixels(2, 1, IMAGE_SIZE, IMAGE_SIZE), "has 1 channels but the backbone expects 3; convert images to RGB"),
        (pixels(2, 4, IMAGE_SIZE, IMAGE_SIZE), "has 4 channels"),
        (torch.zeros(2, 3, IMAGE_SIZE, IMAGE_SIZE, dtype=torch.uint8), "must be floating point"),
        (pixels(2, 3, 36, IMAGE_SIZE), "36x32 is not divisible by the backbone's patch size 8x8"),
        (pixels(2, 3, 48, 48), r"48x48 does not match the ViT backbone's 32x32.*interpolate_pos_encoding=True"),
    ],
)
def test_bad_pixel_values(vit, pixel_values, message):
    with pytest.raises(ValueError, match=message):
        vit(pixel_values)


def test_bad_pixel_values_not_a_tensor(vit):
    with pytest.raises(ValueError, match="got list"):
        vit([[0.0]])


def test_dinov2_rejects_sizes_not_divisible_by_the_patch(dinov2):
    with pytest.raises(ValueError, match="not divisible by the backbone's patch size"):
        dinov2(pixels(1, 3, 33, 40))


@pytest.mark.parametrize(
    "labels, message",
    [
        (torch.tensor([0, 5]), r"labels holds class indices outside \[0, 5\) \(min 0, max 5\)"),
        (torch.tensor([-1, 0]), r"outside \[0, 5\)"),
        (torch.tensor([0.0, 1.0]), r"labels must be integer class indices of shape \(2,\)"),
        (torch.tensor([[0], [1]]), r"labels must be integer class indices of shape \(2,\)"),
    ],
)
def test_bad_labels(vit, labels, message):
    with pytest.raises(ValueError, match=message):
        vit(pixels(2, 3, IMAGE_SIZE, IMAGE_SIZE), labels=labels)


@pytest.mark.parametrize(
    "classes, message",
    [
        (torch.tensor([[0, 7], [1, 2]]), r"trait_map_classes holds class indices outside \[0, 5\)"),
        (torch.tensor([0, 1]), r"trait_map_classes must have shape \(batch_size=2, K\)"),
        (torch.tensor([[0, 1]]), r"trait_map_classes must have shape \(batch_size=2, K\)"),
        (torch.tensor([[0.0], [1.0]]), "must hold integer class indices"),
    ],
)
def test_bad_trait_map_classes(vit, classes, message):
    with pytest.raises(ValueError, match=message):
        vit(pixels(2, 3, IMAGE_SIZE, IMAGE_SIZE), trait_map_classes=classes)


def test_unsupported_arguments_are_refused_not_ignored(vit):
    # output_attentions is answered now (issue 14); an unknown keyword is still refused, with the same message shape
    with pytest.raises(TypeError, match=r"unsupported arguments \['output_saliency'\].*output_trait_maps=True"):
        vit(pixels(1, 3, IMAGE_SIZE, IMAGE_SIZE), output_saliency=True)


def test_trait_maps_work_under_every_attention_implementation(vit):
    # trait maps are computed explicitly for the last layer's prompt rows, so no implementation can lack them
    pixel_values = pixels(1, 3, IMAGE_SIZE, IMAGE_SIZE)
    for implementation in ("sdpa", "eager"):
        vit.set_attn_implementation(implementation)
        assert vit(pixel_values, output_trait_maps=True).trait_maps.shape == (1, 5, 4, 4, 4)
    vit.set_attn_implementation("sdpa")


def test_tuple_output(vit):
    output = vit(pixels(2, 3, IMAGE_SIZE, IMAGE_SIZE), labels=torch.tensor([0, 1]), return_dict=False)
    assert isinstance(output, tuple) and output[0].ndim == 0 and output[1].shape == (2, 5)


def _with_non_finite(values: dict[int, float], batch_size: int = 4) -> torch.Tensor:
    pixel_values = pixels(batch_size, 3, IMAGE_SIZE, IMAGE_SIZE)
    for index, value in values.items():
        pixel_values[index, index % 3, index, 1] = value
    return pixel_values


@pytest.mark.parametrize(
    "values, bad_indices",
    [
        ({1: float("nan")}, "[1]"),
        ({0: float("inf"), 3: float("-inf")}, "[0, 3]"),
        ({0: float("nan"), 2: float("inf")}, "[0, 2]"),
    ],
)
@pytest.mark.parametrize("entry_point", ["forward", "rank_traits"])
def test_non_finite_pixel_values_are_refused_naming_the_images(vit, values, bad_indices, entry_point):
    pixel_values = _with_non_finite(values)
    call = vit if entry_point == "forward" else vit.rank_traits
    with pytest.raises(
        ValueError, match=rf"NaN or infinite values in the images at batch indices {re.escape(bad_indices)}"
    ):
        call(pixel_values)


def test_finite_pixel_values_still_pass(vit):
    # extreme but finite values are the caller's business, not an error
    pixel_values = pixels(2, 3, IMAGE_SIZE, IMAGE_SIZE) * 1e3
    assert torch.isfinite(vit(pixel_values).logits).all()
