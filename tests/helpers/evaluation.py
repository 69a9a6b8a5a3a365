"""A tiny image folder with ground-truth masks and a model of its classes, for the evaluation tests."""

from __future__ import annotations

import numpy as np
from PIL import Image

from tests.helpers.models import save_tiny_model

CLASSES = ["001.Red_bird", "002.Blue_bird", "003.Green_bird"]


def write_image_folder(
    root, with_masks=True, val_images=3, masked_val_images=2, mask_box=(5, 20, 10, 30), mask_value=255
):
    """train/ (4 images per class) and val/ (`val_images` per class) of 40 x 48 images, each with its class's colour;
    masks (rows and columns `mask_box`, value `mask_value`) for the first `masked_val_images` val images per class."""
    rng = np.random.default_rng(0)
    top, bottom, left, right = mask_box
    for split, count in (("train", 4), ("val", val_images)):
        for index, class_name in enumerate(CLASSES):
            folder = root / split / class_name
            folder.mkdir(parents=True)
            for k in range(count):
                pixels = rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)
                pixels[..., index] = 255  # a class colour, so the probe has something to learn
                Image.fromarray(pixels).save(folder / f"img{k}.png")
                if with_masks and split == "val" and k < masked_val_images:  # by default one val image has none
                    mask = np.zeros((40, 48), dtype=np.uint8)
                    mask[top:bottom, left:right] = mask_value
                    (root / "masks" / split / class_name).mkdir(parents=True, exist_ok=True)
                    Image.fromarray(mask, mode="L").save(root / "masks" / split / class_name / f"img{k}.png")


def save_model_of_the_classes(folder):
    """A tiny ViT Prompt-CAM model whose classes are the folder names of `CLASSES` (without their numbers)."""
    save_tiny_model(folder, [name.split(".", 1)[1] for name in CLASSES])
    return folder
