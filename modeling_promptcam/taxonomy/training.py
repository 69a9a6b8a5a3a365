"""Training a hierarchical Prompt-CAM: one prompt-only model per taxonomy node (`node` mode) or level (`level`
mode), each trained by the package's one training loop ([`run_training`]: the same `Trainer`, recipe and presets as
flat training) on the images relabelled for it.

Layout of `OUTPUT_DIR`::

    OUTPUT_DIR/taxonomy_plan.json       the taxonomy, the mode and the models to train (what --resume continues)
    OUTPUT_DIR/models/<model id>/       one flat training run per model (checkpoints, final/ = its adapter)
    OUTPUT_DIR/final/                   the taxonomy folder [`PromptCamTaxonomy.from_pretrained`] loads
    OUTPUT_DIR/training_summary.json    per-model summaries and the accuracy per level, top-down and flat

Everything that can be checked is checked before the first model trains: the table against the classes, and that
every class a model tells apart has at least two training images.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import shutil

from ..data.transforms import SAMPLE_ID
from ..files import write_json_atomically
from ..training.options import DEFAULT_TAXONOMY_MODE, TrainOptions
from ..training.trainer import (
    SUMMARY_FILE,
    check_output_writable,
    last_complete_checkpoint,
    replace_final,
    restore_final,
    run_training,
)
from .model import (
    PromptCamTaxonomy,
    TaxonomyUnit,
    backbone_fingerprint,
    plan_units,
    write_taxonomy_file,
)
from .table import ROOT, Taxonomy, TaxonomyError, read_taxonomy, taxonomy_from_columns

logger = logging.getLogger(__name__)

PLAN_FILE = "taxonomy_plan.json"
MODELS_DIR = "models"
MIN_TRAIN_IMAGES = 2  # per class a model tells apart: one image is not a class to learn


# the loss of every taxonomy model unless `--classification-loss` says otherwise
TAXONOMY_CLASSIFICATION_LOSS = "one_vs_rest"


def relabel(split, leaf_names: list[str], taxonomy: Taxonomy, unit: TaxonomyUnit):
    """The rows of `split` (a `datasets.Dataset` labelled with leaf classes) that `unit` learns from, labelled with
    `unit.classes` (node mode: the node's images, by child; level mode: every image, by its group at the level)."""
    import datasets

    index = {name: k for k, name in enumerate(unit.classes)}
    target_of = {}
    for leaf_index, leaf in enumerate(leaf_names):
        path = taxonomy.ancestors(leaf)
        if _learns_from(unit, path, taxonomy):
            target_of[leaf_index] = index[path[unit.level]]
    rows, labels = [], []
    for row, label in enumerate(split["label"]):
        if label in target_of:
            rows.append(row)
            labels.append(target_of[label])
    subset = split.select(rows).remove_columns("label")
    subset = subset.add_column("label", labels)
    return subset.cast_column("label", datasets.ClassLabel(names=list(unit.classes)))


def _learns_from(unit: TaxonomyUnit, path: dict[str, str], taxonomy: Taxonomy) -> bool:
    """Whether a class with ancestors `path` is among `unit`'s images (level mode and the root: every class)."""
    if unit.parent in (None, ROOT):
        return True
    return path[taxonomy.levels[taxonomy.levels.index(unit.level) - 1]] == unit.parent


def count_per_class(split, leaf_names, taxonomy, unit) -> dict[str, int]:
    """Training images per class of `unit` (without building the subset)."""
    counts = {name: 0 for name in unit.classes}
    per_leaf: dict[int, int] = {}
    for label in split["label"]:
        per_leaf[label] = per_leaf.get(label, 0) + 1
    for leaf_index, count in per_leaf.items():
        path = taxonomy.ancestors(leaf_names[leaf_index])
        if _learns_from(unit, path, taxonomy):
            counts[path[unit.level]] += count
    return counts


def check_training_images(dataset, leaf_names, taxonomy, units) -> None:
    """Raise [`TaxonomyError`] when a class of some model has fewer than `MIN_TRAIN_IMAGES` training images."""
    problems = []
    for unit in units:
        counts = count_per_class(dataset["train"], leaf_names, taxonomy, unit)
        few = {name: count for name, count in counts.items() if count < MIN_TRAIN_IMAGES}
        if few:
            listed = ", ".join(f"{name} ({count})" for name, count in few.items())
            problems.append(f"{unit.describe()}: {listed}")
    if problems:
        raise TaxonomyError(
            f"children with fewer than {MIN_TRAIN_IMAGES} training images: " + "; ".join(problems[:10]) + ". Each "
            "group a model tells apart needs at least two training images: add images, or merge the group with a "
            "sibling in the taxonomy table."
        )


def load_taxonomy_data(options: TrainOptions):
    """The checked data and taxonomy: `(DatasetDict, leaf class names, Taxonomy)`."""
    from ..data.folders import check_image_folder, verify_image_files
    from ..data.loading import load_image_folder, load_saved_dataset

    if (options.data_dir is None) == (options.dataset is None):
        raise ValueError("Give exactly one of --data-dir (an image folder) and --dataset (a datasets dataset).")
    if options.data_dir is not None:
        if options.taxonomy is None:
            raise TaxonomyError("--data-dir needs --taxonomy FILE (a table of every class and its ancestors).")
        splits = check_image_folder(options.data_dir, verify_images=False)  # the listing: the table is checked first
        taxonomy = read_taxonomy(options.taxonomy, splits.class_names, options.levels)
        if options.verify_images:  # then every image decoded, as flat training does
            verify_image_files(
                [path for split in splits.images.values() for paths in split.values() for path in paths]
            )
        dataset, names = load_image_folder(options.data_dir, splits=splits)
    else:
        dataset, names = load_saved_dataset(options.dataset, options.image_column, options.label_column)
        if options.taxonomy is not None:
            taxonomy = read_taxonomy(options.taxonomy, names, options.levels)
        else:
            levels = tuple(options.levels)
            if levels[-1] not in (options.label_column, "label"):
                levels = (*levels, options.label_column)
            # the columns as the user named them: loading renamed the image and label columns and added the sample id
            renamed = {"image": options.image_column, "label": options.label_column}
            shown = [renamed.get(name, name) for name in dataset["train"].column_names if name != SAMPLE_ID]
            taxonomy = taxonomy_from_columns(dataset["train"], levels, names, "label", options.dataset, shown)
    return dataset, names, taxonomy


def run_taxonomy_training(options: TrainOptions, callbacks: list | None = None, progress: bool = True) -> dict:
    """Train every model of the taxonomy, assemble `OUTPUT_DIR/final`, and measure accuracy per level.

    Args:
        options: the training run ([`TrainOptions`]) with its taxonomy fields (`taxonomy`, the table, or `levels`,
            dataset columns; `taxonomy_mode`); every model is trained with its recipe. `save_prompts_only` is
            implied (each model is a prompt-only adapter on the shared backbone).
        callbacks: `TrainerCallback`s given to every model's run.

    Returns the summary written to `OUTPUT_DIR/training_summary.json`: per model its summary, the named skips, and
    the validation accuracy per level (`top_down`, and in level mode `flat` and `consistency`).
    """
    from tqdm.auto import tqdm

    if not options.trains_taxonomy:
        raise ValueError("No taxonomy given: set TrainOptions.taxonomy (a table) or levels (dataset columns).")
    if options.push_to_hub:
        raise ValueError(
            "--push-to-hub uploads one model folder; upload a taxonomy folder (OUTPUT_DIR/final) with "
            "huggingface_hub's upload_folder instead."
        )
    options.recipe().validate()
    check_output_writable(options.output_dir)
    dataset, leaf_names, taxonomy = load_taxonomy_data(options)
    mode = options.taxonomy_mode or DEFAULT_TAXONOMY_MODE
    units, skipped = plan_units(taxonomy, mode)
    for message in skipped:
        logger.warning("taxonomy: %s", message)
    if not units:
        raise TaxonomyError(
            f"{taxonomy.source}: every level has a single group; there is nothing to tell apart (add classes)."
        )
    check_training_images(dataset, leaf_names, taxonomy, units)
    plan = {"mode": mode, "taxonomy": taxonomy.to_dict(), "units": [dataclasses.asdict(u) for u in units]}
    if options.taxonomy_min_steps is not None:  # only when set: plans written before the option still resume
        plan["min_steps"] = options.taxonomy_min_steps
    plan = json.loads(json.dumps(plan))  # tuples as lists, as the file holds them
    _check_output(options, plan)
    write_json_atomically(os.path.join(options.output_dir, PLAN_FILE), plan)

    summaries = {}
    bar = tqdm(units, desc="taxonomy", unit="model", disable=not progress)
    for number, unit in enumerate(bar, 1):
        unit_dir = os.path.join(options.output_dir, MODELS_DIR, unit.id)
        final = os.path.join(unit_dir, "final")
        remaining = len(units) - number
        if options.resume and _complete_adapter(final):
            restore_final(final)
            message = f"{unit.describe()} already trained (--resume): skipped; {remaining} remain"
            bar.set_description(f"taxonomy: {unit.describe()} done")
            logger.warning("taxonomy %d/%d: %s", number, len(units), message)
            with open(os.path.join(unit_dir, SUMMARY_FILE), encoding="utf-8") as handle:
                summaries[unit.id] = json.load(handle)
            continue
        import datasets

        data = datasets.DatasetDict({split: relabel(dataset[split], leaf_names, taxonomy, unit) for split in dataset})
        if "validation" in data and len(data["validation"]) == 0:
            del data["validation"]  # no validation image under this node: train without choosing a best epoch
        epochs = unit_epochs(options, len(data["train"]))
        bar.set_description(f"taxonomy: training {unit.describe()}")
        logger.warning(
            "taxonomy %d/%d: training %s at level %s for %d epochs; %d remain after it",
            number,
            len(units),
            unit.describe(),
            unit.level,
            epochs,
            remaining,
        )
        resume_unit = options.resume and last_complete_checkpoint(unit_dir) is not None
        unit_options = dataclasses.replace(
            options,
            output_dir=unit_dir,
            save_prompts_only=True,
            push_to_hub=None,
            taxonomy=None,  # each model is one flat run (its epochs already hold the step floor)
            taxonomy_min_steps=None,
            taxonomy_mode=None,
            # one-vs-rest unless asked otherwise: under a softmax, one child of a two-child node can read a constant
            # and leave the decision to its sibling, and its top-ranked head then points at nothing (docs/taxonomy.md)
            classification_loss=options.classification_loss or TAXONOMY_CLASSIFICATION_LOSS,
            levels=None,
            resume=resume_unit,
            overwrite_output_dir=not resume_unit,
            epochs=epochs,
        )
        summaries[unit.id] = run_training(unit_options, callbacks, data=(data, list(unit.classes)))
    bar.close()

    final_dir = os.path.join(options.output_dir, "final")
    assemble_final(options, taxonomy, mode, units, skipped, final_dir)
    loaded = PromptCamTaxonomy.from_pretrained(final_dir)
    metrics = {}
    if "validation" in dataset:
        from .evaluation import evaluate_taxonomy

        split = dataset["validation"]
        metrics = evaluate_taxonomy(
            loaded, split["image"], [leaf_names[label] for label in split["label"]], progress=progress
        )
    summary = {
        "backbone": options.backbone,
        "data_dir": os.path.abspath(options.data_dir) if options.data_dir else options.dataset,
        "taxonomy": taxonomy.source,
        "mode": mode,
        "levels": list(taxonomy.levels),
        "models": {unit_id: _json_only(s) for unit_id, s in summaries.items()},
        "skipped": skipped,
        "validation": metrics,
        "final_dir": final_dir,
    }
    write_json_atomically(os.path.join(options.output_dir, SUMMARY_FILE), summary)
    return summary


def unit_epochs(options: TrainOptions, train_images: int) -> int:
    """The epochs one model trains for: the recipe's, raised (with `taxonomy_min_steps`) until its optimizer steps
    reach the floor. A step is `batch_size x gradient_accumulation_steps` images on every process, the last batch of an
    epoch included, as `Trainer` counts them."""
    from accelerate import PartialState

    recipe = options.recipe()  # reads the preset file, when there is one: once
    if options.taxonomy_min_steps is None:
        return recipe.epochs
    images_per_step = recipe.batch_size * options.gradient_accumulation_steps * PartialState().num_processes
    steps_per_epoch = max(1, math.ceil(train_images / images_per_step))
    return max(recipe.epochs, math.ceil(options.taxonomy_min_steps / steps_per_epoch))


def assemble_final(options, taxonomy, mode, units, skipped, final_dir: str) -> None:
    """Copy every model's adapter into one folder beside `taxonomy.json` and the shared image processor, replacing
    `final_dir` so that a complete taxonomy is there at every instant (as `save_final` does for one model)."""
    from ..modeling_promptcam import PromptCamForImageClassification
    from ..training.backbone import BACKBONE_KEY_MAPPING

    staging = f"{final_dir}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    os.makedirs(staging)
    for unit in units:
        source = os.path.join(options.output_dir, MODELS_DIR, unit.id, "final")
        shutil.copytree(source, os.path.join(staging, unit.id), ignore=shutil.ignore_patterns("README.md"))
    first = os.path.join(staging, units[0].id)
    shutil.copy(os.path.join(first, "preprocessor_config.json"), os.path.join(staging, "preprocessor_config.json"))
    for unit in units:  # the processor is shared: one copy beside taxonomy.json
        os.remove(os.path.join(staging, unit.id, "preprocessor_config.json"))
    with open(os.path.join(first, "promptcam_config.json"), encoding="utf-8") as handle:
        config_dict = json.load(handle)
    from ..configuration_promptcam import PromptCamConfig

    config = PromptCamConfig.from_dict(config_dict)
    backbone = PromptCamForImageClassification.from_pretrained(
        options.backbone, config=config, key_mapping=BACKBONE_KEY_MAPPING
    ).backbone
    write_taxonomy_file(
        staging,
        taxonomy,
        mode,
        units,
        options.backbone,
        backbone_fingerprint(backbone),
        skipped,
        backbone_config=config_dict["backbone_config"],
        extra={"recipe": options.recipe().to_dict(), "preset": options.preset},
    )
    replace_final(staging, final_dir)


def _complete_adapter(final: str) -> bool:
    restore_final(final)
    return all(
        os.path.isfile(os.path.join(final, name))
        for name in ("adapter_config.json", "adapter_model.safetensors", "promptcam_config.json")
    ) and os.path.isfile(os.path.join(os.path.dirname(final), SUMMARY_FILE))


def _check_output(options: TrainOptions, plan: dict) -> None:
    """A new run needs a new or empty folder (or --overwrite-output-dir); --resume needs the same taxonomy plan."""
    occupied = os.path.isdir(options.output_dir) and bool(os.listdir(options.output_dir))
    plan_path = os.path.join(options.output_dir, PLAN_FILE)
    if options.resume:
        if not os.path.isfile(plan_path):
            raise ValueError(f"--resume: {options.output_dir} holds no taxonomy run ({PLAN_FILE} is missing).")
        with open(plan_path, encoding="utf-8") as handle:
            previous = json.load(handle)
        if previous != plan:
            raise ValueError(
                f"--resume: {options.output_dir} was started with another taxonomy or mode; resume with the same "
                "--taxonomy, --taxonomy-mode, --levels and --taxonomy-min-steps, or start a new folder."
            )
        return
    if occupied and not options.overwrite_output_dir:
        raise ValueError(
            f"{options.output_dir} already holds files (another run?). Pass --resume to continue it, "
            "--overwrite-output-dir to replace it, or choose a new folder."
        )
    if occupied:
        shutil.rmtree(options.output_dir)
        os.makedirs(options.output_dir)


def _json_only(summary: dict) -> dict:
    return {key: value for key, value in summary.items() if _is_json(value)}


def _is_json(value) -> bool:
    try:
        json.dumps(value)
    except TypeError:
        return False
    return True


__all__ = [
    "MIN_TRAIN_IMAGES",
    "MODELS_DIR",
    "PLAN_FILE",
    "TAXONOMY_CLASSIFICATION_LOSS",
    "assemble_final",
    "check_training_images",
    "load_taxonomy_data",
    "relabel",
    "run_taxonomy_training",
    "unit_epochs",
]
