"""`promptcam faithfulness` and `benchmarks/bench_faithfulness.py`: the Table-1-style comparison of Prompt-CAM with the
Grad-CAM family and attention rollout on an image folder.

Data layout::

    DATA/train/<class>/<image>          trains the linear probe the baselines explain
    DATA/val/<class>/<image>            the evaluated images (validation/, valid/ or test/ also work)
    DATA/masks/val/<class>/<stem>.png   optional ground-truth masks (the rule of `data.masks`: nonzero = region)

Every method of `options.methods` (names of `evaluation.saliency.SALIENCY_METHODS`) is evaluated on the same images
with the same target class per image: the true class (the folder name). Prompt-CAM's maps are scored by the
Prompt-CAM model; the baselines' maps by a linear probe on the same frozen backbone, trained here on the train split's
features (as in the paper). The table and the per-method summaries are written by `evaluation.report`.
"""

from __future__ import annotations

import os
import platform
import random
import time
from dataclasses import asdict, dataclass

import torch

from ..data.folders import DataError, check_image_folder
from ..data.images import image_size, open_rgb
from ..data.masks import mask_path, read_mask, resize_mask
from ..data.transforms import EvalTransform
from ..explain.explanation import resolve_classes
from ..files import check_model_folder, write_json_atomically
from ..modeling_promptcam import parse_stop_rule
from .linear_probe import LinearProbeForImageClassification, extract_features, fit_linear_probe
from .metrics import energy_in_mask, insertion_deletion, pointing_game
from .options import METHODS, SCORERS, TARGETS, FaithfulnessOptions
from .report import PAPER_TABLE_1, accuracies, format_table, summarize_methods
from .saliency import PROBE, PROMPT_CAM, SALIENCY_METHODS, parse_heads

RESULT_FILE = "faithfulness.json"
PROBE_FOLDER = "probe"


@dataclass
class _Split:
    name: str
    paths: list[str]
    labels: list[int]  # the model's class index of each image


def _model_class_indices(model, folder_classes: list[str], split_dir: str) -> dict[str, int]:
    indices, unknown = resolve_classes(model, folder_classes)
    if unknown:
        known = ", ".join(list(model.config.id2label.values())[:8])
        raise DataError(
            f"{split_dir} has class folders the model does not know: {', '.join(unknown[:10])} (the model's classes "
            f"include {known}, ...). Use the data the model was trained on, whose folder names are its class names."
        )
    return indices


def _read_split(model, split_dir: str, images_by_class: dict[str, list[str]]) -> _Split:
    """The images of one split as `check_image_folder` listed them (class folder -> paths, in folder order), with the
    model's class index of each."""
    indices = _model_class_indices(model, list(images_by_class), split_dir)
    paths, labels = [], []
    for name, class_paths in images_by_class.items():
        paths += class_paths
        labels += [indices[name]] * len(class_paths)
    if not paths:
        raise DataError(f"{split_dir} holds no images; expected {split_dir}/<class>/<image>.")
    return _Split(os.path.basename(split_dir), paths, labels)


def _load_images(paths: list[str], transform: EvalTransform) -> torch.Tensor:
    """The images at `paths` through the package's decoding rule (`data.images.open_rgb`, as training and the
    pipelines decode) and `transform`, stacked `(B, 3, H, W)`."""
    images = []
    for path in paths:
        try:
            images.append(transform(open_rgb(path)))
        except (OSError, ValueError) as error:  # the messages name the file
            raise DataError(str(error)) from error
    return torch.stack(images)


def _load_masks(data_dir: str, paths: list[str], size: tuple[int, int]) -> tuple[torch.Tensor | None, list[bool]]:
    """The masks of `paths` (the rule of `data.masks`), each resized to the model's input `size` `(H, W)` as the
    image processor resizes its image (no crop): `(B, H, W)` bool (all False for an image without a mask), or None
    when no image of the batch has one; and which images have one."""
    files = [mask_path(data_dir, path) for path in paths]
    has_mask = [file.is_file() for file in files]
    if not any(has_mask):
        return None, has_mask
    masks = []
    for file, path, present in zip(files, paths, has_mask):
        if not present:
            masks.append(torch.zeros(size, dtype=torch.bool))
            continue
        # the mask must have its image's size as decoded (upright; read_mask checks it)
        masks.append(torch.from_numpy(resize_mask(read_mask(file, image_size(path)), (size[1], size[0]))))
    return torch.stack(masks), has_mask


def _chunks(items: list, size: int) -> list[list]:
    return [items[start : start + size] for start in range(0, len(items), size)]


def _train_probe(options: FaithfulnessOptions, model, transform, train: _Split, device) -> tuple:
    """Features of the train split -> a fitted probe; returns (probe, info)."""
    if options.probe:
        probe = LinearProbeForImageClassification.from_probe(model.backbone, options.probe)
        if probe.num_labels != model.config.num_labels:
            raise ValueError(
                f"The probe in {options.probe} has {probe.num_labels} classes, the model {model.config.num_labels}."
            )
        return probe.to(device).eval(), {"loaded_from": os.path.abspath(options.probe)}
    chunks = _chunks(train.paths, options.batch_size)
    batches = (_load_images(chunk, transform) for chunk in chunks)
    progress = "probe features (train)" if options.progress else False
    features = extract_features(model.backbone, batches, device=device, progress=progress, total=len(chunks))
    labels = torch.tensor(train.labels)
    started = time.perf_counter()
    classifier = fit_linear_probe(
        features,
        labels,
        model.config.num_labels,
        epochs=options.probe_epochs,
        lr=options.probe_lr,
        weight_decay=options.probe_weight_decay,
        seed=options.seed,
    )
    train_accuracy = float((classifier(features).argmax(-1) == labels).float().mean())
    probe = LinearProbeForImageClassification(model.backbone, model.config.num_labels, model.config.id2label)
    probe.classifier = classifier
    probe = probe.to(device).eval()
    probe.save_probe(os.path.join(options.output_dir, PROBE_FOLDER))
    info = {
        "train_images": len(train.paths),
        "epochs": options.probe_epochs,
        "lr": options.probe_lr,
        "weight_decay": options.probe_weight_decay,
        "train_accuracy": train_accuracy,
        "fit_seconds": round(time.perf_counter() - started, 2),
        "saved_to": os.path.join(options.output_dir, PROBE_FOLDER),
    }
    return probe, info


def _check_options(options: FaithfulnessOptions) -> None:
    unknown = [m for m in options.methods if m not in SALIENCY_METHODS]
    if unknown or not options.methods:
        raise ValueError(
            f"methods must be a non-empty subset of {', '.join(SALIENCY_METHODS)}, got {list(options.methods)}."
        )
    if options.target not in TARGETS:
        raise ValueError(f"target must be one of {TARGETS}, got {options.target!r}.")
    if options.scorer not in SCORERS:
        raise ValueError(f"scorer must be one of {SCORERS}, got {options.scorer!r}.")
    if options.blur_kernel_size < 1 or options.blur_kernel_size % 2 == 0 or options.blur_sigma <= 0:
        raise ValueError(
            f"The insertion blur needs an odd kernel size >= 1 and sigma > 0, got {options.blur_kernel_size} and "
            f"{options.blur_sigma}."
        )
    if options.max_images is not None and options.max_images < 1:
        raise ValueError(f"max_images must be at least 1, got {options.max_images}.")


def _check_heads(options: FaithfulnessOptions, num_heads: int) -> None:
    """Fail before the long work when the Prompt-CAM head settings do not fit the model."""
    parse_heads(options.heads, num_heads)
    parse_stop_rule(options.stop, num_heads)


def _select(evaluated: _Split, max_images: int | None, seed: int) -> _Split:
    """A seeded random subset (all images when `max_images` is None or larger), kept in folder order."""
    if max_images is None or max_images >= len(evaluated.paths):
        return evaluated
    keep = sorted(random.Random(seed).sample(range(len(evaluated.paths)), max_images))
    return _Split(evaluated.name, [evaluated.paths[i] for i in keep], [evaluated.labels[i] for i in keep])


def run_faithfulness(options: FaithfulnessOptions) -> dict:
    """Evaluate every method of `options.methods` on the same images; write `OUT/faithfulness.json` and `OUT/probe/`.

    Returns the result dictionary written to the JSON file (means per method under `methods`, one record per image
    under `per_image`, everything that determines the numbers under `settings`).
    """
    from tqdm.auto import tqdm
    from transformers import AutoImageProcessor

    from ..modeling_promptcam import PromptCamForImageClassification

    _check_options(options)
    check_model_folder(options.model)
    splits = check_image_folder(options.data, verify_images=False)
    if splits.validation_dir is None:
        raise DataError(
            f"{options.data} has no val/ folder (validation/, valid/ or test/ also work): the evaluated images go in "
            f"{options.data}/val/<class>/<image>, the probe's training images in train/."
        )
    device = torch.device(options.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model = PromptCamForImageClassification.from_pretrained(options.model).to(device).eval()
    _check_heads(options, model.config.backbone_config.num_attention_heads)
    transform = EvalTransform(AutoImageProcessor.from_pretrained(options.model))
    evaluated = _select(
        _read_split(model, splits.validation_dir, splits.images["validation"]), options.max_images, options.seed
    )
    os.makedirs(options.output_dir, exist_ok=True)

    probe, probe_info = None, None
    methods = {name: SALIENCY_METHODS[name] for name in options.methods}
    if options.scorer == PROBE or any(method.explains == PROBE for method in methods.values()):
        probe, probe_info = _train_probe(
            options, model, transform, _read_split(model, splits.train_dir, splits.images["train"]), device
        )

    records = []
    with_masks = 0
    bar = tqdm(total=len(evaluated.paths), desc="faithfulness", unit="image", disable=not options.progress)
    for chunk in _chunks(list(range(len(evaluated.paths))), options.batch_size):
        paths = [evaluated.paths[i] for i in chunk]
        pixel_values = _load_images(paths, transform).to(device)
        true = torch.tensor([evaluated.labels[i] for i in chunk], device=device)
        with torch.no_grad():
            model_predicted = model(pixel_values).logits.argmax(-1)
            probe_predicted = probe(pixel_values).argmax(-1) if probe is not None else None
        masks, has_mask = _load_masks(options.data, paths, tuple(pixel_values.shape[2:]))
        masks = masks.to(device) if masks is not None else None
        with_masks += sum(has_mask)
        chunk_records = [
            {
                "image": os.path.relpath(path, options.data),
                "true": int(true[k]),
                "prompt_cam_predicted": int(model_predicted[k]),
                **({"probe_predicted": int(probe_predicted[k])} if probe_predicted is not None else {}),
                "methods": {},
            }
            for k, path in enumerate(paths)
        ]
        predicted = {PROMPT_CAM: model_predicted, PROBE: probe_predicted}
        for name, method in methods.items():
            own = method.classifier(model, probe)
            classifier = {"own": own, PROMPT_CAM: model, PROBE: probe}[options.scorer]
            targets = true if options.target == "true" else predicted[method.explains]
            saliency, heads = method(model, probe, pixel_values, targets, options)
            scores = insertion_deletion(
                classifier,
                pixel_values,
                saliency,
                targets,
                steps=options.steps,
                batch_size=options.batch_size,
                blur_kernel_size=options.blur_kernel_size,
                blur_sigma=options.blur_sigma,
                deletion_value=options.deletion_value,
                seed=options.seed,
                return_curves=True,
            )
            pointing = energy = None
            if masks is not None:
                pointing = pointing_game(saliency, masks)
                energy = energy_in_mask(saliency, masks)
            for k, record in enumerate(chunk_records):
                values = {
                    "target": int(targets[k]),
                    "insertion": float(scores["insertion"][k]),
                    "deletion": float(scores["deletion"][k]),
                    # the scoring classifier's probability of the target on the whole image: the AUCs' ceiling
                    "probability": float(scores["deletion_curve"][k, 0]),
                }
                if masks is not None and has_mask[k]:
                    values["pointing_game"] = bool(pointing[k])
                    values["energy"] = float(energy[k])
                if heads is not None:
                    values["heads"] = heads[k]
                record["methods"][name] = values
        records += chunk_records
        bar.update(len(chunk))
    bar.close()

    result = {
        "settings": _settings(options, model, evaluated, device),
        "images": len(records),
        "localisation_images": with_masks,
        "accuracy": accuracies(records),
        "probe": probe_info,
        "methods": summarize_methods(records, options.methods),
        "per_image": records,
    }
    write_json_atomically(os.path.join(options.output_dir, RESULT_FILE), result, indent=1)
    return result


def _settings(options: FaithfulnessOptions, model, evaluated: _Split, device) -> dict:
    backbone = model.config.backbone_config
    settings = asdict(options)
    settings.pop("progress")
    settings.update(settings.pop("extra"))
    settings.update(
        {
            "methods": list(options.methods),
            "model": os.path.abspath(options.model),
            "data": os.path.abspath(options.data),
            "split": evaluated.name,
            "backbone": f"{backbone.model_type}, {backbone.num_hidden_layers} layers, width {backbone.hidden_size}, "
            f"{backbone.num_attention_heads} heads, patch {backbone.patch_size}",
            "num_labels": model.config.num_labels,
            "target_rule": "the true class (folder name) for every method"
            if options.target == "true"
            else "each classifier's own predicted class",
            "scoring": "softmax probability of the target, by "
            + {
                "own": "the Prompt-CAM model for its maps and the linear probe for the baselines' maps",
                "prompt-cam": "the Prompt-CAM model for every method",
                "probe": "the linear probe for every method",
            }[options.scorer],
            "device": str(device),
            "torch": torch.__version__,
            "python": platform.python_version(),
        }
    )
    return settings


__all__ = [
    "FaithfulnessOptions",
    "METHODS",
    "PAPER_TABLE_1",
    "PROBE_FOLDER",
    "RESULT_FILE",
    "SCORERS",
    "TARGETS",
    "format_table",
    "run_faithfulness",
]
