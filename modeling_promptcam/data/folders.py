"""Training data: CUB-style image folders (or any `datasets` dataset with image / label columns), checked up front,
converted to RGB, and the paper's train / eval transforms.

Folder layout (what the official preparation scripts produce)::

    DATA/train/<class>/*.jpg
    DATA/val/<class>/*.jpg      (optional; `validation/` or `test/` also work)

What is read (the one listing rule; `load_image_folder` trains on exactly this list): the classes are the sorted
sub-folders of `train/`; a class's images are the files with an image extension (`IMAGE_EXTENSIONS`) at any depth
below its folder; names starting with "." (hidden files and folders) are skipped; symbolic links to folders and
files are followed (a folder reached twice through links is read once). Anything else (a `metadata.csv`, a
`README`) is ignored.

Corrupt or unreadable image files stop the run before training, listing their paths: silently skipping them would
change the data without anyone noticing, and a crash in the middle of an epoch would lose time.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from PIL import Image

from .images import IMAGE_EXTENSIONS, to_rgb

VALIDATION_FOLDERS = ("val", "validation", "valid", "test")


class DataError(ValueError):
    """The training data cannot be used as it is (says what is wrong and how to fix it)."""


@dataclass
class ImageFolderSplits:
    train_dir: str
    validation_dir: str | None
    class_names: list[str]
    counts: dict[str, dict[str, int]] = field(default_factory=dict)  # split -> class -> images
    images: dict[str, dict[str, list[str]]] = field(default_factory=dict)  # split -> class -> image paths


def class_folders(split_dir: str) -> list[str]:
    """The class names of a split folder: its sub-folders (links to folders included), hidden ones skipped, sorted."""
    return sorted(entry.name for entry in os.scandir(split_dir) if entry.is_dir() and not entry.name.startswith("."))


def images_in(folder: str) -> list[str]:
    """The image files at any depth below `folder` (the module docstring's rule), sorted."""
    paths, seen = [], set()
    for root, folders, files in os.walk(folder, followlinks=True):
        real = os.path.realpath(root)
        if real in seen:  # a link back up the tree (or two links to one folder): read it once, never loop
            folders[:] = []
            continue
        seen.add(real)
        folders[:] = [name for name in folders if not name.startswith(".")]
        paths += [
            os.path.join(root, name)
            for name in files
            if not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS
        ]
    return sorted(paths)


def verify_image_files(paths: list[str]) -> None:
    """Decode every image in full, with a progress bar; raise [`DataError`] listing the files that fail.

    `Image.verify()` reads only the structure (a JPEG cut short passes it), so each file is also decoded in full by
    the package's decoding rule ([`to_rgb`], what training reads): a truncated or corrupt file, a float image with
    NaN / inf pixels or a mode that has no RGB conversion is found here, before the first training step, not by the
    epoch that reaches it.
    """
    from transformers.utils.logging import tqdm  # transformers' bar: `disable_progress_bar()` turns it off too

    bad = []
    for path in tqdm(paths, desc="checking images", unit="image"):
        try:
            with Image.open(path) as image:
                image.verify()  # the structure and checksums (PNG CRCs), which decoding alone may not check
            with Image.open(path) as image:
                image.load()  # every pixel: a truncated file fails here
                to_rgb(image)  # as training will decode it: NaN / inf pixels or a mode with no RGB conversion
        except Exception as error:  # PIL raises many types for broken files
            bad.append(f"{path} ({type(error).__name__}: {error})")
    if bad:
        listed = "\n  ".join(bad[:20])
        more = f"\n  ... and {len(bad) - 20} more" if len(bad) > 20 else ""
        raise DataError(
            f"{len(bad)} image file(s) cannot be read; fix or remove them and start again:\n  {listed}{more}"
        )


def check_image_folder(data_dir: str, verify_images: bool = True) -> ImageFolderSplits:
    """Check a CUB-style folder before training; raise [`DataError`] naming the problem and the fix.

    Checks: `train/` exists and has class sub-folders with images; every validation class exists in `train/`; every
    image file decodes in full (with `verify_images`, [`verify_image_files`]).
    """
    if not os.path.isdir(data_dir):
        raise DataError(f"--data-dir {data_dir} does not exist.")
    train_dir = os.path.join(data_dir, "train")
    if not os.path.isdir(train_dir):
        raise DataError(f"{data_dir} has no train/ folder; expected {data_dir}/train/<class>/<image> (and val/).")
    class_names = class_folders(train_dir)
    if not class_names:
        raise DataError(f"{train_dir} has no class sub-folders; put each class's images in train/<class>/.")
    validation_dir = next(
        (os.path.join(data_dir, name) for name in VALIDATION_FOLDERS if os.path.isdir(os.path.join(data_dir, name))),
        None,
    )
    splits = ImageFolderSplits(train_dir, validation_dir, class_names)
    for split, folder in (("train", train_dir), ("validation", validation_dir)):
        if folder is None:
            continue
        classes = class_folders(folder)
        unknown = sorted(set(classes) - set(class_names))
        if unknown:
            raise DataError(
                f"{folder} has classes that train/ does not: {', '.join(unknown[:10])}. Every validation class needs "
                "training images; add them to train/ or remove them from the validation folder."
            )
        splits.images[split] = {name: images_in(os.path.join(folder, name)) for name in classes}
        splits.counts[split] = {name: len(paths) for name, paths in splits.images[split].items()}
    empty = [name for name, count in splits.counts["train"].items() if count == 0]
    if empty:
        raise DataError(f"train/ classes without images: {', '.join(empty[:10])}; remove those folders or add images.")
    if verify_images:
        verify_image_files(
            [path for by_class in splits.images.values() for paths in by_class.values() for path in paths]
        )
    return splits


__all__ = [
    "DataError",
    "ImageFolderSplits",
    "VALIDATION_FOLDERS",
    "check_image_folder",
    "class_folders",
    "images_in",
    "verify_image_files",
]
