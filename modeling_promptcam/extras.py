"""Optional dependencies: one way to import them, and one error when one is missing, naming the pip extra that
installs it (the extras are in `setup.py`'s `extras_require`: `train`, `peft`, `viz`, `app`, `demo`, `export`)."""

from __future__ import annotations

import importlib
from types import ModuleType

PACKAGE_NAME = "modeling-promptcam"


class MissingDependencyError(ModuleNotFoundError):
    """An optional package a feature needs cannot be imported; the message says which feature, which package and
    the `pip install "modeling-promptcam[<extra>]"` command that installs it."""

    def __init__(self, message: str, package: str, extra: str):
        super().__init__(message, name=package)
        self.package, self.extra = package, extra


def install_command(extra: str) -> str:
    """The pip command that installs an extra of this package: `pip install "modeling-promptcam[<extra>]"`."""
    return f'pip install "{PACKAGE_NAME}[{extra}]"'


def require(module: str, extra: str, feature: str, package: str | None = None) -> ModuleType:
    """Import `module` (a package or one of its submodules, e.g. `"matplotlib.figure"`) and return it.

    Args:
        module: the module to import.
        extra: the extra of this package that installs it (`"viz"`, `"app"`, ...).
        feature: what needs it, as the subject of a sentence ("Training", "The trait explorer").
        package: the name pip knows it by, when it differs from the module's top-level name.
    Raises:
        [`MissingDependencyError`] (a `ModuleNotFoundError`) when the module cannot be imported: "<feature> needs
        <package>: pip install "modeling-promptcam[<extra>]"." A package that is installed but fails to import (a
        missing dependency of its own, a broken install) gets the import error in the message as well.
    """
    try:
        return importlib.import_module(module)
    except ImportError as error:
        package = package or module.split(".")[0]
        # the module (or a package above it) not found: not installed; anything else: installed but broken
        absent = isinstance(error, ModuleNotFoundError) and (
            error.name is None or module == error.name or module.startswith(f"{error.name}.")
        )
        cause = "" if absent else f" (it is installed but does not import: {error})"
        raise MissingDependencyError(
            f"{feature} needs {package}{cause}: {install_command(extra)}.", package=package, extra=extra
        ) from error


__all__ = ["MissingDependencyError", "install_command", "require"]
