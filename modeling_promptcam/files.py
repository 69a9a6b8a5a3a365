"""Files and folders: writing a file so that a reader never sees a half-written one (the package's one way to write a
file atomically), and the checks on the folders the commands read and write (a saved model folder; an output folder
that must be new or empty), one rule each."""

from __future__ import annotations

import json
import os


def write_atomically(path: str | os.PathLike, data: bytes | str) -> None:
    """Write `data` to a temporary file beside `path`, then rename it into place (atomic on one filesystem)."""
    temporary = f"{path}.tmp"
    if isinstance(data, str):
        with open(temporary, "w", encoding="utf-8") as handle:
            handle.write(data)
    else:
        with open(temporary, "wb") as handle:
            handle.write(data)
    os.replace(temporary, path)


def check_model_folder(path: str | os.PathLike) -> None:
    """Raise `FileNotFoundError` unless `path` is a folder written by `save_pretrained` (it holds a `config.json`)."""
    if not os.path.isfile(os.path.join(path, "config.json")):
        raise FileNotFoundError(f"{path} is not a saved Prompt-CAM model folder (no config.json).")


def check_output_folder(path: str | os.PathLike, overwrite: bool = False) -> None:
    """Raise `FileExistsError` when `path` is a folder that holds files and `overwrite` is False: a converter never
    mixes its files with someone else's."""
    if os.path.isdir(path) and os.listdir(path) and not overwrite:
        raise FileExistsError(f"{path} exists and is not empty; choose a new folder or pass --overwrite.")


def write_json_atomically(path: str | os.PathLike, data, indent: int = 2) -> None:
    """`data` as JSON (UTF-8, indented by `indent`, ending in a newline), written atomically."""
    write_atomically(path, json.dumps(data, indent=indent) + "\n")


__all__ = ["write_atomically", "write_json_atomically"]
