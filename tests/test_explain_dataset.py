"""Whole-dataset explanation (`promptcam explain --data-dir / --dataset --format parquet`, `explain_dataset`): the
Parquet dataset it writes (schema, values equal to direct model calls), resuming after an interruption, refusing
another run's folder, bad input, and a 2-process data-parallel run."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
from PIL import Image
from transformers import AutoImageProcessor

from modeling_promptcam import PromptCamForImageClassification
from modeling_promptcam.cli import main
from modeling_promptcam.data import open_rgb
from modeling_promptcam.explain import ExplainOptions, ShardsOfAnotherRunError, explain_dataset
from modeling_promptcam.explain import shards as shards_module
from modeling_promptcam.explain.shards import MANIFEST_FILE
from tests.helpers.app import CLASS_NAMES, random_image
from tests.helpers.models import save_tiny_model

REPO = Path(__file__).resolve().parents[1]
TOP_K = 2


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("model")
    save_tiny_model(folder, CLASS_NAMES)
    return folder


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """A CUB-style folder: 7 train images of two classes, 3 validation images (one 16-bit), one unreadable file."""
    root = tmp_path_factory.mktemp("data")
    for split, name, count, seed in (
        ("train", CLASS_NAMES[1], 4, 0),
        ("train", CLASS_NAMES[2], 3, 10),
        ("val", CLASS_NAMES[2], 2, 20),
    ):
        (root / split / name).mkdir(parents=True, exist_ok=True)
        for number in range(count):
            random_image(seed + number).save(root / split / name / f"img{number}.png")
    sixteen = np.linspace(0, 60000, 40 * 30).reshape(30, 40).astype(np.uint16)
    Image.fromarray(sixteen).save(root / "val" / CLASS_NAMES[2] / "depth.png")
    (root / "val" / CLASS_NAMES[2] / "broken.png").write_bytes(b"not an image")
    return root


def options(model_folder, out, **overrides) -> ExplainOptions:
    """The settings of the tests' runs (top-2, batches of 3, shards of 4 images) with `overrides` (the source)."""
    values = dict(top_k=TOP_K, output_dir=str(out), batch_size=3, shard_size=4, progress=False)
    values.update({key: str(value) if isinstance(value, Path) else value for key, value in overrides.items()})
    return ExplainOptions(str(model_folder), **values)


def load(out) -> datasets.Dataset:
    return datasets.load_dataset("parquet", data_dir=str(Path(out) / "data"), split="train")


def error_lines(err: str) -> list[str]:
    """The `error: ...` lines of a command's stderr (progress bars of model loading may come before them)."""
    return [line for line in err.replace("\r", "\n").splitlines() if line.startswith("error: ")]


def shard_files(out) -> list[Path]:
    return sorted((Path(out) / "data").glob("*.parquet"))


@pytest.fixture(scope="module")
def explained(model_folder, data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("explained") / "run"
    result = explain_dataset(options(model_folder, out, data_dir=data_dir))
    return out, result


def test_writes_a_loadable_dataset_with_every_image_once(explained, model_folder):
    out, result = explained
    # 11 files listed (7 train images, 3 validation images and the broken file), cut in shards of 4, 4 and 3
    assert (result.images, result.shards, result.resumed) == (11, 3, 0)
    assert [path.name for path in shard_files(out)] == [f"shard-0000{i}-of-00003.parquet" for i in range(3)]
    rows = load(out)
    also = datasets.Dataset.from_parquet(str(out / "data" / "*.parquet"))
    assert len(rows) == len(also) == 11 and rows["image_id"] == also["image_id"] and rows["index"] == list(range(11))
    assert sorted(rows["image_id"]) == sorted(set(rows["image_id"]))
    expected_ids = [
        f"train/{name}/img{i}.png" for name, count in ((CLASS_NAMES[1], 4), (CLASS_NAMES[2], 3)) for i in range(count)
    ]
    expected_ids += [f"val/{CLASS_NAMES[2]}/{name}" for name in ("broken.png", "depth.png", "img0.png", "img1.png")]
    assert rows["image_id"] == expected_ids
    assert rows["split"] == ["train"] * 7 + ["validation"] * 4
    assert rows["label_name"] == [CLASS_NAMES[1]] * 4 + [CLASS_NAMES[2]] * 7
    assert rows["label"] == [1] * 4 + [2] * 7  # the model's class indices
    # the schema: fixed-length top-k, float16 trait maps of (heads, grid, grid)
    assert rows.features["top_k_labels"].length == TOP_K
    for side in ("predicted", "true"):
        maps = rows.features[f"{side}_trait_maps"]
        assert isinstance(maps, datasets.Array3D) and maps.shape == (4, 4, 4) and maps.dtype == "float16"
        assert str(rows.data.schema.field(f"{side}_trait_maps").type.storage_type).endswith("halffloat>>>")
    # the unreadable file: a row with the reason and no model columns; the run says it failed
    broken = rows[expected_ids.index(f"val/{CLASS_NAMES[2]}/broken.png")]
    assert "not a readable image" in broken["error"] and broken["predicted"] is None
    assert broken["predicted_trait_maps"] is None and broken["label"] == 2
    assert result.failures == [(broken["image_id"], broken["error"])] and not result.ok
    manifest = json.loads((out / MANIFEST_FILE).read_text())
    assert manifest["settings"]["top_k"] == TOP_K and manifest["images"] == 11 and manifest["shard_size"] == 4
    assert manifest["model"] == shards_module.model_fingerprint(str(model_folder))
    assert manifest["model"]["path"] == os.path.abspath(model_folder) and len(manifest["model"]["sha256"]) == 64


def test_values_equal_direct_model_calls(explained, model_folder):
    out, _ = explained
    rows = load(out)
    model = PromptCamForImageClassification.from_pretrained(model_folder).eval()
    processor = AutoImageProcessor.from_pretrained(model_folder)
    wrong = 0
    for row in rows:
        if row["error"] is not None:
            continue
        pixel_values = processor(open_rgb(row["path"]), return_tensors="pt").pixel_values
        with torch.no_grad():
            probabilities = model(pixel_values).logits[0].softmax(-1)
        best = probabilities.topk(TOP_K)
        assert row["top_k_labels"] == best.indices.tolist() and row["predicted"] == row["top_k_labels"][0]
        assert row["top_k_names"] == [CLASS_NAMES[i] for i in row["top_k_labels"]]
        np.testing.assert_allclose(row["top_k_scores"], best.values.numpy(), rtol=1e-5, atol=1e-6)
        assert row["correct"] == (row["label"] == row["predicted"])
        wrong += not row["correct"]
        for side, target in (("predicted", row["predicted"]), ("true", row["label"])):
            with torch.no_grad():
                maps = model(pixel_values, trait_map_classes=torch.tensor([[target]])).trait_maps[0, 0]
            np.testing.assert_allclose(np.asarray(row[f"{side}_trait_maps"]), maps.numpy(), rtol=2e-3, atol=2e-4)
            (ranking,) = model.rank_traits(pixel_values, target_classes=torch.tensor([target]))
            assert row[f"{side}_ranked_heads"] == ranking.ranked_heads
            assert row[f"{side}_top_traits"] == ranking.top_traits
            assert row[f"{side}_misclassified_after"] == ranking.misclassified_after
    assert wrong > 0  # the true-class columns were computed for some misclassified image, not copied


def test_an_interrupted_run_resumes_without_redoing_or_duplicating_shards(
    model_folder, data_dir, tmp_path, monkeypatch
):
    out = tmp_path / "run"
    written = []
    real_write = shards_module.write_shard

    def write_then_stop(output_dir, index, count, rows, features):
        if written:  # the second shard: the process dies while writing it (a half-written temporary file)
            Path(shards_module.shard_path(output_dir, index, count) + ".tmp").write_bytes(b"PAR1 half")
            raise KeyboardInterrupt
        written.append(index)
        return real_write(output_dir, index, count, rows, features)

    monkeypatch.setattr("modeling_promptcam.explain.dataset.write_shard", write_then_stop)
    with pytest.raises(KeyboardInterrupt):
        explain_dataset(options(model_folder, out, data_dir=data_dir))
    assert [path.name for path in shard_files(out)] == ["shard-00000-of-00003.parquet"]
    first = shard_files(out)[0]
    before = (first.stat().st_mtime_ns, first.read_bytes())

    resumed = []

    def write_and_record(output_dir, index, count, rows, features):
        resumed.append(index)
        return real_write(output_dir, index, count, rows, features)

    monkeypatch.setattr("modeling_promptcam.explain.dataset.write_shard", write_and_record)
    result = explain_dataset(options(model_folder, out, data_dir=data_dir))
    assert resumed == [1, 2] and result.resumed == 1  # the finished shard is not redone
    assert (first.stat().st_mtime_ns, first.read_bytes()) == before
    rows = load(out)
    assert rows["index"] == list(range(11)) and len(set(rows["image_id"])) == 11
    # a complete run again: nothing to do
    resumed.clear()
    assert explain_dataset(options(model_folder, out, data_dir=data_dir)).resumed == 3 and resumed == []


def test_a_damaged_shard_is_redone(explained, model_folder, data_dir, tmp_path):
    out = tmp_path / "copy"
    out.mkdir()
    source, _ = explained
    (out / MANIFEST_FILE).write_bytes((source / MANIFEST_FILE).read_bytes())
    (out / "data").mkdir()
    for path in shard_files(source):
        (out / "data" / path.name).write_bytes(path.read_bytes())
    (out / "data" / "shard-00001-of-00003.parquet").write_bytes(b"damaged")
    result = explain_dataset(options(model_folder, out, data_dir=data_dir))
    assert result.resumed == 2 and len(load(out)) == 11


def test_a_folder_of_another_run_is_refused_naming_what_differs(explained, model_folder, data_dir, tmp_path, capsys):
    out, _ = explained
    before = {path.name: path.read_bytes() for path in shard_files(out)}
    with pytest.raises(ShardsOfAnotherRunError, match="--top-k: 2 there, 3 now"):
        explain_dataset(options(model_folder, out, data_dir=data_dir, top_k=3))
    with pytest.raises(ShardsOfAnotherRunError, match="--blur: 'paper' there, 'spatial' now"):
        explain_dataset(options(model_folder, out, data_dir=data_dir, blur="spatial"))
    with pytest.raises(ShardsOfAnotherRunError, match="--shard-size: 4 there, 5 now"):
        explain_dataset(options(model_folder, out, data_dir=data_dir, shard_size=5))
    with pytest.raises(ShardsOfAnotherRunError, match="--split: None there, 'train' now"):
        explain_dataset(options(model_folder, out, data_dir=data_dir, split="train"))
    other = tmp_path / "other_model"
    model = save_tiny_model(other, CLASS_NAMES)
    with torch.no_grad():
        model.prompt_head.prompt_embeddings.add_(1.0)  # same config, other weights
    model.save_pretrained(other)
    with pytest.raises(ShardsOfAnotherRunError, match="another model"):
        explain_dataset(options(other, out, data_dir=data_dir))
    # the CLI: one error line, exit 1, nothing changed
    line = ["explain", "--model", str(other), "--data-dir", str(data_dir), "--out", str(out), "--top-k", "2"]
    assert main(line + ["--shard-size", "4", "--no-progress"]) == 1
    (line,) = error_lines(capsys.readouterr().err)
    assert "another model" in line
    assert {path.name: path.read_bytes() for path in shard_files(out)} == before
    # a folder of other files is not a run to resume
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="no manifest.json"):
        explain_dataset(options(model_folder, tmp_path / "busy", data_dir=data_dir))


@pytest.fixture(scope="module")
def saved_dataset(tmp_path_factory):
    """A DatasetDict on disk: train and test splits, an Image column, a ClassLabel over two of the model's classes."""
    root = tmp_path_factory.mktemp("saved")
    features = datasets.Features(
        {"image": datasets.Image(), "label": datasets.ClassLabel(names=[CLASS_NAMES[3], CLASS_NAMES[0]])}
    )
    splits = {}
    for name, seeds in (("train", range(5)), ("test", range(30, 33))):
        splits[name] = datasets.Dataset.from_dict(
            {"image": [random_image(seed) for seed in seeds], "label": [seed % 2 for seed in seeds]}, features=features
        )
    datasets.DatasetDict(splits).save_to_disk(str(root / "saved"))
    return root / "saved"


def test_a_saved_dataset_with_its_label_column(saved_dataset, model_folder, tmp_path):
    out = tmp_path / "run"
    result = explain_dataset(options(model_folder, out, dataset=saved_dataset))
    rows = load(out)
    assert result.ok and result.images == 8 and rows["split"] == ["train"] * 5 + ["test"] * 3
    assert rows["image_id"] == [f"train/{i}" for i in range(5)] + [f"test/{i}" for i in range(3)]
    assert rows["path"] == [None] * 8
    # the dataset's class names mapped to the model's class indices
    names = [CLASS_NAMES[3], CLASS_NAMES[0]]
    assert rows["label_name"] == [names[s % 2] for s in [*range(5), *range(30, 33)]]
    assert rows["label"] == [CLASS_NAMES.index(name) for name in rows["label_name"]]
    # one split
    only = explain_dataset(options(model_folder, tmp_path / "test", dataset=saved_dataset, split="test"))
    assert only.images == 3 and load(tmp_path / "test")["image_id"] == ["test/0", "test/1", "test/2"]
    # the same pixels as a direct call on the decoded image
    model = PromptCamForImageClassification.from_pretrained(model_folder).eval()
    processor = AutoImageProcessor.from_pretrained(model_folder)
    with torch.no_grad():
        logits = model(processor(random_image(31), return_tensors="pt").pixel_values).logits[0]
    assert rows[6]["top_k_labels"] == logits.topk(TOP_K).indices.tolist()


def test_a_local_parquet_dataset_by_path_with_other_columns(model_folder, tmp_path):
    folder = tmp_path / "local"
    folder.mkdir()
    features = datasets.Features({"picture": datasets.Image(), "species": datasets.Value("int64")})
    table = datasets.Dataset.from_dict(
        {"picture": [random_image(s) for s in range(3)], "species": [0, 3, 1]}, features=features
    )
    table.to_parquet(str(folder / "train.parquet"))
    out = tmp_path / "run"
    result = explain_dataset(
        options(model_folder, out, dataset=folder, image_column="picture", label_column="species")
    )
    rows = load(out)
    assert result.images == 3 and rows["label"] == [0, 3, 1]
    assert rows["label_name"] == [CLASS_NAMES[i] for i in (0, 3, 1)]
    # without a label column the true-class columns stay empty
    plain = tmp_path / "plain"
    plain.mkdir()
    datasets.Dataset.from_dict(
        {"image": [random_image(5)]}, features=datasets.Features({"image": datasets.Image()})
    ).to_parquet(str(plain / "train.parquet"))
    explain_dataset(options(model_folder, tmp_path / "plain_run", dataset=plain))
    row = load(tmp_path / "plain_run")[0]
    assert row["label"] is None and row["true_trait_maps"] is None and row["correct"] is None
    assert row["predicted_trait_maps"] is not None


def run_cli(argv, capsys) -> tuple[int, str]:
    try:
        code = main(argv)
    except SystemExit as stopped:
        code = stopped.code
    return code, capsys.readouterr().err


@pytest.mark.parametrize(
    "extra, code, words",
    [
        ([], 2, ["one of the arguments IMAGE --data-dir --dataset is required"]),
        (["x.png", "--data-dir", "{data}"], 2, ["--data-dir: not allowed with argument IMAGE"]),
        (["--data-dir", "{data}", "--dataset", "d"], 2, ["not allowed with argument --data-dir"]),
        (["--data-dir", "{data}", "--format", "html"], 2, ["--format html", "--format parquet"]),
        (["--data-dir", "{data}", "--classes", "Sooty_Albatross"], 2, ["--classes applies to --format html"]),
        (["--data-dir", "{data}", "--alpha", "0.3"], 2, ["--alpha applies to --format html"]),
        (["x.png", "--split", "train"], 2, ["--split applies to --data-dir / --dataset"]),
        (["x.png", "--batch-size", "8"], 2, ["--batch-size applies to --format parquet"]),
        (["--data-dir", "{data}", "--image-column", "pic"], 2, ["--image-column applies to --dataset only"]),
        (["--data-dir", "{data}", "--batch-size", "0"], 2, ["--batch-size", "integer >= 1"]),
        (["--data-dir", "{data}", "--shard-size", "-1"], 2, ["--shard-size", "integer >= 1"]),
        (["--data-dir", "{data}", "--format", "csv"], 2, ["--format", "invalid choice"]),
        (["--data-dir", "{data}", "--top-k", "6"], 1, ["--top-k 6", "4 classes", "--top-k 4 or less"]),
        (["--data-dir", "{data}", "--split", "holdout"], 1, ["--split 'holdout'", "train", "validation", "val"]),
        (["--data-dir", "{missing}"], 1, ["does not exist"]),
        (["--dataset", "{no_image}"], 1, ["no image column 'image'", "its columns are picture, label"]),
        (["--dataset", "{no_image}", "--image-column", "label"], 1, ["not an Image feature"]),
        (["--dataset", "{saved}", "--label-column", "kind"], 1, ["no label column 'kind'", "image, label"]),
        (["--dataset", "{saved}", "--split", "val"], 1, ["--split 'val'", "train, test"]),
        (["--dataset", "{missing}"], 1, ["--dataset", "load_dataset cannot find it"]),
        (["--dataset", "{bad_label}"], 1, ["train/1: label 9 is not a class of the model (0 .. 3)"]),
    ],
)
def test_bad_input_is_one_clear_line_before_any_work(
    extra, code, words, model_folder, data_dir, saved_dataset, tmp_path, capsys
):
    no_image = tmp_path / "no_image"
    datasets.Dataset.from_dict({"picture": ["a"], "label": [0]}).save_to_disk(str(no_image))
    bad_label = tmp_path / "bad_label"
    image_features = datasets.Features({"image": datasets.Image(), "label": datasets.Value("int64")})
    rows = {"image": [random_image(0), random_image(1)], "label": [1, 9]}
    datasets.Dataset.from_dict(rows, features=image_features).save_to_disk(str(bad_label))
    places = {"data": data_dir, "missing": tmp_path / "missing", "no_image": no_image, "saved": saved_dataset}
    places["bad_label"] = bad_label
    out = tmp_path / "out"
    line = ["explain", "--model", str(model_folder), "--out", str(out), "--no-progress"]
    line += [token.format(**places) for token in extra]
    got, err = run_cli(line, capsys)
    assert got == code, err
    for word in words:
        assert word in err, err
    assert "Traceback" not in err
    if code == 1:
        assert len(error_lines(err)) == 1
    assert not out.exists()  # refused before anything is written


def test_parquet_from_image_files_and_html_stays_the_default(model_folder, tmp_path, capsys):
    image = tmp_path / CLASS_NAMES[2] / "bird.png"
    image.parent.mkdir()
    random_image(3).save(image)
    html = tmp_path / "html"
    assert main(["explain", "--model", str(model_folder), str(image), "--out", str(html), "--no-progress"]) == 0
    assert (html / "report.html").is_file() and not (html / MANIFEST_FILE).exists()
    out = tmp_path / "parquet"
    line = ["explain", "--model", str(model_folder), str(image), str(tmp_path / "nothing.png"), "--out", str(out)]
    assert main(line + ["--format", "parquet", "--top-k", "3", "--no-progress"]) == 1
    captured = capsys.readouterr()
    assert "nothing.png: no such file" in captured.err and "Explained 1 of 2 image(s) into 1 Parquet" in captured.out
    rows = load(out)
    assert rows["image_id"] == [str(image), str(tmp_path / "nothing.png")]
    assert rows["label"] == [2, None]  # the parent folder names a model class; "tmp..." does not
    assert rows.features["top_k_labels"].length == 3
    # the default --top-k (5) lists every class of a model with fewer (4 here); a larger k given is refused
    default = tmp_path / "default_k"
    assert (
        main(["explain", "--model", str(model_folder), str(image), "--out", str(default), "--format", "parquet"]) == 0
    )
    assert "images/s" in capsys.readouterr().err  # the progress bar shows the rate
    assert load(default)[0]["top_k_names"] == [CLASS_NAMES[i] for i in load(default)[0]["top_k_labels"]]
    assert sorted(load(default)[0]["top_k_labels"]) == [0, 1, 2, 3]


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def launcher(kind: str, tmp_path) -> tuple[list[str], dict]:
    """The start of a 2-process command line and its environment: torchrun, or `accelerate launch --cpu` through MPI
    (as tests/test_training.py starts them)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_"))}
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    if kind == "torchrun":
        command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
        return command + ["--master_port", str(_free_port()), "-m", "modeling_promptcam"], env
    if shutil.which("mpirun") is None:
        if os.environ.get("CI"):
            pytest.fail("mpirun is missing: .ci/run installs openmpi-bin for this test")
        pytest.skip("needs mpirun (Debian: openmpi-bin)")
    hosts = tmp_path / "hosts"
    hosts.write_text("localhost slots=2\n")
    command = [sys.executable, "-m", "accelerate.commands.launch", "--cpu", "--num_processes", "2"]
    command += ["--num_machines", "1", "--mpirun_hostfile", str(hosts), "--mixed_precision", "no"]
    command += ["--dynamo_backend", "no", "--main_process_port", str(_free_port()), "-m", "modeling_promptcam"]
    return command, {**env, "OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}


@pytest.mark.parametrize("kind", ["torchrun", "accelerate_mpi"])
def test_two_processes_write_one_dataset_with_every_image_once(kind, explained, model_folder, data_dir, tmp_path):
    out = tmp_path / "parallel"
    command, env = launcher(kind, tmp_path)
    command += ["explain", "--model", str(model_folder), "--data-dir", str(data_dir), "--out", str(out)]
    command += ["--top-k", str(TOP_K), "--batch-size", "3", "--shard-size", "4", "--no-progress"]
    finished = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert finished.returncode == 1, finished.stderr  # the broken image
    # one summary, by the main process, for the whole run of both processes
    summary = "Explained 10 of 11 image(s) into 3 Parquet shard(s)"
    assert finished.stdout.count(summary) == 1 and "by 2 processes" in finished.stdout, finished.stdout
    expected = [f"error: {explained[1].errors[0]}"]
    if kind == "torchrun":
        assert error_lines(finished.stderr) == expected  # listed once, by the main process
    else:  # accelerate's launcher prints its workers' output again when one exits with an error
        assert set(error_lines(finished.stderr)) == set(expected)
    rows = load(out)
    single = load(explained[0])
    assert rows["index"] == list(range(11)) and rows["image_id"] == single["image_id"]
    assert rows["top_k_labels"] == single["top_k_labels"] and rows["true_ranked_heads"] == single["true_ranked_heads"]
    readable = [k for k, error in enumerate(rows["error"]) if error is None]
    np.testing.assert_allclose(
        np.asarray([rows[k]["predicted_trait_maps"] for k in readable], dtype=np.float32),
        np.asarray([single[k]["predicted_trait_maps"] for k in readable], dtype=np.float32),
        atol=2e-3,
    )
