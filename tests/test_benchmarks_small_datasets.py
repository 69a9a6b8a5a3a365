"""Fashion-MNIST / Animal-MNIST readers used by the accuracy and faithfulness benchmarks."""

from __future__ import annotations

import gzip
import importlib.util
import os
import pickle
import struct

import numpy as np
import pytest
from PIL import Image

from benchmarks.small_datasets import (
    ANIMAL_MNIST_CLASSES,
    FASHION_MNIST_DIR,
    balanced_subset,
    load_animal_mnist,
    load_fashion_mnist,
    write_image_folder,
)


def _write_idx(path, array: np.ndarray) -> None:
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as handle:
        handle.write(header + array.astype(np.uint8).tobytes())


def test_fashion_mnist_idx_files_are_read(tmp_path):
    images = np.arange(3 * 28 * 28).reshape(3, 28, 28) % 256
    labels = np.array([4, 0, 9])
    _write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", images)
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", labels)
    read_images, read_labels = load_fashion_mnist("test", root=tmp_path)
    np.testing.assert_array_equal(read_images, images)
    np.testing.assert_array_equal(read_labels, labels)
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        load_fashion_mnist("train", root=tmp_path)
    with pytest.raises(ValueError, match="'train' or 'test'"):
        load_fashion_mnist("validation", root=tmp_path)


class _Exploit:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_animal_mnist_pickles_cannot_run_code(tmp_path):
    for name in ("animal_data_version_3.gz", "animal_label_version_3.gz"):
        with gzip.open(tmp_path / name, "wb") as handle:
            pickle.dump(_Exploit(), handle)
    with pytest.raises(pickle.UnpicklingError, match="only numpy arrays"):
        load_animal_mnist(tmp_path)


def test_animal_mnist_numpy_pickles_load(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (20, 28, 28), dtype=np.uint8)
    labels = np.arange(20) % 10
    for name, array in (("animal_data_version_3.gz", images), ("animal_label_version_3.gz", labels)):
        with gzip.open(tmp_path / name, "wb") as handle:
            pickle.dump(array, handle)
    read_images, read_labels = load_animal_mnist(tmp_path)
    np.testing.assert_array_equal(read_images, images)
    np.testing.assert_array_equal(read_labels, labels)


def test_balanced_subset_is_seeded_and_disjoint():
    labels = np.repeat(np.arange(4), 10)
    first = balanced_subset(labels, 3, seed=1)
    assert np.array_equal(first, balanced_subset(labels, 3, seed=1))
    assert not np.array_equal(first, balanced_subset(labels, 3, seed=2))
    assert np.bincount(labels[first]).tolist() == [3, 3, 3, 3]
    second = balanced_subset(labels, 7, seed=1, exclude=first)
    assert not set(first) & set(second)
    with pytest.raises(ValueError, match="fewer than"):
        balanced_subset(labels, 8, seed=1, exclude=first)


def test_image_folder_layout(tmp_path):
    images = np.zeros((4, 28, 28), np.uint8)
    images[1] = 255
    write_image_folder(tmp_path / "d", {"train": (images, np.array([0, 1, 1, 2]))}, ANIMAL_MNIST_CLASSES)
    assert sorted(p.name for p in (tmp_path / "d" / "train").iterdir()) == ["bear", "bird", "cat"]
    written = Image.open(tmp_path / "d" / "train" / "bird" / "00001.png")
    assert written.mode == "L" and np.asarray(written).min() == 255
    with pytest.raises(ValueError, match="already holds files"):
        write_image_folder(tmp_path / "d", {"train": (images, np.zeros(4, int))}, ANIMAL_MNIST_CLASSES)


@pytest.mark.skipif(importlib.util.find_spec("animal_mnist") is None, reason="pip install --no-deps animal-mnist==0.4")
def test_real_animal_mnist():
    images, labels = load_animal_mnist()
    assert images.shape == (10000, 28, 28) and np.bincount(labels).tolist() == [1000] * 10


@pytest.mark.skipif(not os.path.isdir(FASHION_MNIST_DIR), reason="apt-get install dataset-fashion-mnist")
def test_real_fashion_mnist():
    images, labels = load_fashion_mnist("test")
    assert images.shape == (10000, 28, 28) and np.bincount(labels).tolist() == [1000] * 10
