"""Writing files so that a reader never sees a half-written one: the package's one way to write a file atomically."""

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


def write_json_atomically(path: str | os.PathLike, data, indent: int = 2) -> None:
    """`data` as JSON (UTF-8, indented by `indent`, ending in a newline), written atomically."""
    write_atomically(path, json.dumps(data, indent=indent) + "\n")


__all__ = ["write_atomically", "write_json_atomically"]
