"""The taxonomy a hierarchical Prompt-CAM is trained on: a table mapping every leaf class to its ancestors at named
levels, read from a CSV / TSV file with a header or from one column per level of a `datasets` dataset, and checked.

A table such as::

    species,genus,family
    Corvus_corax,Corvus,Corvidae
    Corvus_corone,Corvus,Corvidae
    Pica_pica,Pica,Corvidae

gives the levels root to leaf (`family`, `genus`, `species`). Without `levels`, the header is read from the leaf
outwards: the leaf column is the first or the last one (the end column whose values name the image folder's
classes, or, without class names, the one whose values are all distinct); `levels` (`--levels family,genus,species`)
names the columns to use, root first, the leaf last, and may leave columns out.

Checks, each a [`TaxonomyError`] naming the rows and the fix: level names unique and not empty, no empty cell, every
class present exactly once, no class missing from the table and no class in the table without images, and every level
a proper tree (each group has exactly one parent at the level above; the offending rows are listed).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ..data.folders import DataError
from ..training.options import parse_levels

ROOT = "<root>"  # the implicit node above the first level, which chooses among the first level's groups


class TaxonomyError(DataError):
    """The taxonomy table cannot be used as it is (says which rows and how to fix them)."""


@dataclass(frozen=True)
class Taxonomy:
    """A checked taxonomy: levels root to leaf, and each group's parent at the level above.

    Attributes:
        levels: level names, root first, the leaf (the classes) last.
        parents: per level below the first, `{group: parent group at the level above}`.
        groups: per level, its group names, sorted (the last level's are the classes).
        source: where the table came from (for messages).
    """

    levels: tuple[str, ...]
    parents: dict[str, dict[str, str]]
    groups: dict[str, tuple[str, ...]]
    source: str = ""

    def __post_init__(self) -> None:
        children: dict[tuple[str | None, str], list[str]] = {(None, ROOT): list(self.groups[self.levels[0]])}
        for above, level in zip(self.levels, self.levels[1:]):
            for group in self.groups[level]:
                children.setdefault((above, self.parents[level][group]), []).append(group)
        object.__setattr__(self, "_children", {key: tuple(sorted(value)) for key, value in children.items()})

    @property
    def leaf_level(self) -> str:
        return self.levels[-1]

    @property
    def classes(self) -> tuple[str, ...]:
        return self.groups[self.leaf_level]

    def children(self, level: str | None, group: str = ROOT) -> tuple[str, ...]:
        """The groups one level below `group` of `level` (`level=None`: the first level's groups), sorted."""
        return self._children.get((level, group), ())

    def level_below(self, level: str | None) -> str:
        return self.levels[0] if level is None else self.levels[self.levels.index(level) + 1]

    def ancestors(self, leaf: str) -> dict[str, str]:
        """`{level: group}` of a class, for every level (the class itself at the leaf level)."""
        path, group = {self.leaf_level: leaf}, leaf
        for level in reversed(self.levels[1:]):
            group = self.parents[level][group]
            path[self.levels[self.levels.index(level) - 1]] = group
        return {level: path[level] for level in self.levels}

    def parent(self, level: str, group: str) -> str | None:
        """The parent of `group` at the level above (None for the first level)."""
        return self.parents[level][group] if level != self.levels[0] else None

    def internal_nodes(self) -> list[tuple[str | None, str]]:
        """Every (level, group) with children, root first then level by level, groups sorted."""
        nodes = [(None, ROOT)]
        for level in self.levels[:-1]:
            nodes += [(level, group) for group in self.groups[level]]
        return nodes

    def to_dict(self) -> dict:
        return {
            "levels": list(self.levels),
            "classes": {leaf: self.ancestors(leaf) for leaf in self.classes},
        }

    @classmethod
    def from_dict(cls, data: dict, source: str = "taxonomy.json") -> Taxonomy:
        levels = tuple(data["levels"])
        rows = [(index + 1, dict(path)) for index, path in enumerate(data["classes"].values())]
        return build_taxonomy(rows, levels, source)


def build_taxonomy(
    rows: Sequence[tuple[int, dict[str, str]]],
    levels: Sequence[str],
    source: str,
    classes: Iterable[str] | None = None,
    one_row_per_class: bool = True,
    row_word: str = "row",
) -> Taxonomy:
    """A [`Taxonomy`] from `(row number, {level: group})` rows, checked as the module docstring says.

    Args:
        levels: root first, the leaf last.
        classes: the classes that have images (an image folder's `train/` classes, a dataset's labels); None: the
            table's own leaves.
        one_row_per_class: a file lists each class once; a dataset has one row per image, so a class recurs.
    """
    levels = tuple(levels)
    _check_level_names(levels, source)
    leaf = levels[-1]
    for number, row in rows:
        empty = [level for level in levels if not str(row.get(level, "")).strip()]
        if empty:
            raise TaxonomyError(
                f"{source}, {row_word} {number}: empty {', '.join(empty)}; every class needs a group name at every "
                "level (fill the cell in)."
            )
    rows_of: dict[str, list[int]] = {}
    for number, row in rows:
        rows_of.setdefault(row[leaf], []).append(number)
    if one_row_per_class:
        repeated = {name: numbers for name, numbers in rows_of.items() if len(numbers) > 1}
        if repeated:
            listed = "; ".join(f"{name} (rows {', '.join(map(str, n))})" for name, n in list(repeated.items())[:10])
            raise TaxonomyError(
                f"{source}: classes listed more than once: {listed}. Every class must appear exactly once; delete "
                "the extra rows."
            )
    if classes is not None:
        classes = set(classes)
        missing = sorted(classes - set(rows_of))
        if missing:
            raise TaxonomyError(
                f"{source}: {len(missing)} class(es) with images are not in the table: {', '.join(missing[:10])}"
                f"{' ...' if len(missing) > 10 else ''}. Add a row for each (every class needs its ancestors)."
            )
        extra = sorted(set(rows_of) - classes)
        if extra:
            numbered = ", ".join(f"{name} (row {rows_of[name][0]})" for name in extra[:10])
            raise TaxonomyError(
                f"{source}: the table names {len(extra)} class(es) that have no images: {numbered}"
                f"{' ...' if len(extra) > 10 else ''}. Delete those rows or add their images."
            )
    parents: dict[str, dict[str, str]] = {}
    for above, level in zip(levels, levels[1:]):
        seen: dict[str, dict[str, list[int]]] = {}
        for number, row in rows:
            seen.setdefault(row[level], {}).setdefault(row[above], []).append(number)
        conflicts = {group: by_parent for group, by_parent in seen.items() if len(by_parent) > 1}
        if conflicts:
            described = []
            for group, by_parent in list(conflicts.items())[:5]:
                options = ", ".join(
                    f"{parent} ({row_word}s {', '.join(map(str, numbers[:5]))})"
                    for parent, numbers in by_parent.items()
                )
                described.append(f"{level} {group!r} is under {above} {options}")
            raise TaxonomyError(
                f"{source} is not a tree: " + "; ".join(described) + f". A group has exactly one parent: rename one "
                f"of the groups or correct the {above} of those rows."
            )
        parents[level] = {group: next(iter(by_parent)) for group, by_parent in seen.items()}
    groups = {level: tuple(sorted({row[level] for _, row in rows})) for level in levels}
    return Taxonomy(levels, parents, groups, source)


def _check_level_names(levels: Sequence[str], source: str) -> None:
    if len(levels) < 1:
        raise TaxonomyError(f"{source}: no levels; the header needs at least the class column.")
    for position, name in enumerate(levels, 1):
        if not str(name).strip():
            raise TaxonomyError(f"{source}: level {position} has an empty name; name every column of the header.")
    repeated = sorted({name for name in levels if list(levels).count(name) > 1})
    if repeated:
        raise TaxonomyError(f"{source}: level names appear more than once: {', '.join(repeated)}; rename them.")


def read_taxonomy(
    path: str | os.PathLike, classes: Iterable[str] | None = None, levels: Sequence[str] | None = None
) -> Taxonomy:
    """Read and check a CSV (`,`) or TSV (tab; `.tsv` / `.tab`, or tabs in the header) taxonomy table.

    Args:
        path: the table, with a header of level names.
        classes: the classes that have images; every one must be in the table and the table must name no other.
        levels: the columns to use, root first, the leaf last (default: the whole header, see the module docstring).

    Row numbers in messages are the file's line numbers (the header is line 1).
    """
    source = os.fspath(path)
    if not os.path.isfile(source):
        raise TaxonomyError(f"--taxonomy {source} does not exist; give a CSV or TSV file (docs/taxonomy.md).")
    with open(source, encoding="utf-8-sig", newline="") as file:
        text = file.read()
    lines = text.splitlines()
    if not lines or not lines[0].strip():
        raise TaxonomyError(f"{source} is empty; its first line must be a header of level names.")
    delimiter = "\t" if source.lower().endswith((".tsv", ".tab")) or "\t" in lines[0] else ","
    records = list(csv.reader(lines, delimiter=delimiter))
    header = [name.strip() for name in records[0]]
    _check_level_names(header, source)
    rows = []
    for number, record in enumerate(records[1:], 2):
        if not any(cell.strip() for cell in record):
            continue  # a blank line
        if len(record) != len(header):
            raise TaxonomyError(
                f"{source}, row {number}: {len(record)} cells but the header has {len(header)} "
                f"({delimiter!r}-separated); give one cell per level."
            )
        rows.append((number, {name: cell.strip() for name, cell in zip(header, record)}))
    if not rows:
        raise TaxonomyError(f"{source} has a header but no rows; add one row per class.")
    order = _level_order(header, rows, classes, levels, source)
    return build_taxonomy(rows, order, source, classes)


def _level_order(header, rows, classes, levels, source) -> tuple[str, ...]:
    if levels is not None:
        unknown = [name for name in levels if name not in header]
        if unknown:
            raise TaxonomyError(
                f"--levels names {', '.join(unknown)}, which {source} does not have (its columns: {', '.join(header)})."
            )
        return tuple(levels)
    if len(header) == 1:
        return tuple(header)
    ends = [header[0], header[-1]]
    if classes is not None:  # the end whose values name the most classes (the checks then list what does not match)
        wanted = set(classes)
        overlap = {name: len({row[name] for _, row in rows} & wanted) for name in ends}
        best = max(overlap.values())
        matching = [name for name in ends if overlap[name] == best] if best else []
    else:
        matching = [name for name in ends if len({row[name] for _, row in rows}) == len(rows)]
    if len(matching) == 1 or (len(matching) == 2 and classes is None and matching[0] == header[0]):
        leaf = matching[0]
        return tuple(reversed(header)) if leaf == header[0] else tuple(header)
    raise TaxonomyError(
        f"{source}: cannot tell which end of the header ({', '.join(header)}) is the class column (its values must be "
        "the class names); pass --levels, root first and the class column last, e.g. --levels "
        f"{','.join(reversed(header))}."
    )


def taxonomy_from_columns(
    dataset,
    levels: Sequence[str],
    class_names: Sequence[str],
    label_column: str = "label",
    source: str = "dataset",
    shown_columns: Sequence[str] | None = None,
) -> Taxonomy:
    """A [`Taxonomy`] from a dataset split with one column per level above the classes.

    Args:
        dataset: a `datasets.Dataset` with `label_column` (a `ClassLabel`) and a column per name of `levels[:-1]`.
        levels: root first; the last name is the class level (its groups are the class labels).
        class_names: the labels' names.
        shown_columns: the column names a message lists (default: the dataset's); the caller passes the names the
            user gave where it renamed columns on loading.

    Row numbers in messages are example indices of the split.
    """
    levels = tuple(levels)
    missing = [name for name in levels[:-1] if name not in dataset.column_names]
    if missing:
        raise TaxonomyError(
            f"{source} has no column {', '.join(missing)} (columns: "
            f"{', '.join(dataset.column_names if shown_columns is None else shown_columns)}); --levels "
            "names one column per level, root first, and the class level last."
        )
    columns = {name: dataset[name] for name in levels[:-1]}
    labels = dataset[label_column]
    rows = [
        (index, {**{name: str(columns[name][index]) for name in levels[:-1]}, levels[-1]: class_names[label]})
        for index, label in enumerate(labels)
    ]
    present = {class_names[label] for label in set(labels)}
    absent = sorted(set(class_names) - present)
    if absent:
        raise TaxonomyError(
            f"{source}: classes with no images: {', '.join(absent[:10])}; every class of the label column needs images."
        )
    return build_taxonomy(rows, levels, source, one_row_per_class=False, row_word="example")


__all__ = [
    "ROOT",
    "Taxonomy",
    "TaxonomyError",
    "build_taxonomy",
    "parse_levels",
    "read_taxonomy",
    "taxonomy_from_columns",
]
