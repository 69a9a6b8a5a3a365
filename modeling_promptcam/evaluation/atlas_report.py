"""`promptcam atlas`: the trait atlas of a model on an image folder ([`run_atlas`]), written as `atlas.json` (the
layout of `TraitAtlas.to_json`), `atlas_summary.json` (the summary and the settings) and `atlas.html` (one
self-contained page, through the one HTML writer `explain.report`): per class, one row per head in rank order with
its named part, its scores and a gallery of its most confident images (the map over the image and a crop around its
peak); the CLS-attention baseline; a class-vs-class view of the most-confused pairs."""

from __future__ import annotations

import dataclasses
import html
import io
import os
import random

import numpy as np
import torch
from PIL import Image

from ..data.folders import DataError, check_image_folder
from ..data.images import open_rgb
from ..data.parts import read_part_annotations
from ..data.transforms import EvalTransform
from ..explain.report import ReportSection, image_tag, write_html_page
from ..files import check_model_folder, write_json_atomically
from .atlas import REFERENCE_SIZE, ClassAtlas, HeadStatistics, TraitAtlas, trait_atlas
from .faithfulness import _read_split
from .options import AtlasOptions

ATLAS_FILE, SUMMARY_FILE, HTML_FILE = "atlas.json", "atlas_summary.json", "atlas.html"
THUMBNAIL = 112  # pixels of a gallery image (and of its crop)


def run_atlas(options: AtlasOptions) -> TraitAtlas:
    """Check the inputs, compute the atlas ([`trait_atlas`]) on the evaluated split, write the three files."""
    from transformers import AutoImageProcessor

    from ..modeling_promptcam import PromptCamForImageClassification

    check_model_folder(options.model)
    splits = check_image_folder(options.data, verify_images=False)
    if splits.validation_dir is None:
        raise DataError(
            f"{options.data} has no val/ folder (validation/, valid/ or test/ also work): the atlas is measured on "
            f"{options.data}/val/<class>/<image>."
        )
    sources = [options.parts, options.keypoints, options.masks]
    parts = read_part_annotations(*sources) if any(value is not None for value in sources) else None
    device = torch.device(options.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model = PromptCamForImageClassification.from_pretrained(options.model).to(device).eval()
    image_processor = AutoImageProcessor.from_pretrained(options.model)
    evaluated = _read_split(model, splits.validation_dir, splits.images["validation"])
    # absolute paths: atlas.json's galleries name files that other tools (the app) open from anywhere
    paths, labels = [os.path.abspath(path) for path in evaluated.paths], evaluated.labels
    if options.max_images is not None and options.max_images < len(paths):
        keep = sorted(random.Random(options.seed).sample(range(len(paths)), options.max_images))
        paths, labels = [paths[i] for i in keep], [labels[i] for i in keep]
    if parts is not None and parts.strict:
        # a keypoints JSON or mask folder may annotate any image of DATA (train/ too): an image it names that is in
        # neither split is an error (another dataset's); that it covers some evaluated image, trait_atlas checks
        every_image = [os.path.abspath(p) for split in splits.images.values() for ps in split.values() for p in ps]
        parts.match(every_image, os.path.abspath(options.data), require_coverage=False)
        parts = dataclasses.replace(parts, strict=False)
    atlas = trait_atlas(
        model,
        paths,
        labels,
        parts,
        image_processor=image_processor,
        data_dir=os.path.abspath(options.data),
        all_images=options.all_images,
        box_size=options.box_size,
        threshold=options.threshold,
        noise_std=options.noise_std,
        noise_clip=options.noise_clip,
        blur=options.blur,
        stop=options.stop,
        min_images=options.min_images,
        gallery=options.gallery,
        cls_baseline=options.cls_baseline,
        batch_size=options.batch_size,
        seed=options.seed,
        progress=options.progress,
    )
    atlas.settings.update({"model": os.path.abspath(options.model), "data": os.path.abspath(options.data)})
    os.makedirs(options.output_dir, exist_ok=True)
    atlas.save(os.path.join(options.output_dir, ATLAS_FILE))
    write_json_atomically(
        os.path.join(options.output_dir, SUMMARY_FILE),
        {"summary": atlas.summary, "settings": atlas.settings, "confusions": atlas.confusions},
    )
    write_atlas_html(atlas, model, EvalTransform(image_processor), os.path.join(options.output_dir, HTML_FILE),
                     options.confused_pairs, options.batch_size)  # fmt: skip
    return atlas


# ----------------------------------------------------------------------------------------------- the page
def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _number(value, digits: int = 2) -> str:
    return "&ndash;" if value is None else f"{value:.{digits}f}"


class _Maps:
    """The trait maps the page draws, computed in batches ([`prefetch`]) for the (image, class) pairs it shows."""

    def __init__(self, atlas: TraitAtlas, model, transform: EvalTransform, batch_size: int = 16):
        self.atlas, self.model, self.transform, self.batch_size = atlas, model, transform, batch_size
        self.cache: dict[tuple[int, int], tuple[Image.Image, np.ndarray]] = {}

    @torch.no_grad()
    def prefetch(self, pairs: list[tuple[int, int]]) -> None:
        """Compute the maps of every `(image, class)` pair not computed yet, `batch_size` images per forward pass."""
        wanted = list(dict.fromkeys(pair for pair in pairs if pair not in self.cache))
        device = next(self.model.parameters()).device
        for start in range(0, len(wanted), self.batch_size):
            chunk = wanted[start : start + self.batch_size]
            pixel_values = torch.stack([self.transform(open_rgb(self.atlas.images[image])) for image, _ in chunk])
            targets = torch.tensor([[class_index] for _, class_index in chunk], device=device)
            maps = self.model(pixel_values.to(device), trait_map_classes=targets).trait_maps[:, 0].float().cpu()
            for k, pair in enumerate(chunk):
                # the model's input as an image (mean = std = 0.5 undone), the size the maps are drawn over
                pixels = ((pixel_values[k].permute(1, 2, 0).numpy() * 0.5 + 0.5) * 255).clip(0, 255)
                self.cache[pair] = (Image.fromarray(pixels.astype(np.uint8)), maps[k].numpy())

    def get(self, image: int, class_index: int) -> tuple[Image.Image, np.ndarray]:
        """The image at the model input (RGB) and the class's trait maps `(heads, gh, gw)` on it."""
        self.prefetch([(image, class_index)])
        return self.cache[(image, class_index)]


def _thumbnails(maps: _Maps, image: int, class_index: int, head: int, peak, box: float) -> str:
    """The head's map over the image and a crop of the box around its peak, as two inline images."""
    from ..explain.figures import overlay

    shown, class_maps = maps.get(image, class_index)
    blended = Image.fromarray((overlay(shown, class_maps[head]) * 255).astype(np.uint8))
    x, y = peak
    width, height = shown.size
    half_x, half_y = min(box * width / REFERENCE_SIZE, width) / 2, min(box * height / REFERENCE_SIZE, height) / 2
    # the box around the peak, shifted inside the image near a border so that every crop shows a whole box
    left, top = min(max(0.0, x - half_x), width - 2 * half_x), min(max(0.0, y - half_y), height - 2 * half_y)
    crop = shown.crop((int(left), int(top), int(left + 2 * half_x), int(top + 2 * half_y)))
    name = os.path.basename(maps.atlas.images[image])
    return image_tag(_png(blended.resize((THUMBNAIL, THUMBNAIL))), name, name) + image_tag(
        _png(crop.resize((THUMBNAIL, THUMBNAIL))), f"crop of {name}", f"around the peak in {name}"
    )


def _head_row(rank: int, head: HeadStatistics, ranked: bool) -> list[str]:
    named = html.escape(head.named_part) if head.named_part else "&ndash;"
    consistency = _number(head.consistency)
    if head.consistency_part is not None:
        consistency += f" ({html.escape(head.consistency_part)}{', consistent' if head.consistent else ''})"
    row = [str(rank + 1), str(head.head)]
    if ranked:
        row.append(_number(head.top_trait_rate))
    row += [f"{named} ({_number(head.named_part_rate)})", consistency, _number(head.stability)]
    if ranked:
        row.append(_number(head.distinctiveness))
    row += [_number(head.part_mask_mass), f"{head.annotated_images} / {head.images}"]
    return row


def class_section(atlas: TraitAtlas, entry: ClassAtlas, maps: _Maps) -> list[ReportSection]:
    """One class: its heads in rank order with their galleries, then the CLS-attention baseline's heads."""
    box = atlas.settings["box_size"]
    warnings = []
    if entry.small_sample:
        warnings.append(
            f"Only {entry.images} evaluated image(s) (fewer than {atlas.settings['min_images']}): these statistics "
            "are not reliable."
        )
    header = ["rank", "head", "top-trait rate", "named part (rate)", "consistency (part)", "stability",
              "distinctiveness", "mass in part mask", "annotated / images", "most confident images (map, crop)"]  # fmt: skip
    rows = []
    for rank, head in enumerate(entry.heads):
        gallery = "".join(
            _thumbnails(maps, item.image, entry.class_index, head.head, item.peak, box) for item in head.gallery
        )
        rows.append(_head_row(rank, head, ranked=True) + [gallery])
    sections = [
        ReportSection(
            heading=f"{entry.class_name}",
            warnings=warnings,
            paragraphs=[
                f"{entry.images} image(s), {entry.annotated_images} with visible parts; share of consistent heads: "
                f"{_number(entry.consistent_share)} (CLS-attention heads: {_number(entry.cls_consistent_share)})."
            ],
            table=rows,
            table_header=header,
        )
    ]
    if entry.cls_heads:
        cls_header = ["#", "CLS head", "named part (rate)", "consistency (part)", "stability", "mass in part mask",
                      "annotated / images"]  # fmt: skip
        ordered = sorted(entry.cls_heads, key=lambda h: (-(h.consistency or 0), h.head))
        sections.append(
            ReportSection(
                heading=f"{entry.class_name}: the backbone's CLS-attention heads (baseline)",
                level=3,
                table=[_head_row(rank, head, ranked=False) for rank, head in enumerate(ordered)],
                table_header=cls_header,
            )
        )
    return sections


def confusion_section(atlas: TraitAtlas, maps: _Maps, pairs: int) -> ReportSection:
    """The most-confused pairs (true -> predicted): on images of the true class predicted as the other, the top head
    of each class's prompt side by side."""
    counts = {(a, b): n for a, b, n in atlas.confusions}
    rows = []
    for (true_name, predicted_name), shown in _confused_images(atlas, pairs).items():
        cells = []
        for image, class_index in shown:
            # the class's top-ranked head; a class without evaluated images has no ranking: its head 0
            name = atlas.class_names[class_index]
            head = atlas.classes[name].heads[0].head if name in atlas.classes else 0
            picture, class_maps = maps.get(image, class_index)
            grid = class_maps[head].shape
            row, column = np.unravel_index(np.argmax(class_maps[head]), grid)
            centre = ((column + 0.5) * picture.size[0] / grid[1], (row + 0.5) * picture.size[1] / grid[0])
            cells.append(_thumbnails(maps, image, class_index, head, centre, atlas.settings["box_size"]))
        rows.append([html.escape(true_name), html.escape(predicted_name), str(counts[(true_name, predicted_name)]),
                     " | ".join(cells)])  # fmt: skip
    paragraphs = ["Per pair: images of the true class predicted as the other; for each, the top head of the true "
                  "class's prompt, then of the predicted class's prompt (map, crop around the peak)."]  # fmt: skip
    if not rows:
        paragraphs = ["No evaluated image was misclassified."]
    return ReportSection(
        heading="Most-confused pairs",
        paragraphs=paragraphs,
        table=rows,
        table_header=["true", "predicted", "images", "true class's top head | predicted class's top head"],
    )


def _confused_images(atlas: TraitAtlas, pairs: int, per_pair: int = 3) -> dict[tuple[str, str], list]:
    """Per most-confused pair, the `(image, class)` pairs its view draws: up to `per_pair` images of the true class
    predicted as the other, each with both classes."""
    index_of = {name: index for index, name in atlas.class_names.items()}
    shown = {}
    for true_name, predicted_name, _ in atlas.confusions[:pairs]:
        true_index, predicted_index = index_of[true_name], index_of[predicted_name]
        images = [k for k, (t, p) in enumerate(zip(atlas.labels, atlas.predicted))
                  if t == true_index and p == predicted_index][:per_pair]  # fmt: skip
        shown[(true_name, predicted_name)] = [(k, c) for k in images for c in (true_index, predicted_index)]
    return shown


def write_atlas_html(
    atlas: TraitAtlas, model, transform: EvalTransform, path, confused_pairs: int = 5, batch_size: int = 16
) -> None:
    """`atlas.html`: the summary, one section per class, the most-confused pairs (self-contained, one file)."""
    summary = atlas.summary
    prompt, baseline = summary["prompt-cam"], summary["cls-attention"]
    settings = atlas.settings
    intro = ReportSection(
        paragraphs=[
            f"{settings['evaluated_images']} of {settings['images']} image(s) evaluated "
            f"({'all images' if settings['all_images'] else 'the correctly classified ones'}), {summary['classes']} "
            f"class(es). Consistency: EvalProtoPNet's box of {settings['box_size']:g} px at {REFERENCE_SIZE} px, "
            f"threshold {settings['threshold']:g}; stability under noise {settings['noise_std']:g} (clip "
            f"{settings['noise_clip']:g}); ranking blur={settings['blur']}, stop={settings['stop']}.",
            f"Share of consistent heads: Prompt-CAM {_number(prompt['consistent_share'])} "
            f"({prompt['consistent_heads']} of {prompt['judged_heads']}); the backbone's CLS-attention heads "
            f"{_number(baseline['consistent_share'])} ({baseline['consistent_heads']} of {baseline['judged_heads']})."
            + (f" Chance share of a box: {summary['box_share_of_input']:.3f}." if summary["box_share_of_input"] else ""),
        ],
        warnings=[f"Small samples (fewer than {settings['min_images']} images): "
                  f"{', '.join(html.escape(n) for n in summary['small_sample_classes'])}."]
        if summary["small_sample_classes"] else [],
    )  # fmt: skip
    if summary["parts_without_visible_instances"]:
        missing = ", ".join(html.escape(part) for part in summary["parts_without_visible_instances"])
        intro.warnings = [*intro.warnings, f"Parts visible in none of the evaluated images (never named): {missing}."]
    if settings["parts"] is None:
        intro.warnings = [*intro.warnings, "No part annotations given: no consistency, stability or named parts."]
    maps = _Maps(atlas, model, transform, batch_size)
    maps.prefetch(
        [(item.image, entry.class_index) for entry in atlas.classes.values() for head in entry.heads
         for item in head.gallery]
        + [pair for pairs in _confused_images(atlas, confused_pairs).values() for pair in pairs]
    )  # fmt: skip
    sections = [intro]
    for entry in atlas.classes.values():
        sections += class_section(atlas, entry, maps)
    sections.append(confusion_section(atlas, maps, confused_pairs))
    write_html_page(path, "Prompt-CAM trait atlas", sections)


__all__ = ["ATLAS_FILE", "HTML_FILE", "SUMMARY_FILE", "class_section", "run_atlas", "write_atlas_html"]
