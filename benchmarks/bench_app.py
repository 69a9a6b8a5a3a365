"""Response time of the trait explorer (`promptcam app`) for one image on CPU, with a ViT-S/14-size model.

The model: a random-weight DINOv2-S/14 shape (hidden 384, 12 layers, 6 heads, patch 14, 224 px) with 200 classes,
built from its config (no download). The image: a 500 x 375 JPEG (a typical CUB photo size).

- `explain`: `TraitExplorer.explain`, the function the app's "Explain" event calls (read the file, classify, rank the
  predicted class's heads, draw the top-trait overlays, the head grid and, with a true class, true vs predicted),
  called from a worker thread as Gradio calls it (on a 2-core machine busy with other work, torch's parallel regions
  started from the main thread were measured 3 to 10 times slower than from a worker thread);
- `request`: the same through the running app over HTTP (gradio_client on 127.0.0.1: upload, queue, the event,
  PNG encoding of the figures, download of the result), i.e. what a user waits for, less the browser's drawing.

    python benchmarks/bench_app.py [--repeats 5] [--threads N] [--no-request]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import numpy as np
import torch
from PIL import Image
from transformers import Dinov2Config

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from modeling_promptcam import PromptCamConfig, PromptCamForImageClassification  # noqa: E402
from modeling_promptcam.app import TraitExplorer, build_app, launch  # noqa: E402

NUM_LABELS = 200


def vit_small_model() -> PromptCamForImageClassification:
    torch.manual_seed(0)
    backbone = Dinov2Config(
        hidden_size=384,
        num_hidden_layers=12,
        num_attention_heads=6,
        patch_size=14,
        image_size=224,
        layer_norm_eps=1e-6,
    )
    config = PromptCamConfig(
        backbone_config=backbone,
        num_labels=NUM_LABELS,
        id2label={i: f"class_{i:03d}" for i in range(NUM_LABELS)},
        label2id={f"class_{i:03d}": i for i in range(NUM_LABELS)},
    )
    return PromptCamForImageClassification(config).eval()


def timed(function, repeats: int) -> tuple[float, float]:
    """(first call, median of the next `repeats` calls) in seconds."""
    start = time.perf_counter()
    function()
    first = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return first, statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    parser.add_argument("--no-request", action="store_true", help="skip the HTTP round trip")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs")

    explorer = TraitExplorer(vit_small_model())
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "photo.jpg")
        pixels = np.random.default_rng(0).integers(0, 256, (375, 500, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(path, quality=90)
        settings = [
            ("paper blur, stop at misclassification", {}),
            ("paper blur, 4 traits, with a true class", {"stop": 4, "true_class": "class_007"}),
        ]
        with ThreadPoolExecutor(max_workers=1) as worker:
            for name, options in settings:
                call = partial(explorer.explain, path, **options)
                first, median = timed(lambda call=call: worker.submit(call).result(), args.repeats)
                print(f"explain ({name}): first {first:.2f} s, median {median:.2f} s")
        if args.no_request:
            return
        from gradio_client import Client, handle_file

        app = build_app(explorer)
        url = launch(app, port=None, block=False, quiet=True)
        try:
            client = Client(url, verbose=False)
            arguments = [None, None, "paper", "misclassified", 4, 0.5, 5]
            first, median = timed(lambda: client.predict(handle_file(path), *arguments, api_name="/explain"), 3)
            print(f"request over HTTP (upload, event, figures, download): first {first:.2f} s, median {median:.2f} s")
        finally:
            app.close()


if __name__ == "__main__":
    main()
