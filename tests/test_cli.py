"""The `promptcam` command line as a whole: flags generated from the options dataclasses (every field a flag with its
help, choices from their registries), the parser's additions to HfArgumentParser, and the one error path."""

import argparse
import dataclasses
import importlib
import inspect
import pkgutil
import subprocess
import sys
import warnings

import pytest

import modeling_promptcam
from modeling_promptcam.cli import COMMANDS, build_parser, main, parse_command_line
from modeling_promptcam.cli.errors import DEBUG_VARIABLE, KNOWN_ERRORS, UsageError, run_command
from modeling_promptcam.cli.parser import OptionsParser
from modeling_promptcam.configuration_promptcam import PROMPT_MODES
from modeling_promptcam.convert import BACKBONE_BUILDERS, BACKBONE_KINDS, ConvertOptions, convert_checkpoint
from modeling_promptcam.convert.official import BACKBONE_FAMILIES
from modeling_promptcam.convert.open_clip import ACTIVATIONS
from modeling_promptcam.data import DataError, generate_dataset
from modeling_promptcam.data.options import SyntheticOptions
from modeling_promptcam.data.synthetic import generate_taxonomy_dataset
from modeling_promptcam.evaluation.options import ALL_METHODS, METHODS, SCORERS, TARGETS
from modeling_promptcam.modeling_promptcam import BLUR_MODES


def subparser(command: str) -> argparse.ArgumentParser:
    (commands,) = [action for action in build_parser()._actions if isinstance(action, argparse._SubParsersAction)]
    return commands.choices[command]


def action_for(command: str, dest: str) -> argparse.Action:
    (action,) = [action for action in subparser(command)._actions if action.dest == dest]
    return action


@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_options_field_is_a_flag_with_the_fields_help(command):
    for options_class in COMMANDS[command].OPTIONS:
        for field in dataclasses.fields(options_class):
            assert field.metadata.get("help"), f"{options_class.__name__}.{field.name} has no help"
            if field.metadata.get("cli", True) is False:
                assert not [a for a in subparser(command)._actions if a.dest == field.name]
                continue
            assert action_for(command, field.name).help == field.metadata["help"]


@pytest.mark.parametrize(
    "command, dest, registry",
    [
        ("convert", "backbone", BACKBONE_FAMILIES),
        ("backbone", "kind", BACKBONE_KINDS),
        ("backbone", "activation", ACTIVATIONS),
        ("explain", "blur", BLUR_MODES),
        ("demo", "blur", BLUR_MODES),
        ("faithfulness", "blur", BLUR_MODES),
        ("train", "prompt_mode", PROMPT_MODES),
        ("demo", "prompt_mode", PROMPT_MODES),
        ("faithfulness", "methods", ALL_METHODS),
        ("atlas", "blur", BLUR_MODES),
        ("taxonomy-key", "blur", BLUR_MODES),
        ("faithfulness", "target", TARGETS),
        ("faithfulness", "scorer", SCORERS),
    ],
)
def test_choices_are_the_registries_themselves(command, dest, registry):
    assert action_for(command, dest).choices is registry  # not a copy typed again


@pytest.mark.parametrize("dest", ["blur", "stop", "alpha"])
def test_the_trait_flags_read_the_same_on_every_command(dest):
    # one definition per trait flag (explain/trait_options.py): the same help, choices and reader wherever it appears
    from modeling_promptcam.explain.trait_options import ALPHA_HELP, BLUR_HELP, STOP_HELP

    commands = [command for command in COMMANDS if [a for a in subparser(command)._actions if a.dest == dest]]
    assert len(commands) >= 2, f"--{dest} is expected on several commands, found {commands}"
    actions = [action_for(command, dest) for command in commands]
    for command, action in zip(commands, actions):
        assert action.help.startswith({"blur": BLUR_HELP, "stop": STOP_HELP, "alpha": ALPHA_HELP}[dest]), command
        assert action.choices is actions[0].choices and action.type.__name__ == actions[0].type.__name__, command
    if dest == "stop":
        assert all(action.type("3") == 3 and action.type("misclassified") == "misclassified" for action in actions)
        with pytest.raises(argparse.ArgumentTypeError):
            actions[0].type("0")


def test_the_default_methods_leave_out_the_opt_in_ones():
    # every registered method is a choice of --methods; the default is the registry's entries that are not opt-in
    assert action_for("faithfulness", "methods").default == METHODS == ALL_METHODS[:-1]
    assert ALL_METHODS[-1] == "finer-cam"


def test_one_builder_per_backbone_kind():
    assert tuple(BACKBONE_BUILDERS) == BACKBONE_KINDS


@pytest.mark.parametrize("function", [generate_dataset, generate_taxonomy_dataset])
def test_synthetic_defaults_are_generate_datasets(function):
    signature = inspect.signature(function).parameters
    for field in dataclasses.fields(SyntheticOptions):
        name = "out_dir" if field.name == "output_dir" else field.name
        if field.default is not dataclasses.MISSING and field.name != "taxonomy":  # taxonomy: which of the two
            assert signature[name].default == field.default, field.name


@pytest.mark.parametrize(
    "line, spellings, field",
    [
        (["train", "--backbone", "b", "--data-dir", "d", "--output-dir", "o"], ["--lr", "--learning-rate"], "lr"),
        (["demo"], ["--out", "--output-dir", "--output_dir"], "output_dir"),
        (["faithfulness", "--model", "m", "--data", "d"], ["--out", "--output-dir"], "output_dir"),
        (["explain", "--model", "m", "x.png"], ["--out", "--output-dir"], "output_dir"),
        (["synthetic"], ["--out", "--output-dir"], "output_dir"),
        (["backbone", "bioclip"], ["--out", "--output-dir"], "output_dir"),
    ],
)
def test_new_spellings_beside_the_old_ones(line, spellings, field):
    name = {"lr": "learning_rate"}.get(field, field)
    values = {spelling: getattr(parse_command_line(line + [spelling, "0.5"])[1][0], name) for spelling in spellings}
    assert set(values.values()) == {0.5 if field == "lr" else "0.5"}, values


def test_flags_without_a_value_and_with_no_prefix():
    _, (options,) = parse_command_line(["explain", "--model", "m", "--no-progress", "a.png", "b.png"])
    assert options.images == ("a.png", "b.png") and options.progress is False
    _, (options,) = parse_command_line(["demo", "--no-cpu-bf16", "--stop", "3", "--tolerance", "0"])
    assert (options.cpu_bf16, options.stop, options.tolerance) == (False, 3, 0)
    _, (options,) = parse_command_line(["train", "--backbone", "b", "--dataset", "d", "--output-dir", "o"])
    assert options.data_dir is None and options.dataset == "d" and options.verify_images is True


def test_usage_errors_name_the_rule(capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["faithfulness", "--model", "m", "--data", "d", "--stop", "0"])
    assert stopped.value.code == 2
    assert "stop must be 'misclassified' or an integer >= 1, got 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["demo", "--tolerance", "-1"])
    assert "must be an integer >= 0, got '-1'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["faithfulness", "--model", "m", "--data", "d", "--heads", "few"])
    assert "heads must be 'top' or 'all' or a number of heads >= 1, got 'few'" in capsys.readouterr().err


def test_the_generated_parser_on_a_dataclass_of_its_own(capsys):
    @dataclasses.dataclass
    class Options:
        inputs: tuple[str, ...] = dataclasses.field(metadata={"help": "inputs", "positional": True})
        first: str | None = dataclasses.field(default=None, metadata={"help": "a", "one_of": "source"})
        second: str | None = dataclasses.field(default=None, metadata={"help": "b", "one_of": "source"})
        count: int = dataclasses.field(default=2, metadata={"help": "how many", "min": 2, "aliases": ["-n"]})
        quiet: bool = dataclasses.field(default=False, metadata={"help": "say less"})

    parser = OptionsParser(Options, prog="toy")
    (options,) = parser.parse_args_into_dataclasses(["--quiet", "x", "y", "--first", "f", "-n", "3"])
    assert options == Options(inputs=("x", "y"), first="f", count=3, quiet=True)
    for wrong in (["x"], ["x", "--first", "f", "--second", "s"], ["x", "--first", "f", "--count", "1"]):
        with pytest.raises(SystemExit):
            parser.parse_args(wrong)
    assert "(default: 2)" in parser.format_help()

    @dataclasses.dataclass
    class Unparseable:
        flag: bool = dataclasses.field(metadata={"help": "no default"})

    with pytest.raises(ValueError, match="a bool option needs a default"):
        OptionsParser(Unparseable)


@pytest.mark.parametrize(
    "error, code",
    [
        (ValueError("a bad value"), 1),
        (DataError("a bad folder"), 1),
        (FileNotFoundError("no such file"), 1),
        (FileExistsError("already there"), 1),
        (OSError("disk full"), 1),
        (ImportError('needs gradio: pip install "modeling-promptcam[app]"'), 1),
        (UsageError("bioclip needs --checkpoint"), 2),
    ],
)
def test_one_error_path(error, code, capsys):
    def failing():
        raise error

    assert run_command(failing) == code
    captured = capsys.readouterr()
    assert captured.err == f"error: {error}\n" and captured.out == ""


def test_an_unknown_failure_keeps_its_traceback(monkeypatch):
    def broken():
        raise KeyError("a bug, not a user error")

    # without it, one line says where to report the bug (tests/test_cli_bad_input.py)
    monkeypatch.setenv(DEBUG_VARIABLE, "1")
    with pytest.raises(KeyError):
        run_command(broken)


def test_every_error_class_of_the_package_is_a_known_failure():
    found = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the old flat paths warn on import
        for module_info in pkgutil.walk_packages(modeling_promptcam.__path__, "modeling_promptcam."):
            if module_info.name.endswith("__main__"):
                continue
            module = importlib.import_module(module_info.name)
            for value in vars(module).values():
                if (
                    isinstance(value, type)
                    and issubclass(value, Exception)
                    and value.__module__.startswith("modeling_promptcam")
                ):
                    found.append(value)
    assert {error.__name__ for error in found} >= {"DataError", "NotAnOfficialCheckpointError", "InputError"}
    for error in set(found) - {UsageError}:
        assert issubclass(error, KNOWN_ERRORS), f"{error.__module__}.{error.__name__} would print a traceback"


def test_the_library_refuses_an_occupied_folder(tmp_path):
    (tmp_path / "notes.txt").write_text("keep")
    with pytest.raises(FileExistsError, match="exists and is not empty; choose a new folder or pass --overwrite"):
        convert_checkpoint(ConvertOptions(str(tmp_path / "model.pt"), str(tmp_path)))
    assert (tmp_path / "notes.txt").read_text() == "keep"


def test_bioclip_without_a_checkpoint_is_a_usage_error(tmp_path, capsys):
    assert main(["backbone", "bioclip", "--out", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err == "error: bioclip needs --checkpoint open_clip_pytorch_model.bin\n"
    assert not (tmp_path / "o").exists()


def test_module_entry_point_help_and_a_known_failure(tmp_path):
    run = [sys.executable, "-m", "modeling_promptcam"]
    listing = subprocess.run(run + ["--help"], capture_output=True, text=True, check=True).stdout
    assert all(command in listing for command in COMMANDS) and "COMMAND --help" in listing
    explain = subprocess.run(run + ["explain", "--help"], capture_output=True, text=True, check=True).stdout
    assert "--top-k" in explain and "(default: 5)" in explain and "{paper,official,spatial}" in explain
    failed = subprocess.run(run + ["convert", str(tmp_path / "none.pt"), str(tmp_path / "o")], capture_output=True)
    assert failed.returncode == 1
    assert failed.stderr.decode().startswith("error: No checkpoint file at") and b"Traceback" not in failed.stderr
