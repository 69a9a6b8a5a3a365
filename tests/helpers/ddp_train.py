"""Run by the data-parallel test under torchrun: trains on a tiny folder and records what this rank saw."""

import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from modeling_promptcam.training import SampleIdRecorder, TrainOptions, run_training  # noqa: E402
from modeling_promptcam.training.trainer import close_process_group  # noqa: E402
from tests.helpers.training import EndOfTraining  # noqa: E402

backbone, data_dir, output_dir, record_dir = sys.argv[1:5]
options = TrainOptions(
    backbone=backbone,
    data_dir=data_dir,
    output_dir=output_dir,
    epochs=2,
    warmup_epochs=1,
    batch_size=4,
    learning_rate=0.05,
    image_size=32,
    extra={"load_best_model_at_end": False},
)
recorder, end = SampleIdRecorder(), EndOfTraining()
run_training(options, callbacks=[recorder, end])
rank = int(os.environ.get("RANK", 0))
prompts = end.model.prompt_head.prompt_embeddings.detach()
record = {
    "rank": rank,
    "world_size": torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1,
    "backend": torch.distributed.get_backend_config() if torch.distributed.is_initialized() else None,
    "seen_sample_ids": recorder.seen_sample_ids,
    "prompts": prompts.flatten().tolist(),
}
with open(os.path.join(record_dir, f"rank{rank}.json"), "w") as handle:
    json.dump(record, handle)
close_process_group(wait_for_peers=True)  # the exit path of `promptcam train`
