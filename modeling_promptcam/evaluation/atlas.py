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

This module makes the pass over the images ([`trait_atlas`]); the result types and `atlas.json` are in
`evaluation.atlas_result`, the statistics computed from each image's record in `evaluation.atlas_statistics`.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

from ..data.folders import DataError
from ..data.images import image_size, open_rgb
from ..data.parts import ImageParts, PartAnnotations, PartsError
from ..data.transforms import EvalTransform
from ..modeling_promptcam import BLUR_MODES, parse_stop_rule

# the result types and the atlas.json reader moved to atlas_result; their old import path keeps working
from .atlas_result import (
    ATLAS_HEAD_FIELDS,
    CLS_HEADS,
    PROMPT_HEADS,
    AtlasFileError,
    ClassAtlas,
    GalleryImage,
    HeadStatistics,
    TraitAtlas,
    read_atlas_json,
)
from .atlas_statistics import (
    ImageRecord,
    atlas_summary,
    consistent_share,
    distinctiveness,
    head_statistics,
    mask_mass,
    peaks_at_input,
)
from .localization import cls_attention_heads

# EvalProtoPNet's settings (official code: half_size 36 at 224 px, threshold 0.8, noise std 0.2 clipped to 0.25)
DEFAULT_BOX_SIZE = 72
REFERENCE_SIZE = 224
DEFAULT_THRESHOLD = 0.8
DEFAULT_NOISE_STD = 0.2
DEFAULT_NOISE_CLIP = 0.25
DEFAULT_MIN_IMAGES = 10
DEFAULT_GALLERY = 4


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
            distinct = distinctiveness(all_maps, targets, half, size) if num_labels > 1 else None
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
                peaks, upsampled = peaks_at_input(maps.flatten(0, 1), size)
                noisy_peaks, _ = peaks_at_input(noisy_maps.flatten(0, 1), size)
                peaks, noisy_peaks = peaks.reshape(batch, heads, 2), noisy_peaks.reshape(batch, heads, 2)
                upsampled = upsampled.reshape(batch, heads, *size)
                confidence = maps.flatten(2).max(dim=2).values.cpu().numpy()
                for k, image_index in enumerate(keep):
                    record = ImageRecord(
                        label=batch_labels[image_index],
                        parts=batch_parts[k],
                        peaks=peaks[k],
                        noisy_peaks=noisy_peaks[k],
                        confidence=confidence[k],
                        mask_mass=mask_mass(batch_parts[k], upsampled[k]),
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
            head_statistics(h, class_records[PROMPT_HEADS], half, threshold, gallery, indices, ranked=True)
            for h in range(num_heads)
        ]
        heads.sort(key=lambda s: (-s.top_trait_rate, s.mean_rank, s.head))
        cls_heads = (
            [
                head_statistics(h, class_records[CLS_HEADS], half, threshold, gallery, indices, ranked=False)
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
            consistent_share=consistent_share(heads),
            cls_consistent_share=consistent_share(cls_heads),
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
        summary=atlas_summary(classes, parts, half, size),
        settings=settings,
        images=images,
        confusions=[(a, b, n) for (a, b), n in confusions.most_common()],
        labels=labels,
        predicted=predictions,
        class_names={int(k): str(v) for k, v in id2label.items()},
    )


def _open(path: str) -> Image.Image:
    try:
        return open_rgb(path)
    except OSError as error:
        raise DataError(f"{path} is not a readable image ({error}); fix or remove it.") from None


def _image_parts(parts, name, image_size, input_size) -> ImageParts | None:
    return parts.at_input(name, image_size, input_size) if parts is not None and name is not None else None


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
