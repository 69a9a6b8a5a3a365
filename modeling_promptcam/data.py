"""Training data: CUB-style image folders (or any `datasets` dataset with image / label columns), checked up front,
converted to RGB, and the paper's train / eval transforms.

Folder layout (what the official preparation scripts produce)::

    DATA/train/<class>/*.jpg
    DATA/val/<class>/*.jpg      (optional; `validation/` or `test/` also work)

Corrupt or unreadable image files stop the run before training, listing their paths: silently skipping them would
change the data without anyone noticing, and a crash in the middle of an epoch would lose time.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image

from .modeling_promptcam import PROMPTCAM_IMAGE_MEAN, PROMPTCAM_IMAGE_STD

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
VALIDATION_FOLDERS = ("val", "validation", "valid", "test")
SAMPLE_ID = "sample_id"  # a unique id per image (train rows first), carried to the collator (not to the model)


class DataError(ValueError):
    """The training data cannot be used as it is (says what is wrong and how to fix it)."""


@dataclass
class ImageFolderSplits:
    train_dir: str
    validation_dir: str | None
    class_names: list[str]
    counts: dict[str, dict[str, int]] = field(default_factory=dict)  # split -> class -> images


def _class_dirs(split_dir: str) -> list[str]:
    return sorted(entry.name for entry in os.scandir(split_dir) if entry.is_dir() and not entry.name.startswith("."))


def _images_in(folder: str) -> list[str]:
    paths = []
    for root, _, files in os.walk(folder):
        paths += [os.path.join(root, f) for f in files if os.path.splitext(f)[1].lower() in IMAGE_EXTENSIONS]
    return sorted(paths)


def check_image_folder(data_dir: str, verify_images: bool = True) -> ImageFolderSplits:
    """Check a CUB-style folder before training; raise [`DataError`] naming the problem and the fix.

    Checks: `train/` exists and has class sub-folders with images; every validation class exists in `train/`; every
    image file opens (with `verify_images`).
    """
    if not os.path.isdir(data_dir):
        raise DataError(f"--data-dir {data_dir} does not exist.")
    train_dir = os.path.join(data_dir, "train")
    if not os.path.isdir(train_dir):
        raise DataError(f"{data_dir} has no train/ folder; expected {data_dir}/train/<class>/<image> (and val/).")
    class_names = _class_dirs(train_dir)
    if not class_names:
        raise DataError(f"{train_dir} has no class sub-folders; put each class's images in train/<class>/.")
    validation_dir = next(
        (os.path.join(data_dir, name) for name in VALIDATION_FOLDERS if os.path.isdir(os.path.join(data_dir, name))),
        None,
    )
    splits = ImageFolderSplits(train_dir, validation_dir, class_names)
    images = {}
    for split, folder in (("train", train_dir), ("validation", validation_dir)):
        if folder is None:
            continue
        classes = _class_dirs(folder)
        unknown = sorted(set(classes) - set(class_names))
        if unknown:
            raise DataError(
                f"{folder} has classes that train/ does not: {', '.join(unknown[:10])}. Every validation class needs "
                "training images; add them to train/ or remove them from the validation folder."
            )
        splits.counts[split] = {name: len(_images_in(os.path.join(folder, name))) for name in classes}
        images[split] = [path for name in classes for path in _images_in(os.path.join(folder, name))]
    empty = [name for name, count in splits.counts["train"].items() if count == 0]
    if empty:
        raise DataError(f"train/ classes without images: {', '.join(empty[:10])}; remove those folders or add images.")
    if verify_images:
        bad = []
        for path in images["train"] + images.get("validation", []):
            try:
                with Image.open(path) as image:
                    image.verify()
            except Exception as error:  # PIL raises many types for broken files
                bad.append(f"{path} ({type(error).__name__}: {error})")
        if bad:
            listed = "\n  ".join(bad[:20])
            more = f"\n  ... and {len(bad) - 20} more" if len(bad) > 20 else ""
            raise DataError(
                f"{len(bad)} image file(s) cannot be read; fix or remove them and start again:\n  {listed}{more}"
            )
    return splits


def to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL image as 8-bit RGB: palette, grey, alpha and CMYK via PIL; 16-bit and float grey images rescaled by
    their value range first (PIL's own conversion would clip them to 255)."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        values = np.asarray(image, dtype=np.float64)
        low, high = float(values.min()), float(values.max())
        scaled = (values - low) / (high - low) * 255.0 if high > low else np.zeros_like(values)
        image = Image.fromarray(scaled.round().astype(np.uint8))
    return image.convert("RGB")


def _normalise(image: Image.Image) -> torch.Tensor:
    array = np.asarray(image, dtype=np.float32) / 255.0
    array = (array - np.asarray(PROMPTCAM_IMAGE_MEAN, dtype=np.float32)) / np.asarray(PROMPTCAM_IMAGE_STD, np.float32)
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


class TrainTransform:
    """The official training augmentation: resize to `resize` x `resize`, random crop `size`, random horizontal flip,
    normalise with mean = std = 0.5. Written with PIL and torch's random generator because torchvision cannot be
    installed beside the CPU torch wheel this project tests with; randomness follows `torch.manual_seed`, so the
    Trainer's seeding and resume restore it."""

    def __init__(self, size: int = 224, resize: int = 240):
        self.size, self.resize = size, resize

    def __call__(self, image: Image.Image) -> torch.Tensor:
        image = to_rgb(image).resize((self.resize, self.resize), Image.BILINEAR)
        top, left = (int(v) for v in torch.randint(0, self.resize - self.size + 1, (2,)))
        image = image.crop((left, top, left + self.size, top + self.size))
        if torch.rand(()) < 0.5:
            image = image.transpose(Image.FLIP_LEFT_RIGHT)
        return _normalise(image)


class EvalTransform:
    """The official test transform through the model's saved image processor (resize, no crop, mean = std = 0.5)."""

    def __init__(self, image_processor):
        self.image_processor = image_processor

    def __call__(self, image: Image.Image) -> torch.Tensor:
        return self.image_processor(to_rgb(image), return_tensors="pt").pixel_values[0]


def batch_transform(transform, image_column: str = "image", label_column: str = "label"):
    """A `datasets.with_transform` function: images -> `pixel_values`, labels -> `labels`."""

    def apply(batch: dict) -> dict:
        examples = {
            "pixel_values": [transform(image) for image in batch[image_column]],
            "labels": list(batch[label_column]),
        }
        if SAMPLE_ID in batch:
            examples[SAMPLE_ID] = list(batch[SAMPLE_ID])
        return examples

    return apply


class PromptCamCollator:
    """Stacks examples into a batch. With `record=True` it also keeps the sample ids of every batch it builds (in
    this process), which shows how data parallelism split the data."""

    def __init__(self, record: bool = False):
        self.record = record
        self.seen_sample_ids: list[int] = []

    def __call__(self, examples: list[dict]) -> dict:
        if self.record:
            self.seen_sample_ids += [int(example[SAMPLE_ID]) for example in examples if SAMPLE_ID in example]
        labels = torch.tensor([int(example["labels"]) for example in examples], dtype=torch.long)
        return {"pixel_values": torch.stack([example["pixel_values"] for example in examples]), "labels": labels}


def load_image_folder(data_dir: str, verify_images: bool = True, splits: ImageFolderSplits | None = None):
    """Check the folder (unless `splits` says it was checked), then load it with `datasets`' `imagefolder` builder
    (offline). Returns the `DatasetDict` (`train`, and `validation` when present) and the class names in label order."""
    try:
        from datasets import load_dataset
    except ImportError as error:
        raise ImportError("Training needs datasets: pip install 'modeling-promptcam[train]'.") from error
    if splits is None:
        splits = check_image_folder(data_dir, verify_images)
    data_files = {"train": os.path.join(splits.train_dir, "**")}
    if splits.validation_dir is not None:
        data_files["validation"] = os.path.join(splits.validation_dir, "**")
    dataset = load_dataset("imagefolder", data_files=data_files)
    offset = 0
    for split in dataset:  # ids unique across splits: train 0..N-1, then validation
        dataset[split] = dataset[split].add_column(SAMPLE_ID, list(range(offset, offset + len(dataset[split]))))
        offset += len(dataset[split])
    names = dataset["train"].features["label"].names
    if names != splits.class_names:
        raise DataError(f"imagefolder read classes {names[:5]}..., the folder has {splits.class_names[:5]}...")
    return dataset, names


def load_saved_dataset(name_or_path: str, image_column: str = "image", label_column: str = "label"):
    """Any `datasets` dataset with an image column and a class-label column: a folder written by `save_to_disk`, or
    a name / folder `load_dataset` understands. Returns a `DatasetDict` with `train` (and `validation` when it has a
    `validation`, `val` or `test` split), the columns renamed to `image` / `label`, and the class names."""
    try:
        from datasets import ClassLabel, DatasetDict, load_dataset, load_from_disk
        from datasets import Image as ImageFeature
    except ImportError as error:
        raise ImportError("Training needs datasets: pip install 'modeling-promptcam[train]'.") from error
    if os.path.isfile(os.path.join(name_or_path, "dataset_dict.json")):
        loaded = load_from_disk(name_or_path)
    else:
        loaded = load_dataset(name_or_path)
    if not isinstance(loaded, DatasetDict) or "train" not in loaded:
        raise DataError(f"{name_or_path} has no 'train' split (found: {', '.join(loaded) if loaded else 'none'}).")
    validation = next((name for name in ("validation", "val", "test") if name in loaded), None)
    dataset = DatasetDict({"train": loaded["train"], **({"validation": loaded[validation]} if validation else {})})
    features = dataset["train"].features
    for column, kind in ((image_column, ImageFeature), (label_column, ClassLabel)):
        if column not in features:
            raise DataError(
                f"{name_or_path} has no column {column!r} (columns: {', '.join(features)}); pass --image-column / "
                "--label-column."
            )
        if not isinstance(features[column], kind):
            raise DataError(f"Column {column!r} of {name_or_path} is {features[column]}, expected a {kind.__name__}.")
    for split in dataset:
        if image_column != "image":
            dataset[split] = dataset[split].rename_column(image_column, "image")
        if label_column != "label":
            dataset[split] = dataset[split].rename_column(label_column, "label")
    if len(dataset["train"]) == 0:
        raise DataError(f"The train split of {name_or_path} is empty.")
    offset = 0
    for split in dataset:
        dataset[split] = dataset[split].add_column(SAMPLE_ID, list(range(offset, offset + len(dataset[split]))))
        offset += len(dataset[split])
    return dataset, list(dataset["train"].features["label"].names)


__all__ = [
    "DataError",
    "load_saved_dataset",
    "EvalTransform",
    "PromptCamCollator",
    "TrainTransform",
    "batch_transform",
    "check_image_folder",
    "load_image_folder",
    "to_rgb",
]
