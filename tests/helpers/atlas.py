"""A fake Prompt-CAM model whose heads peak where the test wants them to, and images with a known keypoint, for the
trait-atlas tests: the known answers of EvalProtoPNet's consistency (a head that always peaks on one part scores 1.0
and is named after it; a head that peaks uniformly at random scores the box's share of the image)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import torch
from PIL import Image
from torch import nn

from modeling_promptcam.modeling_promptcam import promptcam_image_processor

INPUT_SIZE, PATCH = 224, 8
ORIGINAL_SIZE = (336, 168)  # (width, height): the processor resizes without crop, so keypoints scale per axis


class PeakingModel(nn.Module):
    """Two classes, two heads: head 0 of every prompt is the image's brightness on the patch grid (it peaks on the one
    bright dot of the images `write_dot_images` draws); head 1 is a one-hot map on a uniformly random patch, drawn
    anew on every call. Class 0 is always predicted; `rank_traits` ranks head 0 first and makes it the top trait."""

    def __init__(self, seed: int = 0):
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(()))  # a parameter, so the device can be read
        backbone = SimpleNamespace(num_attention_heads=2, image_size=INPUT_SIZE)
        self.config = SimpleNamespace(num_labels=2, id2label={0: "dot", 1: "other"}, backbone_config=backbone)
        self.generator = torch.Generator().manual_seed(seed)

    def forward(self, pixel_values, output_trait_maps=False, trait_map_classes=None):
        batch = pixel_values.shape[0]
        grid = INPUT_SIZE // PATCH
        brightness = nn.functional.avg_pool2d(pixel_values.mean(dim=1, keepdim=True), PATCH)[:, 0]
        maps = torch.zeros(batch, 2, 2, grid, grid)
        maps[:, :, 0] = brightness[:, None]
        for b in range(batch):
            for c in range(2):
                cell = int(torch.randint(grid * grid, (), generator=self.generator))
                maps[b, c, 1].view(-1)[cell] = 1.0
        logits = torch.tensor([[1.0, 0.0]]).expand(batch, 2)
        if trait_map_classes is not None:
            maps = maps[torch.arange(batch)[:, None], trait_map_classes]
        return SimpleNamespace(logits=logits, trait_maps=maps)

    def rank_traits(self, pixel_values, target_classes=None, blur="paper", stop="misclassified"):
        return [SimpleNamespace(top_traits=[0], ranked_heads=[0, 1]) for _ in range(pixel_values.shape[0])]


def image_processor():
    return promptcam_image_processor(None, image_size=INPUT_SIZE)


def write_dot_images(root, count: int, seed: int = 0) -> tuple[list[str], dict]:
    """`count` black images of `ORIGINAL_SIZE` with one white dot each, away from the borders, and their keypoints
    `{name: {"beak": [x, y], "tail": [x, y]}}` (the dot's centre, and a point 60 input pixels to its left or right),
    in original pixels. Returns the image paths and the keypoints."""
    rng = np.random.default_rng(seed)
    width, height = ORIGINAL_SIZE
    scale_x, scale_y = width / INPUT_SIZE, height / INPUT_SIZE
    folder = root / "val" / "dot"
    folder.mkdir(parents=True)
    paths, keypoints = [], {}
    for index in range(count):
        # the dot covers one input patch exactly, with its centre on the patch centre
        cell_x, cell_y = rng.integers(6, 22, size=2)
        x0, y0 = cell_x * PATCH * scale_x, cell_y * PATCH * scale_y
        pixels = np.zeros((height, width, 3), dtype=np.uint8)
        pixels[int(y0) : int(y0 + PATCH * scale_y), int(x0) : int(x0 + PATCH * scale_x)] = 255
        name = f"dot_{index:03d}.png"
        Image.fromarray(pixels).save(folder / name)
        paths.append(str(folder / name))
        beak = ((cell_x + 0.5) * PATCH * scale_x, (cell_y + 0.5) * PATCH * scale_y)
        tail_x = beak[0] + (60 if cell_x < 14 else -60) * scale_x
        keypoints[f"val/dot/{name}"] = {"beak": list(beak), "tail": [tail_x, beak[1]]}
    return paths, keypoints
