"""Prompt-CAM at many classes: forward time and peak memory against the plain backbone, on CPU.

Random ViT-B/16 weights, 224 px, batch 8, float32, median of 3 timed forwards (after one warm-up forward, which also
fills the model's cache of image-independent prompt states; its time is reported as `first_s`). Each variant runs in
its own subprocess, so that its peak RSS (`ru_maxrss`) is its own:

- the plain backbone (`ViTModel`, SDPA), logits of nothing: the reference of every ratio;
- Prompt-CAM, logits only, at C = 200, 1,000 and 10,000, each with `num_agnostic_prompts` None (the paper's C
  prompts per layer) and 50;
- `score_classes` with 20 candidates per image at C = 10,000, K = 50.

Targets (issue 19): with K = 50 at C = 10,000, forward <= 4.5x the plain backbone and peak RSS <= 3x; score_classes
<= 1.3x; with K = None at C = 10,000, forward <= 7.5x. Prints a table and writes JSON (`--out`).

    python benchmarks/bench_scale.py [--repeats 3] [--threads N] [--out bench_scale.json]
    python benchmarks/bench_scale.py --quick   # a tiny smoke run (seconds): tiny backbone, C = 20 and 100
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

# (C, K, number of score_classes candidates or None); K None: the paper's C agnostic prompts per layer
FULL = {
    "backbone": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072),
    "image_size": 224,
    "patch_size": 16,
    "batch": 8,
    "variants": [(c, k, None) for c in (200, 1000, 10000) for k in (None, 50)] + [(10000, 50, 20)],
}
QUICK = {
    "backbone": dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64),
    "image_size": 32,
    "patch_size": 8,
    "batch": 2,
    "variants": [(c, k, None) for c in (20, 100) for k in (None, 5)] + [(100, 5, 4)],
}
# ratio targets: (C, K, candidates) -> (time ratio, peak RSS ratio or None); the quick run has none
TARGETS = {(10000, 50, None): (4.5, 3.0), (10000, 50, 20): (1.3, None), (10000, None, None): (7.5, None)}


def variant_name(num_labels: int | None, agnostic: int | None, candidates: int | None) -> str:
    if num_labels is None:
        return "plain backbone"
    name = f"C={num_labels} K={'C' if agnostic is None else agnostic}"
    return name + (f" score_classes={candidates}" if candidates else "")


def worker(spec: dict) -> dict:
    """One variant in this process: build, warm up, time; returns times and this process's peak RSS."""
    import torch
    from transformers import ViTConfig, ViTModel

    from modeling_promptcam import PromptCamConfig, PromptCamForImageClassification

    torch.set_num_threads(spec["threads"])
    torch.manual_seed(0)
    backbone_config = ViTConfig(
        image_size=spec["image_size"], patch_size=spec["patch_size"], layer_norm_eps=1e-6, **spec["backbone"]
    )
    size, batch = spec["image_size"], spec["batch"]
    pixel_values = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(0))
    if spec["num_labels"] is None:
        model = ViTModel(backbone_config, add_pooling_layer=False).eval()

        def forward():
            return model(pixel_values)
    else:
        config = PromptCamConfig(
            backbone_config=backbone_config,
            num_labels=spec["num_labels"],
            num_agnostic_prompts=spec["agnostic"],
        )
        model = PromptCamForImageClassification(config).eval()
        options = {}
        if spec["candidates"]:
            candidates = torch.randint(0, spec["num_labels"], (batch, spec["candidates"]), generator=None)
            options["score_classes"] = candidates

        def forward():
            return model(pixel_values, **options)

    with torch.inference_mode():
        start = time.perf_counter()
        forward()  # warm-up; fills the cache of image-independent prompt states
        first = time.perf_counter() - start
        times = []
        for _ in range(spec["repeats"]):
            start = time.perf_counter()
            forward()
            times.append(time.perf_counter() - start)
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return {"median_s": statistics.median(times), "first_s": first, "times_s": times, "peak_rss_gb": peak_kib / 2**20}


def run_variant(spec: dict) -> dict:
    """`worker(spec)` in a fresh Python process (so that the peak RSS is the variant's own)."""
    completed = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--worker", json.dumps(spec)],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", "")},
    )
    if completed.returncode != 0:
        raise RuntimeError(
            f"{variant_name(spec['num_labels'], spec['agnostic'], spec['candidates'])} failed:\n"
            f"{completed.stderr[-4000:]}"
        )
    return json.loads(completed.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="timed forwards per variant (median; default 3)")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads (default: all cores)")
    parser.add_argument("--out", default="bench_scale.json", help="JSON results (default: bench_scale.json)")
    parser.add_argument("--quick", action="store_true", help="tiny smoke run: tiny backbone, C = 20 and 100, batch 2")
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # internal: run one variant, print its JSON
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return 0
    if args.repeats < 1 or args.threads < 1:
        parser.error("--repeats and --threads must be at least 1")

    setup = QUICK if args.quick else FULL
    common = {key: setup[key] for key in ("backbone", "image_size", "patch_size", "batch")}
    common.update(repeats=args.repeats, threads=args.threads)
    import torch

    print(
        f"torch {torch.__version__}, {args.threads} threads, float32, {setup['image_size']} px, batch "
        f"{setup['batch']}, median of {args.repeats}; hidden size {setup['backbone']['hidden_size']}, "
        f"{setup['backbone']['num_hidden_layers']} layers" + (" (quick smoke run)" if args.quick else "")
    )
    rows = []
    for num_labels, agnostic, candidates in [(None, None, None)] + setup["variants"]:
        spec = {**common, "num_labels": num_labels, "agnostic": agnostic, "candidates": candidates}
        name = variant_name(num_labels, agnostic, candidates)
        print(f"  running {name} ...", flush=True)
        rows.append(
            {
                "variant": name,
                "num_labels": num_labels,
                "num_agnostic_prompts": agnostic,
                "score_candidates": candidates,
                **run_variant(spec),
            }
        )
    plain = rows[0]
    print(
        f"\n{'variant':34s} {'forward s':>10s} {'first s':>9s} {'x plain':>8s} {'peak RSS GB':>12s} "
        f"{'x plain':>8s}  target"
    )
    for row in rows:
        row["time_ratio"] = row["median_s"] / plain["median_s"]
        row["rss_ratio"] = row["peak_rss_gb"] / plain["peak_rss_gb"]
        key = (row["num_labels"], row["num_agnostic_prompts"], row["score_candidates"])
        target = TARGETS.get(key) if not args.quick else None
        verdict = ""
        if target is not None:
            row["time_target"], row["rss_target"] = target
            met = row["time_ratio"] <= target[0] and (target[1] is None or row["rss_ratio"] <= target[1])
            verdict = f"time <= {target[0]}x" + (f", RSS <= {target[1]}x" if target[1] else "")
            verdict += ": meets" if met else ": MISSES"
        print(
            f"{row['variant']:34s} {row['median_s']:10.3f} {row['first_s']:9.3f} {row['time_ratio']:8.2f} "
            f"{row['peak_rss_gb']:12.2f} {row['rss_ratio']:8.2f}  {verdict}"
        )
    from modeling_promptcam.files import write_json_atomically

    result = {"settings": {**common, "quick": args.quick, "torch": torch.__version__}, "results": rows}
    write_json_atomically(args.out, result)
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
