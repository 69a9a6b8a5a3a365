"""Whole-dataset explanation: `promptcam explain --data-dir DIR | --dataset NAME_OR_PATH --format parquet`.

Images stream through the model in batches; each row of the output holds the image's id, its true class when known,
the top-k classes and their probabilities, the head ranking and top traits of the predicted class and of the true
class, and both classes' trait maps as float16 arrays (columns: [`features`], docs/traits.md). Rows are written in
numbered Parquet shards (explain/shards.py), so an interrupted run resumes where it stopped, and under
`accelerate launch` / `torchrun` each process takes its share of the unfinished shards (Accelerate's `PartialState`)
and writes them itself: the shards together hold every image exactly once, in source order.
"""

from __future__ import annotations

import dataclasses
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import torch

from ..extras import require
from ..files import ModelFolderError, check_model_folder
from .explanation import resolve_class
from .options import ExplainOptions, ExplainUsageError
from .shards import (
    DATA_DIR,
    build_manifest,
    check_output,
    finished_shards,
    model_fingerprint,
    shard_path,
    write_manifest,
    write_shard,
)
from .sources import DatasetImages, ImageFiles, ImageFolder, ImageSource

# the failures listed by `promptcam explain` before "... and N more"
LISTED_FAILURES = 20
DEFAULT_TOP_K = next(f.default for f in dataclasses.fields(ExplainOptions) if f.name == "top_k")


@dataclass
class ExplainDatasetResult:
    """What [`explain_dataset`] did (the numbers are the whole run's, over every process).

    Attributes:
        output_dir: the output folder (`manifest.json`, `README.md`, `data/shard-*.parquet`).
        images: the images of the source.
        shards: the shards of the run.
        resumed: the shards found finished from an earlier run and not redone.
        failures: (image id, why) of the images that could not be read (their rows hold the reason in `error`).
        world_size: the processes that shared the work.
    """

    output_dir: str
    images: int
    shards: int
    resumed: int
    failures: list[tuple[str, str]] = field(default_factory=list)
    world_size: int = 1

    @property
    def ok(self) -> bool:
        """True when every image could be read."""
        return not self.failures

    @property
    def errors(self) -> list[str]:
        """One line per failure (the first `LISTED_FAILURES`, then how many more), as `promptcam explain` prints."""
        lines = [f"{image_id}: {reason}" for image_id, reason in self.failures[:LISTED_FAILURES]]
        if len(self.failures) > LISTED_FAILURES:
            lines.append(f"... and {len(self.failures) - LISTED_FAILURES} more (the 'error' column of the dataset)")
        return lines


def features(top_k: int, heads: int, grid: tuple[int, int]):
    """The columns of a row, as `datasets` features (they travel in each shard's schema, so `load_dataset` restores
    them):

    - `image_id` (string): the path relative to `--data-dir`, the path as given for image files, or `<split>/<row>`;
      `path` (string): the image file, when there is one; `split` (string); `index` (int64): the position in the
      source, which orders the rows;
    - `label` (int64): the true class as an index into the model's classes, when known; `label_name` (string): the
      true class as the data names it; `correct` (bool): whether the prediction is the true class;
    - `predicted` (int64), `predicted_name` (string): the top class; `top_k_labels` (int64 x k), `top_k_names`
      (string x k), `top_k_scores` (float32 x k): the k best classes and their softmax probabilities, best first;
    - `predicted_ranked_heads`, `predicted_top_traits` (int32 lists), `predicted_misclassified_after` (int32): the
      predicted class's `TraitRanking`; `predicted_trait_maps` (float16, heads x grid_h x grid_w): its trait maps;
    - `true_*`: the same for the true class (equal to `predicted_*` when the prediction is right; null when the true
      class is not known);
    - `error` (string): why the image could not be read (every model column of that row is null).
    """
    datasets = require("datasets", "train", "Writing Parquet explanations")
    Value, List, Array3D = datasets.Value, datasets.List, datasets.Array3D
    columns = {
        "image_id": Value("string"),
        "path": Value("string"),
        "split": Value("string"),
        "index": Value("int64"),
        "label": Value("int64"),
        "label_name": Value("string"),
        "correct": Value("bool"),
        "predicted": Value("int64"),
        "predicted_name": Value("string"),
        "top_k_labels": List(Value("int64"), length=top_k),
        "top_k_names": List(Value("string"), length=top_k),
        "top_k_scores": List(Value("float32"), length=top_k),
    }
    for side in ("predicted", "true"):
        columns[f"{side}_ranked_heads"] = List(Value("int32"))
        columns[f"{side}_top_traits"] = List(Value("int32"))
        columns[f"{side}_misclassified_after"] = Value("int32")
        columns[f"{side}_trait_maps"] = Array3D((heads, *grid), "float16")
    columns["error"] = Value("string")
    return datasets.Features(columns)


def open_source(options: ExplainOptions) -> ImageSource:
    """The [`ImageSource`] the options name."""
    if options.source == "data_dir":
        return ImageFolder(options.data_dir, options.split)
    if options.source == "dataset":
        return DatasetImages(
            options.dataset,
            options.split,
            options.image_column,
            options.label_column,
            label_column_given=options.label_column != "label",
        )
    return ImageFiles(options.images)


def explain_dataset(options: ExplainOptions) -> ExplainDatasetResult:
    """Explain every image of the source in `options` (image files, `data_dir` or `dataset`) into a Parquet dataset
    in `options.output_dir` (module docstring; columns: [`features`]).

    Before any work: the options' combination ([`ExplainOptions.check_combination`]); the model folder; `top_k` at
    most the model's class count (every row has k classes; the default 5 becomes the class count of a model with
    fewer classes); the source (a dataset without the image column is
    refused, naming its columns); an output folder holding another run's shards (another model, other settings or
    other images) is refused, naming what differs. An image that cannot be read gets a row with its `error`; the
    others are explained.
    """
    from tqdm.auto import tqdm
    from transformers import AutoImageProcessor

    from ..modeling_promptcam import PromptCamConfig, PromptCamForImageClassification, parse_stop_rule

    options.check_combination()
    if options.output_format != "parquet":
        raise ExplainUsageError("explain_dataset writes --format parquet; explain_images writes the HTML report.")
    require("accelerate", "train", "Explaining a dataset")  # before any work: the process state needs it
    check_model_folder(options.model)
    config = PromptCamConfig.from_pretrained(options.model)
    top_k = options.top_k
    if top_k > config.num_labels and top_k == DEFAULT_TOP_K:
        top_k = config.num_labels  # the default of 5 lists every class of a smaller model
    if top_k > config.num_labels:
        raise ValueError(
            f"--top-k {options.top_k} is more than the model's {config.num_labels} classes; every row lists top-k "
            f"classes, so pass --top-k {config.num_labels} or less."
        )
    stop = parse_stop_rule(options.stop, config.backbone_config.num_attention_heads)
    source = open_source(options)
    labels = true_classes(source, config)

    settings = {
        "source": source.kind,
        "location": os.path.abspath(source.location) if os.path.exists(source.location) else source.location,
        "split": options.split,
        "image_column": options.image_column if source.kind == "dataset" else None,
        "label_column": options.label_column if source.kind == "dataset" else None,
        "top_k": top_k,
        "blur": options.blur,
        "stop": stop,
    }
    image_ids = [record.image_id for record in source.records]
    manifest = build_manifest(model_fingerprint(options.model), settings, image_ids, options.shard_size)
    found = check_output(options.output_dir, manifest)  # another run's folder is refused before the model loads
    count = manifest["shards"]

    state = process_state()
    try:
        model = PromptCamForImageClassification.from_pretrained(options.model).eval().to(state.device)
        processor = AutoImageProcessor.from_pretrained(options.model)
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as error:  # what transformers raises
        raise ModelFolderError(
            f"cannot load the model in {options.model} ({type(error).__name__}: {error}); save or convert it again."
        ) from error

    def rows_in(index: int) -> int:
        return min(options.shard_size, len(source) - index * options.shard_size)

    # every process has checked the folder before the main process adds to it (a process still checking would see
    # a folder with files but no manifest yet and refuse it)
    state.wait_for_everyone()
    if found is None and state.is_main_process:
        write_manifest(options.output_dir, manifest)
    state.wait_for_everyone()
    done = finished_shards(options.output_dir, count, rows_in)
    state.wait_for_everyone()  # every process has listed the finished shards before any writes a new one
    pending = [index for index in range(count) if index not in done]

    image_size = _image_size(processor, config)
    grid = (image_size[0] // config.backbone_config.patch_size, image_size[1] // config.backbone_config.patch_size)
    columns = features(top_k, config.backbone_config.num_attention_heads, grid)
    explainer = _BatchExplainer(model, source, labels, top_k, options.blur, stop)
    with state.split_between_processes(pending) as mine:
        total = sum(rows_in(index) for index in mine)
        bar = tqdm(
            total=total,
            desc="explaining",
            unit="images",
            disable=not options.progress or not state.is_local_main_process,
        )
        with bar, ThreadPoolExecutor(max_workers=1) as reader:
            for index in mine:
                start = index * options.shard_size
                rows = explainer.shard(processor, reader, start, start + rows_in(index), options.batch_size, bar)
                write_shard(options.output_dir, index, count, rows, columns)
    state.wait_for_everyone()
    failures = _failures(options.output_dir, count)
    return ExplainDatasetResult(options.output_dir, len(source), count, len(done), failures, state.num_processes)


def process_state():
    """Accelerate's `PartialState` of this process: under `accelerate launch` / `torchrun` the process group (NCCL on
    GPUs; gloo, or MPI under mpirun, on a machine without an accelerator, where Accelerate must be told `cpu=True` to
    start one), else a single process."""
    accelerate = require("accelerate", "train", "Explaining a dataset")
    accelerator = getattr(torch, "accelerator", None)
    available = accelerator.is_available() if accelerator is not None else torch.cuda.is_available()
    return accelerate.PartialState(cpu=not available)


def true_classes(source: ImageSource, config) -> list[int | None]:
    """Each image's true class as an index into the model's classes (None when unknown): a class index the data
    gives, or its class name matched by `resolve_class` (an exact name or an `NNN.Class_Name` folder). Raises
    `ValueError` for an index that is not a class of the model."""
    labels = []
    for record in source.records:
        if record.label_index is not None:
            if not 0 <= record.label_index < config.num_labels:
                raise ValueError(
                    f"{record.image_id}: label {record.label_index} is not a class of the model (0 .. "
                    f"{config.num_labels - 1}); the label column must hold the model's class indices or class names."
                )
            labels.append(record.label_index)
        else:
            labels.append(resolve_class(config, record.label_name) if record.label_name is not None else None)
    return labels


class _BatchExplainer:
    """Rows of the output for runs of a source's images, computed a batch at a time."""

    def __init__(self, model, source: ImageSource, labels: list[int | None], top_k: int, blur: str, stop):
        self.model, self.source, self.labels = model, source, labels
        self.top_k, self.blur, self.stop = top_k, blur, stop
        self.names = [str(model.config.id2label[i]) for i in range(model.config.num_labels)]

    def shard(self, processor, reader, start: int, stop: int, batch_size: int, bar) -> dict[str, list]:
        """The columns of rows `start` to `stop - 1`; the next batch's images are read while the model runs."""
        rows: dict[str, list] = {}
        starts = list(range(start, stop, batch_size))
        upcoming = reader.submit(self._prepare, processor, starts[0], min(starts[0] + batch_size, stop))
        for number, low in enumerate(starts):
            high = min(low + batch_size, stop)
            prepared = upcoming.result()
            if number + 1 < len(starts):
                following = starts[number + 1]
                upcoming = reader.submit(self._prepare, processor, following, min(following + batch_size, stop))
            for name, values in self._rows(low, high, *prepared).items():
                rows.setdefault(name, []).extend(values)
            bar.update(high - low)
        return rows

    def _prepare(self, processor, low: int, high: int):
        """Read images `low` .. `high - 1` and turn the readable ones into `pixel_values`."""
        images = self.source.read(low, high)
        readable = [k for k, image in enumerate(images) if not isinstance(image, str)]
        pixel_values = None
        if readable:
            pixel_values = processor([images[k] for k in readable], return_tensors="pt").pixel_values
        return images, readable, pixel_values

    @torch.no_grad()
    def _rows(self, low: int, high: int, images, readable, pixel_values) -> dict[str, list]:
        model, count = self.model, high - low
        rows = {name: [None] * count for name in _MODEL_COLUMNS}
        records = self.source.records[low:high]
        labels = self.labels[low:high]
        rows["image_id"] = [r.image_id for r in records]
        rows["path"] = [r.path for r in records]
        rows["split"] = [r.split for r in records]
        rows["index"] = list(range(low, high))
        rows["label"] = labels
        # for image files the parent folder is only a guess at the class: named only when it is a model class
        rows["label_name"] = [
            (r.label_name if self.source.kind != "images" or label is not None else None)
            if r.label_index is None
            else self.names[label]
            for r, label in zip(records, labels)
        ]
        rows["error"] = [image if isinstance(image, str) else None for image in images]
        if not readable:
            return rows
        pixel_values = pixel_values.to(model.device, model.dtype)
        output = model(pixel_values, trait_map_top_k=1)
        predicted = output.trait_map_classes[:, 0]
        probabilities = output.logits.float().softmax(-1).cpu()
        best = probabilities.topk(self.top_k, dim=-1)
        top_labels, top_scores, chosen = best.indices.clone(), best.values.clone(), predicted.cpu()
        # a tie at the top: list the class the maps were drawn for first (its probability is the same)
        for row in torch.nonzero(top_labels[:, 0] != chosen).flatten().tolist():
            order = [int(chosen[row])] + [int(c) for c in top_labels[row] if int(c) != int(chosen[row])]
            top_labels[row] = torch.tensor(order[: self.top_k])
            top_scores[row] = probabilities[row, top_labels[row]]
        predicted_maps = output.trait_maps[:, 0].to(torch.float16).cpu().numpy()
        predicted_rankings = model.rank_traits(pixel_values, target_classes=predicted, blur=self.blur, stop=self.stop)

        known = [labels[k] for k in readable]
        other = [j for j, label in enumerate(known) if label is not None and label != int(chosen[j])]
        true_maps, true_rankings = {}, {}
        if other:
            subset = pixel_values[other]
            targets = torch.tensor([known[j] for j in other], device=pixel_values.device)
            maps = model(subset, trait_map_classes=targets[:, None]).trait_maps[:, 0].to(torch.float16).cpu().numpy()
            rankings = model.rank_traits(subset, target_classes=targets, blur=self.blur, stop=self.stop)
            true_maps, true_rankings = dict(zip(other, maps)), dict(zip(other, rankings))

        for j, k in enumerate(readable):
            label, top = known[j], int(chosen[j])
            rows["predicted"][k] = top
            rows["predicted_name"][k] = self.names[top]
            rows["top_k_labels"][k] = top_labels[j].tolist()
            rows["top_k_names"][k] = [self.names[c] for c in rows["top_k_labels"][k]]
            rows["top_k_scores"][k] = top_scores[j].tolist()
            _put_ranking(rows, "predicted", k, predicted_rankings[j], predicted_maps[j])
            if label is not None:
                rows["correct"][k] = label == top
                if label == top:
                    _put_ranking(rows, "true", k, predicted_rankings[j], predicted_maps[j])
                else:
                    _put_ranking(rows, "true", k, true_rankings[j], true_maps[j])
        return rows


_RANKING_COLUMNS = ("ranked_heads", "top_traits", "misclassified_after", "trait_maps")
# the columns left null in the row of an image that cannot be read
_MODEL_COLUMNS = (
    "correct",
    "predicted",
    "predicted_name",
    "top_k_labels",
    "top_k_names",
    "top_k_scores",
    *(f"{side}_{name}" for side in ("predicted", "true") for name in _RANKING_COLUMNS),
)


def _put_ranking(rows: dict, side: str, k: int, ranking, maps: np.ndarray) -> None:
    rows[f"{side}_ranked_heads"][k] = list(ranking.ranked_heads)
    rows[f"{side}_top_traits"][k] = list(ranking.top_traits)
    rows[f"{side}_misclassified_after"][k] = ranking.misclassified_after
    rows[f"{side}_trait_maps"][k] = maps


def _image_size(processor, config) -> tuple[int, int]:
    """The (height, width) the image processor resizes to (the trait-map grid follows from it)."""
    size = getattr(processor, "size", None)

    def read(key):
        try:
            return size[key]
        except (KeyError, TypeError, IndexError):
            return getattr(size, key, None)

    if read("height") and read("width"):
        return int(read("height")), int(read("width"))
    if read("shortest_edge"):
        return int(read("shortest_edge")), int(read("shortest_edge"))
    side = config.backbone_config.image_size
    return (side, side) if isinstance(side, int) else tuple(side)


def _failures(output_dir: str, count: int) -> list[tuple[str, str]]:
    """(image id, why) of every row with an `error`, read back from the shards (every process's rows)."""
    parquet = require("pyarrow.parquet", "train", "Writing Parquet explanations")
    failures = []
    for index in range(count):
        table = parquet.read_table(shard_path(output_dir, index, count), columns=["image_id", "error"])
        for image_id, error in zip(table.column("image_id").to_pylist(), table.column("error").to_pylist()):
            if error is not None:
                failures.append((image_id, error))
    return failures


__all__ = [
    "DATA_DIR",
    "ExplainDatasetResult",
    "explain_dataset",
    "features",
    "open_source",
    "process_state",
    "true_classes",
]
