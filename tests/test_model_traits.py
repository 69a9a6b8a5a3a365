"""Greedy trait ranking: parity with the official code, equality with a naive loop of full forwards, stop rules."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from modeling_promptcam.convert import convert_official_checkpoint
from modeling_promptcam.modeling_promptcam import BLUR_MODES
from tests.helpers.models import FAMILIES, IMAGE_SIZE, naive_rank_traits, straightforward_forward, tiny_model

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "official"


@pytest.mark.skipif(not FIXTURES.is_dir(), reason="official fixtures live in ../shared (CI has them)")
@pytest.mark.parametrize("name", ["dino_tiny", "dinov2_tiny"])
def test_official_blur_reproduces_the_official_greedy_order(name):
    meta = json.loads((FIXTURES / f"{name}.json").read_text())
    expected = load_file(FIXTURES / f"{name}.expected.safetensors")
    model = convert_official_checkpoint(FIXTURES / f"{name}.model.pt", num_heads=meta["heads"])
    rankings = model.rank_traits(expected["pixel_values"], blur="official", stop=4)
    for b, ranking in enumerate(rankings):
        assert ranking.target_class == int(expected["logits"][b].argmax())
        assert ranking.ranked_heads == expected["blur_order"][b].flip(0).tolist()
        assert ranking.blur_order == expected["blur_order"][b].tolist()
        torch.testing.assert_close(
            torch.tensor(ranking.target_scores), expected["blur_target_logit"][b].float(), atol=1e-4, rtol=0
        )


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("blur", BLUR_MODES)  # every registered mode against the naive oracle
@pytest.mark.parametrize("prompt_mode", ["deep", "shallow"])
def test_fast_ranking_equals_naive_loop_of_full_forwards(family, blur, prompt_mode):
    model = tiny_model(family, prompt_mode=prompt_mode, seed=5)
    pixel_values = torch.randn(2, 3, IMAGE_SIZE, IMAGE_SIZE, generator=torch.Generator().manual_seed(11))
    logits, _ = straightforward_forward(model, pixel_values, capture_maps=False)
    targets = torch.tensor([int(logits[0].argmax()), 3])  # the predicted class, and an arbitrary one
    for stop in ("misclassified", 2):
        rankings = model.rank_traits(pixel_values, target_classes=targets, blur=blur, stop=stop)
        for b, ranking in enumerate(rankings):
            target = int(targets[b])
            order, scores = naive_rank_traits(model, pixel_values[b : b + 1], target, blur)
            assert ranking.blur_order == order
            torch.testing.assert_close(torch.tensor(ranking.target_scores), torch.tensor(scores), atol=1e-5, rtol=0)
            assert sorted(ranking.ranked_heads) == list(range(4))
            # the stop rule, recomputed from the naive scores
            best_other = max(v for c, v in enumerate(logits[b].tolist()) if c != target)
            if stop == 2:
                assert ranking.top_traits == order[::-1][:2]
            elif logits[b, target] < best_other:
                assert ranking.misclassified_after == 0 and ranking.top_traits == order[::-1]
            else:
                flips = [i + 1 for i, score in enumerate(scores) if score < best_other]
                left = 4 - flips[0] if flips else 0
                assert ranking.misclassified_after == (flips[0] if flips else None)
                assert ranking.top_traits == order[::-1][: max(1, left)]


def test_default_target_is_the_prediction_and_k_targets_per_image():
    model = tiny_model("dinov2", num_labels=6)
    pixel_values = torch.randn(3, 3, IMAGE_SIZE, IMAGE_SIZE)
    predicted = model(pixel_values).logits.argmax(-1)
    rankings = model.rank_traits(pixel_values)
    assert [r.target_class for r in rankings] == predicted.tolist()
    for r in rankings:
        assert r.misclassified_after != 0  # the predicted class is the top class before blurring
        assert r.initial_score == pytest.approx(
            model(pixel_values).logits.max(-1).values[rankings.index(r)].item(), abs=1e-5
        )
    several = model.rank_traits(pixel_values, target_classes=torch.tensor([[0, 5], [1, 2], [3, 4]]))
    assert [[r.target_class for r in per_image] for per_image in several] == [[0, 5], [1, 2], [3, 4]]
    single = model.rank_traits(pixel_values, target_classes=torch.tensor([5, 2, 4]))
    assert several[0][1].ranked_heads == single[0].ranked_heads


def test_misclassified_from_the_start_keeps_all_heads():
    model = tiny_model("vit", num_labels=5)
    pixel_values = torch.randn(1, 3, IMAGE_SIZE, IMAGE_SIZE)
    logits = model(pixel_values).logits[0]
    not_predicted = int(logits.argmin())
    ranking = model.rank_traits(pixel_values, target_classes=torch.tensor([not_predicted]))[0]
    assert ranking.misclassified_after == 0
    assert ranking.top_traits == ranking.ranked_heads and len(ranking.top_traits) == 4


def test_ties_go_to_the_lower_head_index():
    model = tiny_model("vit", num_labels=3)
    with torch.no_grad():
        # the heads no longer reach the output (zero output projection): every blur candidate scores exactly the same
        model.backbone.layers[-1].attention.o_proj.weight.zero_()
    pixel_values = torch.randn(1, 3, IMAGE_SIZE, IMAGE_SIZE)
    ranking = model.rank_traits(pixel_values, target_classes=torch.tensor([0]), stop=2)[0]
    assert ranking.blur_order == [0, 1, 2, 3]
    assert ranking.top_traits == [3, 2]
    assert len(set(ranking.target_scores)) == 1
    assert ranking.target_scores[0] == pytest.approx(ranking.initial_score, abs=1e-5)


def test_rank_traits_restores_training_mode_and_refuses_bad_arguments():
    model = tiny_model("vit").train()
    pixel_values = torch.randn(1, 3, IMAGE_SIZE, IMAGE_SIZE)
    model.rank_traits(pixel_values)
    assert model.training
    with pytest.raises(ValueError, match="blur must be one of"):
        model.rank_traits(pixel_values, blur="gaussian")
    with pytest.raises(ValueError, match=r"stop must be 'misclassified' or an integer in \[1, 4\]"):
        model.rank_traits(pixel_values, stop=5)
    with pytest.raises(ValueError, match=r"outside \[0, 5\)"):
        model.rank_traits(pixel_values, target_classes=torch.tensor([9]))
    with pytest.raises(ValueError, match=r"target_classes must hold integer class indices of shape \(1,\)"):
        model.rank_traits(pixel_values, target_classes=torch.tensor([0, 1]))


def test_trait_map_top_k_gives_the_maps_of_the_best_classes():
    model = tiny_model("dinov2_with_registers", num_labels=6)
    pixel_values = torch.randn(2, 3, IMAGE_SIZE, IMAGE_SIZE)
    full = model(pixel_values, output_trait_maps=True)
    top = model(pixel_values, trait_map_top_k=3)
    expected_classes = full.logits.topk(3, dim=-1).indices
    assert torch.equal(top.trait_map_classes, expected_classes)
    for b in range(2):
        torch.testing.assert_close(top.trait_maps[b], full.trait_maps[b, expected_classes[b]], atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match=r"trait_map_top_k must be an integer in \[1, 6\]"):
        model(pixel_values, trait_map_top_k=7)
    with pytest.raises(ValueError, match="not both"):
        model(pixel_values, trait_map_top_k=1, trait_map_classes=expected_classes)
