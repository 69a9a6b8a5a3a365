"""The trait atlas's statistics, computed from what the pass keeps of each image ([`ImageRecord`]): peaks, the parts
in the consistency box, the named part, the attention inside a part's mask, distinctiveness, and per head and per
class their summaries. The definitions: `evaluation.atlas`'s docstring; the pass over the images: `trait_atlas`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import torch

from ..data.parts import ImageParts, PartAnnotations
from .atlas_result import CLS_HEADS, PROMPT_HEADS, ClassAtlas, GalleryImage, HeadStatistics
from .metrics import to_image_resolution


@dataclass
class ImageRecord:
    """What the pass keeps of one image for one method's heads."""

    label: int
    parts: ImageParts | None
    peaks: np.ndarray  # (heads, 2) x, y in input pixels
    noisy_peaks: np.ndarray  # (heads, 2)
    confidence: np.ndarray  # (heads,)
    mask_mass: list[dict[str, float]] | None  # per head: part -> attention share in its mask
    top_traits: set[int] = field(default_factory=set)
    ranks: np.ndarray | None = None  # (heads,) position in the full ranking
    distinct: np.ndarray | None = None  # (heads,) share of other classes' prompts peaking elsewhere


def peaks_at_input(maps: torch.Tensor, size: tuple[int, int]) -> tuple[np.ndarray, torch.Tensor]:
    """`(N, gh, gw)` maps -> their peaks `(N, 2)` (x, y) at input resolution `size` `(H, W)` and the upsampled maps."""
    upsampled = to_image_resolution(maps.float(), size)
    flat = upsampled.flatten(1).argmax(dim=1)
    ys, xs = flat // size[1], flat % size[1]
    # the centre of the peak pixel, in the continuous coordinates keypoints use
    return torch.stack((xs, ys), dim=1).cpu().numpy().astype(np.float64) + 0.5, upsampled


def parts_in_box(parts: ImageParts, peak: np.ndarray, half: tuple[float, float]) -> frozenset[str]:
    """The visible parts inside the box of half sizes `half` (x, y) around `peak` (x, y)."""
    x, y = peak
    if parts.masks is not None:
        inside = set()
        for name, mask in parts.masks.items():
            height, width = mask.shape
            top, bottom = max(0, int(np.floor(y - half[1]))), min(height, int(np.ceil(y + half[1])))
            left, right = max(0, int(np.floor(x - half[0]))), min(width, int(np.ceil(x + half[0])))
            if mask[top:bottom, left:right].any():
                inside.add(name)
        return frozenset(inside)
    return frozenset(
        name for name, (kx, ky) in parts.keypoints.items() if abs(kx - x) <= half[0] and abs(ky - y) <= half[1]
    )


def name_part(parts: ImageParts, peak: np.ndarray) -> str | None:
    """The visible part nearest the peak (keypoints) or whose mask holds it (masks: the smallest of them)."""
    if parts.masks is not None:
        row, column = int(peak[1]), int(peak[0])
        holding = [(int(mask.sum()), name) for name, mask in parts.masks.items() if mask[row, column]]
        return min(holding)[1] if holding else None
    if not parts.keypoints:
        return None
    return min(parts.keypoints, key=lambda name: np.hypot(*(np.array(parts.keypoints[name]) - peak)))


def head_statistics(
    head: int,
    records: list[ImageRecord],
    half: tuple[float, float],
    threshold: float,
    gallery_size: int,
    indices: list[int],
    ranked: bool,
) -> HeadStatistics:
    """Head `head`'s statistics over one class's `records` (its images, `indices` into the atlas's images): the
    gallery, and where the images have visible parts the part rates, consistency, stability and named part; with
    `ranked` (Prompt-CAM's heads, not the CLS-attention baseline's) also the ranking and distinctiveness."""
    annotated = [r for r in records if r.parts is not None and r.parts.visible]
    statistics = HeadStatistics(head=head, images=len(records), annotated_images=len(annotated))
    if ranked:
        statistics.top_trait_rate = float(np.mean([head in r.top_traits for r in records]))
        statistics.mean_rank = float(np.mean([r.ranks[head] for r in records]))
        distinct = [r.distinct[head] for r in records if r.distinct is not None]
        statistics.distinctiveness = float(np.mean(distinct)) if distinct else None
    order = sorted(range(len(records)), key=lambda k: -records[k].confidence[head])[:gallery_size]
    statistics.gallery = [
        GalleryImage(indices[k], tuple(float(v) for v in records[k].peaks[head]), float(records[k].confidence[head]))
        for k in order
    ]
    if not annotated:
        return statistics
    hits, visible, same, names = Counter(), Counter(), 0, Counter()
    for record in annotated:
        inside = parts_in_box(record.parts, record.peaks[head], half)
        hits.update(inside)
        visible.update(record.parts.visible)
        same += inside == parts_in_box(record.parts, record.noisy_peaks[head], half)
        named = name_part(record.parts, record.peaks[head])
        if named is not None:
            names[named] += 1
    statistics.part_counts = dict(visible)
    statistics.part_rates = {part: hits[part] / count for part, count in visible.items()}
    best = max(statistics.part_rates, key=lambda part: (statistics.part_rates[part], visible[part]))
    statistics.consistency, statistics.consistency_part = statistics.part_rates[best], best
    statistics.consistent = statistics.consistency >= threshold
    statistics.stability = same / len(annotated)
    if names:
        statistics.named_part, count = names.most_common(1)[0]
        statistics.named_part_rate = count / len(annotated)
        masses = [
            r.mask_mass[head][statistics.named_part]
            for r in annotated
            if r.mask_mass is not None and statistics.named_part in r.mask_mass[head]
        ]
        statistics.part_mask_mass = float(np.mean(masses)) if masses else None
    return statistics


def mask_mass(parts: ImageParts | None, upsampled: torch.Tensor) -> list[dict[str, float]] | None:
    """Per head, the share of its (upsampled, non-negative) map inside each visible part's mask."""
    if parts is None or parts.masks is None:
        return None
    maps = upsampled.clamp(min=0).cpu().numpy()
    totals = maps.sum(axis=(1, 2)) + 1e-12
    return [
        {name: float(maps[h][mask].sum() / totals[h]) for name, mask in parts.masks.items()} for h in range(len(maps))
    ]


def distinctiveness(
    all_maps: torch.Tensor, targets: torch.Tensor, half: tuple[float, float], size: tuple[int, int]
) -> np.ndarray:
    """Per image and head, the share of the other classes' prompts whose same head peaks outside the box around the
    target class's peak (peaks on the patch grid, at their patch centres in input pixels)."""
    batch, classes, heads, grid_h, grid_w = all_maps.shape
    flat = all_maps.flatten(3).argmax(dim=3)  # (B, C, heads)
    ys = (flat // grid_w).float() * (size[0] / grid_h) + size[0] / grid_h / 2
    xs = (flat % grid_w).float() * (size[1] / grid_w) + size[1] / grid_w / 2
    rows = torch.arange(batch, device=all_maps.device)
    own_x, own_y = xs[rows, targets][:, None], ys[rows, targets][:, None]  # (B, 1, heads)
    outside = ((xs - own_x).abs() > half[0]) | ((ys - own_y).abs() > half[1])  # (B, C, heads)
    others = torch.ones(batch, classes, dtype=torch.bool, device=all_maps.device)
    others[rows, targets] = False
    return ((outside & others[:, :, None]).sum(dim=1).float() / (classes - 1)).cpu().numpy()


def consistent_share(heads: list[HeadStatistics]) -> float | None:
    """The share of the judged heads (those with a consistency) that are consistent; None when none is judged."""
    judged = [head.consistent for head in heads if head.consistent is not None]
    return float(np.mean(judged)) if judged else None


def atlas_summary(
    classes: dict[str, ClassAtlas],
    parts: PartAnnotations | None,
    half: tuple[float, float],
    size: tuple[int, int],
) -> dict:
    """The share of consistent heads per class and overall, for Prompt-CAM and the CLS-attention baseline, with
    their counts, and the chance level of a peak placed uniformly at random (the box's share of the input)."""

    def overall(attribute: str) -> dict:
        judged = [
            h.consistent for atlas in classes.values() for h in getattr(atlas, attribute) if h.consistent is not None
        ]
        return {
            "consistent_heads": int(sum(judged)),
            "judged_heads": len(judged),
            "consistent_share": float(np.mean(judged)) if judged else None,
        }

    seen = {part for atlas in classes.values() for head in atlas.heads[:1] for part in head.part_counts}
    return {
        "classes": len(classes),
        "small_sample_classes": [name for name, atlas in classes.items() if atlas.small_sample],
        # parts the annotations name that are visible in none of the evaluated images: never in a box, never named
        "parts_without_visible_instances": [p for p in parts.part_names if p not in seen] if parts is not None else [],
        PROMPT_HEADS: overall("heads"),
        CLS_HEADS: overall("cls_heads"),
        "per_class": {
            name: {
                "images": atlas.images,
                "annotated_images": atlas.annotated_images,
                "small_sample": atlas.small_sample,
                PROMPT_HEADS: atlas.consistent_share,
                CLS_HEADS: atlas.cls_consistent_share,
            }
            for name, atlas in classes.items()
        },
        # a keypoint far from the borders falls in a box around a uniformly random peak with this probability
        "box_share_of_input": (2 * half[0] * 2 * half[1]) / (size[0] * size[1]) if parts is not None else None,
    }


__all__ = [
    "ImageRecord",
    "atlas_summary",
    "consistent_share",
    "distinctiveness",
    "head_statistics",
    "mask_mass",
    "peaks_at_input",
]
