"""The one mask rule (`data.masks`): where a mask lives, what counts as region, how it follows its image to the
model's input size; every reader and writer of masks goes through it."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from PIL import Image

from modeling_promptcam.data import generate_dataset
from modeling_promptcam.data.masks import MASK_THRESHOLD, MaskError, mask_path, read_mask, resize_mask
from modeling_promptcam.files import write_json_atomically


def test_a_mask_lives_under_masks_with_the_image_path_and_png(tmp_path, monkeypatch):
    data = tmp_path / "data"
    assert (
        mask_path(data, data / "val" / "001.Cardinal" / "a.jpg") == data / "masks" / "val" / "001.Cardinal" / "a.png"
    )
    assert (
        mask_path(data, data / "val" / "c" / "deeper" / "b.c.JPEG")
        == data / "masks" / "val" / "c" / "deeper" / "b.c.png"
    )
    monkeypatch.chdir(tmp_path)  # relative paths work as well
    assert (
        mask_path("data", os.path.join("data", "test", "c", "x.webp"))
        == data.relative_to(tmp_path) / "masks" / "test" / "c" / "x.png"
    )


def test_any_value_above_the_threshold_is_region(tmp_path):
    assert MASK_THRESHOLD == 0
    values = np.array([[0, 1, 128, 255]], dtype=np.uint8).repeat(2, axis=0)
    Image.fromarray(values, mode="L").save(tmp_path / "m.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "m.png"), values > 0)
    np.testing.assert_array_equal(read_mask(tmp_path / "m.png", size=(4, 2)), values > 0)
    Image.fromarray(np.stack([values, values * 0, values * 0], axis=-1)).save(tmp_path / "rgb.png")
    grey = np.asarray(Image.open(tmp_path / "rgb.png").convert("L"))  # a colour mask is read as its grey levels
    np.testing.assert_array_equal(read_mask(tmp_path / "rgb.png"), grey > 0)
    assert read_mask(tmp_path / "rgb.png").sum() == 4  # red 1 is grey 0: only 128 and 255 remain
    with pytest.raises(MaskError, match=r"The mask .*m.png is 4x2 but its image is 5x2; write each mask at its"):
        read_mask(tmp_path / "m.png", size=(5, 2))
    with pytest.raises(MaskError, match="No mask file"):
        read_mask(tmp_path / "none.png")
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(MaskError, match="is not a readable mask image"):
        read_mask(tmp_path / "broken.png")


def test_a_mask_is_resized_as_its_grey_image_would_be(tmp_path):
    rng = np.random.default_rng(0)
    for height, width, size in ((40, 48, (32, 32)), (37, 91, (224, 224)), (500, 333, (112, 84))):
        grey = (rng.random((height, width)) > 0.7).astype(np.uint8) * rng.integers(
            1, 256, (height, width), dtype=np.uint8
        )
        expected = np.asarray(Image.fromarray(grey, mode="L").resize(size, Image.NEAREST)) > MASK_THRESHOLD
        resized = resize_mask(grey > MASK_THRESHOLD, size)
        assert resized.shape == (size[1], size[0]) and resized.dtype == bool and resized.flags.writeable
        np.testing.assert_array_equal(resized, expected)


def test_the_synthetic_dataset_writes_each_mask_where_the_rule_says(tmp_path):
    info = generate_dataset(tmp_path / "d", train_per_class=1, val_per_class=1, image_size=64, progress=False)
    images = sorted(path for path in (tmp_path / "d").rglob("*.png") if "masks" not in path.parts)
    masks = sorted((tmp_path / "d" / "masks").rglob("*.png"))
    assert len(images) == len(masks) == 2 * len(info["classes"])
    assert sorted(mask_path(tmp_path / "d", image) for image in images) == masks
    # dataset.json is written last, atomically, as JSON with a final newline
    text = (tmp_path / "d" / "dataset.json").read_text()
    assert json.loads(text) == info and text.endswith("}\n")
    assert not list((tmp_path / "d").glob("*.tmp"))


def test_write_json_atomically(tmp_path):
    write_json_atomically(tmp_path / "a.json", {"b": [1, 2]}, indent=1)
    assert (tmp_path / "a.json").read_text() == '{\n "b": [\n  1,\n  2\n ]\n}\n'
    write_json_atomically(tmp_path / "a.json", {"c": 3})
    assert json.loads((tmp_path / "a.json").read_text()) == {"c": 3}
    assert sorted(path.name for path in tmp_path.iterdir()) == ["a.json"]
