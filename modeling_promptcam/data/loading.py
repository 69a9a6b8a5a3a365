"""Training and evaluation data as `datasets` datasets: a checked image folder, or any saved / named dataset with an
image column and a class-label column."""

from __future__ import annotations

import os

from ..extras import require
from .folders import DataError, ImageFolderSplits, check_image_folder
from .transforms import SAMPLE_ID


def check_two_classes(class_names: list[str], source: str) -> None:
    """Raise [`DataError`] unless the training data `source` has at least two classes: Prompt-CAM learns what tells
    classes apart (with one class every image is "right" and no trait is learned)."""
    if len(class_names) < 2:
        raise DataError(
            f"{source} has one class ({', '.join(class_names) or 'none'}); Prompt-CAM learns what tells classes apart "
            "and needs at least two classes: add another class (for an image folder, another folder in train/)."
        )


def load_image_folder(data_dir: str, verify_images: bool = True, splits: ImageFolderSplits | None = None):
    """Check the folder (unless `splits` says it was checked), then build the datasets from its listing
    ([`check_image_folder`]: exactly the files it listed, nothing `datasets` infers). Returns the `DatasetDict`
    (`train`, and `validation` when present; columns `image` (an `Image` feature), `label` (a `ClassLabel` over the
    train classes) and `sample_id` (unique across splits: train 0..N-1, then validation)) and the class names in
    label order."""
    datasets = require("datasets", "train", "Training")
    if splits is None:
        splits = check_image_folder(data_dir, verify_images)
    check_two_classes(splits.class_names, splits.train_dir)
    features = datasets.Features(
        {
            "image": datasets.Image(),
            "label": datasets.ClassLabel(names=splits.class_names),
            SAMPLE_ID: datasets.Value("int64"),
        }
    )
    label_of = {name: index for index, name in enumerate(splits.class_names)}
    dataset, offset = datasets.DatasetDict(), 0
    for split, by_class in splits.images.items():
        paths = [path for name in splits.class_names for path in by_class.get(name, [])]
        labels = [label_of[name] for name in splits.class_names for _ in by_class.get(name, [])]
        columns = {"image": paths, "label": labels, SAMPLE_ID: list(range(offset, offset + len(paths)))}
        dataset[split] = datasets.Dataset.from_dict(columns, features=features)
        offset += len(paths)
    return dataset, list(splits.class_names)


def load_saved_dataset(name_or_path: str, image_column: str = "image", label_column: str = "label"):
    """Any `datasets` dataset with an image column and a class-label column: a folder written by `save_to_disk`, or
    a name / folder `load_dataset` understands. Returns a `DatasetDict` with `train` (and `validation` when it has a
    `validation`, `val` or `test` split), the columns renamed to `image` / `label`, and the class names."""
    datasets = require("datasets", "train", "Training")
    ClassLabel, DatasetDict, ImageFeature = datasets.ClassLabel, datasets.DatasetDict, datasets.Image
    load_dataset, load_from_disk = datasets.load_dataset, datasets.load_from_disk
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
    check_two_classes(list(dataset["train"].features["label"].names), f"The train split of {name_or_path}")
    offset = 0
    for split in dataset:
        dataset[split] = dataset[split].add_column(SAMPLE_ID, list(range(offset, offset + len(dataset[split]))))
        offset += len(dataset[split])
    return dataset, list(dataset["train"].features["label"].names)
