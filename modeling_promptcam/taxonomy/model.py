"""[`PromptCamTaxonomy`]: a hierarchical Prompt-CAM, one frozen backbone shared by one prompt-only model per taxonomy
node (`node` mode: a key that tells each node's children apart) or per level (`level` mode: the paper's relabelling).

A saved taxonomy folder (`OUTPUT_DIR/final` of `promptcam train --taxonomy`, or `save_pretrained`)::

    DIR/taxonomy.json              the taxonomy, the mode, the backbone reference and fingerprint, the models
    DIR/preprocessor_config.json   the image processor every model shares
    DIR/<model id>/                one prompt-only PEFT adapter per model (adapter_model.safetensors,
                                   adapter_config.json, promptcam_config.json), a few MB each

The backbone is not copied: `taxonomy.json` names it (as `--backbone` was given) and records a fingerprint of its
weights, so loading refuses a backbone other than the one the adapters were trained on.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
from PIL import Image

from ..configuration_promptcam import PromptCamConfig
from ..files import write_json_atomically
from ..modeling_promptcam import BackboneDriver, PromptCamForImageClassification, TraitRanking
from ..training.adapters import ADAPTER_CONFIG_FILE, PROMPTCAM_CONFIG_FILE
from ..training.options import TAXONOMY_MODES
from .table import ROOT, Taxonomy

TAXONOMY_FILE = "taxonomy.json"
FORMAT_VERSION = 1
MODES = TAXONOMY_MODES  # the registry lives with the options that choose from it
# the backbone settings that decide whether a prompt fits a backbone; a difference means another backbone
BACKBONE_SIGNATURE = (
    "model_type",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "patch_size",
    "num_channels",
)


class TaxonomyFolderError(ValueError):
    """A taxonomy folder that cannot be used: missing or mismatched adapters, or another backbone (names the fix)."""


@dataclass(frozen=True)
class TaxonomyUnit:
    """One Prompt-CAM of a taxonomy: which groups it tells apart.

    Attributes:
        id: its folder name in the taxonomy folder.
        level: the level whose groups are its classes.
        parent: node mode: the group (of the level above; `ROOT` for the first level) whose children it tells apart;
            level mode: None (it tells every group of its level apart).
        classes: its class names in label order (sorted group names).
    """

    id: str
    level: str
    parent: str | None
    classes: tuple[str, ...]

    def describe(self) -> str:
        if self.parent is None:
            return f"level {self.level} ({len(self.classes)} groups)"
        where = "the root" if self.parent == ROOT else self.parent
        return f"node {where} ({len(self.classes)} {self.level} children)"


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "group"


def plan_units(taxonomy: Taxonomy, mode: str) -> tuple[list[TaxonomyUnit], list[str]]:
    """The models a taxonomy needs in `mode`, and the named skips (nodes or levels with a single group: nothing to
    learn, the one group is chosen with probability 1)."""
    if mode not in MODES:
        raise ValueError(f"Unknown taxonomy mode {mode!r}; expected one of {', '.join(MODES)}.")
    units, skipped = [], []
    if mode == "level":
        for level in taxonomy.levels:
            groups = taxonomy.groups[level]
            if len(groups) < 2:
                skipped.append(f"level {level} has a single group ({groups[0]}): nothing to learn, skipped")
            else:
                units.append(TaxonomyUnit(f"level-{_safe(level)}", level, None, groups))
        return units, skipped
    for level, group in taxonomy.internal_nodes():
        below = taxonomy.level_below(level)
        children = taxonomy.children(level, group)
        if len(children) < 2:
            if level is None:
                skipped.append(f"level {below} has a single group ({children[0]}): nothing to learn, skipped")
            else:
                skipped.append(f"{level} {group} has a single {below} ({children[0]}): nothing to learn, skipped")
            continue
        unit_id = "root" if level is None else f"node-{len(units):03d}-{_safe(group)}"
        units.append(TaxonomyUnit(unit_id, below, group if level is not None else ROOT, children))
    return units, skipped


def backbone_signature(config) -> dict:
    """The settings of a backbone config that a prompt depends on ([`BACKBONE_SIGNATURE`])."""
    values = config if isinstance(config, dict) else config.to_dict()
    return {key: values.get(key) for key in BACKBONE_SIGNATURE}


def backbone_fingerprint(backbone: torch.nn.Module) -> str:
    """A SHA-256 of the backbone's weights (names and values, float32): the same checkpoint gives the same value."""
    digest = hashlib.sha256()
    for name, tensor in sorted(backbone.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()


@dataclass
class KeyStep:
    """One level of a key: what was chosen there, against which siblings, and the traits that decided it.

    Attributes:
        level: the level.
        parent: the group above it on the path (`ROOT` for the first level).
        chosen: the group chosen (the image key) or the class's true group (the class key).
        probability: the choice's probability given the level above (1.0 when there was nothing to choose).
        path_probability: the product of the choices from the root down to this level.
        siblings: the other groups the deciding model scored (empty: a single child, nothing to choose).
        unit_id: the deciding model's id in the taxonomy folder (None: nothing to choose).
        trait_maps: `(heads, grid_h, grid_w)` trait maps of the chosen group's prompt (None: nothing to choose).
        ranking: the greedy head ranking of the chosen group ([`TraitRanking`]; None: nothing to choose).
    """

    level: str
    parent: str
    chosen: str
    probability: float
    path_probability: float
    siblings: tuple[str, ...] = ()
    unit_id: str | None = None
    trait_maps: np.ndarray | None = None
    ranking: TraitRanking | None = None

    @property
    def decided(self) -> bool:
        return self.unit_id is not None


@dataclass
class TaxonomyKey:
    """The key of one image: one [`KeyStep`] per level, root first."""

    image: Image.Image
    steps: list[KeyStep]

    @property
    def prediction(self) -> dict[str, tuple[str, float]]:
        """`{level: (group, path probability)}`, as `PromptCamTaxonomy.predict` returns it."""
        return {step.level: (step.chosen, step.path_probability) for step in self.steps}


class TaxonomyPrediction(dict):
    """One image's prediction: `{level: (label, probability)}` for every level, top-down (root to leaf, each model
    choosing among the children of the group chosen above it; the probability is the product along the path).

    Attributes:
        conditional: `{level: probability}` of each choice given the one above (1.0 for a skipped level).
        flat: level mode only: `{level: (label, probability)}` of each level's model on its own (all groups).
        consistent: level mode only: whether every flat prediction lies under the flat prediction of the level above.
        inconsistent_levels: level mode only: the levels whose flat prediction is not under the level above's.
    """

    def __init__(self, top_down: dict, conditional: dict, flat: dict | None = None):
        super().__init__(top_down)
        self.conditional = conditional
        self.flat = flat
        self.inconsistent_levels: list[str] = []
        self.consistent: bool | None = None


class PromptCamTaxonomy:
    """A hierarchical Prompt-CAM: one frozen backbone shared by prompt-only models, one per node or per level.

    Build one with `promptcam train --taxonomy FILE` (or `taxonomy.training.run_taxonomy_training`) and load it with
    [`from_pretrained`]; `predict` classifies at every level and `explain` gives an image's key.
    """

    def __init__(
        self,
        taxonomy: Taxonomy,
        mode: str,
        units: Sequence[TaxonomyUnit],
        models: dict[str, PromptCamForImageClassification],
        image_processor,
        backbone: str,
        fingerprint: str | None = None,
        skipped: Sequence[str] = (),
    ):
        self.taxonomy = taxonomy
        self.mode = mode
        self.units = list(units)
        self.models = models
        self.image_processor = image_processor
        self.backbone = backbone
        self.fingerprint = fingerprint
        self.skipped = list(skipped)
        self._by_node = {(unit.level, unit.parent): unit for unit in self.units}

    # ------------------------------------------------------------------------------------------------- access
    @property
    def levels(self) -> tuple[str, ...]:
        return self.taxonomy.levels

    @property
    def device(self) -> torch.device:
        return next(iter(self.models.values())).device

    def to(self, device) -> PromptCamTaxonomy:
        for model in self.models.values():  # the shared backbone moves once; the prompt heads with their models
            model.to(device)
        return self

    def unit_for(self, level: str, parent: str | None) -> TaxonomyUnit | None:
        """The model that chooses at `level` (node mode: among the children of `parent`), or None for a skip."""
        return self._by_node.get((level, parent if self.mode == "node" else None))

    # ------------------------------------------------------------------------------------------------- saving
    def save_pretrained(self, directory: str | os.PathLike) -> None:
        """Write the folder described in the module docstring (prompt-only adapters, `taxonomy.json`)."""
        from ..training.adapters import save_prompt_adapter, wrap_for_prompt_training

        directory = os.fspath(directory)
        os.makedirs(directory, exist_ok=True)
        for unit in self.units:
            wrapped = wrap_for_prompt_training(self.models[unit.id], backbone=self.backbone)
            save_prompt_adapter(wrapped, os.path.join(directory, unit.id))
            self.models[unit.id] = wrapped.merge_and_unload().eval()
        if self.image_processor is not None:
            self.image_processor.save_pretrained(directory)
        write_taxonomy_file(
            directory, self.taxonomy, self.mode, self.units, self.backbone, self.fingerprint, self.skipped
        )

    @classmethod
    def from_pretrained(
        cls, directory: str | os.PathLike, backbone: str | None = None, device: str | torch.device | None = None
    ) -> PromptCamTaxonomy:
        """Load a taxonomy folder: the backbone once, then every model's prompts on it.

        Args:
            directory: a folder written by `promptcam train --taxonomy` (its `final/`) or `save_pretrained`.
            backbone: the backbone checkpoint (default: the one `taxonomy.json` names); it must be the one the
                adapters were trained on (same architecture and weights).

        Raises [`TaxonomyFolderError`] when the folder's adapters do not match its taxonomy (a model missing,
        unexpected, or with other classes) or were trained on another backbone; `FileNotFoundError` without
        `taxonomy.json`.
        """
        from transformers import AutoImageProcessor

        from ..extras import require
        from ..training.backbone import BACKBONE_KEY_MAPPING

        peft = require("peft", "peft", "A taxonomy of prompt-only models")
        directory = os.fspath(directory)
        info = read_taxonomy_file(directory)
        taxonomy = Taxonomy.from_dict(info["taxonomy"], os.path.join(directory, TAXONOMY_FILE))
        mode = info["mode"]
        units = [TaxonomyUnit(u["id"], u["level"], u["parent"], tuple(u["classes"])) for u in info["units"]]
        check_units_match(taxonomy, mode, units, directory)
        configs = {unit.id: _unit_config(directory, unit, info) for unit in units}
        source = backbone or info["backbone"]
        models: dict[str, PromptCamForImageClassification] = {}
        shared = None
        for unit in units:
            if shared is None:
                model = PromptCamForImageClassification.from_pretrained(
                    source, config=configs[unit.id], key_mapping=BACKBONE_KEY_MAPPING
                )
                shared = model.backbone
                _check_backbone(shared, info, source, directory)
            else:
                model = PromptCamForImageClassification(configs[unit.id])
                model.backbone = shared  # one backbone in memory: every model's prompts run on it
                model.driver = BackboneDriver(shared, model.driver.family)
            model = peft.PeftModel.from_pretrained(model, os.path.join(directory, unit.id)).merge_and_unload()
            model.backbone.requires_grad_(False)
            models[unit.id] = model.eval()
        processor = AutoImageProcessor.from_pretrained(directory)
        loaded = cls(taxonomy, mode, units, models, processor, info["backbone"], info.get("fingerprint"))
        loaded.skipped = list(info.get("skipped", []))
        return loaded.to(device) if device is not None else loaded

    # ------------------------------------------------------------------------------------------------- prediction
    def pixel_values(self, images) -> torch.Tensor:
        """`images` (PIL images, or `pixel_values` already) as a batch for the models."""
        if isinstance(images, torch.Tensor):
            return images.to(self.device)
        from ..data.images import to_rgb

        if not isinstance(images, (list, tuple)):
            images = [images]
        batch = self.image_processor([to_rgb(image) for image in images], return_tensors="pt").pixel_values
        return batch.to(self.device)

    @torch.no_grad()
    def probabilities(self, pixel_values: torch.Tensor, unit: TaxonomyUnit) -> torch.Tensor:
        """Softmax over `unit`'s classes, `(batch, len(unit.classes))`."""
        model = self.models[unit.id]
        return model(pixel_values.to(model.dtype)).logits.float().softmax(-1)

    @torch.no_grad()
    def predict(self, images, batch_size: int = 32) -> list[TaxonomyPrediction]:
        """Classify at every level: per image a [`TaxonomyPrediction`], `{level: (label, probability)}` top-down (the
        path probability is the product of the choices), plus in level mode the flat per-level predictions and their
        consistency.

        Args:
            images: a PIL image, a list of them, or `pixel_values` `(batch, 3, height, width)`.
        """
        if isinstance(images, torch.Tensor):
            batches = [images[start : start + batch_size] for start in range(0, len(images), batch_size)]
        else:
            images = images if isinstance(images, (list, tuple)) else [images]
            batches = [images[start : start + batch_size] for start in range(0, len(images), batch_size)]
        results = []
        for batch in batches:
            pixel_values = self.pixel_values(batch)
            results += self._predict_level(pixel_values) if self.mode == "level" else self._predict_node(pixel_values)
        return results

    def _predict_node(self, pixel_values: torch.Tensor) -> list[TaxonomyPrediction]:
        count = pixel_values.shape[0]
        parents = [ROOT] * count
        paths = [dict() for _ in range(count)]
        conditional = [dict() for _ in range(count)]
        probability = [1.0] * count
        above = None
        for level in self.levels:
            for parent in sorted(set(parents)):
                rows = [i for i in range(count) if parents[i] == parent]
                unit = self.unit_for(level, parent)
                if unit is None:  # a single child: chosen with probability 1
                    (child,) = self.taxonomy.children(above, parent)
                    choices = [(child, 1.0)] * len(rows)
                else:
                    scores = self.probabilities(pixel_values[rows], unit)
                    best = scores.max(-1)
                    choices = [(unit.classes[int(i)], float(p)) for p, i in zip(best.values, best.indices)]
                for row, (child, p) in zip(rows, choices):
                    probability[row] *= p
                    paths[row][level] = (child, probability[row])
                    conditional[row][level] = p
            parents = [paths[i][level][0] for i in range(count)]
            above = level
        return [TaxonomyPrediction(paths[i], conditional[i]) for i in range(count)]

    def _predict_level(self, pixel_values: torch.Tensor) -> list[TaxonomyPrediction]:
        count = pixel_values.shape[0]
        scores = {unit.level: self.probabilities(pixel_values, unit) for unit in self.units}
        results = []
        for i in range(count):
            top_down, conditional, flat = {}, {}, {}
            parent, above, probability = ROOT, None, 1.0
            for level in self.levels:
                unit = self.unit_for(level, None)
                candidates = self.taxonomy.children(above, parent)
                if unit is None:
                    (group,) = self.taxonomy.groups[level]
                    chosen, p = group, 1.0
                    flat[level] = (group, 1.0)
                else:
                    row = scores[level][i]
                    best = int(row.argmax())
                    flat[level] = (unit.classes[best], float(row[best]))
                    index = {name: k for k, name in enumerate(unit.classes)}
                    within = row[[index[name] for name in candidates]]
                    pick = int(within.argmax())
                    chosen = candidates[pick]
                    total = float(within.sum())
                    p = float(within[pick]) / total if total > 0 else 0.0
                probability *= p
                top_down[level], conditional[level] = (chosen, probability), p
                parent, above = chosen, level
            prediction = TaxonomyPrediction(top_down, conditional, flat)
            prediction.inconsistent_levels = [
                level
                for upper, level in zip(self.levels, self.levels[1:])
                if self.taxonomy.parent(level, flat[level][0]) != flat[upper][0]
            ]
            prediction.consistent = not prediction.inconsistent_levels
            results.append(prediction)
        return results

    # ------------------------------------------------------------------------------------------------- keys
    @torch.no_grad()
    def explain(self, image, blur: str = "paper", stop: str | int = "misclassified") -> TaxonomyKey:
        """The key of one image (a PIL image of any mode): for each level on the predicted path, the model that chose
        there ranks the chosen group's heads against its other classes (node mode: exactly the siblings; level
        mode: every group of the level) by greedy blurring (`rank_traits`, any blur mode and stop rule); returns a
        [`TaxonomyKey`] with one [`KeyStep`] per level (trait maps and ranking; none where there was nothing to
        choose). Figures and reports: `taxonomy.key`."""
        from ..data.images import to_rgb

        rgb = to_rgb(image)
        pixel_values = self.pixel_values([rgb])
        prediction = self.predict(pixel_values)[0]
        steps, parent = [], ROOT
        for level in self.levels:
            chosen, path_probability = prediction[level]
            unit = self.unit_for(level, parent)
            step = KeyStep(level, parent, chosen, prediction.conditional[level], path_probability)
            if unit is not None:
                member = self.models[unit.id]
                target = torch.tensor([unit.classes.index(chosen)], device=pixel_values.device)
                values = pixel_values.to(member.dtype)
                maps = member(values, trait_map_classes=target[:, None]).trait_maps[0, 0].float().cpu().numpy()
                step.unit_id = unit.id
                step.siblings = tuple(name for name in unit.classes if name != chosen)
                step.trait_maps = maps
                step.ranking = member.rank_traits(values, target_classes=target, blur=blur, stop=stop)[0]
            steps.append(step)
            parent = chosen
        return TaxonomyKey(rgb, steps)


# ----------------------------------------------------------------------------------------------------- the folder
def write_taxonomy_file(
    directory: str,
    taxonomy: Taxonomy,
    mode: str,
    units: Sequence[TaxonomyUnit],
    backbone: str,
    fingerprint: str | None,
    skipped: Sequence[str],
    backbone_config: dict | None = None,
    extra: dict | None = None,
) -> dict:
    """Write `taxonomy.json` (atomically) and return what it holds."""
    if backbone_config is None:
        with open(os.path.join(directory, units[0].id, PROMPTCAM_CONFIG_FILE), encoding="utf-8") as handle:
            backbone_config = json.load(handle)["backbone_config"]
    info = {
        "format_version": FORMAT_VERSION,
        "mode": mode,
        "taxonomy": taxonomy.to_dict(),
        "backbone": backbone,
        "backbone_signature": backbone_signature(backbone_config),
        "fingerprint": fingerprint,
        "units": [asdict(unit) | {"classes": list(unit.classes)} for unit in units],
        "skipped": list(skipped),
        **(extra or {}),
    }
    write_json_atomically(os.path.join(directory, TAXONOMY_FILE), info)
    return info


def read_taxonomy_file(directory: str) -> dict:
    path = os.path.join(directory, TAXONOMY_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"{directory} is not a taxonomy folder (no {TAXONOMY_FILE}); give the final/ folder of "
            "promptcam train --taxonomy or a folder written by PromptCamTaxonomy.save_pretrained."
        )
    try:
        with open(path, encoding="utf-8") as handle:
            info = json.load(handle)
    except (ValueError, UnicodeDecodeError) as error:
        raise TaxonomyFolderError(f"{path} is not valid JSON ({error}); train or save the taxonomy again.") from None
    missing = [key for key in ("mode", "taxonomy", "backbone", "units") if key not in info]
    if missing or info.get("mode") not in MODES:
        raise TaxonomyFolderError(
            f"{path} is not a taxonomy file of this package (missing {', '.join(missing) or 'a known mode'}); train "
            "or save the taxonomy again."
        )
    return info


def check_units_match(taxonomy: Taxonomy, mode: str, units: Sequence[TaxonomyUnit], directory: str) -> None:
    """Refuse a folder whose models are not the ones its taxonomy needs (one missing, one extra, other classes)."""
    expected, _ = plan_units(taxonomy, mode)
    wanted = {(u.level, u.parent): u.classes for u in expected}
    listed = {(u.level, u.parent): u.classes for u in units}
    problems = []
    for key, classes in wanted.items():
        if key not in listed:
            problems.append(f"no model for {TaxonomyUnit('', key[0], key[1], classes).describe()}")
        elif listed[key] != classes:
            problems.append(
                f"the model for {key[1] or key[0]} has classes {list(listed[key])}, expected {list(classes)}"
            )
    problems += [f"an unexpected model for {key[1] or key[0]}" for key in listed if key not in wanted]
    for unit in units:
        if not os.path.isfile(os.path.join(directory, unit.id, ADAPTER_CONFIG_FILE)):
            problems.append(f"{unit.id}/{ADAPTER_CONFIG_FILE} is missing")
    if problems:
        raise TaxonomyFolderError(
            f"{directory}: the adapters do not match its taxonomy: {'; '.join(problems[:8])}. Train the taxonomy "
            "again (promptcam train --taxonomy ... --resume finishes a run that was cut short)."
        )


def _unit_config(directory: str, unit: TaxonomyUnit, info: dict) -> PromptCamConfig:
    folder = os.path.join(directory, unit.id)
    try:
        with open(os.path.join(folder, PROMPTCAM_CONFIG_FILE), encoding="utf-8") as handle:
            config = PromptCamConfig.from_dict(json.load(handle))
        with open(os.path.join(folder, ADAPTER_CONFIG_FILE), encoding="utf-8") as handle:
            recorded = json.load(handle).get("base_model_name_or_path")
    except (OSError, ValueError) as error:
        raise TaxonomyFolderError(f"{folder} is not a readable prompt adapter ({error}); train it again.") from None
    classes = tuple(config.id2label[i] for i in range(config.num_labels))
    if classes != unit.classes:
        raise TaxonomyFolderError(
            f"{folder}: the adapter's classes {list(classes)} do not match {TAXONOMY_FILE} ({list(unit.classes)}); "
            "the folder was assembled from different runs: train the taxonomy again."
        )
    if backbone_signature(config.backbone_config) != info.get("backbone_signature") or recorded != info["backbone"]:
        raise TaxonomyFolderError(
            f"{folder} was trained on another backbone ({recorded}) than the taxonomy's ({info['backbone']}); every "
            "model of a taxonomy shares one backbone: train the taxonomy again on one --backbone."
        )
    return config


def _check_backbone(backbone, info: dict, source: str, directory: str) -> None:
    signature = backbone_signature(backbone.config)
    if signature != info.get("backbone_signature"):
        changed = [key for key in BACKBONE_SIGNATURE if signature[key] != info["backbone_signature"].get(key)]
        raise TaxonomyFolderError(
            f"{source} is another backbone than the one the adapters of {directory} were trained on ({info['backbone']}"
            f"; {', '.join(changed)} differ); load with that backbone or train the taxonomy again."
        )
    recorded = info.get("fingerprint")
    if recorded and backbone_fingerprint(backbone) != recorded:
        raise TaxonomyFolderError(
            f"{source} has other weights than the backbone the adapters of {directory} were trained on "
            f"({info['backbone']}); load with that checkpoint (backbone=...) or train the taxonomy again."
        )


__all__ = [
    "BACKBONE_SIGNATURE",
    "KeyStep",
    "TaxonomyKey",
    "MODES",
    "TAXONOMY_FILE",
    "PromptCamTaxonomy",
    "TaxonomyFolderError",
    "TaxonomyPrediction",
    "TaxonomyUnit",
    "backbone_fingerprint",
    "backbone_signature",
    "check_units_match",
    "plan_units",
    "read_taxonomy_file",
    "write_taxonomy_file",
]
