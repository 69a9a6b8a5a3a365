"""A saved taxonomy folder: `taxonomy.json` written and read back, and the checks that refuse a folder whose adapters
do not match its taxonomy or were trained on another backbone ([`TaxonomyFolderError`]).

The folder (`OUTPUT_DIR/final` of `promptcam train --taxonomy`, or `PromptCamTaxonomy.save_pretrained`)::

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
from collections.abc import Sequence
from dataclasses import asdict

import torch

from ..configuration_promptcam import PromptCamConfig
from ..files import write_json_atomically
from ..training.adapters import ADAPTER_CONFIG_FILE, PROMPTCAM_CONFIG_FILE
from .table import Taxonomy
from .units import MODES, TaxonomyUnit, plan_units

TAXONOMY_FILE = "taxonomy.json"
FORMAT_VERSION = 1
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
    """What `taxonomy.json` holds, checked for the keys and mode every taxonomy file has (`FileNotFoundError`
    without it, [`TaxonomyFolderError`] for another file)."""
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


def read_unit_config(directory: str, unit: TaxonomyUnit, info: dict) -> PromptCamConfig:
    """The config of `unit`'s adapter in the folder, refused ([`TaxonomyFolderError`]) when it is unreadable, has
    other classes than `taxonomy.json` lists, or was trained on another backbone than the taxonomy's."""
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


def check_backbone(backbone: torch.nn.Module, info: dict, source: str, directory: str) -> None:
    """Refuse ([`TaxonomyFolderError`]) a loaded backbone whose settings ([`BACKBONE_SIGNATURE`]) or weights (the
    fingerprint) differ from those `taxonomy.json` recorded (`info`)."""
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
    "FORMAT_VERSION",
    "TAXONOMY_FILE",
    "TaxonomyFolderError",
    "backbone_fingerprint",
    "backbone_signature",
    "check_backbone",
    "check_units_match",
    "read_taxonomy_file",
    "read_unit_config",
    "write_taxonomy_file",
]
