"""The demo's measurements: per validation image the prediction, the true class's top-ranked head and whether its
peak lands on the trait, and the backbone's CLS attention as the baseline; summaries overall and per class."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..data.images import open_rgb
from ..data.masks import load_trait_mask, resize_mask
from ..evaluation.localization import chance_level, cls_attention_maps, peak_hits_mask
from ..modeling_promptcam import PromptCamForImageClassification


@dataclass
class ImageResult:
    """One validation image: its labels, the trait maps of its true class, the ranking, and the hits."""

    path: str
    true_class: int
    predicted: int
    trait_maps: np.ndarray  # (heads, grid_h, grid_w) of the true class's prompt
    cls_attention: np.ndarray  # (grid_h, grid_w)
    ranked_heads: list[int]
    top_traits: list[int]
    trait_hit: bool | None  # None: the image has no trait (the reference class)
    baseline_hit: bool | None
    chance: float | None
    probabilities: np.ndarray  # (num_labels,)

    @property
    def correct(self) -> bool:
        return self.true_class == self.predicted


@torch.no_grad()
def evaluate_traits(
    model: PromptCamForImageClassification,
    image_processor,
    data_dir: str | os.PathLike,
    split: str = "val",
    blur: str = "paper",
    stop: str | int = "misclassified",
    tolerance: int = 1,
    batch_size: int = 16,
    progress: bool = True,
) -> list[ImageResult]:
    """Classify every image of `data_dir/split`, rank the heads of its true class, and check the top-ranked head's
    map peak (and the backbone's CLS attention peak) against the image's trait mask."""
    from tqdm.auto import tqdm

    names = [model.config.id2label[i] for i in range(model.config.num_labels)]
    paths = sorted(Path(data_dir, split).glob("*/*.png"))
    if not paths:
        raise ValueError(f"No images under {Path(data_dir, split)}; generate the dataset first.")
    unknown = sorted({p.parent.name for p in paths} - set(names))
    if unknown:
        raise ValueError(f"{data_dir} has classes the model does not know: {unknown[:5]}.")
    model.eval()
    prefix = model.driver.num_prefix_tokens
    results = []
    for start in tqdm(range(0, len(paths), batch_size), desc="Evaluating traits", disable=not progress):
        batch = paths[start : start + batch_size]
        images = [open_rgb(path) for path in batch]
        pixel_values = image_processor(images, return_tensors="pt").pixel_values.to(model.device, model.dtype)
        labels = torch.tensor([names.index(path.parent.name) for path in batch], device=model.device)
        output = model(pixel_values, trait_map_classes=labels[:, None])
        rankings = model.rank_traits(pixel_values, target_classes=labels, blur=blur, stop=stop)
        baseline = cls_attention_maps(model.backbone, pixel_values, num_prefix_tokens=prefix).float().cpu().numpy()
        probabilities = output.logits.float().softmax(-1).cpu().numpy()
        maps = output.trait_maps[:, 0].float().cpu().numpy()
        for b, path in enumerate(batch):
            mask = load_trait_mask(data_dir, path)
            mask = resize_mask(mask, pixel_values.shape[-1:-3:-1])  # (width, height) of the model's input
            top = rankings[b].ranked_heads[0]
            results.append(
                ImageResult(
                    path=str(path),
                    true_class=int(labels[b]),
                    predicted=int(probabilities[b].argmax()),
                    trait_maps=maps[b],
                    cls_attention=baseline[b],
                    ranked_heads=rankings[b].ranked_heads,
                    top_traits=rankings[b].top_traits,
                    trait_hit=peak_hits_mask(maps[b, top], mask, tolerance) if mask.any() else None,
                    baseline_hit=peak_hits_mask(baseline[b], mask, tolerance) if mask.any() else None,
                    chance=chance_level(mask, maps.shape[-2:], tolerance) if mask.any() else None,
                    probabilities=probabilities[b],
                )
            )
    return results


def summarize(results: Sequence[ImageResult]) -> dict:
    """Accuracy over all images; localisation figures over the correctly classified ones that have a trait."""
    correct = [r for r in results if r.correct and r.trait_hit is not None]

    def rate(values: list[bool | float]) -> float | None:
        return float(np.mean(values)) if values else None

    return {
        "accuracy": float(np.mean([r.correct for r in results])),
        "trait_localization": rate([r.trait_hit for r in correct]),
        "baseline_localization": rate([r.baseline_hit for r in correct]),
        "chance_localization": rate([r.chance for r in correct]),
        "validation_images": len(results),
        "correctly_classified": sum(r.correct for r in results),
        "localized_images": len(correct),
    }


def per_class_summary(results: Sequence[ImageResult], names: list[str]) -> dict[str, dict]:
    table = {}
    for class_index, name in enumerate(names):
        mine = [r for r in results if r.true_class == class_index]
        correct = [r for r in mine if r.correct and r.trait_hit is not None]
        table[name] = {
            "images": len(mine),
            "accuracy": float(np.mean([r.correct for r in mine])) if mine else None,
            "trait_localization": float(np.mean([r.trait_hit for r in correct])) if correct else None,
            "baseline_localization": float(np.mean([r.baseline_hit for r in correct])) if correct else None,
        }
    return table
