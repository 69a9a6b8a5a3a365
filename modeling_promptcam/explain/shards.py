"""The output folder of a whole-dataset explanation: numbered Parquet shards and a manifest that says which model and
settings wrote them. `datasets.load_dataset("parquet", data_dir="OUTPUT_DIR/data")` (or
`datasets.Dataset.from_parquet("OUTPUT_DIR/data/*.parquet")`) reads the shards as one dataset, in image order.

Layout::

    OUTPUT_DIR/manifest.json                     the model (path and SHA-256 of its config and weights), the settings,
                                                 the number of images, a SHA-256 of their ids, the shards
    OUTPUT_DIR/data/shard-00000-of-00012.parquet rows of images 0 .. shard_size - 1, and so on

No dataset card with `configs` is written: `datasets` caches a folder loaded through such a card by the folder's name
and configuration, not by the files' contents, so a resumed or repeated run could be read back from a stale cache.

A shard is written to a temporary file and renamed into place (`files.write_atomically`), so a shard file that exists
is complete: a run that is interrupted and started again skips the shards that exist (their row count is checked)
and redoes only the others. A folder whose manifest names another model or other settings is refused, naming what
differs, so shards of two runs never mix.
"""

from __future__ import annotations

import hashlib
import io
import json
import os

from ..extras import require
from ..files import write_atomically, write_json_atomically

MANIFEST_FILE = "manifest.json"
DATA_DIR = "data"
FORMAT = "promptcam-explain-parquet"
VERSION = 1
_HASH_CHUNK = 1 << 20


class ShardsOfAnotherRunError(ValueError):
    """The output folder holds shards of another run (another model or other settings)."""


def shard_name(index: int, count: int) -> str:
    """`shard-00003-of-00012.parquet`: the file of shard `index` of `count`."""
    return f"shard-{index:05d}-of-{count:05d}.parquet"


def shard_path(output_dir: str, index: int, count: int) -> str:
    return os.path.join(output_dir, DATA_DIR, shard_name(index, count))


def model_fingerprint(model_dir: str) -> dict:
    """What identifies a saved model: its folder and the SHA-256 of its `config.json` and weight files, read in full
    (a model retrained into the same folder is another model)."""
    digest = hashlib.sha256()
    names = ["config.json"] + sorted(
        name for name in os.listdir(model_dir) if name.endswith((".safetensors", ".bin", ".safetensors.index.json"))
    )
    for name in names:
        digest.update(name.encode() + b"\0")
        with open(os.path.join(model_dir, name), "rb") as handle:
            while chunk := handle.read(_HASH_CHUNK):
                digest.update(chunk)
    return {"path": os.path.abspath(model_dir), "sha256": digest.hexdigest()}


def build_manifest(model: dict, settings: dict, image_ids: list[str], shard_size: int) -> dict:
    """The manifest of a run: `model` ([`model_fingerprint`]), the `settings` that change what a row holds, the
    images (their number and a SHA-256 of their ids in order: a folder that gained or lost images is another run) and
    how they are cut into shards of `shard_size`."""
    return {
        "format": FORMAT,
        "version": VERSION,
        "model": model,
        "settings": settings,
        "images": len(image_ids),
        "listing_sha256": hashlib.sha256("\n".join(image_ids).encode()).hexdigest(),
        "shard_size": shard_size,
        "shards": -(-len(image_ids) // shard_size),
    }


def check_output(output_dir: str, manifest: dict) -> dict | None:
    """Check that `output_dir` is new, empty, or holds shards of this very run (same model, settings, images and
    shard size). Returns the manifest found there (None for a new or empty folder); raises
    [`ShardsOfAnotherRunError`] naming every difference, and `FileExistsError` for a file or a folder of other files.
    Nothing is written."""
    if os.path.exists(output_dir) and not os.path.isdir(output_dir):
        raise FileExistsError(f"--output-dir {output_dir} is a file; choose a folder (new, empty, or this run's).")
    file = os.path.join(output_dir, MANIFEST_FILE)
    if not os.path.isfile(file):
        if os.path.isdir(output_dir) and os.listdir(output_dir):
            raise FileExistsError(
                f"--output-dir {output_dir} holds files but no {MANIFEST_FILE}, so it is not a promptcam explain "
                "Parquet run; choose a new or empty folder."
            )
        return None
    try:
        with open(file, encoding="utf-8") as handle:
            found = json.load(handle)
    except (ValueError, UnicodeDecodeError) as error:
        raise ShardsOfAnotherRunError(
            f"{file} is not valid JSON ({error}); the folder's run cannot be identified, so its shards cannot be "
            "resumed: choose a new --output-dir (or delete this one)."
        ) from None
    differences = _differences(found, manifest)
    if differences:
        raise ShardsOfAnotherRunError(
            f"--output-dir {output_dir} holds shards of another run ({'; '.join(differences)}); resuming would mix "
            "two runs. Choose a new --output-dir, run again with the settings of that run, or delete the folder."
        )
    return found


def _differences(found, wanted: dict) -> list[str]:
    if not isinstance(found, dict) or found.get("format") != FORMAT:
        return [f"{MANIFEST_FILE} is not a {FORMAT} manifest"]
    differences = []
    found_model, wanted_model = found.get("model") or {}, wanted["model"]
    if found_model.get("sha256") != wanted_model["sha256"]:
        differences.append(
            f"another model: {found_model.get('path')} (sha256 {str(found_model.get('sha256'))[:12]}) there, "
            f"{wanted_model['path']} (sha256 {wanted_model['sha256'][:12]}) now"
        )
    found_settings = found.get("settings") or {}
    for key in sorted(set(found_settings) | set(wanted["settings"])):
        there, now = found_settings.get(key), wanted["settings"].get(key)
        if there != now:
            differences.append(f"--{key.replace('_', '-')}: {there!r} there, {now!r} now")
    for key, words in (("images", "images"), ("listing_sha256", "the images' ids"), ("shard_size", "--shard-size")):
        if found.get(key) != wanted[key]:
            differences.append(f"{words}: {found.get(key)!r} there, {wanted[key]!r} now")
    return differences


def write_manifest(output_dir: str, manifest: dict) -> None:
    """Create the folder and write the manifest (the main process does this once)."""
    os.makedirs(os.path.join(output_dir, DATA_DIR), exist_ok=True)
    write_json_atomically(os.path.join(output_dir, MANIFEST_FILE), manifest)


def finished_shards(output_dir: str, count: int, expected_rows) -> set[int]:
    """The shards of this run already written in full: the file exists (shards are renamed into place once complete)
    and its row count is what the shard should hold (`expected_rows(index)`); a shard that fails this is redone."""
    parquet = require("pyarrow.parquet", "train", "Writing Parquet explanations")
    done = set()
    for index in range(count):
        path = shard_path(output_dir, index, count)
        if not os.path.isfile(path):
            continue
        try:
            rows = parquet.read_metadata(path).num_rows
        except Exception:  # pyarrow raises its own ArrowInvalid for a damaged file: redo the shard
            continue
        if rows == expected_rows(index):
            done.add(index)
    return done


def write_shard(output_dir: str, index: int, count: int, rows: dict, features) -> str:
    """Write one shard (columns `rows`, typed by the `datasets` `features`) atomically; returns its path."""
    datasets = require("datasets", "train", "Writing Parquet explanations")
    parquet = require("pyarrow.parquet", "train", "Writing Parquet explanations")
    buffer = io.BytesIO()
    # the table of a `Dataset` carries its features in the schema metadata, which `load_dataset` reads back
    ordered = {name: rows[name] for name in features}  # the features' column order, whatever order rows came in
    parquet.write_table(datasets.Dataset.from_dict(ordered, features=features).data.table, buffer)
    path = shard_path(output_dir, index, count)
    write_atomically(path, buffer.getvalue())
    return path


__all__ = [
    "DATA_DIR",
    "MANIFEST_FILE",
    "ShardsOfAnotherRunError",
    "build_manifest",
    "check_output",
    "finished_shards",
    "model_fingerprint",
    "shard_name",
    "shard_path",
    "write_manifest",
    "write_shard",
]
