"""Folders the commands read and write: a saved Prompt-CAM model folder, and an output folder that must be new or
empty. One rule each, shared by the rooms (convert, explain, app) whose commands take such folders."""

from __future__ import annotations

import os


def check_model_folder(path: str | os.PathLike) -> None:
    """Raise `FileNotFoundError` unless `path` is a folder written by `save_pretrained` (it holds a `config.json`)."""
    if not os.path.isfile(os.path.join(path, "config.json")):
        raise FileNotFoundError(f"{path} is not a saved Prompt-CAM model folder (no config.json).")


def check_output_folder(path: str | os.PathLike, overwrite: bool = False) -> None:
    """Raise `FileExistsError` when `path` is a folder that holds files and `overwrite` is False: a converter never
    mixes its files with someone else's."""
    if os.path.isdir(path) and os.listdir(path) and not overwrite:
        raise FileExistsError(f"{path} exists and is not empty; choose a new folder or pass --overwrite.")


__all__ = ["check_model_folder", "check_output_folder"]
