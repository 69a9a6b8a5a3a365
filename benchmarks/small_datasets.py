"""Two small real-image datasets reachable offline, as image folders Prompt-CAM trains on.

- Fashion-MNIST (MIT): the Debian package `dataset-fashion-mnist` installs its IDX files under
  `/usr/share/datasets/fashion-mnist/` (60,000 training + 10,000 test images, 28 x 28 grey, 10 classes).
- Animal-MNIST (MIT): the PyPI package `animal-mnist==0.4` (install with `--no-deps`: its own loader needs
  TensorFlow) ships 10,000 28 x 28 animal silhouettes, 1,000 per class, as gzip'd pickles of numpy arrays, with no
  split. They are read with an unpickler that accepts numpy arrays and nothing else; the split is a fixed seeded one.
  Labels 0-9 are bear, bird, cat, cow, dog, elephant, giraffe, horse, sheep, zebra (checked by looking at the images).

[`write_image_folder`] writes a class-balanced seeded subset as `OUT/train/<class>/*.png` and `OUT/val/<class>/*.png`
(the 28 x 28 originals; the model's image processor upsamples them to its input size and makes them RGB).
"""

from __future__ import annotations

import gzip
import importlib.util
import os
import pickle
import struct
from pathlib import Path

import numpy as np
from PIL import Image

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_CLASSES = (
    "t-shirt_top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle_boot",
)  # fmt: skip
ANIMAL_MNIST_CLASSES = ("bear", "bird", "cat", "cow", "dog", "elephant", "giraffe", "horse", "sheep", "zebra")
ANIMAL_MNIST_FILES = ("animal_data_version_3.gz", "animal_label_version_3.gz")


def _read_idx(path: Path) -> np.ndarray:
    """An IDX file (gzip'd or not): big-endian magic (2 zero bytes, type 0x08 = uint8, rank), then the sizes."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        zero, kind, rank = struct.unpack(">HBB", handle.read(4))
        if zero != 0 or kind != 0x08:
            raise ValueError(f"{path} is not an unsigned-byte IDX file.")
        shape = struct.unpack(f">{rank}I", handle.read(4 * rank))
        return np.frombuffer(handle.read(), dtype=np.uint8).reshape(shape)


def load_fashion_mnist(
    split: str = "train", root: str | os.PathLike = FASHION_MNIST_DIR
) -> tuple[np.ndarray, np.ndarray]:
    """Fashion-MNIST images `(N, 28, 28)` uint8 and labels `(N,)` of the `train` or `test` split."""
    prefix = {"train": "train", "test": "t10k"}.get(split)
    if prefix is None:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}.")
    root = Path(root)
    images = next(iter(sorted(root.glob(f"{prefix}-images-idx3-ubyte*"))), None)
    labels = next(iter(sorted(root.glob(f"{prefix}-labels-idx1-ubyte*"))), None)
    if images is None or labels is None:
        raise FileNotFoundError(
            f"Fashion-MNIST is not under {root}. On Debian / Ubuntu: apt-get install dataset-fashion-mnist "
            "(or pass the folder holding the IDX files)."
        )
    return _read_idx(images), _read_idx(labels).astype(np.int64)


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Reconstructs numpy arrays and refuses every other global: a pickle cannot run code through it."""

    def find_class(self, module: str, name: str):
        import numpy._core.multiarray as multiarray

        allowed = {
            ("numpy.core.multiarray", "_reconstruct"): multiarray._reconstruct,
            ("numpy._core.multiarray", "_reconstruct"): multiarray._reconstruct,
            ("numpy", "ndarray"): np.ndarray,
            ("numpy", "dtype"): np.dtype,
        }
        if (module, name) not in allowed:
            raise pickle.UnpicklingError(f"Refusing to load {module}.{name}: only numpy arrays are expected here.")
        return allowed[module, name]


def animal_mnist_dir() -> Path:
    spec = importlib.util.find_spec("animal_mnist")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("Animal-MNIST is not installed: pip install --no-deps animal-mnist==0.4")
    return Path(list(spec.submodule_search_locations)[0]) / "data" / "Animal_MNIST"


def load_animal_mnist(root: str | os.PathLike | None = None) -> tuple[np.ndarray, np.ndarray]:
    """All 10,000 Animal-MNIST images `(N, 28, 28)` uint8 and labels `(N,)` (no split: see `seeded_split`)."""
    root = Path(root) if root is not None else animal_mnist_dir()
    arrays = []
    for name in ANIMAL_MNIST_FILES:
        if not (root / name).is_file():
            raise FileNotFoundError(
                f"{root / name} is missing; reinstall with pip install --no-deps animal-mnist==0.4"
            )
        with gzip.open(root / name, "rb") as handle:
            arrays.append(_NumpyOnlyUnpickler(handle).load())
    images, labels = arrays
    if images.shape[1:] != (28, 28) or len(images) != len(labels):
        raise ValueError(f"Unexpected Animal-MNIST arrays: images {images.shape}, labels {labels.shape}.")
    return images.astype(np.uint8), labels.astype(np.int64)


def balanced_subset(labels: np.ndarray, per_class: int, seed: int, exclude: np.ndarray | None = None) -> np.ndarray:
    """Indices of `per_class` examples of every class, drawn with `seed` (sorted), leaving out `exclude`."""
    rng = np.random.default_rng(seed)
    excluded = set(exclude.tolist()) if exclude is not None else set()
    chosen = []
    for label in np.unique(labels):
        candidates = [i for i in np.flatnonzero(labels == label) if i not in excluded]
        if len(candidates) < per_class:
            raise ValueError(f"Class {label} has {len(candidates)} examples left, fewer than {per_class}.")
        chosen.extend(rng.choice(candidates, per_class, replace=False).tolist())
    return np.array(sorted(chosen))


def write_image_folder(
    out_dir: str | os.PathLike,
    splits: dict[str, tuple[np.ndarray, np.ndarray]],
    class_names: tuple[str, ...],
) -> Path:
    """Write `{split: (images, labels)}` as `out_dir/<split>/<class>/<index>.png` (grey PNGs)."""
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise ValueError(f"{out} already holds files; choose a new or empty folder.")
    for split, (images, labels) in splits.items():
        for index, (image, label) in enumerate(zip(images, labels)):
            folder = out / split / class_names[int(label)]
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image, mode="L").save(folder / f"{index:05d}.png")
    return out


def prepare_benchmark_folder(
    name: str, out_dir: str | os.PathLike, train_per_class: int, val_per_class: int, seed: int = 0
) -> Path:
    """`fashion-mnist` (training subset from its train split, validation from its test split) or `animal-mnist`
    (both from one seeded split of its 10,000 images), written as an image folder."""
    if name == "fashion-mnist":
        train_images, train_labels = load_fashion_mnist("train")
        test_images, test_labels = load_fashion_mnist("test")
        train = balanced_subset(train_labels, train_per_class, seed)
        val = balanced_subset(test_labels, val_per_class, seed + 1)
        splits = {
            "train": (train_images[train], train_labels[train]),
            "val": (test_images[val], test_labels[val]),
        }
        return write_image_folder(out_dir, splits, FASHION_MNIST_CLASSES)
    if name == "animal-mnist":
        images, labels = load_animal_mnist()
        train = balanced_subset(labels, train_per_class, seed)
        val = balanced_subset(labels, val_per_class, seed + 1, exclude=train)
        splits = {"train": (images[train], labels[train]), "val": (images[val], labels[val])}
        return write_image_folder(out_dir, splits, ANIMAL_MNIST_CLASSES)
    raise ValueError(f"Unknown dataset {name!r}; expected 'fashion-mnist' or 'animal-mnist'.")


__all__ = [
    "ANIMAL_MNIST_CLASSES",
    "FASHION_MNIST_CLASSES",
    "balanced_subset",
    "load_animal_mnist",
    "load_fashion_mnist",
    "prepare_benchmark_folder",
    "write_image_folder",
]


def train_with_demo_recipe(
    backbone: str,
    data_dir: Path,
    output_dir: Path,
    *,
    epochs: int,
    learning_rate: float,
    batch_size: int,
    seed: int,
    image_size: int | None = None,
    num_agnostic_prompts: int | None = None,
    agnostic_prompt_init: str | None = None,
    quiet: bool = False,
) -> dict:
    """Prompt-CAM (deep prompts) trained through `promptcam train`'s pipeline with the demo's short-budget recipe
    (AdamW via `DemoOptions.training_arguments`, its warm-up, bf16 autocast on a CPU with native bf16), no checkpoints:
    the one recipe the accuracy benchmarks share. Returns `run_training`'s summary."""
    from modeling_promptcam.demo import DemoOptions, cpu_bf16_arguments
    from modeling_promptcam.training import TrainOptions, run_training

    demo = DemoOptions()
    return run_training(
        TrainOptions(
            backbone=backbone,
            data_dir=str(data_dir),
            output_dir=str(output_dir),
            epochs=epochs,
            warmup_epochs=demo.warmup_epochs,
            learning_rate=learning_rate,
            batch_size=batch_size,
            prompt_mode="deep",
            image_size=image_size,
            seed=seed,
            num_agnostic_prompts=num_agnostic_prompts,
            agnostic_prompt_init=agnostic_prompt_init,
            overwrite_output_dir=True,
            extra={
                "save_strategy": "no",
                "load_best_model_at_end": False,
                **({"disable_tqdm": True} if quiet else {}),
                **cpu_bf16_arguments(),
                **demo.training_arguments,
            },
        )
    )
