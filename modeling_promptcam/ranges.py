"""The range of a numeric option: one rule, read from the options dataclasses' field metadata, that both the
command line (cli/parser.py, before any work) and the dataclasses themselves (`check_ranges` in `__post_init__`, so
programmatic users get the same check) apply, with the same words.

Metadata keys of a field (all optional, bounds included unless the key says otherwise):

- `"min": a` / `"max": b`: the value is at least `a` / at most `b`;
- `"above": a`: the value is greater than `a` (a learning rate above 0).

A `float` field (an `int` is accepted where a float is asked for) must also be finite: NaN and infinity are refused
whether or not a bound is given, since every float option of the package means a quantity (a rate, an opacity, a
sigma) that no infinite value can express. `None` (a field's "use the recipe's value") is never checked.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import types
import typing

RANGE_KEYS = ("min", "max", "above")


def describe_range(metadata: typing.Mapping, integer: bool) -> str:
    """The range in words, as `--help` and the error messages say it: "an integer >= 1", "a number in [0, 1]",
    "a finite number > 0"."""
    kind = "an integer" if integer else "a finite number"
    low, high, above = metadata.get("min"), metadata.get("max"), metadata.get("above")
    if low is not None and high is not None:
        return f"{kind} in [{low}, {high}]"
    if above is not None and high is not None:
        return f"{kind} in ({above}, {high}]"
    if low is not None:
        return f"{kind} >= {low}"
    if above is not None:
        return f"{kind} > {above}"
    if high is not None:
        return f"{kind} <= {high}"
    return kind


def out_of_range(value, metadata: typing.Mapping, integer: bool) -> str | None:
    """None when `value` is in the field's range, else what it must be ("must be an integer >= 1"); the caller adds
    what it got, as the user wrote it."""
    wanted = f"must be {describe_range(metadata, integer)}"
    if isinstance(value, bool) or not isinstance(value, numbers.Integral if integer else numbers.Real):
        return wanted
    if not math.isfinite(value):
        return wanted
    low, high, above = metadata.get("min"), metadata.get("max"), metadata.get("above")
    if (
        (low is not None and value < low)
        or (high is not None and value > high)
        or (above is not None and value <= above)
    ):
        return wanted
    return None


def numeric_kind(hint) -> type | None:
    """`int` or `float` for a field annotated `int`, `float` or either `| None`; None for any other field."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        rest = [argument for argument in typing.get_args(hint) if argument is not type(None)]
        hint = rest[0] if len(rest) == 1 else None
    return hint if hint in (int, float) else None


def has_range(hint, metadata: typing.Mapping) -> bool:
    """Whether the rule applies to a field of type `hint`: a range in its `metadata`, or a float (which must be
    finite)."""
    kind = numeric_kind(hint)
    return kind is not None and (kind is float or any(key in metadata for key in RANGE_KEYS))


def check_ranges(options) -> None:
    """Raise `ValueError` naming every field of the options dataclass `options` whose value is out of its range
    (the call of an options class's `__post_init__`)."""
    hints = typing.get_type_hints(type(options))
    problems = []
    for field in dataclasses.fields(options):
        kind = numeric_kind(hints.get(field.name, field.type))
        value = getattr(options, field.name)
        if value is None or not has_range(kind, field.metadata):
            continue
        problem = out_of_range(value, field.metadata, integer=kind is int)
        if problem is not None:
            problems.append(f"{field.name} {problem}, got {value!r}")
    if problems:
        raise ValueError(f"{type(options).__name__}: {'; '.join(problems)}.")


__all__ = ["RANGE_KEYS", "check_ranges", "describe_range", "has_range", "numeric_kind", "out_of_range"]
