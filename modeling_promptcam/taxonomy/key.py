"""Taxonomic keys from a [`PromptCamTaxonomy`]: which traits separate a group from its siblings.

- **The key of an image** ([`explain_taxonomy`]): for each level on the predicted path, the model that chose there
  (node mode: the parent's model, whose classes are exactly the siblings; level mode: the level's model, whose
  classes are every group of the level) ranks the chosen group's heads by greedy blurring (`rank_traits`, any blur
  mode and stop rule); the top traits and their maps are kept. [`plot_taxonomy_key`] draws one row per level (the
  paper's Fig. 9 layout).
- **The key of a class** ([`class_key`]): the same along the class's true path over several of its images (its
  validation images), counting how often each head is among the top traits: the heads that recur in at least half of
  the images are the class's key traits at that level.
- [`write_key_report`] writes both into one HTML page through `explain.report` (the one HTML writer), and
  [`write_taxonomy_keys`] is the loop of `promptcam taxonomy-key`.
"""

from __future__ import annotations

import html
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from ..data.images import to_rgb
from ..explain.report import ReportSection, write_html_page
from .model import KeyStep, PromptCamTaxonomy, TaxonomyKey
from .table import ROOT

REPORT_FILE = "report.html"
KEY_FIGURE = "taxonomy_key.png"
RECURRING_SHARE = 0.5  # a head recurs when it is among the top traits of at least this share of a class's images


@dataclass
class ClassKeyLevel:
    """One level of a class key.

    Attributes:
        level, group, siblings, unit_id: as in [`KeyStep`] (the class's true group at the level).
        images: how many images were ranked.
        correct: how many of them the deciding model put in `group`.
        head_counts: per head, in how many images it was among the top traits.
        recurring: the heads among the top traits of at least `RECURRING_SHARE` of the images, most frequent first.
    """

    level: str
    group: str
    siblings: tuple[str, ...]
    unit_id: str
    images: int
    correct: int
    head_counts: dict[int, int] = field(default_factory=dict)
    recurring: list[int] = field(default_factory=list)


@dataclass
class ClassKey:
    """The key of one class over several of its images: one [`ClassKeyLevel`] per level with a choice."""

    leaf: str
    images: int
    levels: list[ClassKeyLevel]


def explain_taxonomy(
    model: PromptCamTaxonomy, image, blur: str = "paper", stop: str | int = "misclassified"
) -> TaxonomyKey:
    """The key of `image` ([`PromptCamTaxonomy.explain`]): the predicted path, and at each level the chosen group's
    trait maps and head ranking against its siblings (the module docstring)."""
    return model.explain(image, blur=blur, stop=stop)


@torch.no_grad()
def class_key(
    model: PromptCamTaxonomy,
    images: Sequence,
    leaf: str,
    blur: str = "paper",
    stop: str | int = "misclassified",
    batch_size: int = 16,
) -> ClassKey:
    """The key of class `leaf` over `images` (PIL images of that class, e.g. its validation images): along its true
    path, per level, how often each head is among the true group's top traits, and the heads that recur."""
    if leaf not in model.taxonomy.classes:
        known = ", ".join(model.taxonomy.classes[:8])
        raise ValueError(f"unknown class {leaf!r}; the taxonomy's classes include: {known}, ...")
    if not images:
        raise ValueError(f"no images of {leaf} to build its key from.")
    path = model.taxonomy.ancestors(leaf)
    levels, parent = [], ROOT
    for level in model.levels:
        group = path[level]
        unit = model.unit_for(level, parent)
        if unit is not None:
            member = model.models[unit.id]
            target = unit.classes.index(group)
            counts, correct = Counter(), 0
            for start in range(0, len(images), batch_size):
                pixel_values = model.pixel_values([to_rgb(i) for i in images[start : start + batch_size]])
                values = pixel_values.to(member.dtype)
                targets = torch.full((len(values),), target, device=values.device)
                correct += int((member(values).logits.argmax(-1) == targets).sum())
                for ranking in member.rank_traits(values, target_classes=targets, blur=blur, stop=stop):
                    counts.update(ranking.top_traits)
            needed = RECURRING_SHARE * len(images)
            recurring = [
                head for head, count in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if count >= needed
            ]
            siblings = tuple(name for name in unit.classes if name != group)
            levels.append(
                ClassKeyLevel(level, group, siblings, unit.id, len(images), correct, dict(counts), recurring)
            )
        parent = group
    return ClassKey(leaf, len(images), levels)


# ----------------------------------------------------------------------------------------------------- figures
def plot_taxonomy_key(key: TaxonomyKey, cmap: str = "jet", alpha: float = 0.5, max_heads: int = 4):
    """One row per level with a choice (the paper's Fig. 9 layout): the image titled with the chosen group and its
    probability, then the maps of its top traits in rank order (at most `max_heads`)."""
    from ..explain.figures import DPI, PANEL_INCHES, overlay
    from ..extras import require

    Figure = require("matplotlib.figure", "viz", "Drawing taxonomy keys").Figure
    rows = [step for step in key.steps if step.decided] or key.steps[:1]
    columns = 1 + max([min(len(step.ranking.top_traits), max_heads) for step in rows if step.decided] + [1])
    figure = Figure(
        figsize=(PANEL_INCHES * columns * 0.8, PANEL_INCHES * len(rows) * 0.8 + 0.5), dpi=DPI, layout="constrained"
    )
    axes = figure.subplots(len(rows), columns, squeeze=False)
    figure.suptitle("taxonomy key: " + " > ".join(step.chosen for step in key.steps), fontsize=9)
    for row, step in enumerate(rows):
        for axis in axes[row]:
            axis.axis("off")
        versus = (
            f"\nvs {', '.join(step.siblings[:3])}{' ...' if len(step.siblings) > 3 else ''}" if step.siblings else ""
        )
        axes[row][0].imshow(key.image)
        axes[row][0].set_title(f"{step.level}: {step.chosen} (p = {step.probability:.2f}){versus}", fontsize=7)
        if not step.decided:
            continue
        for column, head in enumerate(step.ranking.top_traits[:max_heads], 1):
            axes[row][column].imshow(overlay(key.image, step.trait_maps[head], cmap, alpha))
            axes[row][column].set_title(f"rank {column}: head {head}", fontsize=7)
    return figure


def plot_class_key(key: ClassKey):
    """One row per level with a choice: how often each head is among the true group's top traits (recurring heads
    in a darker colour)."""
    from ..explain.figures import DPI, PANEL_INCHES
    from ..extras import require

    Figure = require("matplotlib.figure", "viz", "Drawing taxonomy keys").Figure
    rows = max(len(key.levels), 1)
    figure = Figure(figsize=(PANEL_INCHES * 2.5, PANEL_INCHES * 0.9 * rows + 0.5), dpi=DPI, layout="constrained")
    axes = figure.subplots(rows, 1, squeeze=False)[:, 0]
    figure.suptitle(f"class key of {key.leaf} over {key.images} image(s)", fontsize=9)
    for axis, level in zip(axes, key.levels):
        heads = sorted(set(level.head_counts) | set(level.recurring)) or [0]
        counts = [level.head_counts.get(head, 0) for head in heads]
        colours = ["#1f4e79" if head in level.recurring else "#9dc3e6" for head in heads]
        axis.bar([str(h) for h in heads], counts, color=colours)
        axis.set_ylim(0, level.images)
        axis.set_title(f"{level.level}: {level.group} vs {', '.join(level.siblings[:3])}", fontsize=8)
        axis.set_ylabel("images", fontsize=7)
        axis.set_xlabel("head", fontsize=7)
    return figure


# ----------------------------------------------------------------------------------------------------- report
def key_section(name: str, key: TaxonomyKey, figure_png: bytes) -> ReportSection:
    """One image's key: a table with one row per level (group, probabilities, siblings, top traits) and its figure."""
    table = []
    for step in key.steps:
        if step.decided:
            traits = ", ".join(map(str, step.ranking.top_traits)) or "none (see docs/taxonomy.md)"
            siblings = ", ".join(html.escape(s) for s in step.siblings)
        else:
            traits, siblings = "nothing to choose (a single group)", ""
        table.append(
            (
                html.escape(step.level),
                html.escape(step.chosen),
                f"{step.probability:.4f}",
                f"{step.path_probability:.4f}",
                siblings,
                traits,
            )
        )
    ranking = next((step.ranking for step in key.steps if step.decided), None)
    how = f"Heads ranked by greedy blurring (blur={ranking.blur}, stop={ranking.stop})." if ranking else ""
    return ReportSection(
        heading=name,
        paragraphs=[how] if how else [],
        table=table,
        table_header=("level", "group", "probability", "path probability", "against", "top traits (heads)"),
        figures=[("", figure_png)],
    )


def class_key_section(key: ClassKey, figure_png: bytes) -> ReportSection:
    rows = [
        (
            html.escape(level.level),
            html.escape(level.group),
            ", ".join(html.escape(s) for s in level.siblings),
            f"{level.correct}/{level.images}",
            ", ".join(map(str, level.recurring)) or "none",
        )
        for level in key.levels
    ]
    return ReportSection(
        heading=f"Class key: {key.leaf}",
        paragraphs=[
            f"Over {key.images} image(s) of {html.escape(key.leaf)}: per level, the heads among the true group's top "
            f"traits in at least {RECURRING_SHARE:.0%} of the images."
        ],
        table=rows,
        table_header=("level", "group", "against", "chosen correctly", "recurring heads"),
        figures=[("", figure_png)],
    )


def write_key_report(
    path: str | os.PathLike,
    items: Sequence[tuple[str, TaxonomyKey, bytes]],
    class_keys: Sequence[tuple[ClassKey, bytes]] = (),
    failures: Sequence[tuple[str, str]] = (),
    title: str = "Prompt-CAM taxonomy keys",
) -> None:
    """One HTML page (through `explain.report`): a section per image key, per class key, and the failures."""
    sections = [ReportSection(paragraphs=[f"{len(items)} image key(s), {len(class_keys)} class key(s)."])]
    sections += [key_section(name, key, png) for name, key, png in items]
    sections += [class_key_section(key, png) for key, png in class_keys]
    if failures:
        listed = [f"{html.escape(item)}: {html.escape(message)}" for item, message in failures]
        sections.append(ReportSection(heading="Not explained", items=listed, is_warning=True))
    write_html_page(path, title, sections)


@dataclass
class KeyResult:
    """What [`write_taxonomy_keys`] did."""

    output_dir: str
    report: str
    keys: list[tuple[str, TaxonomyKey]] = field(default_factory=list)  # (input path, key)
    class_key: ClassKey | None = None
    failures: list[tuple[str, str]] = field(default_factory=list)  # (input, why)

    @property
    def ok(self) -> bool:
        return not self.failures


def write_taxonomy_keys(options) -> KeyResult:
    """The loop of `promptcam taxonomy-key` ([`TaxonomyKeyOptions`]): per image `OUTPUT_DIR/<name>/taxonomy_key.png`,
    with `class_key` also `OUTPUT_DIR/class_key_<class>.png`, and `OUTPUT_DIR/report.html` with everything.

    A missing or unreadable image is a failure listed in the report and the result; the other images are still
    explained. Raises `FileNotFoundError` / `TaxonomyFolderError` for a bad model folder, `ValueError` for an unknown
    `class_key`, before any image is read.
    """
    from PIL import UnidentifiedImageError
    from tqdm.auto import tqdm

    from ..data.images import open_rgb
    from ..explain.figures import png_bytes
    from ..files import write_atomically

    model = PromptCamTaxonomy.from_pretrained(options.model)
    if options.class_key is not None and options.class_key not in model.taxonomy.classes:
        known = ", ".join(model.taxonomy.classes[:8])
        raise ValueError(f"--class-key {options.class_key!r} is not a class of the taxonomy (classes: {known}, ...).")
    os.makedirs(options.output_dir, exist_ok=True)
    result = KeyResult(options.output_dir, os.path.join(options.output_dir, REPORT_FILE))
    items, opened, used = [], [], {REPORT_FILE}
    for path in tqdm(options.images, desc="taxonomy keys", unit="image", disable=not options.progress):
        try:
            image = open_rgb(path)
        except FileNotFoundError:
            result.failures.append((path, "no such file"))
            continue
        except (UnidentifiedImageError, OSError) as error:
            result.failures.append((path, f"not a readable image ({error})"))
            continue
        key = explain_taxonomy(model, image, blur=options.blur, stop=options.stop)
        png = png_bytes(plot_taxonomy_key(key, alpha=options.alpha))
        stem, number = os.path.splitext(os.path.basename(path))[0], 2
        name = stem
        while name in used:
            name, number = f"{stem}_{number}", number + 1
        used.add(name)
        os.makedirs(os.path.join(options.output_dir, name), exist_ok=True)
        write_atomically(os.path.join(options.output_dir, name, KEY_FIGURE), png)
        items.append((path, key, png))
        opened.append(image)
        result.keys.append((path, key))
    class_keys = []
    if options.class_key is not None and opened:
        result.class_key = class_key(model, opened, options.class_key, blur=options.blur, stop=options.stop)
        png = png_bytes(plot_class_key(result.class_key))
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in options.class_key)
        write_atomically(os.path.join(options.output_dir, f"class_key_{safe}.png"), png)
        class_keys.append((result.class_key, png))
    write_key_report(result.report, items, class_keys, result.failures)
    return result


__all__ = [
    "KEY_FIGURE",
    "RECURRING_SHARE",
    "REPORT_FILE",
    "ClassKey",
    "ClassKeyLevel",
    "KeyResult",
    "KeyStep",
    "TaxonomyKey",
    "class_key",
    "class_key_section",
    "explain_taxonomy",
    "key_section",
    "plot_class_key",
    "plot_taxonomy_key",
    "write_key_report",
    "write_taxonomy_keys",
]
