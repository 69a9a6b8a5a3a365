"""`promptcam atlas` end to end on a tiny random model and tiny synthetic birds (whose keypoints the generator writes):
the three files, atlas.json's layout and rank order, a self-contained atlas.html, and the one-line errors."""

from __future__ import annotations

import json

import pytest

from modeling_promptcam.cli import main as cli_main
from modeling_promptcam.data import PART_NAMES, class_names, generate_dataset
from tests.helpers.models import save_tiny_model


@pytest.fixture(scope="module")
def birds(tmp_path_factory):
    root = tmp_path_factory.mktemp("atlas")
    generate_dataset(root / "data", train_per_class=1, val_per_class=2, image_size=64, progress=False)
    save_tiny_model(root / "model", class_names())
    return root


def _run(argv, capsys) -> tuple[int, str, str]:
    try:
        code = cli_main(argv)
    except SystemExit as exit_:
        code = exit_.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _assert_one_error_line(err: str, named: list[str]) -> None:
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1 and lines[0].startswith("error:"), err  # never glued to a progress bar's line
    assert "Traceback" not in err
    for text in named:
        assert text in lines[0], (text, err)


def test_atlas_writes_the_json_the_summary_and_a_self_contained_page(birds, capsys):
    out = birds / "out"
    code, printed, _ = _run(
        ["atlas", "--model", str(birds / "model"), "--data", str(birds / "data"), "--parts", str(birds / "data"),
         "--out", str(out), "--all-images", "--min-images", "3", "--gallery", "1", "--no-progress"],
        capsys,
    )  # fmt: skip
    assert code == 0, printed
    assert "Atlas of 8 class(es)" in printed and "atlas.html" in printed
    atlas = json.loads((out / "atlas.json").read_text())
    assert list(atlas) == class_names()
    for name, entry in atlas.items():
        assert entry["images"] == 2 and entry["small_sample"] and len(entry["heads"]) == 4
        rates = [head["top_trait_rate"] for head in entry["heads"]]
        assert rates == sorted(rates, reverse=True), name  # rank order: most often a top trait first
        assert sorted(head["head"] for head in entry["heads"]) == [0, 1, 2, 3]
        for head in entry["heads"] + entry["cls_attention"]["heads"]:
            assert head["named_part"] in PART_NAMES and 0 <= head["consistency"] <= 1 and head["images"] == 2
            assert set(head["part_counts"]) == set(PART_NAMES) - ({"crest"} if name != "crested" else set())
            assert 0 <= head["stability"] <= 1 and len(head["gallery"]) == 1
    summary = json.loads((out / "atlas_summary.json").read_text())
    assert summary["summary"]["prompt-cam"]["judged_heads"] == 32
    assert summary["summary"]["cls-attention"]["judged_heads"] == 32
    assert summary["settings"]["box_size"] == 72 and summary["settings"]["threshold"] == 0.8
    page = (out / "atlas.html").read_text()
    assert "src='http" not in page and "<script" not in page  # self-contained
    assert page.count("data:image/png;base64,") >= 8 * 4 * 2  # a map and a crop per head and class
    for name in class_names():
        assert f"<h2>{name}</h2>" in page
    assert "Most-confused pairs" in page and "CLS-attention heads (baseline)" in page


def test_atlas_errors_are_one_line(birds, tmp_path, capsys):
    base = ["atlas", "--model", str(birds / "model"), "--data", str(birds / "data"), "--out", str(tmp_path / "o")]
    foreign = tmp_path / "foreign.json"
    foreign.write_text(json.dumps({"other/bird.jpg": {"beak": [1, 2]}}))
    code, _, err = _run(base + ["--keypoints", str(foreign)], capsys)
    assert code == 1
    _assert_one_error_line(err, ["name no image of the data", "other/bird.jpg"])
    code, _, err = _run(base + ["--masks", str(birds / "data")], capsys)  # trait masks, not per-part masks
    assert code == 1
    _assert_one_error_line(err, ["holds no part masks"])
    code, _, err = _run(base + ["--parts", str(tmp_path)], capsys)
    assert code == 1
    _assert_one_error_line(err, ["images.txt"])
    code, _, err = _run(base + ["--threshold", "1.5"], capsys)
    assert code == 2 and "--threshold" in err
    other_model = tmp_path / "model"
    save_tiny_model(other_model, ["a", "b"])
    code, _, err = _run(["atlas", "--model", str(other_model), "--data", str(birds / "data"), "--out",
                         str(tmp_path / "o2")], capsys)  # fmt: skip
    assert code == 1
    _assert_one_error_line(err, ["class folders the model does not know"])
    assert not (tmp_path / "o").exists() and not (tmp_path / "o2").exists()


def test_an_unreadable_image_mid_pass_is_one_error_line_after_the_progress_bar(birds, tmp_path, capsys):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(birds / "data", data)
    (data / "val" / "plain" / "plain_0001.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    code, _, err = _run(
        ["atlas", "--model", str(birds / "model"), "--data", str(data), "--out", str(tmp_path / "o"), "--all-images",
         "--batch-size", "4"],
        capsys,
    )  # fmt: skip
    assert code == 1
    _assert_one_error_line(err, ["plain_0001.png is not a readable image", "fix or remove it"])


def test_keypoints_of_train_images_are_accepted_and_of_other_images_refused(birds, tmp_path, capsys):
    from modeling_promptcam.data import read_cub_parts

    annotations = read_cub_parts(birds / "data")
    keypoints = {
        name: {part: list(point) for part, point in parts.items()} for name, parts in annotations.keypoints.items()
    }
    assert any(name.startswith("train/") for name in keypoints)  # the JSON annotates both splits
    file = tmp_path / "keypoints.json"
    file.write_text(json.dumps(keypoints))
    base = ["atlas", "--model", str(birds / "model"), "--data", str(birds / "data"), "--all-images", "--gallery", "0",
            "--no-cls-baseline", "--no-progress"]  # fmt: skip
    code, printed, _ = _run(base + ["--keypoints", str(file), "--out", str(tmp_path / "ok")], capsys)
    assert code == 0, printed
    assert json.loads((tmp_path / "ok" / "atlas.json").read_text())["crested"]["annotated_images"] == 2
    keypoints["val/crested/not_there.png"] = {"head": [1, 1]}
    file.write_text(json.dumps(keypoints))
    code, _, err = _run(base + ["--keypoints", str(file), "--out", str(tmp_path / "bad")], capsys)
    assert code == 1
    _assert_one_error_line(err, ["name no image of the data", "val/crested/not_there.png"])
