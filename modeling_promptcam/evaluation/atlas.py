"""The trait atlas: what every head of every class's prompt looks at across the class's images, and how reliably
([`trait_atlas`]; `promptcam atlas` writes it as `atlas.html` and `atlas.json`, docs/atlas.md).

For every class c and head h of c's prompt, over c's correctly classified images (`all_images=True`: all of them):

- **peak**: the highest point of the head's trait map upsampled to the model input (bilinear, half-pixel centres;
  the first one on ties), in input pixels.
- **consistency** (EvalProtoPNet, Huang et al., CVPR 2023): a box of `box_size` x `box_size` pixels at a
  `reference_size`-pixel input (the official 72 x 72 at 224, scaled with the input) centred on the peak; per image,
  which visible parts fall in it (a keypoint inside the box, or a part mask with a pixel inside it); per part, the
  share of the images where the part is visible in which it falls in the box. The head's consistency is the largest
  share over the parts (`consistency_part`), and the head is *consistent* when it is at least `threshold` (official:
  0.8).
- **stability** (EvalProtoPNet): the share of images whose set of parts in the box is the same when Gaussian noise
  (`noise_std`, clipped to +-`noise_clip`, on the normalised image; official: 0.2 and 0.25) is added.
- **named part**: per image, the visible part whose keypoint is nearest the peak (or whose mask holds it; the
  smallest such mask); the head's named part is the one named most often, `named_part_rate` how often (of the images
  with a visible part). The box is too coarse to name a part: several keypoints fall in it.
- **part_mask_mass** (mask sources only): the share of the head's attention (the upsampled map, normalised to sum 1)
  inside its named part's mask, averaged over the images where that part is visible.
- **top_trait_rate**: how often h is among the image's top traits (`rank_traits` with `blur` and `stop`, for class
  c); the heads are listed in this order (ties: the mean rank in the full ranking, then the head index).
- **distinctiveness**: the share of (image, other class) pairs in which the same head of the other class's prompt
  peaks outside the box around c's peak (peaks on the patch grid here: the maps of every class are compared).

Every statistic is reported with the number of images behind it; a class with fewer than `min_images` evaluated
images is flagged `small_sample`. The summary gives the share of consistent heads per class and overall (the number
the part-prototype literature reports). As a baseline, the backbone's own last-layer CLS-attention heads
(`cls_attention_heads`) get the same per-head statistics on the same images (no ranking or distinctiveness: they do
not belong to a class).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from PIL import Image

from ..data.folders import DataError
from ..data.images import image_size, open_rgb
from ..data.parts import ImageParts, PartAnnotations, PartsError
from ..data.transforms import EvalTransform
from ..extras import require
from ..files import write_json_atomically
from ..modeling_promptcam import BLUR_MODES, parse_stop_rule
from .localization import cls_attention_heads
from .metrics import to_image_resolution

# EvalProtoPNet's settings (official code: half_size 36 at 224 px, threshold 0.8, noise std 0.2 clipped to 0.25)
DEFAULT_BOX_SIZE = 72
REFERENCE_SIZE = 224
DEFAULT_THRESHOLD = 0.8
DEFAULT_NOISE_STD = 0.2
DEFAULT_NOISE_CLIP = 0.25
DEFAULT_MIN_IMAGES = 10
DEFAULT_GALLERY = 4
PROMPT_HEADS, CLS_HEADS = "prompt-cam", "cls-attention"


@dataclass
class GalleryImage:
    """One of the images where a head is most confident (the highest peak value of its map)."""

    image: int  # index into `TraitAtlas.images`
    peak: tuple[float, float]  # (x, y) in input pixels
    confidence: float  # the map's peak value


@dataclass
class HeadStatistics:
    """One head's statistics over one class's evaluated images (None where there is nothing to compute them on)."""

    head: int
    images: int  # the images behind the statistics
    annotated_images: int  # ... of which have part annotations with a visible part
    named_part: str | None = None
    named_part_rate: float | None = None
    consistency: float | None = None
    consistency_part: str | None = None
    consistent: bool | None = None
    stability: float | None = None
    top_trait_rate: float | None = None
    mean_rank: float | None = None
    distinctiveness: float | None = None
    part_mask_mass: float | None = None
    part_rates: dict[str, float] = field(default_factory=dict)  # part -> share of images in the box (where visible)
    part_counts: dict[str, int] = field(default_factory=dict)  # part -> images where visible
    gallery: list[GalleryImage] = field(default_factory=list)


@dataclass
class ClassAtlas:
    """The atlas of one class: its heads in rank order and the CLS-attention baseline's heads."""

    class_index: int
    class_name: str
    images: int
    annotated_images: int
    small_sample: bool
    heads: list[HeadStatistics]
    cls_heads: list[HeadStatistics]
    consistent_share: float | None
    cls_consistent_share: float | None


@dataclass
class TraitAtlas:
    """[`trait_atlas`]'s result: per class its [`ClassAtlas`], the summary, the settings, the evaluated images and
    the most-confused class pairs `(true, predicted, count)` (by class name, most frequent first)."""

    classes: dict[str, ClassAtlas]
    summary: dict
    settings: dict
    images: list[str]
    confusions: list[tuple[str, str, int]]
    labels: list[int] = field(default_factory=list)  # the true class of each image
    predicted: list[int] = field(default_factory=list)  # the model's prediction for each image
    class_names: dict[int, str] = field(default_factory=dict)  # the model's class index -> name

    def to_json(self) -> dict:
        """The `atlas.json` layout: `{class_name: {"images": n, "heads": [{"head": h, "named_part": ..., ...}]}}`,
        the heads in rank order; per class also its annotated images, the small-sample flag, the share of
        consistent heads and the CLS-attention baseline (`cls_attention`)."""

        def head_entry(head: HeadStatistics) -> dict:
            entry = asdict(head)
            entry["gallery"] = [
                {"image": self.images[g.image], "peak": list(g.peak), "confidence": g.confidence} for g in head.gallery
            ]
            return entry

        return {
            name: {
                "images": atlas.images,
                "heads": [head_entry(head) for head in atlas.heads],
                "annotated_images": atlas.annotated_images,
                "small_sample": atlas.small_sample,
                "consistent_share": atlas.consistent_share,
                "cls_attention": {
                    "heads": [head_entry(head) for head in atlas.cls_heads],
                    "consistent_share": atlas.cls_consistent_share,
                },
            }
            for name, atlas in self.classes.items()
        }

    def save(self, path: str | os.PathLike) -> None:
        """`atlas.json` ([`to_json`]), written atomically."""
        write_json_atomically(path, self.to_json())

    def to_dataset(self):
        """One row per (class, method, head) as a `datasets.Dataset` (method `"prompt-cam"` or `"cls-attention"`)."""
        Dataset = require("datasets", "train", "The trait atlas as a datasets.Dataset").Dataset

        rows = []
        for name, atlas in self.classes.items():
            for method, heads in ((PROMPT_HEADS, atlas.heads), (CLS_HEADS, atlas.cls_heads)):
                for rank, head in enumerate(heads):
                    row = {k: v for k, v in asdict(head).items() if k not in ("gallery", "part_rates", "part_counts")}
                    rows.append(
                        {"class_name": name, "method": method, "rank": rank, "small_sample": atlas.small_sample, **row}
                    )
        return Dataset.from_list(rows)


@dataclass
class _Record:
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


def _peaks(maps: torch.Tensor, size: tuple[int, int]) -> tuple[np.ndarray, torch.Tensor]:
    """`(N, gh, gw)` maps -> their peaks `(N, 2)` (x, y) at input resolution `size` `(H, W)` and the upsampled maps."""
    upsampled = to_image_resolution(maps.float(), size)
    flat = upsampled.flatten(1).argmax(dim=1)
    ys, xs = flat // size[1], flat % size[1]
    # the centre of the peak pixel, in the continuous coordinates keypoints use
    return torch.stack((xs, ys), dim=1).cpu().numpy().astype(np.float64) + 0.5, upsampled


def _in_box(parts: ImageParts, peak: np.ndarray, half: tuple[float, float]) -> frozenset[str]:
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


def _name_part(parts: ImageParts, peak: np.ndarray) -> str | None:
    """The visible part nearest the peak (keypoints) or whose mask holds it (masks: the smallest of them)."""
    if parts.masks is not None:
        row, column = int(peak[1]), int(peak[0])
        holding = [(int(mask.sum()), name) for name, mask in parts.masks.items() if mask[row, column]]
        return min(holding)[1] if holding else None
    if not parts.keypoints:
        return None
    return min(parts.keypoints, key=lambda name: np.hypot(*(np.array(parts.keypoints[name]) - peak)))


def _head_statistics(
    head: int,
    records: list[_Record],
    half: tuple[float, float],
    threshold: float,
    gallery_size: int,
    indices: list[int],
    ranked: bool,
) -> HeadStatistics:
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
        inside = _in_box(record.parts, record.peaks[head], half)
        hits.update(inside)
        visible.update(record.parts.visible)
        same += inside == _in_box(record.parts, record.noisy_peaks[head], half)
        named = _name_part(record.parts, record.peaks[head])
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


def _mask_mass(parts: ImageParts | None, upsampled: torch.Tensor) -> list[dict[str, float]] | None:
    """Per head, the share of its (upsampled, non-negative) map inside each visible part's mask."""
    if parts is None or parts.masks is None:
        return None
    maps = upsampled.clamp(min=0).cpu().numpy()
    totals = maps.sum(axis=(1, 2)) + 1e-12
    return [
        {name: float(maps[h][mask].sum() / totals[h]) for name, mask in parts.masks.items()} for h in range(len(maps))
    ]


def _check_settings(box_size, reference_size, threshold, noise_std, noise_clip, min_images, gallery, blur) -> None:
    if not 0 < box_size <= reference_size:
        raise ValueError(f"box_size must be in (0, reference_size={reference_size}], got {box_size}.")
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}.")
    if noise_std < 0 or noise_clip <= 0:
        raise ValueError(f"noise_std must be >= 0 and noise_clip > 0, got {noise_std} and {noise_clip}.")
    if min_images < 1 or gallery < 0:
        raise ValueError(f"min_images must be >= 1 and gallery >= 0, got {min_images} and {gallery}.")
    if blur not in BLUR_MODES:
        raise ValueError(f"blur must be one of {', '.join(BLUR_MODES)}, got {blur!r}.")


@torch.no_grad()
def trait_atlas(
    model,
    images: Sequence[str | os.PathLike],
    labels: Sequence[int],
    parts: PartAnnotations | None = None,
    image_processor=None,
    data_dir: str | os.PathLike | None = None,
    all_images: bool = False,
    box_size: float = DEFAULT_BOX_SIZE,
    reference_size: int = REFERENCE_SIZE,
    threshold: float = DEFAULT_THRESHOLD,
    noise_std: float = DEFAULT_NOISE_STD,
    noise_clip: float = DEFAULT_NOISE_CLIP,
    blur: str = "paper",
    stop: str | int = "misclassified",
    min_images: int = DEFAULT_MIN_IMAGES,
    gallery: int = DEFAULT_GALLERY,
    cls_baseline: bool = True,
    batch_size: int = 16,
    seed: int = 0,
    progress: bool = True,
) -> TraitAtlas:
    r"""
    The trait atlas of `model` on `images` (the statistics are defined in the module docstring).

    Args:
        model: a Prompt-CAM model (on the device the pass runs on; eval mode is used).
        images: image files.
        labels: each image's true class index.
        parts (*optional*): part annotations ([`data.parts.PartAnnotations`]); without them only the peaks, the
            top-trait rate, the distinctiveness and the galleries are computed.
        image_processor: the model's image processor (resize without crop); default: the one for its config.
        data_dir: the folder the image paths are matched below (`PartAnnotations.match`).
        all_images: every image of a class, not only the correctly classified ones.
        box_size, reference_size, threshold: the consistency box (pixels at a `reference_size` input, scaled with
            the input) and the consistent-head threshold; defaults: EvalProtoPNet's 72 at 224 and 0.8.
        noise_std, noise_clip: the stability noise on the normalised image (EvalProtoPNet: 0.2, clipped to 0.25).
        blur, stop: the trait ranking behind the top-trait rate (any blur mode; see `rank_traits`).
        min_images: classes with fewer evaluated images are flagged `small_sample`.
        gallery: how many most-confident images each head keeps.
        cls_baseline: also compute the statistics of the backbone's last-layer CLS-attention heads.
        batch_size: images per forward pass. seed: the stability noise.
    Returns:
        a [`TraitAtlas`].
    """
    from tqdm.auto import tqdm

    from ..modeling_promptcam import promptcam_image_processor

    _check_settings(box_size, reference_size, threshold, noise_std, noise_clip, min_images, gallery, blur)
    num_heads = model.config.backbone_config.num_attention_heads
    stop = parse_stop_rule(stop, num_heads)
    images = [str(path) for path in images]
    labels = [int(label) for label in labels]
    if len(images) != len(labels) or not images:
        raise ValueError(f"Give one label per image and at least one image, got {len(images)} and {len(labels)}.")
    num_labels = model.config.num_labels
    if any(not 0 <= label < num_labels for label in labels):
        raise ValueError(f"labels must be class indices in [0, {num_labels}).")
    if cls_baseline and getattr(getattr(model, "driver", None), "num_prefix_tokens", 0) == 0:
        raise ValueError(
            "The CLS-attention baseline needs a backbone with a CLS token, and this one has none; pass "
            "cls_baseline=False (--no-cls-baseline)."
        )
    matched = parts.match(images, data_dir) if parts is not None else [None] * len(images)
    if parts is not None:  # every annotation checked against its image before the long pass
        for path, name in zip(images, matched):
            if name is not None:
                parts.check(name, image_size(path))  # upright, as the decoding rule gives the image
    transform = EvalTransform(image_processor or promptcam_image_processor(model.config))
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(seed)

    was_training = model.training
    model.eval()
    records = {PROMPT_HEADS: [], CLS_HEADS: []}
    kept, predictions = [], []
    bar = tqdm(total=len(images), desc="atlas", unit="image", disable=not progress)
    try:
        for start in range(0, len(images), batch_size):
            paths, batch_labels = images[start : start + batch_size], labels[start : start + batch_size]
            opened = [_open(path) for path in paths]
            pixel_values = torch.stack([transform(image) for image in opened]).to(device)
            size = tuple(pixel_values.shape[2:])
            half = (box_size / 2 * size[1] / reference_size, box_size / 2 * size[0] / reference_size)
            targets = torch.tensor(batch_labels, device=device)
            output = model(pixel_values, output_trait_maps=True)
            predicted = output.logits.argmax(-1).tolist()
            predictions += predicted
            keep = [k for k in range(len(paths)) if all_images or predicted[k] == batch_labels[k]]
            bar.update(len(paths))
            if not keep:
                continue
            index = torch.tensor(keep, device=device)
            pixel_values, targets = pixel_values[index], targets[index]
            noise = torch.randn(pixel_values.shape, generator=generator) * noise_std
            noisy = pixel_values + noise.clamp(-noise_clip, noise_clip).to(device, pixel_values.dtype)
            all_maps = output.trait_maps[index].float()  # (B, C, heads, gh, gw)
            own = all_maps[torch.arange(len(keep), device=device), targets]  # (B, heads, gh, gw)
            noisy_own = model(noisy, trait_map_classes=targets[:, None]).trait_maps[:, 0].float()
            rankings = model.rank_traits(pixel_values, target_classes=targets, blur=blur, stop=stop)
            distinct = _distinctiveness(all_maps, targets, half, size) if num_labels > 1 else None
            batch_parts = [_image_parts(parts, matched[start + k], opened[k].size, (size[1], size[0])) for k in keep]
            methods = {PROMPT_HEADS: (own, noisy_own)}
            if cls_baseline:
                prefix = model.driver.num_prefix_tokens
                methods[CLS_HEADS] = (
                    cls_attention_heads(model.backbone, pixel_values, prefix).float(),
                    cls_attention_heads(model.backbone, noisy, prefix).float(),
                )
            for method, (maps, noisy_maps) in methods.items():
                batch, heads = maps.shape[:2]
                peaks, upsampled = _peaks(maps.flatten(0, 1), size)
                noisy_peaks, _ = _peaks(noisy_maps.flatten(0, 1), size)
                peaks, noisy_peaks = peaks.reshape(batch, heads, 2), noisy_peaks.reshape(batch, heads, 2)
                upsampled = upsampled.reshape(batch, heads, *size)
                confidence = maps.flatten(2).max(dim=2).values.cpu().numpy()
                for k, image_index in enumerate(keep):
                    record = _Record(
                        label=batch_labels[image_index],
                        parts=batch_parts[k],
                        peaks=peaks[k],
                        noisy_peaks=noisy_peaks[k],
                        confidence=confidence[k],
                        mask_mass=_mask_mass(batch_parts[k], upsampled[k]),
                    )
                    if method == PROMPT_HEADS:
                        ranking = rankings[k]
                        record.top_traits = set(ranking.top_traits)
                        record.ranks = np.argsort(np.array(ranking.ranked_heads))
                        record.distinct = distinct[k] if distinct is not None else None
                    records[method].append(record)
                    if method == PROMPT_HEADS:
                        kept.append(start + image_index)
    finally:
        bar.close()
        model.train(was_training)

    if not kept:
        raise ValueError(
            f"None of the {len(images)} image(s) was classified correctly, so no class has images to measure; pass "
            "all_images=True (--all-images) to measure the heads on every image."
        )
    id2label = model.config.id2label
    classes = {}
    for class_index in sorted(set(labels)):
        positions = [k for k, image in enumerate(kept) if labels[image] == class_index]
        if not positions:
            continue
        class_records = {method: [records[method][k] for k in positions] for method in records if records[method]}
        indices = [kept[k] for k in positions]
        heads = [
            _head_statistics(h, class_records[PROMPT_HEADS], half, threshold, gallery, indices, ranked=True)
            for h in range(num_heads)
        ]
        heads.sort(key=lambda s: (-s.top_trait_rate, s.mean_rank, s.head))
        cls_heads = (
            [
                _head_statistics(h, class_records[CLS_HEADS], half, threshold, gallery, indices, ranked=False)
                for h in range(num_heads)
            ]
            if cls_baseline
            else []
        )
        name = id2label.get(class_index, str(class_index))
        classes[name] = ClassAtlas(
            class_index=class_index,
            class_name=name,
            images=len(positions),
            annotated_images=heads[0].annotated_images,
            small_sample=len(positions) < min_images,
            heads=heads,
            cls_heads=cls_heads,
            consistent_share=_consistent_share(heads),
            cls_consistent_share=_consistent_share(cls_heads),
        )
    if parts is not None and not any(atlas.annotated_images for atlas in classes.values()):
        raise PartsError(
            f"None of the evaluated images has a visible part in {parts.origin}; the atlas has nothing to measure "
            "consistency against. Check that the annotations belong to these images."
        )
    confusions = Counter(
        (id2label.get(true, str(true)), id2label.get(guess, str(guess)))
        for true, guess in zip(labels, predictions)
        if true != guess
    )
    settings = {
        "images": len(images),
        "evaluated_images": len(kept),
        "all_images": all_images,
        "box_size": box_size,
        "reference_size": reference_size,
        "box_at_input": [2 * half[0], 2 * half[1]] if images else None,
        "threshold": threshold,
        "noise_std": noise_std,
        "noise_clip": noise_clip,
        "blur": blur,
        "stop": stop,
        "min_images": min_images,
        "seed": seed,
        "parts": None
        if parts is None
        else {"source": parts.source, "origin": parts.origin, "names": list(parts.part_names)},
    }
    return TraitAtlas(
        classes=classes,
        summary=_summary(classes, parts, half, size),
        settings=settings,
        images=images,
        confusions=[(a, b, n) for (a, b), n in confusions.most_common()],
        labels=labels,
        predicted=predictions,
        class_names={int(k): str(v) for k, v in id2label.items()},
    )


class AtlasFileError(ValueError):
    """An `atlas.json` that cannot be read or does not have the layout of `TraitAtlas.to_json` (says how to fix it)."""


ATLAS_HEAD_FIELDS = ("head", "named_part", "named_part_rate", "consistency", "stability", "top_trait_rate")


def read_atlas_json(path: str | os.PathLike) -> dict:
    """An `atlas.json` written by `promptcam atlas` ([`TraitAtlas.to_json`]), checked: one entry per class with
    `images` and `heads`, each head with at least `ATLAS_HEAD_FIELDS`."""
    import json

    try:
        with open(path, encoding="utf-8") as file:
            data = json.load(file)
    except FileNotFoundError:
        raise AtlasFileError(f"No atlas file {path}; write one with promptcam atlas (OUT/atlas.json).") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise AtlasFileError(f"{path} is not a readable atlas.json ({error}).") from None
    if not isinstance(data, dict) or not data:
        raise AtlasFileError(f"{path} must hold {{class_name: {{'images': n, 'heads': [...]}}}} (promptcam atlas).")
    for name, entry in data.items():
        heads = entry.get("heads") if isinstance(entry, dict) else None
        if not isinstance(heads, list) or "images" not in entry:
            raise AtlasFileError(f"{path}: the entry of {name!r} has no 'images' and 'heads'; is it an atlas.json?")
        for head in heads:
            missing = [key for key in ATLAS_HEAD_FIELDS if not isinstance(head, dict) or key not in head]
            if missing:
                raise AtlasFileError(f"{path}: a head of {name!r} lacks {', '.join(missing)}.")
    return data


def _open(path: str) -> Image.Image:
    try:
        return open_rgb(path)
    except OSError as error:
        raise DataError(f"{path} is not a readable image ({error}); fix or remove it.") from None


def _image_parts(parts, name, image_size, input_size) -> ImageParts | None:
    return parts.at_input(name, image_size, input_size) if parts is not None and name is not None else None


def _distinctiveness(all_maps: torch.Tensor, targets: torch.Tensor, half, size) -> np.ndarray:
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


def _consistent_share(heads: list[HeadStatistics]) -> float | None:
    judged = [head.consistent for head in heads if head.consistent is not None]
    return float(np.mean(judged)) if judged else None


def _summary(classes: dict[str, ClassAtlas], parts, half, size) -> dict:
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
    "ATLAS_HEAD_FIELDS",
    "AtlasFileError",
    "CLS_HEADS",
    "ClassAtlas",
    "DEFAULT_BOX_SIZE",
    "DEFAULT_GALLERY",
    "DEFAULT_MIN_IMAGES",
    "DEFAULT_NOISE_CLIP",
    "DEFAULT_NOISE_STD",
    "DEFAULT_THRESHOLD",
    "GalleryImage",
    "HeadStatistics",
    "PROMPT_HEADS",
    "REFERENCE_SIZE",
    "TraitAtlas",
    "read_atlas_json",
    "trait_atlas",
]
