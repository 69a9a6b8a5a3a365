"""Training data from an image folder: exactly what the package's listing reads (data/folders.py), as a `datasets`
dataset with `Image` / `ClassLabel` features; the layouts `datasets`' `imagefolder` inference got wrong."""

from __future__ import annotations

import os

import datasets
import numpy as np
import pytest
from PIL import Image

from modeling_promptcam.data.folders import DataError, check_image_folder
from modeling_promptcam.data.loading import load_image_folder
from modeling_promptcam.data.transforms import SAMPLE_ID


def _image(path, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8, 3), value, dtype=np.uint8)).save(path)


def _listed(dataset) -> list[tuple[str, str]]:
    """(file name, class name) of every row, in row order."""
    names = dataset.features["label"].names
    raw = dataset.cast_column("image", datasets.Image(decode=False))
    return [(os.path.basename(row["image"]["path"]), names[row["label"]]) for row in raw]


def test_the_dataset_is_exactly_the_listing_with_image_and_classlabel_features(tmp_path):
    _image(tmp_path / "train" / "b" / "1.png", 10)
    _image(tmp_path / "train" / "a" / "2.jpg", 20)
    _image(tmp_path / "train" / "a" / "deeper" / "still" / "3.png", 30)  # any depth below the class folder
    _image(tmp_path / "train" / "a" / ".hidden.png", 40)  # hidden files and folders are skipped
    _image(tmp_path / "train" / "a" / ".cache" / "4.png", 50)
    _image(tmp_path / "train" / ".trash" / "5.png", 60)  # a hidden folder is no class
    (tmp_path / "train" / "metadata.csv").write_text("file_name,label\n1.png,zzz\n")  # not a metadata switch
    (tmp_path / "train" / "a" / "notes.txt").write_text("not an image")
    _image(tmp_path / "val" / "b" / "6.png", 70)
    dataset, names = load_image_folder(str(tmp_path))
    assert names == ["a", "b"]
    assert set(dataset) == {"train", "validation"}
    assert isinstance(dataset["train"].features["image"], datasets.Image)
    assert isinstance(dataset["train"].features["label"], datasets.ClassLabel)
    assert dataset["validation"].features["label"].names == ["a", "b"]
    assert _listed(dataset["train"]) == [("2.jpg", "a"), ("3.png", "a"), ("1.png", "b")]
    assert _listed(dataset["validation"]) == [("6.png", "b")]
    assert dataset["train"][SAMPLE_ID] == [0, 1, 2] and dataset["validation"][SAMPLE_ID] == [3]
    # the pixels are the file's (decoded by the Image feature)
    assert np.asarray(dataset["train"][2]["image"])[0, 0, 0] == 10
    splits = check_image_folder(str(tmp_path))
    assert splits.counts["train"] == {"a": 2, "b": 1}


def test_symlinked_class_folders_and_files_are_followed_and_a_link_loop_is_read_once(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    _image(elsewhere / "x.png", 1)
    _image(elsewhere / "y.png", 2)
    _image(tmp_path / "data" / "train" / "a" / "1.png", 3)
    os.symlink(elsewhere, tmp_path / "data" / "train" / "b")
    os.symlink(tmp_path / "data" / "train" / "a", tmp_path / "data" / "train" / "a" / "loop")  # a link up the tree
    os.symlink(elsewhere / "x.png", tmp_path / "data" / "train" / "a" / "linked.png")
    dataset, names = load_image_folder(str(tmp_path / "data"))
    assert names == ["a", "b"]
    assert sorted(_listed(dataset["train"])) == [("1.png", "a"), ("linked.png", "a"), ("x.png", "b"), ("y.png", "b")]


@pytest.mark.parametrize(
    ("layout", "named"),
    [
        ({"train/only/1.png"}, ["only", "two classes", "another folder in train/"]),
        ({"train/a/1.png", "train/b/notes.txt"}, ["without images", "b"]),
        ({"train/a/1.png", "train/b/2.png", "val/c/3.png"}, ["c", "add them to train/"]),
        ({"train/1.png"}, ["no class sub-folders", "train/<class>/"]),
        ({"val/a/1.png"}, ["no train/ folder"]),
    ],
)
def test_unusable_layouts_are_refused_before_anything_is_loaded(tmp_path, layout, named):
    for relative in layout:
        if relative.endswith(".png"):
            _image(tmp_path / relative, 5)
        else:
            (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / relative).write_text("x")
    with pytest.raises(DataError) as raised:
        load_image_folder(str(tmp_path))
    for text in named:
        assert text in str(raised.value)


def test_a_saved_dataset_with_one_class_is_refused_too(tmp_path):
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=["only"])})
    _image(tmp_path / "x.png", 1)
    saved = datasets.DatasetDict(
        {"train": datasets.Dataset.from_dict({"image": [str(tmp_path / "x.png")], "label": [0]}, features=features)}
    )
    saved.save_to_disk(str(tmp_path / "saved"))
    from modeling_promptcam.data.loading import load_saved_dataset

    with pytest.raises(DataError, match="needs at least two classes"):
        load_saved_dataset(str(tmp_path / "saved"))


def test_promptcam_train_on_one_class_exits_1_before_training(tmp_path, capsys):
    from modeling_promptcam.cli import main as cli_main
    from tests.helpers.training import write_tiny_backbone

    _image(tmp_path / "data" / "train" / "only" / "1.png", 1)
    _image(tmp_path / "data" / "train" / "only" / "sub" / "2.png", 2)
    write_tiny_backbone(tmp_path / "backbone")
    out = tmp_path / "run"
    code = cli_main(
        [
            "train",
            "--backbone",
            str(tmp_path / "backbone"),
            "--data-dir",
            str(tmp_path / "data"),
            "--output-dir",
            str(out),
            "--epochs",
            "1",
            "--warmup-epochs",
            "0",
        ]
    )
    err = capsys.readouterr().err
    assert code == 1
    assert "has one class (only)" in err and "needs at least two classes" in err and "Traceback" not in err
    assert not (out / "final").exists()
