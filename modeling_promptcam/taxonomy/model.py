"""[`PromptCamTaxonomy`]: a hierarchical Prompt-CAM, one frozen backbone shared by one prompt-only model per taxonomy
node (`node` mode: a key that tells each node's children apart) or per level (`level` mode: the paper's relabelling):
loading, saving, top-down and flat prediction, and the key of an image.

Which models a taxonomy needs: `taxonomy.units`; the saved folder (`taxonomy.json` and one prompt-only adapter per
model) and its refusals: `taxonomy.folder`. Their names are importable from here as before.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from ..modeling_promptcam import BackboneDriver, PromptCamForImageClassification, TraitRanking
from .folder import (
    BACKBONE_SIGNATURE,
    FORMAT_VERSION,  # noqa: F401 (re-exported: its old import path)
    TAXONOMY_FILE,
    TaxonomyFolderError,
    backbone_fingerprint,
    backbone_signature,
    check_backbone,
    check_units_match,
    read_taxonomy_file,
    read_unit_config,
    write_taxonomy_file,
)
from .table import ROOT, Taxonomy
from .units import MODES, TaxonomyUnit, plan_units


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
        """Write the folder described in `taxonomy.folder` (prompt-only adapters, `taxonomy.json`)."""
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
        configs = {unit.id: read_unit_config(directory, unit, info) for unit in units}
        source = backbone or info["backbone"]
        models: dict[str, PromptCamForImageClassification] = {}
        shared = None
        for unit in units:
            if shared is None:
                model = PromptCamForImageClassification.from_pretrained(
                    source, config=configs[unit.id], key_mapping=BACKBONE_KEY_MAPPING
                )
                shared = model.backbone
                check_backbone(shared, info, source, directory)
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
