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
    normalise with mean = std = 0.5. Written with PIL and numpy because torchvision cannot be installed beside the CPU
    torch wheel this project tests with.

    The crop and the flip of an image are a function of (`seed`, epoch, `sample_id`) alone, drawn from a generator
    seeded with those three numbers, not from a global random stream: an image gets the same augmentation in an epoch
    whatever was drawn before it, so a run resumed in the middle of an epoch, a different number of data-loading
    workers or of data-parallel processes see the same augmented images as an uninterrupted single-process run
    (docs/training.md, "Resuming a run"). The epoch is set by [`set_epoch`] (`training.callbacks.AugmentationEpoch`
    calls it when each epoch begins); it is held in shared memory, so data-loading worker processes, persistent ones
    included, see the change. Called without a `sample_id`, the transform draws from torch's global generator.
    """

    uses_sample_id = True  # `batch_transform` passes each image's `sample_id`

    def __init__(self, size: int = 224, resize: int = 240, seed: int = 0):
        self.size, self.resize, self.seed = size, resize, seed
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()

    @property
    def epoch(self) -> int:
        return int(self._epoch)

    def set_epoch(self, epoch: int) -> None:
        """Augment for epoch `epoch` (0-based) from now on, in this process and in its data-loading workers."""
        self._epoch.fill_(int(epoch))

    def draw(self, sample_id: int | None = None) -> tuple[int, int, bool]:
        """The crop's top and left corner and whether to flip, for image `sample_id` in the current epoch."""
        span = self.resize - self.size + 1
        if sample_id is None:
            top, left = (int(v) for v in torch.randint(0, span, (2,)))
            return top, left, bool(torch.rand(()) < 0.5)
        generator = np.random.default_rng([self.seed, self.epoch, int(sample_id)])
        top, left = (int(v) for v in generator.integers(0, span, size=2))
        return top, left, bool(generator.random() < 0.5)

    def __call__(self, image: Image.Image, sample_id: int | None = None) -> torch.Tensor:
        image = to_rgb(image).resize((self.resize, self.resize), Image.BILINEAR)
        top, left, flip = self.draw(sample_id)
        image = image.crop((left, top, left + self.size, top + self.size))
        if flip:
            image = image.transpose(Image.FLIP_LEFT_RIGHT)
        return _normalise(image)


class EvalTransform:
    """The official test transform through the model's saved image processor (resize, no crop, mean = std = 0.5)."""

    def __init__(self, image_processor):
        self.image_processor = image_processor

    def __call__(self, image: Image.Image) -> torch.Tensor:
        return self.image_processor(to_rgb(image), return_tensors="pt").pixel_values[0]


def batch_transform(transform, image_column: str = "image", label_column: str = "label"):
    """A `datasets.with_transform` function: images -> `pixel_values`, labels -> `labels`. A transform with a true
    `uses_sample_id` attribute (such as [`TrainTransform`]) is also given each image's `sample_id` when the dataset
    has that column."""

    def apply(batch: dict) -> dict:
        images = batch[image_column]
        if getattr(transform, "uses_sample_id", False) and SAMPLE_ID in batch:
            pixel_values = [transform(image, sample_id=i) for image, i in zip(images, batch[SAMPLE_ID])]
        else:
            pixel_values = [transform(image) for image in images]
        examples = {"pixel_values": pixel_values, "labels": list(batch[label_column])}
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
