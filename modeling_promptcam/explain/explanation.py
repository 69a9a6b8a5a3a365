"""Explain images with a Prompt-CAM model: predictions, trait maps and head rankings gathered for figures and reports.

Everything here consumes the model's public outputs (`forward(..., trait_map_classes=...)`, `rank_traits`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image
from transformers import PretrainedConfig

from ..data.images import to_rgb
from ..modeling_promptcam import PromptCamForImageClassification, TraitRanking

_NUMBERED = re.compile(r"^\d+\.(.+)$")


@dataclass
class ClassView:
    """How one class's prompt sees an image."""

    class_index: int
    name: str
    score: float  # softmax probability
    trait_maps: np.ndarray  # (heads, grid_h, grid_w)
    ranking: TraitRanking


@dataclass
class Explanation:
    """Everything the figures of one image need."""

    image: Image.Image  # RGB, original size
    predictions: list[tuple[str, float]]  # top-k (class name, softmax probability), best first
    predicted: ClassView
    true: ClassView | None = None  # when the true class is known and differs from the prediction
    requested: list[ClassView] = field(default_factory=list)  # classes asked for by name

    @property
    def misclassified(self) -> bool:
        return self.true is not None


def resolve_class(model: PromptCamForImageClassification | PretrainedConfig, name: str) -> int | None:
    """The class index of `name` in a model (or its config): an exact class name, or an official `NNN.Class_Name`
    folder name."""
    config = model if isinstance(model, PretrainedConfig) else model.config
    label2id = {str(label): int(index) for index, label in config.id2label.items()}
    if name in label2id:
        return label2id[name]
    match = _NUMBERED.match(name)
    return label2id.get(match.group(1)) if match else None


def resolve_classes(
    model: PromptCamForImageClassification | PretrainedConfig, names: Iterable[str]
) -> tuple[dict[str, int], list[str]]:
    """[`resolve_class`] for many names: `({name: class index}` of the names the model knows, `[unknown names]`, in
    the order given)`, so that a caller names every unknown class in one error instead of the first."""
    indices, unknown = {}, []
    for name in names:
        index = resolve_class(model, name)
        if index is None:
            unknown.append(name)
        else:
            indices[name] = index
    return indices, unknown


@torch.no_grad()
def explain_image(
    model: PromptCamForImageClassification,
    image_processor,
    image: Image.Image,
    top_k: int = 5,
    classes: list[int] | None = None,
    true_class: int | None = None,
    blur: str = "paper",
    stop: str | int = "misclassified",
) -> Explanation:
    """Classify `image` and gather the trait maps and head rankings of the predicted class, of the true class when it
    differs (misclassification view), and of every class in `classes` (class-vs-class view).

    `image` may be of any PIL mode: it goes through the package's one decoding rule (`data.images.to_rgb`, as in
    training and the pipelines: EXIF orientation applied, 16-bit and float grey rescaled by their value range rather
    than clipped, alpha dropped)."""
    rgb = to_rgb(image)
    pixel_values = image_processor(rgb, return_tensors="pt").pixel_values.to(model.device, model.dtype)
    logits = model(pixel_values).logits[0]
    probabilities = logits.float().softmax(-1)
    top_k = min(top_k, model.config.num_labels)
    best = probabilities.topk(top_k)
    predictions = [(model.config.id2label[int(i)], float(p)) for p, i in zip(best.values, best.indices)]

    predicted = int(best.indices[0])
    wanted = [predicted]
    if true_class is not None and true_class != predicted:
        wanted.append(true_class)
    wanted += [c for c in classes or [] if c not in wanted]
    targets = torch.tensor([wanted], device=pixel_values.device)
    maps = model(pixel_values, trait_map_classes=targets).trait_maps[0].float().cpu().numpy()
    rankings = model.rank_traits(pixel_values, target_classes=targets, blur=blur, stop=stop)[0]
    views = {
        c: ClassView(c, model.config.id2label[c], float(probabilities[c]), maps[k], rankings[k])
        for k, c in enumerate(wanted)
    }
    return Explanation(
        image=rgb,
        predictions=predictions,
        predicted=views[predicted],
        true=views.get(true_class) if true_class is not None and true_class != predicted else None,
        requested=[views[c] for c in classes or []],
    )


__all__ = ["ClassView", "Explanation", "explain_image", "resolve_class", "resolve_classes"]
