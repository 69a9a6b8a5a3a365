"""Many classes: K class-agnostic prompts per layer, exact scores of a subset of classes (`score_classes`), the last
layer in chunks of classes, the cached image-independent prompt states, and the memory bound at large C."""

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import modeling_promptcam.modeling_promptcam as modeling
from modeling_promptcam import PromptCamConfig, PromptCamForImageClassification
from tests.helpers.models import (
    IMAGE_SIZE,
    _embed_and_layer_runner,
    _final_norm,
    _layers,
    randomize_,
    straightforward_forward,
    tiny_backbone_config,
    tiny_model,
)

TOLERANCE = 1e-5
SCALE_FAMILIES = ("vit", "dinov2_with_registers", "dinov3_vit", "siglip_vision_model")


def agnostic_model(family: str = "vit", num_labels: int = 7, agnostic: int = 3, seed: int = 0, **overrides):
    config = PromptCamConfig(
        backbone_config=tiny_backbone_config(family, **overrides), num_labels=num_labels, num_agnostic_prompts=agnostic
    )
    torch.manual_seed(seed)
    return randomize_(PromptCamForImageClassification(config), seed).eval()


def straightforward_agnostic_logits(model, pixel_values):
    """The K-agnostic semantics spelled out with the backbone's own HF layers: K prompts in front of the image tokens
    in each of layers 1..L-1 (their outputs dropped), the C class prompts in the last layer, scored by the head."""
    head = model.prompt_head
    layers = _layers(model)
    hidden, run_layer = _embed_and_layer_runner(model, pixel_values)
    batch = hidden.shape[0]
    for index, layer in enumerate(layers):
        prompts = head.agnostic_prompt_embeddings[index] if index < len(layers) - 1 else head.prompt_embeddings[-1]
        sequence = run_layer(layer, torch.cat((prompts.expand(batch, -1, -1), hidden), dim=1))
        hidden, prompt_outputs = sequence[:, prompts.shape[0] :], sequence[:, : prompts.shape[0]]
    return head.score(_final_norm(model)(prompt_outputs)).squeeze(-1)


def images(batch: int = 3, size: int = IMAGE_SIZE, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------------------------------ configuration
@pytest.mark.parametrize(
    "settings, message",
    [
        (dict(num_agnostic_prompts=0), r"num_agnostic_prompts must be an integer >= 1 .*got 0"),
        (dict(num_agnostic_prompts=-3), r"num_agnostic_prompts must be an integer >= 1 .*got -3"),
        (dict(num_agnostic_prompts=2.5), r"num_agnostic_prompts must be an integer >= 1 .*got 2.5"),
        (dict(num_agnostic_prompts="8"), r"num_agnostic_prompts must be an integer >= 1 .*got '8'"),
        (dict(num_agnostic_prompts=True), r"num_agnostic_prompts must be an integer >= 1 .*got True"),
        (dict(num_agnostic_prompts=4, prompt_mode="shallow"), r"does not apply to prompt_mode='shallow'"),
        (dict(class_chunk_size=0), r"class_chunk_size must be an integer >= 1, got 0"),
    ],
)
def test_bad_agnostic_prompt_counts_and_chunk_sizes_are_refused(settings, message):
    with pytest.raises(ValueError, match=message):
        PromptCamConfig(backbone_config=tiny_backbone_config("vit"), num_labels=5, **settings)


def test_agnostic_prompt_parameters_do_not_grow_with_the_class_count():
    model = agnostic_model(num_labels=40, agnostic=3)
    head = model.prompt_head
    assert head.agnostic_prompt_embeddings.shape == (2, 3, 32)  # layers 1..L-1 of a 3-layer backbone
    assert head.prompt_embeddings.shape == (1, 40, 32)  # the class prompts of the last layer
    paper = tiny_model("vit", num_labels=40).prompt_head
    assert paper.agnostic_prompt_embeddings is None and paper.prompt_embeddings.shape == (3, 40, 32)
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable == {
        "prompt_head.prompt_embeddings",
        "prompt_head.agnostic_prompt_embeddings",
        "prompt_head.score.weight",
        "prompt_head.score.bias",
    }


# ------------------------------------------------------------------------------------------ K agnostic prompts
@pytest.mark.parametrize("family", SCALE_FAMILIES)
def test_agnostic_prompts_forward_matches_the_straightforward_computation(family):
    model = agnostic_model(family)
    pixel_values = images()
    expected = straightforward_agnostic_logits(model, pixel_values)
    torch.testing.assert_close(model(pixel_values).logits, expected, atol=TOLERANCE, rtol=0)
    with torch.no_grad():  # the split last layer and the cached prompt states
        for _ in range(2):
            torch.testing.assert_close(model(pixel_values).logits, expected, atol=TOLERANCE, rtol=0)


def test_agnostic_prompts_gradients_match_the_straightforward_computation():
    model = agnostic_model("dinov2_with_registers").train()
    pixel_values, labels = images(), torch.tensor([0, 3, 6])
    model(pixel_values, labels=labels).loss.backward()
    fast = [p.grad.clone() for p in model.prompt_head.parameters()]
    model.zero_grad()
    logits = straightforward_agnostic_logits(model, pixel_values)
    torch.nn.functional.cross_entropy(logits, labels).backward()
    assert all(p.grad.abs().sum() > 0 for p in model.prompt_head.parameters())
    for got, want in zip(fast, [p.grad for p in model.prompt_head.parameters()]):
        torch.testing.assert_close(got, want, atol=TOLERANCE, rtol=0)


def test_agnostic_prompts_save_reload_and_load_as_remote_code(tmp_path):
    model = agnostic_model("vit", agnostic=2)
    model.save_pretrained(tmp_path / "model")
    saved = json.loads((tmp_path / "model" / "config.json").read_text())
    assert saved["num_agnostic_prompts"] == 2
    pixel_values = images(2)
    torch.save(pixel_values, tmp_path / "pixels.pt")
    expected = model(pixel_values, trait_map_top_k=2)
    reloaded = PromptCamForImageClassification.from_pretrained(tmp_path / "model")
    assert reloaded.config.num_agnostic_prompts == 2
    assert PromptCamConfig.from_dict(model.config.to_dict()).num_agnostic_prompts == 2
    torch.testing.assert_close(reloaded(pixel_values).logits, expected.logits, atol=1e-6, rtol=0)

    script = textwrap.dedent(
        f"""
        import sys
        sys.modules["modeling_promptcam"] = None  # the package cannot be imported in this process
        import torch
        from transformers import AutoModelForImageClassification
        pixels = torch.load({str(tmp_path / "pixels.pt")!r}, weights_only=True)
        model = AutoModelForImageClassification.from_pretrained({str(tmp_path / "model")!r}, trust_remote_code=True)
        assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
        assert model.config.num_agnostic_prompts == 2
        output = model(pixels, trait_map_top_k=2)
        scored = model(pixels, score_classes=torch.tensor([[4, 1], [0, 6]])).logits
        torch.save({{"logits": output.logits, "maps": output.trait_maps, "scored": scored}}, {str(tmp_path / "out.pt")!r})
        """
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": str(tmp_path / "modules")}
    subprocess.run([sys.executable, "-c", script], check=True, cwd=tmp_path, env=env)
    remote = torch.load(tmp_path / "out.pt", weights_only=True)
    torch.testing.assert_close(remote["logits"], expected.logits, atol=1e-6, rtol=0)
    torch.testing.assert_close(remote["maps"], expected.trait_maps, atol=1e-6, rtol=0)
    torch.testing.assert_close(
        remote["scored"], expected.logits.gather(1, torch.tensor([[4, 1], [0, 6]])), atol=TOLERANCE, rtol=0
    )


def test_training_and_prompt_adapter_with_agnostic_prompts(tmp_path):
    from modeling_promptcam import load_prompt_adapter
    from modeling_promptcam.training import run_training
    from tests.helpers.training import EndOfTraining, tiny_training_options

    end = EndOfTraining()
    options = tiny_training_options(
        tmp_path, epochs=2, learning_rate=0.05, num_agnostic_prompts=2, save_prompts_only=True
    )
    run_training(options, callbacks=[end])
    trained = end.model
    final = tmp_path / "run" / "final"
    assert json.loads((final / "promptcam_config.json").read_text())["num_agnostic_prompts"] == 2
    plain = load_prompt_adapter(str(final))
    assert plain.prompt_head.agnostic_prompt_embeddings.shape[1] == 2
    # the agnostic prompts were trained (they left their initial values) and reach the adapter
    initial = PromptCamForImageClassification.from_pretrained(str(tmp_path / "backbone"), config=plain.config)
    assert not torch.allclose(
        plain.prompt_head.agnostic_prompt_embeddings, initial.prompt_head.agnostic_prompt_embeddings
    )
    pixel_values = images(2)
    torch.testing.assert_close(
        plain(pixel_values).logits, trained(pixel_values=pixel_values).logits.detach(), atol=1e-6, rtol=0
    )


def test_shallow_mode_with_agnostic_prompts_is_refused_by_the_training_recipe(tmp_path):
    from modeling_promptcam.training import TrainOptions

    options = TrainOptions(
        backbone="unused", data_dir="unused", output_dir=str(tmp_path), prompt_mode="shallow", num_agnostic_prompts=4
    )
    with pytest.raises(ValueError, match="num_agnostic_prompts does not apply to prompt mode 'shallow'"):
        options.recipe().validate()
    with pytest.raises(ValueError, match="num_agnostic_prompts"):
        TrainOptions(backbone="unused", data_dir="unused", output_dir=str(tmp_path), num_agnostic_prompts=0)


# ------------------------------------------------------------------------------------------ how the prompts start
def plain_patch_tokens(model, pixel_values) -> list[torch.Tensor]:
    """The patch tokens `(B * M, D)` entering each of layers 1..L-1 of the plain backbone (no prompts), through the
    backbone's own HF layers."""
    prefix = 1 + getattr(model.config.backbone_config, "num_register_tokens", 0)
    if model.config.backbone_config.model_type == "siglip_vision_model":
        prefix = 0
    hidden, run_layer = _embed_and_layer_runner(model, pixel_values)
    tokens = []
    for layer in _layers(model)[:-1]:
        tokens.append(hidden[:, prefix:].reshape(-1, hidden.shape[-1]))
        hidden = run_layer(layer, hidden)
    return tokens


@pytest.mark.parametrize("family", SCALE_FAMILIES + ("clip_vision_model",))
@pytest.mark.parametrize("agnostic", [3, None])
def test_agnostic_prompts_start_as_distinct_patch_tokens_of_their_layer(family, agnostic):
    model = agnostic_model(family, agnostic=agnostic).train()
    head = model.prompt_head
    class_prompts, score = head.prompt_embeddings[-1].clone(), head.score.weight.clone()
    pixel_values = images(2)
    model.init_agnostic_prompts_from_images(pixel_values, generator=torch.Generator().manual_seed(0))
    assert model.training  # the mode it was in is restored
    layer_prompts = head.agnostic_prompt_embeddings if agnostic else head.prompt_embeddings[:-1]
    with torch.no_grad():
        expected_tokens = plain_patch_tokens(model.eval(), pixel_values)
    bound = model._prompt_init_bound()
    expected_norm = bound * (layer_prompts.shape[-1] / 3) ** 0.5
    for prompts, tokens in zip(layer_prompts.detach(), expected_tokens):
        torch.testing.assert_close(prompts.norm(dim=-1), torch.full((prompts.shape[0],), expected_norm))
        cosine = torch.nn.functional.normalize(prompts, dim=-1) @ torch.nn.functional.normalize(tokens, dim=-1).T
        best, which = cosine.max(dim=1)
        assert best.min() > 1 - 1e-4, f"a prompt of {family} is not a patch token of its layer"
        assert len(set(which.tolist())) == prompts.shape[0]  # drawn without repetition
    # the class prompts of the last layer and the scoring head are left as they were
    torch.testing.assert_close(head.prompt_embeddings[-1], class_prompts, atol=0, rtol=0)
    torch.testing.assert_close(head.score.weight, score, atol=0, rtol=0)


def test_agnostic_prompts_from_images_are_seeded_and_drawn_with_repetition_only_when_too_few_tokens():
    pixel_values = images(1)
    first, second = agnostic_model(agnostic=3), agnostic_model(agnostic=3)
    with torch.no_grad():  # other prompts before: the start depends on the images and the generator only
        second.prompt_head.agnostic_prompt_embeddings.normal_()
    for model in (first, second):
        model.init_agnostic_prompts_from_images(pixel_values, generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(
        first.prompt_head.agnostic_prompt_embeddings, second.prompt_head.agnostic_prompt_embeddings, atol=0, rtol=0
    )
    patches = plain_patch_tokens(first, pixel_values)[0].shape[0]
    many = agnostic_model(agnostic=patches + 5)
    many.init_agnostic_prompts_from_images(pixel_values, generator=torch.Generator().manual_seed(0))
    prompts = many.prompt_head.agnostic_prompt_embeddings[0]
    assert torch.isfinite(prompts).all() and prompts.shape[0] == patches + 5
    with pytest.raises(ValueError, match="prompt_mode='shallow' has no class-agnostic prompts"):
        tiny_model(prompt_mode="shallow").init_agnostic_prompts_from_images(pixel_values)


class PromptsAtStart(__import__("transformers").TrainerCallback):
    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.prompts = model.prompt_head.agnostic_prompt_embeddings.detach().clone()


@pytest.mark.parametrize("init, from_images", [(None, True), ("uniform", False)])
def test_training_with_k_prompts_starts_them_from_training_images_unless_told_uniform(tmp_path, init, from_images):
    from modeling_promptcam.data.loading import load_image_folder
    from modeling_promptcam.data.transforms import EvalTransform
    from modeling_promptcam.modeling_promptcam import promptcam_image_processor
    from modeling_promptcam.training import run_training
    from tests.helpers.training import tiny_training_options

    start = PromptsAtStart()
    options = tiny_training_options(
        tmp_path,
        train_per_class=3,
        val_per_class=1,
        num_agnostic_prompts=4,
        agnostic_prompt_init=init,
        extra={"save_strategy": "no", "load_best_model_at_end": False},
    )
    summary = run_training(options, callbacks=[start])
    assert summary["recipe"]["agnostic_prompt_init"] == ("image-tokens" if from_images else "uniform")
    # the prompts the first step saw, against the patch tokens of every training image (all 9 of them are drawn)
    model = PromptCamForImageClassification.from_pretrained(str(tmp_path / "run" / "final")).eval()
    dataset, _ = load_image_folder(str(tmp_path / "data"))
    transform = EvalTransform(promptcam_image_processor(model.config, image_size=32))
    pixel_values = torch.stack([transform(image) for image in dataset["train"]["image"]])
    with torch.no_grad():
        tokens = plain_patch_tokens(model, pixel_values)
    for prompts, layer_tokens in zip(start.prompts, tokens):
        cosine = torch.nn.functional.normalize(prompts, dim=-1) @ torch.nn.functional.normalize(layer_tokens, dim=-1).T
        assert (cosine.max(dim=1).values.min() > 1 - 1e-4) == from_images


def test_image_token_start_is_refused_in_shallow_mode_and_named_choices_only(tmp_path):
    from modeling_promptcam.training import TrainOptions

    shallow = TrainOptions(
        backbone="unused", data_dir="unused", output_dir=str(tmp_path), prompt_mode="shallow",
        agnostic_prompt_init="image-tokens",
    )  # fmt: skip
    with pytest.raises(ValueError, match="'image-tokens' does not apply to prompt mode 'shallow'"):
        shallow.recipe().validate()
    # the paper's layout keeps the paper's start unless told otherwise
    paper = TrainOptions(backbone="unused", data_dir="unused", output_dir=str(tmp_path)).recipe().resolved("dinov2")
    assert paper.agnostic_prompt_init == "uniform"
    with pytest.raises(ValueError, match="agnostic prompt init must be one of uniform, image-tokens"):
        TrainOptions(
            backbone="unused", data_dir="unused", output_dir=str(tmp_path), agnostic_prompt_init="zeros"
        ).recipe().validate()


# ------------------------------------------------------------------------------------------ score_classes
@pytest.mark.parametrize("family", SCALE_FAMILIES)
@pytest.mark.parametrize("variant", ["paper", "agnostic", "shallow"])
def test_score_classes_equal_the_full_logits_gathered(family, variant):
    if variant == "agnostic":
        model = agnostic_model(family, num_labels=9)
    else:
        model = tiny_model(family, num_labels=9, prompt_mode="deep" if variant == "paper" else "shallow")
    model.config.class_chunk_size = 2  # several chunks of candidates
    pixel_values = images()
    candidates = torch.tensor([[8, 0, 3, 3, 5], [1, 2, 4, 6, 7], [7, 7, 0, 8, 1]])  # duplicates are fine
    full = model(pixel_values).logits
    for grad in (True, False):
        with torch.set_grad_enabled(grad):
            scored = model(pixel_values, score_classes=candidates)
            assert scored.logits.shape == (3, 5)
            torch.testing.assert_close(scored.logits, full.gather(1, candidates), atol=TOLERANCE, rtol=0)
            with_maps = model(pixel_values, score_classes=candidates, output_trait_maps=True)
            everything = model(pixel_values, output_trait_maps=True).trait_maps
            assert torch.equal(with_maps.trait_map_classes, candidates)
            torch.testing.assert_close(
                with_maps.trait_maps, everything[torch.arange(3)[:, None], candidates], atol=TOLERANCE, rtol=0
            )
            top = model(pixel_values, score_classes=candidates, trait_map_top_k=2)
            expected_top = candidates.gather(1, full.gather(1, candidates).topk(2, dim=-1).indices)
            assert torch.equal(top.trait_map_classes, expected_top)


def test_score_classes_do_not_compute_the_other_class_rows():
    model = tiny_model("vit", num_labels=50)
    model.config.class_chunk_size = 4
    rows = []
    original = model._prompt_logits
    model._prompt_logits = lambda layer, prompts, attended: (
        rows.append(attended.shape[1]) or original(layer, prompts, attended)
    )
    with torch.no_grad():
        model(images(2), score_classes=torch.tensor([[3, 9, 41], [0, 1, 2]]))
    assert rows == [3]  # the 3 candidate rows, not the 50 classes in chunks of 4
    rows.clear()
    with torch.no_grad():
        model(images(2))
    assert rows == [4] * 12 + [2]


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(score_classes=torch.tensor([[0.0, 1.0]] * 2)), r"score_classes must hold integer class indices"),
        (dict(score_classes=torch.tensor([0, 1])), r"shape \(batch_size=2, K\)"),
        (dict(score_classes=torch.tensor([[0, 1]] * 3)), r"shape \(batch_size=2, K\)"),
        (dict(score_classes=torch.zeros(2, 0, dtype=torch.long)), r"K >= 1"),
        (dict(score_classes=torch.tensor([[0, 5]] * 2)), r"score_classes holds class indices outside \[0, 5\)"),
        (dict(score_classes=torch.tensor([[0, -1]] * 2)), r"outside \[0, 5\)"),
        (
            dict(score_classes=torch.tensor([[0, 1]] * 2), labels=torch.tensor([0, 1])),
            r"cannot be combined with labels",
        ),
        (
            dict(score_classes=torch.tensor([[0, 1]] * 2), trait_map_top_k=3),
            r"more than the 2 classes of score_classes",
        ),
    ],
)
def test_bad_score_classes_are_refused(options, message):
    with pytest.raises(ValueError, match=message):
        tiny_model("vit")(images(2), **options)


# ------------------------------------------------------------------------------------------ chunks and cache
@pytest.mark.parametrize("variant", ["paper", "agnostic", "shallow"])
def test_chunked_last_layer_equals_the_unchunked_one(variant):
    if variant == "agnostic":
        model = agnostic_model("dinov2_with_registers", num_labels=11)
    else:
        model = tiny_model(
            "dinov2_with_registers", num_labels=11, prompt_mode="deep" if variant == "paper" else "shallow"
        )
    pixel_values = images()
    targets = torch.tensor([[1, 10], [4, 4], [0, 7]])
    results = {}
    for chunk in (1, 3, 11, 1024):
        model.config.class_chunk_size = chunk
        with torch.no_grad():
            output = model(pixel_values, output_trait_maps=True)
            top = model(pixel_values, trait_map_top_k=3)
            rankings = model.rank_traits(pixel_values, target_classes=targets, blur="official", stop=2)
        grad_logits = model(pixel_values, trait_map_classes=targets)
        results[chunk] = (output, top, rankings, grad_logits)
    reference = results[1024]
    if variant != "agnostic":
        logits, maps = straightforward_forward(model, pixel_values)
        torch.testing.assert_close(reference[0].logits, logits, atol=TOLERANCE, rtol=0)
        torch.testing.assert_close(reference[0].trait_maps, maps, atol=TOLERANCE, rtol=0)
    for output, top, rankings, grad_logits in results.values():
        torch.testing.assert_close(output.logits, reference[0].logits, atol=TOLERANCE, rtol=0)
        torch.testing.assert_close(output.trait_maps, reference[0].trait_maps, atol=TOLERANCE, rtol=0)
        assert torch.equal(top.trait_map_classes, reference[1].trait_map_classes)
        torch.testing.assert_close(top.trait_maps, reference[1].trait_maps, atol=TOLERANCE, rtol=0)
        assert [[r.ranked_heads for r in image] for image in rankings] == [
            [r.ranked_heads for r in image] for image in reference[2]
        ]
        torch.testing.assert_close(grad_logits.logits, reference[0].logits, atol=TOLERANCE, rtol=0)
        torch.testing.assert_close(grad_logits.trait_maps, reference[3].trait_maps, atol=TOLERANCE, rtol=0)


def test_image_independent_prompt_states_are_cached_in_eval_and_refreshed_when_parameters_change():
    model = tiny_model("vit", num_labels=6)
    calls = []
    original = model._prompt_keys_values
    model._prompt_keys_values = lambda layer, prompts: calls.append(1) or original(layer, prompts)
    pixel_values = images()
    with torch.no_grad():
        first = model(pixel_values).logits
        assert len(calls) == 2  # layers 1..L-1 of a 3-layer backbone, computed once
        second = model(images(2, seed=5)).logits
        assert len(calls) == 2  # another batch: taken from the cache
        assert model._prompt_states.states
        torch.testing.assert_close(model(pixel_values).logits, first, atol=0, rtol=0)
        assert second.shape == (2, 6)

        # an in-place change of a prompt (as an optimizer step) refreshes the cache: the outputs follow
        model.prompt_head.prompt_embeddings[0].mul_(-1.0)
        changed = model(pixel_values).logits
        assert len(calls) == 4
    expected, _ = straightforward_forward(model, pixel_values, capture_maps=False)
    torch.testing.assert_close(changed, expected, atol=TOLERANCE, rtol=0)
    assert not torch.allclose(changed, first)

    # a backbone weight the prompts' keys depend on, changed through load_state_dict
    state = model.state_dict()
    key = next(name for name in state if name.endswith("layers.0.attention.k_proj.weight"))
    state[key] = state[key] * 0.5
    model.load_state_dict(state)
    with torch.no_grad():
        reloaded = model(pixel_values).logits
    expected, _ = straightforward_forward(model, pixel_values, capture_maps=False)
    torch.testing.assert_close(reloaded, expected, atol=TOLERANCE, rtol=0)

    # an edit through .data bypasses the version counters: clear_prompt_state_cache() is the way to say so
    with torch.no_grad():
        model(pixel_values)
    model.prompt_head.prompt_embeddings.data[1].mul_(-1.0)
    model.clear_prompt_state_cache()
    with torch.no_grad():
        edited = model(pixel_values).logits
    expected, _ = straightforward_forward(model, pixel_values, capture_maps=False)
    torch.testing.assert_close(edited, expected, atol=TOLERANCE, rtol=0)

    model.train()  # training mode empties the cache and does not fill it
    assert not model._prompt_states.states
    with torch.no_grad():
        model(pixel_values)
    assert not model._prompt_states.states
    model.eval()
    model(pixel_values)  # with autograd: nothing cached either (the prompts need their gradients)
    assert not model._prompt_states.states


# ------------------------------------------------------------------------------------------ fused inference path
def recorded_fused_kernel_calls(monkeypatch) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """Count the fused attention kernel's calls: the (query shape, key shape) of each."""
    calls = []
    kernel = modeling._fused_attention_kernel()

    def recording(query, key, *args, **kwargs):
        calls.append((tuple(query.shape), tuple(key.shape)))
        return kernel(query, key, *args, **kwargs)

    monkeypatch.setattr(modeling, "_fused_attention_kernel", lambda: recording)
    return calls


@pytest.mark.parametrize("family", SCALE_FAMILIES)
@pytest.mark.parametrize("agnostic", [None, 30, 3])
@pytest.mark.parametrize("training", [False, True])
def test_fused_inference_path_equals_the_explicit_and_straightforward_ones(family, agnostic, training, monkeypatch):
    # 40 classes (or 30 agnostic prompts) outnumber the 17-19 image tokens: the image tokens of layers 1..L-1 attend
    # to the shared prompt keys apart; 3 agnostic prompts do not (concatenated keys, as with autograd)
    num_labels, batch = 40, 3
    if agnostic is None:
        model = tiny_model(family, num_labels=num_labels)
    else:
        model = agnostic_model(family, num_labels=num_labels, agnostic=agnostic)
    model.train(training)
    model.config.class_chunk_size = 7  # several chunks of classes, the last one short
    pixel_values = images(batch)
    candidates = torch.tensor([[39, 0, 5], [7, 7, 21], [13, 2, 38]])

    def outputs():
        with torch.no_grad():
            full = model(pixel_values, output_trait_maps=True)
            top = model(pixel_values, trait_map_top_k=4)
            scored = model(pixel_values, score_classes=candidates)
            again = model(pixel_values)  # in eval: from the cached prompt states
        rankings = model.rank_traits(pixel_values, target_classes=candidates[:, :2], blur="paper", stop=2)
        return full, top, scored, again, rankings

    # explicit matmuls, the last layer's rows in one tile per chunk of classes
    monkeypatch.setattr(modeling, "USE_FUSED_ATTENTION_PARTS", False)
    monkeypatch.setattr(modeling, "PROMPT_ROW_TILE", 10**9)
    explicit = outputs()
    # the fused kernel, and (in eval) the rows in tiles of 2 classes x 3 images
    monkeypatch.setattr(modeling, "USE_FUSED_ATTENTION_PARTS", True)
    monkeypatch.setattr(modeling, "PROMPT_ROW_TILE", 6)
    calls = recorded_fused_kernel_calls(monkeypatch)
    fused = outputs()
    grad = model(pixel_values, output_trait_maps=True)  # with autograd: the backbone's attention over all keys

    tokens = IMAGE_SIZE**2 // 8**2 + model.driver.num_prefix_tokens
    prompts_per_layer = num_labels if agnostic is None else agnostic
    assert calls, "the fused kernel did not run"
    image_layer_calls = [call for call in calls if call[0][2] == batch * tokens and call[1][2] == prompts_per_layer]
    assert bool(image_layer_calls) == (prompts_per_layer > tokens)
    if agnostic is None:
        logits, maps = straightforward_forward(model, pixel_values)
    else:
        logits, maps = straightforward_agnostic_logits(model, pixel_values), grad.trait_maps.detach()
    ranked = [[ranking.ranked_heads for ranking in image] for image in explicit[4]]
    assert [[ranking.ranked_heads for ranking in image] for image in fused[4]] == ranked
    for full, top, scored, again, rankings in (explicit, fused):
        scores = [[ranking.target_scores for ranking in image] for image in rankings]
        torch.testing.assert_close(
            torch.tensor(scores),
            torch.tensor([[ranking.target_scores for ranking in image] for image in explicit[4]]),
            atol=TOLERANCE,
            rtol=0,
        )
        torch.testing.assert_close(full.logits, logits, atol=TOLERANCE, rtol=0)
        torch.testing.assert_close(full.trait_maps, maps, atol=TOLERANCE, rtol=0)
        torch.testing.assert_close(again.logits, logits, atol=TOLERANCE, rtol=0)
        torch.testing.assert_close(scored.logits, logits.gather(1, candidates), atol=TOLERANCE, rtol=0)
        assert torch.equal(top.trait_map_classes, logits.topk(4, dim=-1).indices)
        torch.testing.assert_close(
            top.trait_maps, maps[torch.arange(batch)[:, None], top.trait_map_classes], atol=TOLERANCE, rtol=0
        )
    torch.testing.assert_close(grad.logits.detach(), logits, atol=TOLERANCE, rtol=0)


class LogitsOnly(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, pixel_values):
        return self.model(pixel_values).logits


def test_fused_kernel_stays_out_of_autograd_tracing_and_other_devices(monkeypatch):
    model = tiny_model("vit", num_labels=40)
    pixel_values = images(2)
    calls = recorded_fused_kernel_calls(monkeypatch)
    model(pixel_values).logits.sum().backward()  # autograd: the backbone's attention, differentiable
    assert calls == [] and model.prompt_head.prompt_embeddings.grad.abs().sum() > 0
    with torch.no_grad():
        traced = torch.jit.trace(LogitsOnly(model), (pixel_values,), check_trace=False)  # as the ONNX export
        assert calls == []
        expected = model(pixel_values).logits
        assert calls
    torch.testing.assert_close(traced(pixel_values), expected, atol=TOLERANCE, rtol=0)
    meta = torch.zeros(1, 4, 3, 8, device="meta")
    assert not modeling.fused_attention_applies(meta)


# ------------------------------------------------------------------------------------------ memory bound
class LargestTensors(TorchDispatchMode):
    """Records the shape of every tensor an operator creates (views included) while active."""

    def __init__(self):
        super().__init__()
        self.shapes = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        output = func(*args, **(kwargs or {}))
        for value in output if isinstance(output, (tuple, list)) else (output,):
            if isinstance(value, torch.Tensor):
                self.shapes.append((str(func), tuple(value.shape), value.numel()))
        return output


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("agnostic", [None, 8])
def test_many_classes_run_without_a_tensor_of_classes_times_patches(agnostic, fused, monkeypatch):
    # with the fused attention kernel (CPU inference) and with the explicit matmuls it replaces elsewhere
    monkeypatch.setattr(modeling, "USE_FUSED_ATTENTION_PARTS", fused)
    num_labels, batch, size = 1000, 2, 64  # 8x8 patches
    if agnostic is None:
        model = tiny_model("vit", num_labels=num_labels, image_size=size)
    else:
        model = agnostic_model("vit", num_labels=num_labels, agnostic=agnostic, image_size=size)
    num_heads = model.config.backbone_config.num_attention_heads
    num_patches = (size // 8) ** 2
    # a (B, C, heads, M) tensor, even one head of it: B * C * M elements or more
    bound = batch * num_labels * num_patches
    pixel_values = images(batch, size)
    model.config.class_chunk_size = 32
    with torch.no_grad():
        full = model(pixel_values).logits
        for options in (dict(), dict(trait_map_top_k=5), dict(score_classes=torch.tensor([[3, 999]] * batch))):
            with LargestTensors() as recorder:
                output = model(pixel_values, **options)
            largest = max(recorder.shapes, key=lambda entry: entry[2])
            assert largest[2] < bound, f"{options}: {largest} has >= {bound} elements"
            if "trait_map_top_k" in options:
                assert output.trait_maps.shape == (batch, 5, num_heads, 8, 8)
                torch.testing.assert_close(output.logits, full, atol=TOLERANCE, rtol=0)
        # the check is real: without chunks the explicit last layer forms the (B, heads, C, T) scores
        monkeypatch.setattr(modeling, "USE_FUSED_ATTENTION_PARTS", False)
        model.config.class_chunk_size = num_labels
        with LargestTensors() as recorder:
            model(pixel_values)
        assert max(entry[2] for entry in recorder.shapes) >= batch * num_heads * num_labels * num_patches


def test_prompt_cam_pipeline_gives_maps_of_its_top_k_labels_only_in_bounded_memory(tmp_path):
    import numpy as np
    from PIL import Image
    from transformers import pipeline

    num_labels = 1000
    model = tiny_model("vit", num_labels=num_labels, image_size=64)
    model.config.class_chunk_size = 32
    model.save_pretrained(tmp_path / "model")
    explainer = pipeline("prompt-cam", model=str(tmp_path / "model"))
    picture = Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8))
    with LargestTensors() as recorder:
        results = explainer(picture, top_k=3)
    assert [entry["trait_maps"].shape for entry in results] == [(4, 8, 8)] * 3
    with torch.no_grad():
        pixels = explainer.image_processor(picture, return_tensors="pt")["pixel_values"]
        logits = explainer.model(pixels).logits[0]
    top = logits.topk(3).indices.tolist()
    assert [entry["label"] for entry in results] == [model.config.id2label[i] for i in top]
    largest = max(recorder.shapes, key=lambda entry: entry[2])
    # the unchunked last layer would form the (1, heads, C, T) scores: 4 x 1000 x 65 elements; the largest tensors
    # left are views of the prompt parameters (L - 1, C, D) = 64,000
    assert largest[2] < num_labels * 4 * 64 // 2, largest


@pytest.mark.parametrize(
    "extra, code, named",
    [
        (["--num-agnostic-prompts", "0"], 2, ["--num-agnostic-prompts", "integer >= 1", "got '0'"]),
        (["--num-agnostic-prompts", "2.5"], 2, ["--num-agnostic-prompts", "integer"]),
        (["--prompt-mode", "shallow", "--num-agnostic-prompts", "4"], 1, ["does not apply to prompt mode 'shallow'"]),
        (["--agnostic-prompt-init", "zeros"], 2, ["--agnostic-prompt-init", "'zeros'", "uniform", "image-tokens"]),
        (["--prompt-mode", "shallow", "--agnostic-prompt-init", "image-tokens"], 1, ["'image-tokens' does not apply"]),
    ],
)
def test_train_cli_refuses_bad_agnostic_prompt_counts_before_any_work(extra, code, named, tmp_path, capsys):
    from modeling_promptcam.cli import main as cli_main

    argv = ["train", "--backbone", "b", "--data-dir", "d", "--output-dir", str(tmp_path / "out")] + extra
    try:
        got = cli_main(argv)
    except SystemExit as exit_:
        got = exit_.code
    err = capsys.readouterr().err
    assert got == code, err
    assert "Traceback" not in err and len([line for line in err.splitlines() if "error:" in line]) == 1, err
    for text in named:
        assert text in err, (text, err)
    assert not (tmp_path / "out").exists()


def test_demo_cli_takes_the_agnostic_prompt_count(capsys):
    from modeling_promptcam.cli import main as cli_main
    from modeling_promptcam.demo.options import DemoOptions

    assert DemoOptions(num_agnostic_prompts=50).num_agnostic_prompts == 50
    with pytest.raises(SystemExit) as exit_:
        cli_main(["demo", "--num-agnostic-prompts", "0"])
    assert exit_.value.code == 2
    assert "--num-agnostic-prompts" in capsys.readouterr().err


def test_a_stock_backbone_folder_loads_with_an_agnostic_prompt_count(tmp_path):
    from tests.helpers.training import write_tiny_backbone

    write_tiny_backbone(tmp_path / "backbone")
    model = PromptCamForImageClassification.from_pretrained(
        str(tmp_path / "backbone"), num_labels=12, num_agnostic_prompts=3
    )
    assert model.config.num_agnostic_prompts == 3
    assert model.prompt_head.agnostic_prompt_embeddings.shape[1] == 3
    assert model.prompt_head.prompt_embeddings.shape[:2] == (1, 12)
    with pytest.raises(ValueError, match="does not apply to prompt_mode='shallow'"):
        PromptCamForImageClassification.from_pretrained(
            str(tmp_path / "backbone"), num_labels=12, num_agnostic_prompts=3, prompt_mode="shallow"
        )
