"""The start of the class-agnostic prompts from training images (`Recipe.agnostic_prompt_init="image-tokens"`)."""

from __future__ import annotations

import torch

from ..data.transforms import EvalTransform

# training images whose patch tokens the prompts are drawn from: 32 x M patches (M = 144 at 168 px with patch 14) is
# thousands of tokens per layer, more than any K in use, at the cost of one forward of 32 images
SAMPLE_IMAGES = 32


def init_agnostic_prompts_from_training_images(model, train_split, image_processor, seed: int) -> int:
    """Draw `SAMPLE_IMAGES` images of `train_split` (a `datasets` split with an `image` column; all of them when it
    has fewer) with `seed`, preprocess them as for evaluation, and start the model's class-agnostic prompts from
    their patch tokens ([`PromptCamForImageClassification.init_agnostic_prompts_from_images`]). Every process of a
    data-parallel run draws the same images and prompts. Returns the number of images used."""
    generator = torch.Generator().manual_seed(seed)
    count = min(SAMPLE_IMAGES, len(train_split))
    indices = torch.randperm(len(train_split), generator=generator)[:count].tolist()
    transform = EvalTransform(image_processor)
    pixel_values = torch.stack([transform(image) for image in train_split.select(indices)["image"]])
    model.init_agnostic_prompts_from_images(pixel_values, generator=generator)
    return count
