"""The part-annotation readers (`data.parts`): CUB-200-2011's files, a keypoints JSON and per-part mask folders,
matched to image paths, scaled to the model's input, and refused with a clear message when they do not fit."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from modeling_promptcam.data import PartsError, read_cub_parts, read_keypoints_json, read_part_masks
from modeling_promptcam.data.parts import read_part_annotations


def _cub_root(root, rows, parts=("beak", "left eye", "tail")):
    """A tiny CUB-format folder: images.txt names two images of class 001.A; `rows` are part_locs.txt lines."""
    (root / "parts").mkdir(parents=True)
    (root / "images.txt").write_text("1 001.A/a_1.jpg\n2 001.A/a_2.jpg\n")
    (root / "parts" / "parts.txt").write_text("".join(f"{i} {name}\n" for i, name in enumerate(parts, 1)))
    (root / "parts" / "part_locs.txt").write_text("".join(line + "\n" for line in rows))
    return root


def _image_paths(data):
    paths = [data / "val" / "001.A" / "a_1.jpg", data / "val" / "001.A" / "a_2.jpg", data / "val" / "002.B" / "b.jpg"]
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (448, 112)).save(path)
    return paths


def test_cub_files_are_read_with_visibility_and_names_with_spaces(tmp_path):
    root = _cub_root(
        tmp_path / "cub",
        ["1 1 100.0 50.0 1", "1 2 0.0 0.0 0", "1 3 400 100 1", "2 1 10 10 0", "2 2 20.5 30.5 1", "2 3 0 0 0"],
    )
    annotations = read_cub_parts(root)
    assert annotations.part_names == ("beak", "left eye", "tail")
    assert annotations.keypoints == {
        "001.A/a_1.jpg": {"beak": (100.0, 50.0), "tail": (400.0, 100.0)},
        "001.A/a_2.jpg": {"left eye": (20.5, 30.5)},
    }
    paths = _image_paths(tmp_path / "data")
    # a CUB name is the end of the image's path; an image with no annotation matches nothing (CUB is not strict)
    assert annotations.match(paths, tmp_path / "data") == ["001.A/a_1.jpg", "001.A/a_2.jpg", None]
    # coordinates follow the plain resize of a 448 x 112 image to 224 x 224 (no crop)
    parts = annotations.at_input("001.A/a_1.jpg", (448, 112), (224, 224))
    assert parts.keypoints == {"beak": (50.0, 100.0), "tail": (200.0, 200.0)} and parts.masks is None
    assert parts.visible == ["beak", "tail"]


def test_cub_errors_name_the_problem(tmp_path):
    with pytest.raises(PartsError, match="images.txt"):
        read_cub_parts(tmp_path)
    root = _cub_root(tmp_path / "bad", ["1 9 1 1 1"])
    with pytest.raises(PartsError, match="part id 9"):
        read_cub_parts(root)
    root = _cub_root(tmp_path / "outside", ["1 1 500 50 1"])
    annotations = read_cub_parts(root)
    with pytest.raises(PartsError, match="outside the 448x112 image"):
        annotations.at_input("001.A/a_1.jpg", (448, 112), (224, 224))
    other = tmp_path / "other"
    (other / "val" / "x").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(other / "val" / "x" / "y.jpg")
    with pytest.raises(PartsError, match="cover none of the 1 evaluated image"):
        annotations.match([other / "val" / "x" / "y.jpg"], other)


def test_keypoints_json_is_strict_about_images_it_names(tmp_path):
    paths = _image_paths(tmp_path / "data")
    file = tmp_path / "keypoints.json"
    file.write_text(json.dumps({"val/001.A/a_1.jpg": {"beak": [224, 56], "tail": None}, "b.jpg": {"beak": [0, 0]}}))
    annotations = read_keypoints_json(file)
    assert annotations.part_names == ("beak", "tail")
    assert annotations.match(paths, tmp_path / "data") == ["val/001.A/a_1.jpg", None, "b.jpg"]
    assert annotations.at_input("val/001.A/a_1.jpg", (448, 112), (112, 112)).keypoints == {"beak": (56.0, 56.0)}
    file.write_text(json.dumps({"val/001.A/a_1.jpg": {"beak": [1, 1]}, "not_here.jpg": {"beak": [1, 1]}}))
    with pytest.raises(PartsError, match="not_here.jpg"):
        read_keypoints_json(file).match(paths, tmp_path / "data")
    file.write_text(json.dumps({"a_1.jpg": {"beak": [1]}}))
    with pytest.raises(PartsError, match=r"\[x, y\]"):
        read_keypoints_json(file)
    file.write_text("{not json")
    with pytest.raises(PartsError, match="not a readable JSON"):
        read_keypoints_json(file)


def test_part_mask_folders_are_read_resized_and_checked(tmp_path):
    data = tmp_path / "data"
    paths = _image_paths(data)
    folder = data / "masks" / "val" / "001.A" / "a_1"
    folder.mkdir(parents=True)
    head = np.zeros((112, 448), dtype=np.uint8)
    head[:56, :224] = 255
    Image.fromarray(head, mode="L").save(folder / "head.png")
    Image.fromarray(np.zeros((112, 448), dtype=np.uint8), mode="L").save(folder / "fin.png")  # empty: not visible
    # a whole-image trait mask one level up (data.masks) is not a part folder
    Image.fromarray(head, mode="L").save(data / "masks" / "val" / "001.A" / "a_2.png")
    annotations = read_part_masks(data)
    assert annotations.source == "masks" and set(annotations.part_names) == {"fin", "head"}
    assert annotations.match(paths, data) == ["val/001.A/a_1", None, None]
    parts = annotations.at_input("val/001.A/a_1", (448, 112), (64, 32))
    assert list(parts.masks) == ["head"] and parts.masks["head"].shape == (32, 64)
    assert parts.masks["head"][:16, :32].all() and not parts.masks["head"][16:].any()
    Image.fromarray(np.zeros((10, 10), dtype=np.uint8), mode="L").save(folder / "head.png")
    with pytest.raises(PartsError, match="10x10 but its image is 448x112"):
        annotations.at_input("val/001.A/a_1", (448, 112), (64, 32))
    with pytest.raises(PartsError, match="holds no part masks"):
        read_part_masks(tmp_path / "data" / "val")


def test_exactly_one_source(tmp_path):
    with pytest.raises(PartsError, match="exactly one source"):
        read_part_annotations()
    with pytest.raises(PartsError, match="exactly one source"):
        read_part_annotations(cub_root=tmp_path, keypoints=tmp_path / "k.json")
