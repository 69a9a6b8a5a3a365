"""Files and folders: writing a file so that a reader never sees a half-written one (the package's one way to write a
file atomically), and the checks on the folders the commands read and write (a saved model folder; an output folder
that must be new or empty), one rule each."""

from __future__ import annotations

import json
import os

from .configuration_promptcam import PromptCamConfig

# the JSON files of a saved model folder that are read before loading it (each is checked to parse)
MODEL_FOLDER_JSON = ("config.json", "preprocessor_config.json", "model.safetensors.index.json")


class ModelFolderError(ValueError):
    """A saved model folder that cannot be used: a damaged file, or a model of another kind (names the file and the
    fix)."""


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


def check_model_folder(path: str | os.PathLike, model_type: str | None = PromptCamConfig.model_type) -> None:
    """Check a folder written by `save_pretrained` before loading it, naming the file at fault.

    Raises `FileNotFoundError` when it holds no `config.json`; [`ModelFolderError`] when one of its JSON files
    (`MODEL_FOLDER_JSON`) is not JSON, when `config.json`'s `model_type` is not `model_type` (a stock backbone folder
    is what `promptcam train --backbone` takes, not a Prompt-CAM model), or when a `.safetensors` weights file is
    damaged or incomplete (its header and size are read; the tensors are not).
    """
    if not os.path.isfile(os.path.join(path, "config.json")):
        raise FileNotFoundError(f"{path} is not a saved Prompt-CAM model folder (no config.json).")
    read = {}
    for name in MODEL_FOLDER_JSON:
        file = os.path.join(path, name)
        if os.path.isfile(file):
            try:
                with open(file, encoding="utf-8") as handle:
                    read[name] = json.load(handle)
            except (ValueError, UnicodeDecodeError) as error:
                raise ModelFolderError(
                    f"{file} is not valid JSON ({error}): the model folder is damaged; copy it again or save the "
                    "model again (save_pretrained, promptcam train, promptcam convert)."
                ) from None
    found_type = read["config.json"].get("model_type") if isinstance(read["config.json"], dict) else None
    if model_type is not None and found_type != model_type:
        raise ModelFolderError(
            f"{path} holds a {found_type or 'unknown'!s} model (config.json model_type {found_type!r}), not a Prompt-CAM "
            f"model ({model_type!r}): give a folder written by promptcam train (its final/), promptcam convert or "
            "save_pretrained of a PromptCamForImageClassification; a stock backbone is what promptcam train "
            "--backbone takes."
        )
    shards = read.get("model.safetensors.index.json", {}).get("weight_map", {}).values()
    for name in sorted(set(shards) | ({"model.safetensors"} if not shards else set())):
        _check_safetensors(os.path.join(path, name))


def _check_safetensors(file: str) -> None:
    """Raise [`ModelFolderError`] when the safetensors file `file` (if present) is truncated or not safetensors."""
    if not os.path.isfile(file):
        return
    from safetensors import safe_open

    try:
        with safe_open(file, framework="pt"):
            pass  # opening reads the header and checks that the file is as long as the header says
    except Exception as error:  # safetensors raises its own SafetensorError (and OSError) for a damaged file
        raise ModelFolderError(
            f"{file} is damaged or incomplete ({error}); copy the model folder again or save the model again."
        ) from None


def check_output_folder(path: str | os.PathLike, overwrite: bool = False) -> None:
    """Raise `FileExistsError` when `path` is a folder that holds files and `overwrite` is False: a converter never
    mixes its files with someone else's."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise FileExistsError(f"{path} is a file, not a folder; choose a folder path for the output (new or empty).")
    if os.path.isdir(path) and os.listdir(path) and not overwrite:
        raise FileExistsError(f"{path} exists and is not empty; choose a new folder or pass --overwrite.")
    # where the folder will be created: the nearest existing folder above it must be a folder one can write in, or
    # the work would be done and then lost at the first write (nothing is created here)
    existing = os.path.abspath(path)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise NotADirectoryError(f"{path} is below {existing}, which is a file; choose an output folder elsewhere.")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise PermissionError(
            f"{path} cannot be written: {existing} is not writable; choose another output folder or fix its "
            "permissions."
        )


def write_json_atomically(path: str | os.PathLike, data, indent: int = 2) -> None:
    """`data` as JSON (UTF-8, indented by `indent`, ending in a newline), written atomically."""
    write_atomically(path, json.dumps(data, indent=indent) + "\n")


__all__ = [
    "MODEL_FOLDER_JSON",
    "ModelFolderError",
    "check_model_folder",
    "check_output_folder",
    "write_atomically",
    "write_json_atomically",
]
