"""Where the images of a whole-dataset explanation come from: image files, a CUB-style image folder, or a `datasets`
dataset, each as an [`ImageSource`] with a fixed, numbered list of images (so shards can be cut and resumed by
position) that is read in batches.

Every image goes through the package's one decoding rule (`data.images.open_rgb`: 16-bit images rescaled, not
clipped); folders are listed by the training loader's own listing (`data.folders.check_image_folder`), so `explain
--data-dir` reads exactly the images `train --data-dir` trains and validates on.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

from ..data.folders import DataError, check_image_folder
from ..data.images import open_rgb
from ..extras import require


@dataclass(frozen=True)
class ImageRecord:
    """One image of a source, known before it is read.

    Attributes:
        image_id: a stable name: the path relative to `--data-dir`, the path as given for image files, or
            `<split>/<row>` for a dataset.
        path: the image file, when there is one (None for images stored inside a dataset).
        split: the split it belongs to (None for image files).
        label_name: the true class as the data names it (the class folder, the dataset's class name), when known.
        label_index: the true class as an index into the model's classes, when the data gives an index that is not a
            named class (an integer label column without class names).
    """

    image_id: str
    path: str | None = None
    split: str | None = None
    label_name: str | None = None
    label_index: int | None = None


def read_failure(error: BaseException) -> str:
    """Why an image could not be read, as `promptcam explain` reports it (the HTML report and the Parquet `error`
    column say the same words)."""
    if isinstance(error, FileNotFoundError):
        return "no such file"
    return f"not a readable image ({error})"


# what PIL raises for a missing, damaged or truncated file (UnidentifiedImageError is an OSError) or one too large to
# decode safely (DecompressionBombError)
READ_ERRORS = (OSError, UnidentifiedImageError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError)


class ImageSource:
    """A numbered list of images ([`ImageRecord`]s) and a way to read any run of them.

    Attributes:
        kind: "images", "data_dir" or "dataset".
        location: what the user named (the folder or dataset; "" for image files).
        records: every image, in the order rows are written.
    """

    kind: str = ""

    def __init__(self, location: str, records: list[ImageRecord]):
        self.location = location
        self.records = records

    def __len__(self) -> int:
        return len(self.records)

    def read(self, start: int, stop: int) -> list[Image.Image | str]:
        """Images `start` to `stop - 1` as RGB, each a PIL image or, when it cannot be read, the reason
        ([`read_failure`]): one bad file never stops a run."""
        return [self._read_path(record.path) for record in self.records[start:stop]]

    @staticmethod
    def _read_path(path: str) -> Image.Image | str:
        try:
            return open_rgb(path)
        except READ_ERRORS as error:
            return read_failure(error)


class ImageFiles(ImageSource):
    """Image files given one by one; the true class is the parent folder's name when the model knows it
    (imagefolder layout, as the HTML report reads it)."""

    kind = "images"

    def __init__(self, paths: Sequence[str]):
        records = [
            ImageRecord(path, path=path, label_name=os.path.basename(os.path.dirname(os.path.abspath(path))))
            for path in paths
        ]
        super().__init__("", records)


class ImageFolder(ImageSource):
    """A CUB-style folder (`DATA/train/<class>/...`, `DATA/val/<class>/...`), listed by `check_image_folder` (the
    training loader's listing); the true class is the class folder. Images are decoded as they are explained, not
    checked beforehand: an unreadable one becomes a row with an `error`, the others are explained."""

    kind = "data_dir"

    def __init__(self, data_dir: str, split: str | None = None):
        splits = check_image_folder(data_dir, verify_images=False)
        # a split is named as check_image_folder names it (train, validation) or by its folder (val, test, ...)
        folders = {"train": splits.train_dir, "validation": splits.validation_dir}
        names = {name: name for name in splits.images}
        if splits.validation_dir is not None:
            names[os.path.basename(splits.validation_dir)] = "validation"
        if split is not None and split not in names:
            raise DataError(
                f"--split {split!r}: {data_dir} has the splits {', '.join(sorted(names))}; pass one of them, or leave "
                "out --split to explain every split."
            )
        chosen = [names[split]] if split is not None else list(splits.images)
        records = []
        for name in chosen:
            for class_name in splits.class_names:
                for path in splits.images[name].get(class_name, []):
                    relative = os.path.relpath(path, data_dir)
                    records.append(ImageRecord(relative, path=path, split=name, label_name=class_name))
        if not records:
            raise DataError(f"{folders[chosen[0]]} has no images to explain.")
        super().__init__(data_dir, records)


class DatasetImages(ImageSource):
    """The rows of a `datasets` dataset: a folder written by `save_to_disk` (read with `load_from_disk`) or a local
    dataset `load_dataset` understands by name or path (offline: nothing is downloaded under HF_HUB_OFFLINE /
    HF_DATASETS_OFFLINE). The image column must be an `Image` feature; the label column is optional (a `ClassLabel`,
    class names as strings, or class indices of the model)."""

    kind = "dataset"

    def __init__(
        self,
        name_or_path: str,
        split: str | None = None,
        image_column: str = "image",
        label_column: str = "label",
        label_column_given: bool = False,
    ):
        datasets = require("datasets", "train", "Explaining a dataset")
        loaded = load_any_dataset(name_or_path)
        if isinstance(loaded, datasets.DatasetDict):
            if split is not None and split not in loaded:
                raise DataError(
                    f"--split {split!r}: {name_or_path} has the splits {', '.join(loaded) or 'none'}; pass one of "
                    "them, or leave out --split to explain every split."
                )
            parts = {split: loaded[split]} if split is not None else dict(loaded)
        else:
            if split is not None and split != str(loaded.split or ""):
                raise DataError(
                    f"--split {split!r}: {name_or_path} is one dataset without splits (saved split: "
                    f"{loaded.split or 'none'}); leave out --split."
                )
            parts = {str(loaded.split) if loaded.split else "train": loaded}
        self._parts: list[tuple[str, object, int]] = []  # (split, dataset with undecoded images, first index)
        records = []
        for name, part in parts.items():
            features = part.features
            if image_column not in features:
                raise DataError(
                    f"{name_or_path} (split {name}) has no image column {image_column!r}; its columns are "
                    f"{', '.join(features)}. Pass --image-column with the column that holds the images."
                )
            if not isinstance(features[image_column], datasets.Image):
                raise DataError(
                    f"column {image_column!r} of {name_or_path} is {features[image_column]}, not an Image feature; "
                    "pass --image-column with the column that holds the images (cast it with datasets.Image())."
                )
            labels: list = [None] * len(part)
            if label_column in features:
                labels = _labels(part, label_column, name_or_path)
            elif label_column_given:
                raise DataError(
                    f"{name_or_path} (split {name}) has no label column {label_column!r}; its columns are "
                    f"{', '.join(features)}. Pass --label-column with the column of true classes, or leave it out."
                )
            undecoded = part.select_columns([image_column]).cast_column(image_column, datasets.Image(decode=False))
            self._parts.append((name, undecoded, len(records)))
            for row, label in enumerate(labels):
                by_name = label if isinstance(label, str) else None
                by_index = label if isinstance(label, int) else None
                records.append(ImageRecord(f"{name}/{row}", split=name, label_name=by_name, label_index=by_index))
        if not records:
            raise DataError(f"{name_or_path} has no rows to explain.")
        self.image_column = image_column
        super().__init__(name_or_path, records)

    def read(self, start: int, stop: int) -> list[Image.Image | str]:
        images = []
        for _, part, first in self._parts:
            low, high = max(start, first), min(stop, first + len(part))
            if low >= high:
                continue
            for cell in part[low - first : high - first][self.image_column]:
                images.append(self._decode(cell))
        return images

    def _decode(self, cell) -> Image.Image | str:
        if cell is None:
            return "no image in this row"
        if cell.get("bytes") is not None:
            try:
                return open_rgb(io.BytesIO(cell["bytes"]))
            except READ_ERRORS as error:
                return read_failure(error)
        if cell.get("path"):
            return self._read_path(cell["path"])
        return "no image in this row"


def load_any_dataset(name_or_path: str):
    """A `Dataset` or `DatasetDict`: `load_from_disk` for a `save_to_disk` folder, else `load_dataset` (a local
    folder of data files or a dataset name found offline in the cache). Raises `FileNotFoundError` naming what was
    tried when neither finds it."""
    datasets = require("datasets", "train", "Explaining a dataset")
    saved = any(os.path.isfile(os.path.join(name_or_path, name)) for name in ("dataset_dict.json", "state.json"))
    if saved:
        return datasets.load_from_disk(name_or_path)
    try:
        return datasets.load_dataset(name_or_path)
    except (FileNotFoundError, ConnectionError) as error:
        raise FileNotFoundError(
            f"--dataset {name_or_path}: not a save_to_disk folder (no dataset_dict.json / state.json) and "
            f"load_dataset cannot find it offline ({type(error).__name__}: {error})."
        ) from None


def _labels(part, column: str, source: str) -> list:
    """The true classes of a split: class names (a `ClassLabel` or a string column) or class indices (an integer
    column), None where a row has none."""
    datasets = require("datasets", "train", "Explaining a dataset")
    feature = part.features[column]
    values = list(part[column])
    if isinstance(feature, datasets.ClassLabel):
        return [feature.int2str(int(value)) if value is not None and value >= 0 else None for value in values]
    kind = getattr(feature, "dtype", None)
    if kind == "string":
        return values
    if kind is not None and ("int" in kind):
        return [int(value) if value is not None and value >= 0 else None for value in values]
    raise DataError(
        f"column {column!r} of {source} is {feature}; a label column holds class names (ClassLabel or strings) or "
        "class indices (integers). Pass --label-column with such a column."
    )


__all__ = [
    "DatasetImages",
    "ImageFiles",
    "ImageFolder",
    "ImageRecord",
    "ImageSource",
    "READ_ERRORS",
    "load_any_dataset",
    "read_failure",
]
