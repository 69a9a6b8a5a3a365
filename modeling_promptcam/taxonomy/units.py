"""The models a taxonomy needs ([`plan_units`]): one [`TaxonomyUnit`] per node with two or more children (`node`
mode) or per level with two or more groups (`level` mode), and the named skips."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..training.options import TAXONOMY_MODES
from .table import ROOT, Taxonomy

MODES = TAXONOMY_MODES  # the registry lives with the options that choose from it


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


__all__ = ["MODES", "TaxonomyUnit", "plan_units"]
