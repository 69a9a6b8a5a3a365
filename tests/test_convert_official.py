"""Official Prompt-CAM checkpoints -> our model: exact parity with the official implementation's outputs."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from transformers import AutoImageProcessor, AutoModelForImageClassification, pipeline

from modeling_promptcam import PromptCamForImageClassification
from modeling_promptcam.cli import main as cli_main
from modeling_promptcam.convert import (
    NotAnOfficialCheckpointError,
    convert_official_checkpoint,
    load_official_state_dict,
    read_class_names,
)

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "official"
FIXTURE_NAMES = ("dino_tiny", "dinov2_tiny")
PARITY = 1e-4

pytestmark = pytest.mark.skipif(not FIXTURES.is_dir(), reason="official fixtures live in ../shared (CI has them)")


def fixture(name):
    meta = json.loads((FIXTURES / f"{name}.json").read_text())
    expected = load_file(FIXTURES / f"{name}.expected.safetensors")
    return meta, expected, FIXTURES / f"{name}.model.pt"


def expected_trait_maps(meta, expected):
    num_classes, grid = meta["num_classes"], meta["image_size"] // meta["patch_size"]
    maps = expected["last_layer_attention"][:, :, :num_classes, num_classes + 1 :].transpose(1, 2)
    return maps.reshape(*maps.shape[:3], grid, grid)


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_converted_model_matches_official_logits_and_trait_maps(name):
    meta, expected, checkpoint = fixture(name)
    model = convert_official_checkpoint(checkpoint, num_heads=meta["heads"])
    backbone = model.config.backbone_config
    assert backbone.model_type == ("vit" if meta["family"] == "dino" else "dinov2")
    assert (backbone.hidden_size, backbone.num_hidden_layers, backbone.num_attention_heads) == (
        meta["dim"],
        meta["depth"],
        meta["heads"],
    )
    assert (backbone.patch_size, backbone.image_size, model.config.num_labels) == (
        meta["patch_size"],
        meta["image_size"],
        meta["num_classes"],
    )
    output = model(expected["pixel_values"], output_trait_maps=True)
    logits_error = (output.logits - expected["logits"]).abs().max().item()
    maps_error = (output.trait_maps - expected_trait_maps(meta, expected)).abs().max().item()
    print(f"{name}: max |logits - official| = {logits_error:.2e}, max |trait maps - official| = {maps_error:.2e}")
    assert logits_error <= PARITY
    assert maps_error <= PARITY


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_cli_convert_end_to_end_and_reload_locally_and_through_remote_code(tmp_path, name, capsys):
    meta, expected, checkpoint = fixture(name)
    labels = tmp_path / "classes.txt"
    class_names = [f"Species_{i}" for i in range(meta["num_classes"])]
    labels.write_text("".join(f"{i + 1:03d}.{n}\n" for i, n in enumerate(class_names)))
    out = tmp_path / "converted"
    assert (
        cli_main(["convert", str(checkpoint), str(out), "--num-heads", str(meta["heads"]), "--labels", str(labels)])
        == 0
    )
    assert "Converted" in capsys.readouterr().out

    reloaded = PromptCamForImageClassification.from_pretrained(out)
    assert [reloaded.config.id2label[i] for i in range(meta["num_classes"])] == class_names
    output = reloaded(expected["pixel_values"], output_trait_maps=True)
    assert (output.logits - expected["logits"]).abs().max() <= PARITY
    assert (output.trait_maps - expected_trait_maps(meta, expected)).abs().max() <= PARITY

    script = textwrap.dedent(
        f"""
        import sys
        sys.modules["modeling_promptcam"] = None
        import torch
        from safetensors.torch import load_file
        from transformers import AutoModelForImageClassification
        model = AutoModelForImageClassification.from_pretrained({str(out)!r}, trust_remote_code=True)
        pixels = load_file({str(FIXTURES / f"{name}.expected.safetensors")!r})["pixel_values"]
        torch.save(model(pixels).logits, {str(tmp_path / "remote.pt")!r})
        """
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": str(tmp_path / "modules")}
    subprocess.run([sys.executable, "-c", script], check=True, cwd=tmp_path, env=env)
    remote_logits = torch.load(tmp_path / "remote.pt", weights_only=True)
    assert (remote_logits - expected["logits"]).abs().max() <= PARITY

    # the folder serves the stock pipeline, with the class names
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (90, 70, 3), dtype=np.uint8))
    predictions = pipeline("image-classification", model=str(out))(image, top_k=2)
    assert len(predictions) == 2 and all(p["label"] in class_names for p in predictions)


def official_test_transform(image: Image.Image, size: int) -> torch.Tensor:
    """The official test preprocessing written out: torchvision `Resize((size, size))` on a PIL image is PIL's bilinear
    resize; `ToTensor` divides by 255; `Normalize` with mean = std = 0.5."""
    resized = np.asarray(image.convert("RGB").resize((size, size), Image.BILINEAR), dtype=np.float32) / 255.0
    return torch.from_numpy((resized - 0.5) / 0.5).permute(2, 0, 1)


def test_saved_image_processor_reproduces_the_official_test_preprocessing(tmp_path):
    meta, _, checkpoint = fixture("dino_tiny")
    convert_official_checkpoint(checkpoint, num_heads=meta["heads"]).save_pretrained(tmp_path)
    processor = AutoImageProcessor.from_pretrained(tmp_path, backend="pil")
    rng = np.random.default_rng(1)
    for shape in ((300, 200, 3), (64, 64, 3), (17, 311, 3)):
        image = Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8))
        ours = processor(image, return_tensors="pt").pixel_values[0]
        official = official_test_transform(image, meta["image_size"])
        assert ours.shape == official.shape == (3, meta["image_size"], meta["image_size"])
        assert (ours - official).abs().max() <= 1e-6


def test_class_names_file_formats(tmp_path):
    plain = tmp_path / "plain.txt"
    plain.write_text("Laysan_Albatross\n\nSooty_Albatross\n")
    assert read_class_names(plain) == ["Laysan_Albatross", "Sooty_Albatross"]
    folders = tmp_path / "folders.txt"
    folders.write_text("001.Black_footed_Albatross\n002.Laysan_Albatross\n")
    assert read_class_names(folders) == ["Black_footed_Albatross", "Laysan_Albatross"]
    cub_classes = tmp_path / "classes.txt"
    cub_classes.write_text("1 001.Black_footed_Albatross\n2 002.Laysan_Albatross\n")
    assert read_class_names(cub_classes) == ["Black_footed_Albatross", "Laysan_Albatross"]
    train = tmp_path / "train"
    for folder in ("010.Zebra_Finch", "002.Laysan_Albatross", "001.Black_footed_Albatross"):
        (train / folder).mkdir(parents=True)
    (train / "README.txt").write_text("not a class")
    assert read_class_names(train) == ["Black_footed_Albatross", "Laysan_Albatross", "Zebra_Finch"]
    with pytest.raises(ValueError, match="has no class sub-folders"):
        read_class_names(train / "001.Black_footed_Albatross")
    repeated = tmp_path / "repeated.txt"
    repeated.write_text("a\nb\na\n")
    with pytest.raises(ValueError, match="repeated: a"):
        read_class_names(repeated)


def official_state_dict(name="dino_tiny"):
    return load_official_state_dict(FIXTURES / f"{name}.model.pt")


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda sd: sd.pop("vpt.prompt_embeddings"), "there is no vpt.prompt_embeddings"),
        (
            lambda sd: sd.update({"vpt.prompt_embeddings": torch.zeros(3, 5, 7)}),
            r"expected \(depth, num_classes, 64\)",
        ),
        (lambda sd: sd.update({"vpt.prompt_embeddings": torch.zeros(1, 5, 64)}), "1 prompt layers for a 3-block"),
        (lambda sd: sd.update({"head.weight": torch.zeros(5, 64)}), "a 5-way linear head"),
        (lambda sd: sd.pop("blocks.1.mlp.fc1.weight"), "missing blocks.1.mlp.fc1.weight"),
        (lambda sd: sd.pop("norm.weight"), "missing norm.weight"),
        (lambda sd: sd.update({"extra.weight": torch.zeros(2)}), "weights the conversion does not know: extra.weight"),
    ],
)
def test_state_dicts_that_are_not_official_prompt_cam_checkpoints_are_refused(mutate, message):
    state_dict = official_state_dict()
    mutate(state_dict)
    with pytest.raises(NotAnOfficialCheckpointError, match=message):
        convert_official_checkpoint(state_dict, num_heads=4)


def test_wrong_arguments_are_refused():
    with pytest.raises(NotAnOfficialCheckpointError, match="--backbone dinov2 does not match.*absent \\(DINO\\)"):
        convert_official_checkpoint(official_state_dict(), num_heads=4, backbone="dinov2")
    with pytest.raises(ValueError, match="num_heads=5 does not divide the width 64"):
        convert_official_checkpoint(official_state_dict(), num_heads=5)
    with pytest.raises(ValueError, match="5 classes but 2 class names"):
        convert_official_checkpoint(official_state_dict(), num_heads=4, id2label={0: "a", 1: "b"})


def test_unreadable_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="No checkpoint file"):
        load_official_state_dict(tmp_path / "missing.pt")
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a checkpoint")
    with pytest.raises(NotAnOfficialCheckpointError, match="Could not read .* weights_only=True"):
        load_official_state_dict(corrupt)
    not_tensors = tmp_path / "list.pt"
    torch.save({"model_state_dict": {"a": 1}}, not_tensors)
    with pytest.raises(NotAnOfficialCheckpointError, match="does not hold a state dict of tensors"):
        load_official_state_dict(not_tensors)


def test_cli_errors_and_exit_codes(tmp_path, capsys):
    bad = tmp_path / "bad.pt"
    torch.save({"model_state_dict": {"head.weight": torch.zeros(1, 4)}}, bad)
    assert cli_main(["convert", str(bad), str(tmp_path / "out")]) == 1
    assert "there is no vpt.prompt_embeddings" in capsys.readouterr().err
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "file.txt").write_text("keep me")
    assert cli_main(["convert", str(FIXTURES / "dino_tiny.model.pt"), str(occupied), "--num-heads", "4"]) == 1
    assert "not empty" in capsys.readouterr().err
    assert (occupied / "file.txt").read_text() == "keep me"
    with pytest.raises(SystemExit) as usage:
        cli_main(["convert"])
    assert usage.value.code == 2


def test_console_script_help():
    result = subprocess.run(
        [sys.executable, "-m", "modeling_promptcam", "convert", "--help"], capture_output=True, text=True, check=True
    )
    assert "--num-heads" in result.stdout and "--labels" in result.stdout


def test_auto_class_loads_converted_folder_without_trust_remote_code(tmp_path):
    meta, expected, checkpoint = fixture("dinov2_tiny")
    convert_official_checkpoint(checkpoint, num_heads=meta["heads"]).save_pretrained(tmp_path)
    model = AutoModelForImageClassification.from_pretrained(tmp_path)
    assert isinstance(model, PromptCamForImageClassification)
    assert (model(expected["pixel_values"]).logits - expected["logits"]).abs().max() <= PARITY


def test_convert_example_script_runs_on_a_fixture(tmp_path):
    image = tmp_path / "image.png"
    Image.fromarray(np.random.default_rng(2).integers(0, 256, (80, 60, 3), dtype=np.uint8)).save(image)
    script = Path(__file__).resolve().parents[1] / "examples" / "convert_official.py"
    result = subprocess.run(
        [
            sys.executable,
            str(script),
            str(FIXTURES / "dinov2_tiny.model.pt"),
            str(tmp_path / "out"),
            "--num-heads",
            "4",
        ]
        + ["--image", str(image)],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    lines = result.stdout.strip().splitlines()
    assert lines[0] == "dinov2 backbone, 6 classes"
    scores = [float(line.split()[0]) for line in lines[1:]]
    assert len(scores) == 5 and scores == sorted(scores, reverse=True)
    assert (tmp_path / "out" / "model.safetensors").is_file()
