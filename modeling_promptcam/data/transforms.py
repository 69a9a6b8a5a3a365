"""The paper's train / eval transforms and the batch collator: PIL images -> normalised `pixel_values`.

Written with PIL and torch because torchvision cannot be installed beside the CPU torch wheel this project tests with.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from ..modeling_promptcam import PROMPTCAM_IMAGE_MEAN, PROMPTCAM_IMAGE_STD
from .images import to_rgb

SAMPLE_ID = "sample_id"  # a unique id per image (train rows first), carried to the collator (not to the model)


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
    """Stacks examples into a batch of `pixel_values` and `labels`. The `sample_id` column stays out of the batch (the
    model takes no such input); `observers` (objects with `on_batch_collated(examples)`, e.g.
    `training.callbacks.SampleIdRecorder`) see the examples of each batch first."""

    def __init__(self, observers: tuple = ()):
        self.observers = tuple(observers)

    def __call__(self, examples: list[dict]) -> dict:
        for observer in self.observers:
            observer.on_batch_collated(examples)
        labels = torch.tensor([int(example["labels"]) for example in examples], dtype=torch.long)
        return {"pixel_values": torch.stack([example["pixel_values"] for example in examples]), "labels": labels}
