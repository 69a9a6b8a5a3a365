"""Writing files so that a reader never sees a half-written one."""

from __future__ import annotations

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
