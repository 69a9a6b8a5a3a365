"""Accuracy of a [`PromptCamTaxonomy`] per level: top-down (the path the models walk from the root) and, in level
mode, flat (each level's model on its own) with the share of images whose flat predictions form a path of the tree."""

from __future__ import annotations

from collections.abc import Sequence

from ..data.images import open_rgb, to_rgb
from .model import PromptCamTaxonomy


def evaluate_taxonomy(
    taxonomy_model: PromptCamTaxonomy,
    images: Sequence,
    classes: Sequence[str],
    batch_size: int = 32,
    progress: bool = True,
) -> dict:
    """Classify `images` (PIL images or paths) whose true leaf classes are `classes`.

    Returns `{"images": N, "top_down": {level: accuracy}, "flat": {level: accuracy} | None, "consistency": share |
    None}`: accuracy at a level is the share of images whose predicted group at that level is their true ancestor.
    """
    from tqdm.auto import tqdm

    if len(images) != len(classes):
        raise ValueError(f"{len(images)} images but {len(classes)} classes; give one class per image.")
    unknown = sorted(set(classes) - set(taxonomy_model.taxonomy.classes))
    if unknown:
        raise ValueError(f"classes not in the taxonomy: {', '.join(unknown[:10])}.")
    levels = taxonomy_model.levels
    right = {level: 0 for level in levels}
    flat_right = {level: 0 for level in levels}
    consistent = 0
    for start in tqdm(range(0, len(images), batch_size), desc="evaluating taxonomy", disable=not progress):
        batch = [
            open_rgb(item) if isinstance(item, str) else to_rgb(item) for item in images[start : start + batch_size]
        ]
        predictions = taxonomy_model.predict(batch, batch_size=batch_size)
        for prediction, leaf in zip(predictions, classes[start : start + batch_size]):
            truth = taxonomy_model.taxonomy.ancestors(leaf)
            for level in levels:
                right[level] += prediction[level][0] == truth[level]
                if prediction.flat is not None:
                    flat_right[level] += prediction.flat[level][0] == truth[level]
            consistent += bool(prediction.consistent)
    count = max(len(images), 1)
    level_mode = taxonomy_model.mode == "level"
    return {
        "images": len(images),
        "top_down": {level: right[level] / count for level in levels},
        "flat": {level: flat_right[level] / count for level in levels} if level_mode else None,
        "consistency": consistent / count if level_mode else None,
    }


__all__ = ["evaluate_taxonomy"]
