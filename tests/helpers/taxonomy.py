"""A tiny hierarchical image folder for taxonomy tests: two families of two or three species, one colour per class
(families differ in hue, species in brightness or a second channel), and its taxonomy table."""

from __future__ import annotations

import numpy as np
from PIL import Image

# species -> (genus, family, colour)
SPECIES = {
    "r_light": ("Rubus", "Reds", (230, 60, 60)),
    "r_dark": ("Rubus", "Reds", (120, 20, 20)),
    "g_light": ("Viridis", "Greens", (60, 230, 60)),
    "g_dark": ("Viridis", "Greens", (20, 120, 20)),
    "b_light": ("Caerul", "Greens", (60, 60, 230)),
}
HEADER = "species,genus,family"


def write_taxonomy_table(path, rows: dict | None = None, header: str = HEADER, delimiter: str = ","):
    rows = SPECIES if rows is None else rows
    lines = [header.replace(",", delimiter)] + [
        delimiter.join((species, genus, family)) for species, (genus, family, *_) in rows.items()
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def write_hierarchical_folder(root, train_per_class: int = 12, val_per_class: int = 6, seed: int = 0, size: int = 32):
    """train/ and val/ of noisy single-colour images, one colour per species (an easy task at every level)."""
    rng = np.random.default_rng(seed)
    for split, count in (("train", train_per_class), ("val", val_per_class)):
        for name, (_, _, colour) in SPECIES.items():
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for index in range(count):
                noise = rng.normal(0, 20, (size, size, 3))
                array = np.clip(np.asarray(colour)[None, None] + noise, 0, 255).astype(np.uint8)
                Image.fromarray(array).save(folder / f"{index}.png")
    return root
