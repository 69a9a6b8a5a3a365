"""`promptcam` command line (also `python -m modeling_promptcam`): one thin module per command.

Each command module names its options dataclasses (`OPTIONS`), whose fields and per-field help generate its flags
([`OptionsParser`], transformers' `HfArgumentParser` convention), and a `run(*options)` that calls one library function
and prints a one-line result. Exit codes (cli/errors.py): 0 success, 1 the work failed for a known reason, reported as
`error: <message>` on stderr, 2 bad command-line usage. docs/cli.md has the commands and how the parser is built.
"""

from __future__ import annotations

import argparse
from types import ModuleType

from . import app, atlas, backbone, convert, demo, explain, export, faithfulness, synthetic, taxonomy_key, train
from .errors import run_command
from .parser import HelpFormatter, OptionsParser, build_options

# in the order `promptcam --help` lists them
COMMANDS: dict[str, ModuleType] = {
    module.NAME: module
    for module in (convert, explain, app, train, backbone, synthetic, demo, faithfulness, taxonomy_key, export, atlas)
}


def build_parser() -> argparse.ArgumentParser:
    """The `promptcam` parser: one subcommand per entry of `COMMANDS`, its flags generated from its options."""
    parser = argparse.ArgumentParser(
        prog="promptcam",
        description="Prompt-CAM for transformers: interpretable fine-grained classification with frozen ViTs.",
        epilog="Run 'promptcam COMMAND --help' for a command's flags, each with its help and default. Exit codes: 0 "
        "success, 1 the work failed (the reason on stderr as 'error: ...'), 2 bad command-line usage.",
        formatter_class=HelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=OptionsParser)
    for name, module in COMMANDS.items():
        commands.add_parser(name, dataclass_types=module.OPTIONS, help=module.HELP, description=module.DESCRIPTION)
    return parser


def parse_command_line(argv: list[str] | None = None) -> tuple[str, tuple]:
    """The command named on the command line and its options objects (one per dataclass of its `OPTIONS`).
    Exits with code 2 (argparse) for bad usage."""
    namespace = build_parser().parse_args(argv)
    return namespace.command, build_options(COMMANDS[namespace.command].OPTIONS, namespace)


def main(argv: list[str] | None = None) -> int:
    """Run `promptcam` with `argv` (default: the process's arguments); returns the exit code."""
    namespace = build_parser().parse_args(argv)
    command = COMMANDS[namespace.command]
    return run_command(lambda: command.run(*build_options(command.OPTIONS, namespace)))


__all__ = ["COMMANDS", "build_parser", "main", "parse_command_line"]
