"""The fast path equals the straightforward computation (prompts concatenated, HF layers over the whole sequence)."""

import pytest
import torch

from tests.helpers.models import ALL_FAMILIES, IMAGE_SIZE, straightforward_forward, tiny_model

TOLERANCE = 1e-5


@pytest.mark.parametrize("family", ALL_FAMILIES)
@pytest.mark.parametrize("prompt_mode", ["deep", "shallow"])
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("training", [False, True])
def test_logits_and_trait_maps_match_straightforward_path(family, prompt_mode, batch, training):
    model = tiny_model(family, prompt_mode=prompt_mode, seed=batch)
    model.train(training)
    pixel_values = torch.randn(batch, 3, IMAGE_SIZE, IMAGE_SIZE, generator=torch.Generator().manual_seed(7))

    expected_logits, expected_maps = straightforward_forward(model, pixel_values)
    logits_only = model(pixel_values)
    with_maps = model(pixel_values, output_trait_maps=True)

    assert logits_only.trait_maps is None
    assert logits_only.logits.shape == (batch, 5)
    torch.testing.assert_close(logits_only.logits, expected_logits, atol=TOLERANCE, rtol=0)
    torch.testing.assert_close(with_maps.logits, expected_logits, atol=TOLERANCE, rtol=0)
    assert with_maps.trait_maps.shape == (batch, 5, 4, 4, 4)
    torch.testing.assert_close(with_maps.trait_maps, expected_maps, atol=TOLERANCE, rtol=0)
    # the maps are a slice of a softmax over all keys: positive, and each row sums to less than 1 over the patches
    assert (with_maps.trait_maps > 0).all()
    assert (with_maps.trait_maps.sum(dim=(-1, -2)) < 1).all()

    # a per-image subset of classes gives exactly those classes' maps
    classes = torch.tensor([[4, 0], [1, 1], [3, 2]])[:batch]
    subset = model(pixel_values, trait_map_classes=classes)
    assert subset.trait_maps.shape == (batch, 2, 4, 4, 4)
    torch.testing.assert_close(subset.logits, expected_logits, atol=TOLERANCE, rtol=0)
    expected_subset = torch.stack([expected_maps[b, classes[b]] for b in range(batch)])
    torch.testing.assert_close(subset.trait_maps, expected_subset, atol=TOLERANCE, rtol=0)
    assert torch.equal(subset.trait_map_classes, classes)


@pytest.mark.parametrize("family", ALL_FAMILIES)
@pytest.mark.parametrize("prompt_mode", ["deep", "shallow"])
def test_gradients_of_prompts_and_head_match_straightforward_path(family, prompt_mode):
    model = tiny_model(family, prompt_mode=prompt_mode).train()
    pixel_values = torch.randn(3, 3, IMAGE_SIZE, IMAGE_SIZE, generator=torch.Generator().manual_seed(3))
    labels = torch.tensor([0, 4, 2])

    def gradients(loss):
        model.zero_grad()
        loss.backward()
        return {name: p.grad.clone() for name, p in model.named_parameters() if p.requires_grad}

    fast = gradients(model(pixel_values, labels=labels).loss)
    expected_logits, _ = straightforward_forward(model, pixel_values)
    reference = gradients(torch.nn.functional.cross_entropy(expected_logits, labels))

    assert set(fast) == {"prompt_head.prompt_embeddings", "prompt_head.score.weight", "prompt_head.score.bias"}
    for name in fast:
        # the shared bias adds the same constant to every logit: softmax cross-entropy gives it no gradient
        if name != "prompt_head.score.bias":
            assert fast[name].abs().sum() > 0, name
        torch.testing.assert_close(fast[name], reference[name], atol=TOLERANCE, rtol=1e-4)
    # the backbone is frozen: no gradient reaches it
    assert all(p.grad is None for name, p in model.named_parameters() if not name.startswith("prompt_head"))


@pytest.mark.parametrize(
    "family, variant", [("dinov2", {"use_swiglu_ffn": True}), ("dinov3_vit", {"use_gated_mlp": True})]
)
def test_gated_mlp_variants_match_straightforward_path(family, variant):
    model = tiny_model(family, **variant)
    pixel_values = torch.randn(2, 3, IMAGE_SIZE, IMAGE_SIZE)
    expected_logits, expected_maps = straightforward_forward(model, pixel_values)
    output = model(pixel_values, output_trait_maps=True)
    torch.testing.assert_close(output.logits, expected_logits, atol=TOLERANCE, rtol=0)
    torch.testing.assert_close(output.trait_maps, expected_maps, atol=TOLERANCE, rtol=0)


def test_eager_attention_gives_the_same_numbers_as_sdpa():
    model = tiny_model("dinov2")
    pixel_values = torch.randn(2, 3, IMAGE_SIZE, IMAGE_SIZE)
    sdpa = model(pixel_values, output_trait_maps=True)
    model.set_attn_implementation("eager")
    assert model.backbone.config._attn_implementation == "eager"
    eager = model(pixel_values, output_trait_maps=True)
    torch.testing.assert_close(eager.logits, sdpa.logits, atol=TOLERANCE, rtol=0)
    torch.testing.assert_close(eager.trait_maps, sdpa.trait_maps, atol=TOLERANCE, rtol=0)


def test_dinov2_and_interpolated_vit_take_other_image_sizes():
    for family, kwargs in (("dinov2", {}), ("vit", {"interpolate_pos_encoding": True})):
        model = tiny_model(family)
        pixel_values = torch.randn(2, 3, 48, 40)
        output = model(pixel_values, output_trait_maps=True, **kwargs)
        assert output.trait_maps.shape == (2, 5, 4, 6, 5)


def test_loss_is_the_standard_cross_entropy_and_supports_num_items_in_batch():
    model = tiny_model("vit")
    pixel_values = torch.randn(4, 3, IMAGE_SIZE, IMAGE_SIZE)
    labels = torch.tensor([0, 1, 2, 3])
    output = model(pixel_values, labels=labels)
    torch.testing.assert_close(output.loss, torch.nn.functional.cross_entropy(output.logits, labels))
    # gradient accumulation: the Trainer passes the item count of the whole accumulated batch
    summed = model(pixel_values, labels=labels, num_items_in_batch=8).loss
    torch.testing.assert_close(summed, torch.nn.functional.cross_entropy(output.logits, labels, reduction="sum") / 8)


def test_prompt_dropout_uses_one_mask_per_batch_and_is_off_in_eval():
    model = tiny_model("vit")
    model.config.prompt_dropout = 0.5
    model.prompt_head.prompt_dropout.p = 0.5
    pixel_values = torch.randn(2, 3, IMAGE_SIZE, IMAGE_SIZE)
    model.eval()
    assert torch.equal(model(pixel_values).logits, model(pixel_values).logits)
    model.train()
    torch.manual_seed(0)
    first = model(pixel_values).logits
    torch.manual_seed(1)
    second = model(pixel_values).logits
    assert not torch.allclose(first, second)
