"""A tiny, easy image-folder task and a tiny random backbone, for training tests."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from transformers import TrainerCallback, ViTModel

from tests.helpers.models import randomize_, tiny_backbone_config

CLASS_COLOURS = {"001.Red_Finch": (200, 40, 40), "002.Green_Finch": (40, 200, 40), "003.Blue_Finch": (40, 40, 200)}


def write_image_folder(root, train_per_class: int = 16, val_per_class: int = 6, seed: int = 0, size: int = 32):
    """train/ and val/ folders of noisy single-colour images, one colour per class (an easy task)."""
    rng = np.random.default_rng(seed)
    for split, count in (("train", train_per_class), ("val", val_per_class)):
        for name, colour in CLASS_COLOURS.items():
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for index in range(count):
                noise = rng.normal(0, 30, (size, size, 3))
                array = np.clip(np.asarray(colour)[None, None] + noise, 0, 255).astype(np.uint8)
                Image.fromarray(array).save(folder / f"{index}.png")
    return root


def write_tiny_backbone(folder, seed: int = 0):
    """A random ViTModel checkpoint folder (stock layout) of the tiny test shape."""
    torch.manual_seed(seed)
    backbone = randomize_(ViTModel(tiny_backbone_config("vit")), seed)
    backbone.save_pretrained(folder)
    return folder


def tiny_training_options(root, train_per_class: int = 4, val_per_class: int = 2, **overrides):
    """Write the easy image folder and the tiny backbone under `root`; `TrainOptions` for a one-epoch run on them at
    32 px, batch 4, writing to `root/run` (`overrides` replace or add fields)."""
    from modeling_promptcam.training import TrainOptions

    write_image_folder(root / "data", train_per_class=train_per_class, val_per_class=val_per_class)
    write_tiny_backbone(root / "backbone")
    settings = dict(
        backbone=str(root / "backbone"),
        data_dir=str(root / "data"),
        output_dir=str(root / "run"),
        epochs=1,
        warmup_epochs=0,
        batch_size=4,
        image_size=32,
    )
    return TrainOptions(**{**settings, **overrides})


class EndOfTraining(TrainerCallback):
    """Observes a run the way a user would: the trainer state and the trained model when training ends."""

    def __init__(self):
        self.state = None
        self.model = None

    def on_train_end(self, args, state, control, model=None, **kwargs):
        self.state, self.model = state, model
