"""Training with Trainer: end to end, presets, resume, prompt-only adapters, data parallel, Hub folder, bad inputs."""

import json
import logging
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from transformers import TrainerCallback, pipeline

from modeling_promptcam import PromptCamForImageClassification
from modeling_promptcam.cli import main as cli_main
from modeling_promptcam.data import DataError, check_image_folder, to_rgb
from modeling_promptcam.training import TrainOptions, last_complete_checkpoint, run_training
from tests.helpers.training import CLASS_COLOURS, EndOfTraining, write_image_folder, write_tiny_backbone

REPO = Path(__file__).resolve().parents[1]
FAST = dict(epochs=4, warmup_epochs=1, batch_size=8, learning_rate=0.05, image_size=32)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("training")
    write_image_folder(root / "data")
    # odd image modes in the training data: grey, RGBA with transparency, 16-bit grey
    red = root / "data" / "train" / "001.Red_Finch"
    Image.new("RGB", (40, 30), CLASS_COLOURS["001.Red_Finch"]).convert("L").save(red / "grey.png")
    Image.new("RGBA", (32, 32), (*CLASS_COLOURS["001.Red_Finch"], 128)).save(red / "alpha.png")
    Image.fromarray((np.full((32, 32), 40000)).astype(np.uint16)).save(red / "sixteen.png")
    write_tiny_backbone(root / "backbone")
    return root


def options(workspace, output, **overrides):
    return TrainOptions(
        backbone=str(workspace / "backbone"),
        data_dir=str(workspace / "data"),
        output_dir=str(output),
        **{**FAST, **overrides},
    )


def test_end_to_end_cli_training_learns_the_task_and_writes_a_usable_folder(workspace, tmp_path, capsys):
    code = cli_main(
        ["train", "--backbone", str(workspace / "backbone"), "--data-dir", str(workspace / "data")]
        + ["--output-dir", str(tmp_path / "run"), "--epochs", "6", "--warmup-epochs", "1", "--batch-size", "8"]
        + ["--lr", "0.05", "--image-size", "32"]
    )
    assert code == 0
    assert "Validation accuracy" in capsys.readouterr().out
    summary = json.loads((tmp_path / "run" / "training_summary.json").read_text())
    print("end-to-end validation accuracy:", summary["validation_accuracy"])
    assert summary["validation_accuracy"] >= 0.8  # chance is 1/3
    assert summary["classes"] == 3 and summary["train_images"] == 51 and summary["validation_images"] == 18

    final = tmp_path / "run" / "final"
    files = set(os.listdir(final))
    assert {"config.json", "model.safetensors", "preprocessor_config.json", "README.md"} <= files
    assert {"modeling_promptcam.py", "configuration_promptcam.py", "pipeline_promptcam.py"} <= files
    model = PromptCamForImageClassification.from_pretrained(final)
    assert [model.config.id2label[i] for i in range(3)] == sorted(CLASS_COLOURS)
    classifier = pipeline("image-classification", model=str(final))
    blue = Image.new("RGB", (50, 50), CLASS_COLOURS["003.Blue_Finch"])
    assert classifier(blue)[0]["label"] == "003.Blue_Finch"
    card = (final / "README.md").read_text()
    assert f"{summary['validation_accuracy']:.4f}" in card and "Chowdhury_2025_CVPR" in card
    assert "trust_remote_code=True" in card and "learning_rate | 0.05" in card


def test_preset_values_reach_the_optimizer_scheduler_and_model(workspace, tmp_path):
    seen = {"lrs": []}

    class Capture(TrainerCallback):
        def on_step_end(self, args, state, control, optimizer=None, lr_scheduler=None, model=None, **kwargs):
            seen["momentum"] = {g["momentum"] for g in optimizer.param_groups}
            seen["weight_decay"] = max(g["weight_decay"] for g in optimizer.param_groups)
            seen["optimizer"] = type(optimizer.optimizer if hasattr(optimizer, "optimizer") else optimizer).__name__
            seen["lrs"].append(lr_scheduler.get_last_lr()[0])
            seen["base_lr"] = lr_scheduler.base_lrs[0]
            seen["prompt_dropout"] = model.config.prompt_dropout

    # cub-dinov2: lr 0.001, 20 warm-up epochs of 130, momentum 0.9, weight decay 1e-3, lr_min 1e-6, dropout 0
    summary = run_training(
        options(workspace, tmp_path / "run", preset="cub-dinov2", epochs=10, warmup_epochs=2, learning_rate=None),
        callbacks=[Capture()],
    )
    recipe = summary["recipe"]
    assert (recipe["learning_rate"], recipe["lr_min"], recipe["batch_size"]) == (0.001, 1e-6, 8)
    assert seen["optimizer"] == "SGD" and seen["momentum"] == {0.9} and seen["weight_decay"] == 1e-3
    assert seen["base_lr"] == 0.001 and seen["prompt_dropout"] == 0.0
    steps = len(seen["lrs"])
    assert steps == 10 * 7  # 51 images, batch 8 -> 7 steps per epoch
    warmup = round(0.2 * steps)
    assert seen["lrs"][0] < 0.001 / warmup * 1.5  # linear warm-up from ~0
    assert max(seen["lrs"]) == pytest.approx(0.001, rel=1e-3)
    assert int(np.argmax(seen["lrs"])) in (warmup - 1, warmup)
    assert seen["lrs"][-1] < 2e-5  # cosine down to lr_min
    assert all(a >= b for a, b in zip(seen["lrs"][warmup:], seen["lrs"][warmup + 1 :]))


def test_unknown_preset_and_bad_recipe_values_are_refused(workspace, tmp_path):
    with pytest.raises(ValueError, match="Unknown preset 'cub-clip'; available: birds525-dino, cars-dino"):
        run_training(options(workspace, tmp_path / "a", preset="cub-clip"))
    with pytest.raises(ValueError, match=r"warmup epochs must be in \[0, epochs\)"):
        run_training(options(workspace, tmp_path / "b", epochs=3, warmup_epochs=3))


def final_prompts(run_dir):
    return load_file(Path(run_dir) / "final" / "model.safetensors")["prompt_head.prompt_embeddings"]


def test_interrupted_and_resumed_run_ends_with_the_same_prompts(workspace, tmp_path, caplog):
    no_best = {"extra": {"load_best_model_at_end": False}}
    run_training(options(workspace, tmp_path / "straight", **no_best))

    class StopAfterTwoEpochs(TrainerCallback):
        def on_epoch_end(self, args, state, control, **kwargs):
            if round(state.epoch) == 2:
                control.should_training_stop = True

    interrupted = EndOfTraining()
    run_training(options(workspace, tmp_path / "resumed", **no_best), callbacks=[StopAfterTwoEpochs(), interrupted])
    assert interrupted.state.epoch == pytest.approx(2.0)
    checkpoint = last_complete_checkpoint(str(tmp_path / "resumed"))
    assert checkpoint.endswith("checkpoint-14")
    # a checkpoint whose trainer state was never written (killed while saving) is not resumed from
    (tmp_path / "resumed" / "checkpoint-99").mkdir()
    assert last_complete_checkpoint(str(tmp_path / "resumed")) == checkpoint
    # nor one whose trainer state was truncated (killed while writing it): skipped with a warning naming it
    truncated = tmp_path / "resumed" / "checkpoint-98"
    shutil.copytree(checkpoint, truncated)
    state_text = (truncated / "trainer_state.json").read_text()
    (truncated / "trainer_state.json").write_text(state_text[: len(state_text) // 2])
    with caplog.at_level(logging.WARNING, logger="modeling_promptcam.training.trainer"):
        assert last_complete_checkpoint(str(tmp_path / "resumed")) == checkpoint
    assert f"skipping {truncated}" in caplog.text

    resumed = EndOfTraining()
    run_training(options(workspace, tmp_path / "resumed", resume=True, **no_best), callbacks=[resumed])
    assert resumed.state.epoch == pytest.approx(4.0)
    torch.testing.assert_close(
        final_prompts(tmp_path / "resumed"), final_prompts(tmp_path / "straight"), atol=1e-5, rtol=0
    )
    with pytest.raises(ValueError, match="no complete checkpoint to continue from"):
        run_training(options(workspace, tmp_path / "empty", resume=True))


def test_prompt_only_adapter_round_trip_and_merge(workspace, tmp_path):
    from peft import PeftModel

    from modeling_promptcam import load_prompt_adapter, merge_prompt_adapter

    end = EndOfTraining()
    run_training(options(workspace, tmp_path / "run", save_prompts_only=True), callbacks=[end])
    trained = end.model
    final = tmp_path / "run" / "final"
    files = set(os.listdir(final))
    assert {"adapter_config.json", "adapter_model.safetensors", "promptcam_config.json", "README.md"} <= files
    assert "model.safetensors" not in files
    stored = load_file(final / "adapter_model.safetensors")
    assert all("prompt_head" in key for key in stored)
    assert json.loads((final / "adapter_config.json").read_text())["base_model_name_or_path"] == str(
        workspace / "backbone"
    )

    pixel_values = torch.randn(2, 3, 32, 32)
    expected = trained(pixel_values=pixel_values).logits.detach()
    plain = load_prompt_adapter(str(final))
    assert type(plain) is PromptCamForImageClassification
    torch.testing.assert_close(plain(pixel_values).logits, expected, atol=1e-6, rtol=0)

    base = PromptCamForImageClassification.from_pretrained(str(workspace / "backbone"), config=plain.config)
    with_peft = PeftModel.from_pretrained(base, str(final))
    torch.testing.assert_close(with_peft(pixel_values=pixel_values).logits, expected, atol=1e-6, rtol=0)

    merged = merge_prompt_adapter(str(final), str(tmp_path / "merged"))
    reloaded = PromptCamForImageClassification.from_pretrained(tmp_path / "merged")
    torch.testing.assert_close(reloaded(pixel_values).logits, expected, atol=1e-6, rtol=0)
    adapter_bytes = (final / "adapter_model.safetensors").stat().st_size
    full_bytes = (tmp_path / "merged" / "model.safetensors").stat().st_size
    print(f"adapter {adapter_bytes} bytes vs full checkpoint {full_bytes} bytes")
    assert adapter_bytes < full_bytes / 5
    assert merged.config.num_labels == 3


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _ddp_environment(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_"))}
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    return env


def test_torchrun_two_processes_share_each_epoch_and_end_identical(workspace, tmp_path):
    records = tmp_path / "records"
    records.mkdir()
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        str(_free_port()),
    ]
    command += [str(REPO / "tests" / "helpers" / "ddp_train.py"), str(workspace / "backbone"), str(workspace / "data")]
    command += [str(tmp_path / "run"), str(records)]
    subprocess.run(command, check=True, env=_ddp_environment(tmp_path), cwd=tmp_path, timeout=600)
    ranks = [json.loads((records / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2] and "gloo" in ranks[0]["backend"]
    train_images, epochs, batch = 51, 2, 4
    # Accelerate shards the 13 batches of an epoch between the processes and evens them out: 7 batches (28 images)
    # each, the shorter share completed from the start of the epoch
    share = math.ceil(math.ceil(train_images / batch) / 2) * batch
    seen = [[i for i in r["seen_sample_ids"] if i < train_images] for r in ranks]  # ids >= 51: validation images
    assert [len(ids) for ids in seen] == [epochs * share] * 2
    for epoch in range(epochs):
        halves = [set(ids[epoch * share : (epoch + 1) * share]) for ids in seen]
        assert len(halves[0] & halves[1]) <= 2 * share - train_images  # disjoint but for the padding
        assert halves[0] | halves[1] == set(range(train_images))  # together they cover the whole epoch
    assert ranks[0]["prompts"] == ranks[1]["prompts"]  # DDP keeps the replicas identical
    summary = json.loads((tmp_path / "run" / "training_summary.json").read_text())
    assert summary["world_size"] == 2


def test_accelerate_launch_runs_the_cli_data_parallel(workspace, tmp_path):
    # Accelerate 1.15 starts a single process for `--cpu` unless MPI is used; its torchrun-based launcher
    # (`--multi_gpu`) starts the workers, which find no GPU and train data-parallel on CPU over gloo.
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2"]
    command += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    command += ["--main_process_port", str(_free_port())]
    command += ["-m", "modeling_promptcam", "train", "--backbone", str(workspace / "backbone")]
    command += ["--data-dir", str(workspace / "data"), "--output-dir", str(tmp_path / "run"), "--epochs", "1"]
    command += ["--warmup-epochs", "0", "--batch-size", "4", "--image-size", "32", "--lr", "0.05"]
    subprocess.run(command, check=True, env=_ddp_environment(tmp_path), cwd=tmp_path, timeout=600)
    summary = json.loads((tmp_path / "run" / "training_summary.json").read_text())
    assert summary["world_size"] == 2


def test_accelerate_launch_cpu_with_mpi_runs_data_parallel(workspace, tmp_path):
    # `accelerate launch --cpu --num_processes 2` starts two CPU processes through MPI (`--mpirun_hostfile`);
    # CI installs Open MPI (.ci/run), elsewhere the test is skipped when mpirun is missing
    if shutil.which("mpirun") is None:
        if os.environ.get("CI"):
            pytest.fail("mpirun is missing: .ci/run installs openmpi-bin for this test")
        pytest.skip("needs mpirun (Debian: openmpi-bin)")
    hosts = tmp_path / "hosts"
    hosts.write_text("localhost slots=2\n")
    command = [sys.executable, "-m", "accelerate.commands.launch", "--cpu", "--num_processes", "2"]
    command += ["--num_machines", "1", "--mpirun_hostfile", str(hosts), "--mixed_precision", "no"]
    command += ["--dynamo_backend", "no", "--main_process_port", str(_free_port())]
    command += ["-m", "modeling_promptcam", "train", "--backbone", str(workspace / "backbone")]
    command += ["--data-dir", str(workspace / "data"), "--output-dir", str(tmp_path / "run"), "--epochs", "1"]
    command += ["--warmup-epochs", "0", "--batch-size", "4", "--image-size", "32", "--lr", "0.05"]
    env = {**_ddp_environment(tmp_path), "OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}
    subprocess.run(command, check=True, env=env, cwd=tmp_path, timeout=600)
    summary = json.loads((tmp_path / "run" / "training_summary.json").read_text())
    assert summary["world_size"] == 2


def test_hub_folder_is_exactly_what_would_be_uploaded(workspace, tmp_path, monkeypatch):
    import huggingface_hub

    calls = {}
    monkeypatch.setattr(huggingface_hub, "create_repo", lambda repo_id, **kw: calls.setdefault("repo", repo_id))
    monkeypatch.setattr(
        huggingface_hub, "upload_folder", lambda **kw: calls.setdefault("upload", (kw["repo_id"], kw["folder_path"]))
    )
    summary = run_training(options(workspace, tmp_path / "run", epochs=2, push_to_hub="someone/promptcam-finches"))
    final = tmp_path / "run" / "final"
    assert calls == {"repo": "someone/promptcam-finches", "upload": ("someone/promptcam-finches", str(final))}
    assert summary["hub_url"] == "https://huggingface.co/someone/promptcam-finches"
    # the uploaded folder works through remote code alone
    script = (
        "import sys; sys.modules['modeling_promptcam'] = None\n"
        "from transformers import pipeline\nfrom PIL import Image\n"
        f"p = pipeline('prompt-cam', model={str(final)!r}, trust_remote_code=True)\n"
        "print(p(Image.new('RGB', (40, 40), (40, 40, 200)), top_k=1)[0]['trait_maps'].shape)"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": str(tmp_path / "modules")}
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, cwd=tmp_path, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip().splitlines()[-1] == "(4, 4, 4)"


@pytest.mark.parametrize(
    "arrange, message",
    [
        (lambda d: shutil.rmtree(d / "train"), "has no train/ folder"),
        (lambda d: [shutil.rmtree(p) for p in (d / "train").iterdir()], "has no class sub-folders"),
        (lambda d: (d / "val" / "004.Purple_Finch").mkdir(), "classes that train/ does not: 004.Purple_Finch"),
        (
            lambda d: [p.unlink() for p in (d / "train" / "002.Green_Finch").iterdir()],
            "classes without images: 002.Green",
        ),
        (lambda d: (d / "train" / "001.Red_Finch" / "broken.jpg").write_bytes(b"\xff\xd8garbage"), "broken.jpg"),
    ],
)
def test_bad_data_folders_are_refused_before_training(tmp_path, arrange, message):
    data = write_image_folder(tmp_path / "data", train_per_class=2, val_per_class=1)
    arrange(data)
    with pytest.raises(DataError, match=message):
        check_image_folder(str(data))


def test_cli_reports_bad_inputs_with_exit_code_1(workspace, tmp_path, capsys):
    base = ["train", "--data-dir", str(workspace / "data"), "--epochs", "1", "--warmup-epochs", "0"]
    base += ["--image-size", "32", "--batch-size", "8"]
    # a backbone that is neither ViT nor DINOv2
    from transformers import BertConfig

    BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=32).save_pretrained(
        tmp_path / "bert"
    )
    assert cli_main(base + ["--backbone", str(tmp_path / "bert"), "--output-dir", str(tmp_path / "o1")]) == 1
    assert "Unsupported backbone type 'bert'" in capsys.readouterr().err
    # an output folder that holds another run
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "notes.txt").write_text("keep")
    assert cli_main(base + ["--backbone", str(workspace / "backbone"), "--output-dir", str(occupied)]) == 1
    assert "already holds files" in capsys.readouterr().err
    assert (occupied / "notes.txt").read_text() == "keep"
    # a ViT backbone at another image size
    assert cli_main(base[:-4] + ["--backbone", str(workspace / "backbone"), "--output-dir", str(tmp_path / "o2")]) == 1
    assert "pass --image-size 32" in capsys.readouterr().err
    # a missing data folder
    assert (
        cli_main(
            ["train", "--backbone", str(workspace / "backbone"), "--data-dir", str(tmp_path / "none")]
            + ["--output-dir", str(tmp_path / "o3")]
        )
        == 1
    )
    assert "does not exist" in capsys.readouterr().err


def test_odd_image_modes_become_rgb():
    sixteen = Image.fromarray(np.array([[0, 65535]], dtype=np.uint16))
    assert np.asarray(to_rgb(sixteen)).tolist() == [[[0, 0, 0], [255, 255, 255]]]
    assert to_rgb(Image.new("RGBA", (2, 2))).mode == "RGB"
    assert to_rgb(Image.new("L", (2, 2), 7)).getpixel((0, 0)) == (7, 7, 7)
    assert to_rgb(Image.new("CMYK", (2, 2))).mode == "RGB"


def test_train_example_script_runs(workspace, tmp_path):
    command = [sys.executable, str(REPO / "examples" / "train.py"), "--backbone", str(workspace / "backbone")]
    command += ["--data-dir", str(workspace / "data"), "--output-dir", str(tmp_path / "run"), "--epochs", "3"]
    command += ["--lr", "0.05", "--image-size", "32"]
    result = subprocess.run(command, capture_output=True, text=True, check=True, env=_ddp_environment(tmp_path))
    assert "eval_accuracy" in result.stdout
    model = PromptCamForImageClassification.from_pretrained(tmp_path / "run" / "final")
    assert model.config.num_labels == 3


def test_training_on_a_datasets_dataset_with_other_column_names(workspace, tmp_path, capsys):
    from datasets import ClassLabel, Dataset, DatasetDict, Features
    from datasets import Image as ImageFeature

    def split(per_class, seed):
        rng = np.random.default_rng(seed)
        images, labels = [], []
        for label, colour in enumerate(CLASS_COLOURS.values()):
            for _ in range(per_class):
                noise = rng.normal(0, 30, (32, 32, 3))
                images.append(Image.fromarray(np.clip(np.asarray(colour) + noise, 0, 255).astype(np.uint8)))
                labels.append(label)
        features = Features({"picture": ImageFeature(), "species": ClassLabel(names=["red", "green", "blue"])})
        return Dataset.from_dict({"picture": images, "species": labels}, features=features)

    DatasetDict({"train": split(12, 0), "test": split(4, 1)}).save_to_disk(tmp_path / "saved")
    base = ["train", "--backbone", str(workspace / "backbone"), "--dataset", str(tmp_path / "saved")]
    base += ["--epochs", "4", "--warmup-epochs", "1", "--batch-size", "8", "--lr", "0.05", "--image-size", "32"]
    assert cli_main(base + ["--output-dir", str(tmp_path / "bad")]) == 1
    assert "has no column 'image' (columns: picture, species)" in capsys.readouterr().err
    code = cli_main(
        base + ["--image-column", "picture", "--label-column", "species", "--output-dir", str(tmp_path / "run")]
    )
    assert code == 0
    summary = json.loads((tmp_path / "run" / "training_summary.json").read_text())
    assert (summary["train_images"], summary["validation_images"]) == (36, 12)
    assert summary["validation_accuracy"] >= 0.8
    model = PromptCamForImageClassification.from_pretrained(tmp_path / "run" / "final")
    assert model.config.id2label == {0: "red", 1: "green", 2: "blue"}


EXIT_SCRIPT = """
import sys, torch
from modeling_promptcam.cli.train import distributed_exit
torch.distributed.init_process_group("gloo", init_method="tcp://127.0.0.1:{port}", rank=0, world_size=1)
if sys.argv[1] == "fail":
    try:
        with distributed_exit():
            raise ValueError("bad data")
    except ValueError:
        print("raised; group closed:", not torch.distributed.is_initialized())
    sys.exit(3)
with distributed_exit():
    print("trained")
print("not reached: the process ends inside distributed_exit")
sys.exit(4)
"""


@pytest.mark.parametrize("outcome", ["succeed", "fail"])
def test_the_distributed_exit_path_closes_the_group_and_ends_the_process(tmp_path, outcome):
    script = tmp_path / "exit.py"
    script.write_text(EXIT_SCRIPT.format(port=_free_port()))
    result = subprocess.run(
        [sys.executable, str(script), outcome],
        env=_ddp_environment(tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
    )
    if outcome == "succeed":  # barrier, destroy, then exit 0 at once (nothing after the with block runs)
        assert (result.returncode, result.stdout) == (0, "trained\n"), result.stderr
    else:  # the error goes on (to the CLI's error path) after the group was destroyed without a barrier
        assert (result.returncode, result.stdout) == (3, "raised; group closed: True\n"), result.stderr
