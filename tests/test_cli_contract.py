"""Every flag of `promptcam` recorded in tests/fixtures/cli_contract.json keeps its option string, its default, its
choices, whether it takes a value, whether it is required, and what its value means (these are contracts: scripts
call them). The parser is generated from the options dataclasses now; this test compares what a command line gives
with the recorded contract, after mapping to the library options objects where field names changed."""

import argparse
import dataclasses
import json
import re
from pathlib import Path

import pytest

from modeling_promptcam.cli import build_parser, parse_command_line

CONTRACT = json.loads((Path(__file__).parent / "fixtures" / "cli_contract.json").read_text())

# the CLI's destination names of before -> the options field that holds the value now
RENAMED = {"lr": "learning_rate", "out": "output_dir", "out_dir": "output_dir"}
NEGATED = {"no_progress": "progress"}  # --no-progress sets progress=False
# a required group: exactly one of these is given (the contract records each member as not required)
ONE_OF = {"train": (["--data-dir", "data-dir-value"], ["--dataset", "dataset-value"])}


def entries(predicate=lambda entry: True):
    return [
        pytest.param(command, entry, id=f"{command}:{(entry['options'] or [entry['dest']])[0]}")
        for command, flags in CONTRACT.items()
        for entry in flags
        if predicate(entry)
    ]


def sample(entry) -> str:
    return entry["choices"][0] if entry["choices"] else f"{entry['dest']}-value"


def minimal(command: str, leave_out=None) -> list[str]:
    """The shortest valid command line of `command`: its required arguments (without `leave_out`)."""
    options, positionals = [], []
    for entry in CONTRACT[command]:
        if not entry["required"] or entry is leave_out:
            continue
        if entry["options"]:
            options += [entry["options"][0], sample(entry)]
        else:
            positionals.append(sample(entry))
    if command in ONE_OF:
        first, second = ONE_OF[command]
        options += second if leave_out is not None and leave_out["options"][:1] == first[:1] else first
    return [command, *options, *positionals]


def with_flag(command: str, entry, *values: str) -> list[str]:
    """The shortest valid command line of `command` with `entry`'s flag given these values (a member of a one-of group
    stands in for the group)."""
    line = minimal(command, leave_out=entry)
    for member in ONE_OF.get(command, ()):
        if entry["options"][:1] == member[:1]:
            line = minimal(command)
            start = line.index(ONE_OF[command][0][0])
            del line[start : start + 2]
    return line + [entry["options"][0], *values]


def value_of(options: tuple, dest: str):
    """The value the command line gave for the contract's `dest`, read from the options objects."""
    name = NEGATED.get(dest, RENAMED.get(dest, dest))
    for instance in options:
        if name in {field.name for field in dataclasses.fields(instance)}:
            value = getattr(instance, name)
            if dest in NEGATED:
                value = not value
            return list(value) if isinstance(value, tuple) else value
    raise AssertionError(f"no options field holds {dest!r} (looked for {name!r})")


def parsed(argv: list[str], dest: str):
    command, options = parse_command_line(argv)
    assert command == argv[0]
    return value_of(options, dest)


def exits_with_usage_error(argv: list[str], capsys) -> bool:
    with pytest.raises(SystemExit) as stopped:
        parse_command_line(argv)
    capsys.readouterr()
    return stopped.value.code == 2


def subparser(command: str) -> argparse.ArgumentParser:
    (commands,) = [action for action in build_parser()._actions if isinstance(action, argparse._SubParsersAction)]
    return commands.choices[command]


def test_every_command_is_still_there():
    (commands,) = [action for action in build_parser()._actions if isinstance(action, argparse._SubParsersAction)]
    assert set(CONTRACT) <= set(commands.choices)


@pytest.mark.parametrize("command, entry", entries(lambda entry: not entry["required"]))
def test_default_is_kept(command, entry):
    assert parsed(minimal(command, leave_out=entry), entry["dest"]) == entry["default"]


@pytest.mark.parametrize("command, entry", entries(lambda entry: entry["required"]))
def test_required_arguments_stay_required(command, entry, capsys):
    assert parsed(minimal(command), entry["dest"]) in (sample(entry), [sample(entry)])
    assert exits_with_usage_error(minimal(command, leave_out=entry), capsys)


def test_exactly_one_data_source(capsys):
    base = ["train", "--backbone", "b", "--output-dir", "o"]
    assert exits_with_usage_error(base, capsys)
    assert exits_with_usage_error(base + ["--data-dir", "d", "--dataset", "x"], capsys)
    assert parsed(base + ["--dataset", "x"], "data_dir") is None


@pytest.mark.parametrize("command, entry", entries(lambda entry: entry["choices"]))
def test_recorded_choices_are_all_accepted(command, entry, capsys):
    for choice in entry["choices"]:
        if entry["options"]:
            argv = with_flag(command, entry, choice)
        else:  # a positional with choices
            argv = [choice if token == sample(entry) else token for token in minimal(command)]
        assert parsed(argv, entry["dest"]) in (choice, [choice])
    if entry["nargs"] == "+":
        assert parsed(minimal(command) + [entry["options"][0], *entry["choices"]], entry["dest"]) == entry["choices"]
    wrong = with_flag(command, entry, "not-a-choice") if entry["options"] else None
    if wrong:
        assert exits_with_usage_error(wrong, capsys)


# what each recorded value type makes of a command-line value: (text, value) pairs, and texts it refuses. The ranged
# types (issue 15: every numeric option has a range) refuse what is out of their range, and every float refuses
# NaN and infinity.
MEANINGS = {
    "int": ([("3", 3), ("-1", -1)], ["x", "1.5"]),
    "float": ([("0.25", 0.25), ("1e-3", 1e-3)], ["x", "nan", "inf"]),
    "_positive_int": ([("3", 3), ("1", 1)], ["0", "-2", "x", "1.5"]),
    "int>=0": ([("3", 3), ("0", 0)], ["-1", "x", "1.5"]),
    "int[0,65535]": ([("3", 3), ("0", 0), ("65535", 65535)], ["-1", "65536", "x"]),
    "float>0": ([("0.25", 0.25), ("1e-3", 1e-3)], ["0", "-1", "x", "nan", "inf"]),
    "float>=0": ([("0.25", 0.25), ("1e-3", 1e-3), ("0", 0.0)], ["-1e-3", "x", "nan", "inf", "-inf"]),
    "float[0,1]": ([("0.25", 0.25), ("1e-3", 1e-3), ("1", 1.0), ("0", 0.0)], ["1.5", "-0.1", "x", "nan", "inf"]),
    "_stop_rule": ([("misclassified", "misclassified"), ("2", 2)], ["many"]),
    "_heads": ([("top", "top"), ("all", "all"), ("3", 3)], ["some"]),
    None: ([("some-text", "some-text")], []),
}


@pytest.mark.parametrize(
    "command, entry", entries(lambda entry: entry["options"] and entry["takes_value"] and not entry["choices"])
)
def test_values_keep_their_meaning(command, entry, capsys):
    accepted, refused = MEANINGS[entry["type"]]
    for text, value in accepted:
        got = parsed(with_flag(command, entry, text), entry["dest"])
        if entry["nargs"] == "+":
            got = got[0]
        assert got == value and type(got) is type(value)
    for text in refused:
        assert exits_with_usage_error(with_flag(command, entry, text), capsys)


@pytest.mark.parametrize("command, entry", entries(lambda entry: not entry["takes_value"]))
def test_flags_still_take_no_value(command, entry, capsys):
    option = entry["options"][0]
    assert parsed(minimal(command) + [option], entry["dest"]) is True
    # given before the positional arguments, the flag does not swallow one of them
    line = minimal(command)
    assert parsed([line[0], option, *line[1:]], entry["dest"]) is True
    for required in (e for e in CONTRACT[command] if e["required"] and not e["options"]):
        assert parsed([line[0], option, *line[1:]], required["dest"]) == sample(required)
    # a value after it is not taken: it is an extra argument, a usage error
    assert exits_with_usage_error(minimal(command) + [option, "true"], capsys)


def help_entry(help_text: str, option: str) -> tuple[str, str]:
    """(invocation, help) of the `--help` entry that lists `option`: argparse writes the invocation two spaces in,
    then the help after two or more spaces or on the lines indented under it."""
    lines = help_text.splitlines()
    spelled = re.compile(rf"(?<![\w-]){re.escape(option)}(?![\w-])")
    for start, line in enumerate(lines):
        if not re.match(r"^  \S", line):
            continue
        invocation, _, first = line[2:].partition("  ")
        if spelled.search(invocation):
            rest = []
            for following in lines[start + 1 :]:
                if not re.match(r"^   +\S", following):
                    break
                rest.append(following)
            return invocation, " ".join(" ".join([first, *rest]).split())
    raise AssertionError(f"{option} is not in the --help output:\n{help_text}")


@pytest.mark.parametrize("command, entry", entries(lambda entry: entry["options"]))
def test_help_shows_each_flag_with_its_help_and_default(command, entry, monkeypatch):
    monkeypatch.setenv("COLUMNS", "1000")  # one line per flag: no wrapping inside a default's text
    option = entry["options"][0]
    _, described = help_entry(subparser(command).format_help(), option)
    assert len(described) > 10, f"{option} has no help text: {described!r}"
    if entry["takes_value"] and not entry["required"] and option not in [pair[0] for pair in ONE_OF.get(command, ())]:
        assert "default" in described, f"{option}'s help does not give its default: {described!r}"
        if entry["default"] is not None:
            default = entry["default"]
            shown = " ".join(map(str, default)) if isinstance(default, list) else str(default)
            assert shown in described, f"{option}'s help does not show {shown!r}: {described!r}"
