"""The conventions every transformers model follows, checked as transformers' own model tests check them: per-layer
attentions and hidden states (keyword and config), tuple outputs, attention implementations, torch.compile, activation
checkpointing (also under Trainer), device placement through accelerate's hooks, the class flags, the file headers."""

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import Trainer, TrainerCallback, TrainingArguments

from modeling_promptcam import PromptCamForImageClassification
from modeling_promptcam.modeling_promptcam import promptcam_image_processor
from tests.helpers.models import (
    ALL_FAMILIES,
    IMAGE_SIZE,
    _attention_module,
    _embed_and_layer_runner,
    _layers,
    straightforward_forward,
    tiny_model,
)
from tests.helpers.training import CLASS_COLOURS, write_image_folder

REPO = Path(__file__).resolve().parents[1]
TOLERANCE = 1e-5
NUM_LAYERS, NUM_HEADS, NUM_LABELS, HIDDEN = 3, 4, 5, 32


def images(batch: int, seed: int = 7) -> torch.Tensor:
    return torch.randn(batch, 3, IMAGE_SIZE, IMAGE_SIZE, generator=torch.Generator().manual_seed(seed))


def straightforward_hidden_states_and_attentions(model, pixel_values):
    """The official computation with the backbone's own HF layers on the whole sequence (eager attention), returning
    what `output_hidden_states` / `output_attentions` promise: the tokens that flow on after the embeddings and each
    layer (deep: image tokens; shallow: the whole sequence) and each layer's full attention weights."""
    config = model.config
    num_labels = config.num_labels
    prompts = model.prompt_head.prompt_embeddings
    layers = _layers(model)
    family = config.backbone_config.model_type
    captured = []
    hooks = [
        _attention_module(family, layer).register_forward_hook(lambda m, a, output: captured.append(output[1]))
        for layer in layers
    ]
    previous = model.backbone.config._attn_implementation
    model.backbone.config._attn_implementation = "eager"
    try:
        hidden, run_layer = _embed_and_layer_runner(model, pixel_values)
        batch = hidden.shape[0]
        if config.prompt_mode == "deep":
            states = [hidden]
            for index, layer in enumerate(layers):
                hidden = run_layer(layer, torch.cat((prompts[index].expand(batch, -1, -1), hidden), dim=1))
                hidden = hidden[:, num_labels:]
                states.append(hidden)
        else:
            sequence = torch.cat((prompts[0].expand(batch, -1, -1), hidden), dim=1)
            states = [sequence]
            for layer in layers:
                sequence = run_layer(layer, sequence)
                states.append(sequence)
    finally:
        for hook in hooks:
            hook.remove()
        model.backbone.config._attn_implementation = previous
    return states, captured


# ------------------------------------------------------------------------------------ hidden states and attentions
@pytest.mark.parametrize("family", ALL_FAMILIES)
@pytest.mark.parametrize("prompt_mode", ["deep", "shallow"])
def test_hidden_states_and_attentions_match_the_straightforward_path(family, prompt_mode):
    model = tiny_model(family, prompt_mode=prompt_mode, seed=2)
    pixel_values = images(2)
    expected_states, expected_attentions = straightforward_hidden_states_and_attentions(model, pixel_values)
    expected_logits, expected_maps = straightforward_forward(model, pixel_values)

    output = model(pixel_values, output_hidden_states=True, output_attentions=True, output_trait_maps=True)

    tokens = IMAGE_SIZE // 8 * (IMAGE_SIZE // 8) + model.driver.num_prefix_tokens
    flowing = tokens if prompt_mode == "deep" else NUM_LABELS + tokens
    assert len(output.hidden_states) == NUM_LAYERS + 1
    assert len(output.attentions) == NUM_LAYERS
    for state, expected in zip(output.hidden_states, expected_states):
        assert state.shape == (2, flowing, HIDDEN)
        torch.testing.assert_close(state, expected, atol=TOLERANCE, rtol=0)
    for weights, expected in zip(output.attentions, expected_attentions):
        assert weights.shape == (2, NUM_HEADS, NUM_LABELS + tokens, NUM_LABELS + tokens)
        torch.testing.assert_close(weights, expected, atol=TOLERANCE, rtol=0)
        torch.testing.assert_close(weights.sum(-1), torch.ones(weights.shape[:-1]), atol=1e-5, rtol=0)
    torch.testing.assert_close(output.logits, expected_logits, atol=TOLERANCE, rtol=0)
    # the last layer's class-prompt rows, patch columns, are the trait maps
    last = output.attentions[-1][:, :, :NUM_LABELS, NUM_LABELS + model.driver.num_prefix_tokens :]
    torch.testing.assert_close(last.transpose(1, 2).reshape(expected_maps.shape), output.trait_maps)
    torch.testing.assert_close(output.trait_maps, expected_maps, atol=TOLERANCE, rtol=0)


def test_outputs_not_asked_for_are_none_and_the_fast_path_does_no_extra_work(monkeypatch):
    model = tiny_model("dinov2")
    pixel_values = images(2)
    plain = model(pixel_values)
    assert plain.hidden_states is None and plain.attentions is None
    # without flags or maps, no attention weights are materialised anywhere (SDPA for every layer)
    calls = []
    monkeypatch.setattr(model, "_attend_with_weights", lambda *args: calls.append(args))
    monkeypatch.setattr(model, "_last_layer_whole_sequence", lambda *args: calls.append(args))
    assert torch.equal(model(pixel_values).logits, plain.logits)
    assert calls == []


def test_hidden_states_alone_leave_the_logits_bit_identical():
    model = tiny_model("vit", prompt_mode="deep")
    pixel_values = images(3)
    with_states = model(pixel_values, output_hidden_states=True)
    assert torch.equal(with_states.logits, model(pixel_values).logits)
    assert with_states.attentions is None and len(with_states.hidden_states) == NUM_LAYERS + 1


def test_config_flags_are_read_like_every_transformers_model():
    model = tiny_model("vit")
    pixel_values = images(1)
    model.config.output_hidden_states = True
    assert len(model(pixel_values).hidden_states) == NUM_LAYERS + 1
    assert model(pixel_values, output_hidden_states=False).hidden_states is None  # the keyword wins
    model.config.output_hidden_states = False
    # as in transformers, the config flag for attentions needs the eager implementation; the keyword works under any
    assert len(model(pixel_values, output_attentions=True).attentions) == NUM_LAYERS
    model.set_attn_implementation("eager")
    model.config.output_attentions = True
    assert len(model(pixel_values).attentions) == NUM_LAYERS


def test_tuples_follow_transformers_order():
    model = tiny_model("dinov2_with_registers")
    pixel_values, labels = images(2), torch.tensor([1, 3])
    output = model(pixel_values, labels=labels, output_hidden_states=True, output_attentions=True)
    loss, logits, hidden_states, attentions = model(
        pixel_values, labels=labels, output_hidden_states=True, output_attentions=True, return_dict=False
    )
    torch.testing.assert_close(loss, output.loss)
    torch.testing.assert_close(logits, output.logits)
    assert len(hidden_states) == NUM_LAYERS + 1 and len(attentions) == NUM_LAYERS
    torch.testing.assert_close(attentions[-1], output.attentions[-1])
    # Prompt-CAM's own outputs come after transformers' ones; config.return_dict=False gives tuples too
    model.config.return_dict = False
    logits, trait_maps = model(pixel_values, output_trait_maps=True)
    assert logits.shape == (2, NUM_LABELS) and trait_maps.shape == (2, NUM_LABELS, NUM_HEADS, 4, 4)


# ------------------------------------------------------------------------------------ attention implementations
@pytest.mark.parametrize("family", ALL_FAMILIES)
def test_eager_and_sdpa_give_the_same_logits_maps_and_hidden_states(family):
    model = tiny_model(family, prompt_mode="deep" if family != "vit" else "shallow")
    pixel_values = images(2)
    results = {}
    for implementation in ("eager", "sdpa"):
        model.set_attn_implementation(implementation)
        assert model.backbone.config._attn_implementation == implementation
        results[implementation] = model(pixel_values, output_trait_maps=True, output_hidden_states=True)
    eager, sdpa = results["eager"], results["sdpa"]
    torch.testing.assert_close(eager.logits, sdpa.logits, atol=TOLERANCE, rtol=0)
    torch.testing.assert_close(eager.trait_maps, sdpa.trait_maps, atol=TOLERANCE, rtol=0)
    for eager_state, sdpa_state in zip(eager.hidden_states, sdpa.hidden_states):
        torch.testing.assert_close(eager_state, sdpa_state, atol=TOLERANCE, rtol=0)


def test_unclaimed_attention_implementations_are_refused_by_transformers():
    model = tiny_model("vit")
    assert model._supports_sdpa and not model._supports_flash_attn and not model._supports_flex_attn
    with pytest.raises(ValueError):
        model.set_attn_implementation("flex_attention")


@pytest.mark.parametrize("family", ["vit", "dinov3_vit"])
def test_torch_compile_fullgraph_gives_the_same_outputs(family):
    # the eager backend: Dynamo captures the whole forward as one graph (what fullgraph promises) in about a second;
    # inductor's code generation adds half a minute on CPU without testing anything more about the model
    assert PromptCamForImageClassification._can_compile_fullgraph
    model = tiny_model(family)
    pixel_values, labels = images(2), torch.tensor([0, 4])
    torch._dynamo.reset()
    compiled = torch.compile(model, fullgraph=True, backend="eager")
    for options in (dict(labels=labels, output_trait_maps=True), dict(output_attentions=True, trait_map_top_k=2)):
        expected, got = model(pixel_values, **options), compiled(pixel_values, **options)
        for key, value in expected.items():
            if isinstance(value, tuple):
                for a, b in zip(value, got[key]):
                    torch.testing.assert_close(b, a, atol=TOLERANCE, rtol=0)
            else:
                torch.testing.assert_close(got[key], value, atol=TOLERANCE, rtol=0)
    torch._dynamo.reset()


# ------------------------------------------------------------------------------------ activation checkpointing
def prompt_and_head_gradients(model, pixel_values, labels, seed=0):
    model.zero_grad()
    torch.manual_seed(seed)  # same dropout draws with and without checkpointing
    model(pixel_values, labels=labels).loss.backward()
    head = model.prompt_head
    return [head.prompt_embeddings.grad.clone(), head.score.weight.grad.clone(), head.score.bias.grad.clone()]


@pytest.mark.parametrize("family", ALL_FAMILIES)
@pytest.mark.parametrize("prompt_mode", ["deep", "shallow"])
@pytest.mark.parametrize("use_reentrant", [None, True, False])
def test_checkpointing_recomputes_each_layer_and_keeps_the_gradients(family, prompt_mode, use_reentrant, monkeypatch):
    model = tiny_model(family, prompt_mode=prompt_mode).train()
    model.config.prompt_dropout = 0.1
    model.prompt_head.prompt_dropout.p = 0.1
    pixel_values, labels = images(3, seed=3), torch.tensor([0, 4, 2])
    expected = prompt_and_head_gradients(model, pixel_values, labels)

    runs = []
    image_token_layer = model._image_token_layer
    monkeypatch.setattr(model, "_image_token_layer", lambda *args: runs.append(1) or image_token_layer(*args))
    prompt_and_head_gradients(model, pixel_values, labels)
    assert len(runs) == NUM_LAYERS - 1  # without checkpointing: once per layer before the last
    assert model.supports_gradient_checkpointing and not model.is_activation_checkpointing
    kwargs = None if use_reentrant is None else {"use_reentrant": use_reentrant}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # transformers 5 renamed it activation_checkpointing_enable
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    assert model.is_activation_checkpointing
    runs.clear()
    got = prompt_and_head_gradients(model, pixel_values, labels)
    assert len(runs) == 2 * (NUM_LAYERS - 1)  # each layer's image-token computation ran again in backward
    for value, reference in zip(got, expected):
        torch.testing.assert_close(value, reference, atol=1e-6, rtol=0)
    # evaluation is not checkpointed
    runs.clear()
    model.eval()
    with torch.no_grad():
        model(pixel_values)
    assert len(runs) == NUM_LAYERS - 1


def test_trainer_with_gradient_checkpointing_trains(tmp_path):
    write_image_folder(tmp_path / "data", train_per_class=8, val_per_class=0)
    processor = promptcam_image_processor(tiny_model("vit").config)
    names = sorted(CLASS_COLOURS)
    examples = []
    for label, name in enumerate(names):
        for path in sorted((tmp_path / "data" / "train" / name).glob("*.png")):
            pixels = processor(Image.open(path), return_tensors="pt")["pixel_values"][0]
            examples.append({"pixel_values": pixels, "labels": torch.tensor(label)})
    model = tiny_model("vit", num_labels=len(names))

    class Record(TrainerCallback):
        checkpointing = []

        def on_step_end(self, args, state, control, model=None, **kwargs):
            self.checkpointing.append(model.is_activation_checkpointing)

    def evaluate_loss(model):
        model.eval()
        with torch.no_grad():
            batch = {key: torch.stack([example[key] for example in examples]) for key in examples[0]}
            return model(**batch).loss.item()

    initial_loss = evaluate_loss(model)
    initial_prompts = model.prompt_head.prompt_embeddings.detach().clone()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # transformers 5 also spells it activation_checkpointing
        arguments = TrainingArguments(
            output_dir=str(tmp_path / "run"),
            gradient_checkpointing=True,
            per_device_train_batch_size=8,
            num_train_epochs=4,
            learning_rate=0.05,
            report_to=[],
            save_strategy="no",
            use_cpu=True,
            seed=0,
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        Trainer(model=model, args=arguments, train_dataset=examples, callbacks=[Record()]).train()
    assert Record.checkpointing and all(Record.checkpointing)
    assert not torch.equal(model.prompt_head.prompt_embeddings, initial_prompts)
    assert evaluate_loss(model) < initial_loss
    assert not any(parameter.requires_grad for parameter in model.backbone.parameters())


# ------------------------------------------------------------------------------------ device placement
@pytest.mark.parametrize("family", ALL_FAMILIES)
def test_no_split_modules_name_every_backbone_layer_class(family):
    model = tiny_model(family)
    assert {type(layer).__name__ for layer in model.driver.layers()} <= set(model._no_split_modules)


class CountingHook:
    """An accelerate `ModelHook` that counts the calls of the module it is attached to."""

    def __init__(self):
        from accelerate.hooks import ModelHook

        self.hook = type("Counting", (ModelHook,), {"pre_forward": self._pre_forward})()
        self.calls = 0

    def _pre_forward(self, module, *args, **kwargs):
        self.calls += 1
        return args, kwargs


@pytest.mark.parametrize("family", ALL_FAMILIES)
@pytest.mark.parametrize("prompt_mode", ["deep", "shallow"])
def test_accelerate_hooks_on_each_layer_fire_once_per_forward(family, prompt_mode):
    from accelerate.hooks import add_hook_to_module, remove_hook_from_module

    model = tiny_model(family, prompt_mode=prompt_mode)
    pixel_values = images(2)
    expected = model(pixel_values, output_trait_maps=True)
    counters = [CountingHook() for _ in model.driver.layers()]
    for layer, counter in zip(model.driver.layers(), counters):
        add_hook_to_module(layer, counter.hook)
    try:
        got = model(pixel_values, output_trait_maps=True)
        assert [counter.calls for counter in counters] == [1] * NUM_LAYERS
        model(pixel_values, output_hidden_states=True, output_attentions=True)
        assert [counter.calls for counter in counters] == [2] * NUM_LAYERS
        model.rank_traits(pixel_values[:1], stop=2)
        assert [counter.calls for counter in counters] == [3] * NUM_LAYERS
    finally:
        for layer in model.driver.layers():
            remove_hook_from_module(layer)
    assert torch.equal(got.logits, expected.logits) and torch.equal(got.trait_maps, expected.trait_maps)


def split_at_layers(model, offloaded_from: int) -> dict[str, str]:
    """A device map that keeps every module in memory except layers `offloaded_from`.. of the backbone (on disk)."""
    layer_path = "backbone." + model.driver.family.modules.layers
    placed = {}

    def place(module, prefix):
        for name, child in module.named_children():
            path = prefix + name
            if path == layer_path:
                for index in range(len(child)):
                    placed[f"{path}.{index}"] = "disk" if index >= offloaded_from else "cpu"
            elif layer_path.startswith(path + "."):
                place(child, path + ".")
            else:
                placed[path] = "cpu"

    place(model, "")
    return placed


@pytest.mark.parametrize("family", ALL_FAMILIES)
def test_device_map_split_at_layer_boundaries_gives_the_unsplit_outputs(family, tmp_path):
    # two "devices" on one CPU: layers 2.. live on disk and accelerate's hooks load them when each layer runs
    model = tiny_model(family)
    model.save_pretrained(tmp_path / "model")
    pixel_values = images(2)
    expected = model(pixel_values, output_trait_maps=True, output_attentions=True)
    expected_ranking = model.rank_traits(pixel_values, stop=2)
    placed = split_at_layers(model, offloaded_from=1)

    split = PromptCamForImageClassification.from_pretrained(
        tmp_path / "model", device_map=placed, offload_folder=str(tmp_path / "offload")
    )
    assert split.hf_device_map == placed
    offloaded = split.driver.layers()[-1]
    assert all(parameter.device.type == "meta" for parameter in offloaded.parameters())  # really not in memory
    got = split(pixel_values, output_trait_maps=True, output_attentions=True)
    torch.testing.assert_close(got.logits, expected.logits, atol=1e-6, rtol=0)
    torch.testing.assert_close(got.trait_maps, expected.trait_maps, atol=1e-6, rtol=0)
    for a, b in zip(got.attentions, expected.attentions):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
    ranking = split.rank_traits(pixel_values, stop=2)
    assert [r.ranked_heads for r in ranking] == [r.ranked_heads for r in expected_ranking]
    assert set(split.state_dict()) == set(model.state_dict())  # no new weight names


# ------------------------------------------------------------------------------------ files and flags
@pytest.mark.parametrize("name", ["configuration_promptcam.py", "modeling_promptcam.py", "pipeline_promptcam.py"])
def test_remote_code_files_carry_a_copyright_header(name):
    first_line = (REPO / "modeling_promptcam" / name).read_text().splitlines()[0]
    assert first_line.startswith("# Copyright ") and "Apache License, Version 2.0" in first_line


def test_model_type_and_auto_map_are_unchanged(tmp_path):
    tiny_model("vit").save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["model_type"] == "prompt_cam"
    assert config["auto_map"] == {
        "AutoConfig": "configuration_promptcam.PromptCamConfig",
        "AutoModel": "modeling_promptcam.PromptCamForImageClassification",
        "AutoModelForImageClassification": "modeling_promptcam.PromptCamForImageClassification",
    }
    assert np.all([(tmp_path / name).exists() for name in ("modeling_promptcam.py", "pipeline_promptcam.py")])
