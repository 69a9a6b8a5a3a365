"""The command-line parser, generated from the options dataclasses with transformers' `HfArgumentParser`.

Each field of a command's options dataclass becomes one flag: `--field_name` and `--field-name` (HfArgumentParser's
spellings) plus the older spellings in `metadata["aliases"]`; the type comes from the annotation, the default from the
field, the help from `metadata["help"]`, and `metadata["choices"]` / `metadata["metavar"]` go to argparse as they are.
Plain fields (`str`, `int`, `float`, `X | None`) are left to HfArgumentParser. [`OptionsParser`] adds what
HfArgumentParser cannot express, each asked for by a metadata key (docs/cli.md says why each exists):

- `"positional": True`: a positional argument (HfArgumentParser makes every field a `--flag`);
- `bool` fields: flags that take no value, `--flag` for a False default and `--no-flag` for a True one
  (HfArgumentParser's `--flag [VALUE]` would swallow a positional argument that follows it);
- `tuple[X, ...]` fields: one or more values (`nargs="+"`), stored as a tuple as the library expects;
- `"parse": function`: a value reader such as `parse_stop_rule` (its `ValueError` becomes a usage error);
- `"min"`, `"max"`, `"above"` (and every `float` field): a number in a range, read and checked by the package's one
  range rule (modeling_promptcam/ranges.py), which the options dataclasses also apply; the range is shown in `--help`
  and an out-of-range value is a usage error that says it;
- `"one_of": name`: fields sharing the name form a required group, exactly one of which is given; a positional
  member (declared first) takes zero or more values, and "exactly one" is checked after parsing (argparse's own
  groups cannot hold a positional that may be left out), with argparse's words and exit code 2;
- `"cli": False`: a field for programmatic use only (a dict of further arguments), not on the command line.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import functools
import operator
import types
import typing
from collections.abc import Callable, Iterable

from transformers import HfArgumentParser

from ..ranges import RANGE_KEYS, describe_range, has_range, numeric_kind, out_of_range

# the metadata keys OptionsParser reads itself; everything else in a field's metadata goes to argparse
OWN_KEYS = ("positional", "parse", *RANGE_KEYS, "one_of", "cli")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """`--help` with every flag's default: appended as "(default: ...)" unless the help already says it in words.
    Required arguments, flags without a value and defaults of None (whose help says what None means) get none."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if action.required or action.nargs == 0 or default is None or default is argparse.SUPPRESS:
            return text + _range_of(action)
        if "(default" in text:
            return text + _range_of(action)
        shown = " ".join(map(str, default)) if isinstance(default, (list, tuple)) else str(default)
        return f"{text}{_range_of(action)} (default: {shown.replace('%', '%%')})"


def _range_of(action: argparse.Action) -> str:
    """ " (an integer >= 1)": the range of a numeric flag for its `--help` line (empty for other flags)."""
    text = getattr(action.type, "range_text", None)
    return f" ({text})" if text else ""


class _StoreTuple(argparse.Action):
    """Store the values of an `nargs="+"` argument as a tuple (the options dataclasses hold tuples)."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, tuple(values))


class OptionsParser(HfArgumentParser):
    """`HfArgumentParser` that also understands the metadata keys listed in this module's docstring; used as the
    `parser_class` of the `promptcam` subcommands."""

    def __init__(self, dataclass_types=None, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        self._one_of_groups: dict[str, argparse._MutuallyExclusiveGroup] = {}
        self._one_of_positionals: dict[str, argparse.Action] = {}  # group name -> its positional member
        super().__init__(dataclass_types, **kwargs)
        # HfArgumentParser lists `--field_name` first; usage lines and help show the hyphen spellings first, as the
        # docs write them (only the display order changes: every spelling is still accepted)
        for action in self._actions:
            action.option_strings = sorted(action.option_strings, key=lambda spelling: "_" in spelling)

    def _parse_dataclass_field(self, parser: argparse.ArgumentParser, field: dataclasses.Field) -> None:
        # work on a copy: HfArgumentParser rewrites `field.type` (dropping `| None`), and the dataclass is library API
        field = copy.copy(field)
        own = {key: field.metadata[key] for key in OWN_KEYS if key in field.metadata}
        own["ranged"] = "parse" not in own and has_range(field.type, field.metadata)
        if own.get("cli", True) is False:
            return
        field.metadata = types.MappingProxyType({k: v for k, v in field.metadata.items() if k not in OWN_KEYS})
        if "one_of" in own and own.get("positional"):
            if own["one_of"] in self._one_of_groups:
                raise ValueError(f"{field.name}: the positional member of a one-of group must be declared first.")
            own["optional_positional"] = True
            _add_argument(parser, field, _without_none(field.type), own)
            self._one_of_positionals[own["one_of"]] = parser._actions[-1]
            return
        if "one_of" in own:
            if own["one_of"] not in self._one_of_groups:
                # with a positional member the group is checked after parsing (parse_known_args), not by argparse
                required = own["one_of"] not in self._one_of_positionals
                self._one_of_groups[own["one_of"]] = parser.add_mutually_exclusive_group(required=required)
            parser = self._one_of_groups[own["one_of"]]
            if field.default is dataclasses.MISSING:
                field.default = None  # the group is required; the member not given is None
        value_type = _without_none(field.type)
        if own.get("positional") or "parse" in own or value_type is bool or _is_tuple(value_type) or own["ranged"]:
            _add_argument(parser, field, value_type, own)
        else:
            HfArgumentParser._parse_dataclass_field(parser, field)

    def parse_known_args(self, args=None, namespace=None):
        namespace, extras = super().parse_known_args(args, namespace)
        for name, positional in self._one_of_positionals.items():
            if getattr(namespace, positional.dest) in ((), []):
                setattr(namespace, positional.dest, None)  # not given: None, as for the group's other members
            given = getattr(namespace, positional.dest) is not None
            options = [action for action in self._one_of_groups[name]._group_actions]
            named = [action for action in options if getattr(namespace, action.dest) is not None]
            if given and named:
                self.error(f"argument {named[0].option_strings[0]}: not allowed with argument {positional.metavar}")
            if not given and not named:
                spelled = " ".join([positional.metavar] + [action.option_strings[0] for action in options])
                self.error(f"one of the arguments {spelled} is required")
        return namespace, extras


def option_strings(name: str, aliases: str | Iterable[str] = ()) -> list[str]:
    """HfArgumentParser's spellings of a field's flag (`--field_name`, `--field-name`), then its aliases."""
    spellings = [f"--{name}"] + ([f"--{name.replace('_', '-')}"] if "_" in name else [])
    return spellings + ([aliases] if isinstance(aliases, str) else list(aliases))


def build_options(option_classes: Iterable[type], namespace: argparse.Namespace) -> tuple:
    """One instance of each options dataclass from the parsed command line; fields that are not on the command line
    (`"cli": False`) keep their defaults."""
    built = []
    for options_class in option_classes:
        values = {
            field.name: getattr(namespace, field.name)
            for field in dataclasses.fields(options_class)
            if field.init and hasattr(namespace, field.name)
        }
        built.append(options_class(**values))
    return tuple(built)


def _add_argument(parser, field: dataclasses.Field, value_type, own: dict) -> None:
    kwargs = dict(field.metadata)
    aliases = kwargs.pop("aliases", ())
    default = field.default
    if field.default_factory is not dataclasses.MISSING:
        default = field.default_factory()
    if value_type is bool:
        if default is dataclasses.MISSING:
            raise ValueError(f"{field.name}: a bool option needs a default (False: --flag, True: --no-flag).")
        if default:
            parser.add_argument(*option_strings(f"no_{field.name}"), action="store_false", dest=field.name, **kwargs)
        else:
            parser.add_argument(*option_strings(field.name, aliases), action="store_true", dest=field.name, **kwargs)
        return
    if _is_tuple(value_type):
        kwargs.update(nargs="+", action=_StoreTuple, type=typing.get_args(value_type)[0])
    else:
        kwargs["type"] = value_type
    if "parse" in own:
        kwargs["type"] = _value_reader(own["parse"])
    elif own["ranged"]:
        kwargs["type"] = _number_reader(numeric_kind(field.type), own)
    if own.get("optional_positional"):
        kwargs["nargs"] = "*"
        parser.add_argument(field.name, default=None, **kwargs)
        return
    if own.get("positional"):
        if default is not dataclasses.MISSING:
            raise ValueError(f"{field.name}: positional arguments are required; give the field no default.")
        parser.add_argument(field.name, **kwargs)
        return
    if default is dataclasses.MISSING:
        kwargs["required"] = True
    else:
        kwargs["default"] = default
    parser.add_argument(*option_strings(field.name, aliases), dest=field.name, **kwargs)


def _value_reader(parse: Callable[[str], object]) -> Callable[[str], object]:
    """argparse `type=` from a library reader: its `ValueError` message becomes the usage error's message."""

    def read(text: str):
        try:
            return parse(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    read.__name__ = parse.__name__
    return read


def _number_reader(kind: type, bounds: dict) -> Callable[[str], int | float]:
    """argparse `type=` for a numeric field: the number, or a usage error saying the range (ranges.py's words)."""

    def read(text: str) -> int | float:
        try:
            number = kind(text)
        except ValueError:
            number = text
        problem = out_of_range(number, bounds, integer=kind is int)
        if problem is not None:
            raise argparse.ArgumentTypeError(f"{problem}, got {text!r}")
        return number

    read.__name__ = kind.__name__
    read.range_text = describe_range(bounds, integer=kind is int)
    return read


def _without_none(hint):
    """`X | None` -> X (the value type of an optional field); anything else unchanged."""
    arguments = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in arguments:
        rest = tuple(argument for argument in arguments if argument is not type(None))
        return functools.reduce(operator.or_, rest)
    return hint


def _is_tuple(hint) -> bool:
    return typing.get_origin(hint) is tuple


__all__ = ["HelpFormatter", "OptionsParser", "build_options", "option_strings"]
