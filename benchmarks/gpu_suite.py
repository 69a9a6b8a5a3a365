"""The GPU suite: Prompt-CAM's speed and memory on one CUDA device, ready to run when a GPU is at hand.

Random weights of the ViT-B/16 and DINOv2-B/14 shapes, 224 px, SDPA attention, median of `--repeats` after warm-up
(CUDA-synchronised timings). It measures, in one run:

1. forward ratios in float32 and bfloat16 (weights and images in that dtype), batch `--batch` (default 8), with the
   definitions of benchmarks/bench_forward.py: P1 = our forward (logits) at C = 200 / the plain backbone forward;
   P2 = our forward with trait maps of all classes / logits only (C = 200); P5 = our forward at C = 1,000 / at
   C = 200;
2. the training step (forward + backward + SGD on the prompts and head, float32, C = 200) of ours / of the
   straightforward path (prompts concatenated, every HF layer over the whole sequence: the official computation);
3. peak memory (`torch.cuda.max_memory_allocated`, model weights included) of one float32 training step at batch 16
   and 64, C = 200, 1,000, 10,000, with `num_agnostic_prompts` None (C per layer, the paper) and 50;
4. whole-dataset explanation throughput (images/s, ViT-B/16, C = 200, float32): a batched forward with the top
   class's trait maps plus `rank_traits` of that class, over random images (decoding excluded), next to the plain
   backbone's classification throughput on the same images.

Writes one JSON (`--out`) and prints a table. Without CUDA it prints one line and exits 0.

    python benchmarks/gpu_suite.py [--out gpu_suite.json] [--repeats 10] [--batch 8]
    python benchmarks/gpu_suite.py --smoke-cpu   # the same steps at tiny sizes on the CPU (checks the script only)
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

NO_CUDA_MESSAGE = "gpu_suite: no CUDA device (torch.cuda.is_available() is False); nothing measured, nothing written."

FULL = {
    "backbones": {
        "vit": ("ViT-B/16", dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12), 16),
        "dinov2": ("DINOv2-B/14", dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12), 14),
    },
    "image_size": 224,
    "memory_batches": (16, 64),
    "memory_classes": (200, 1000, 10000),
    "agnostic": 50,
    "ratio_classes": (200, 1000),
    "explain_images": 512,
    "explain_batch": 32,
}
SMOKE = {
    "backbones": {
        "vit": ("tiny ViT", dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64), 8),
        "dinov2": ("tiny DINOv2", dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, mlp_ratio=2), 8),
    },
    "image_size": 32,
    "memory_batches": (2, 4),
    "memory_classes": (20, 100),
    "agnostic": 5,
    "ratio_classes": (20, 100),
    "explain_images": 8,
    "explain_batch": 4,
}
TARGETS = {"P1": 1.10, "P2": 1.10, "P5": 1.8, "train": 0.40}  # shared docs, BENCHMARKS.md


def backbone_config(setup: dict, backbone: str):
    from transformers import Dinov2Config, ViTConfig

    _, shape, patch = setup["backbones"][backbone]
    size = setup["image_size"]
    if backbone == "vit":
        return ViTConfig(image_size=size, patch_size=patch, layer_norm_eps=1e-6, **shape)
    return Dinov2Config(image_size=size, patch_size=patch, **shape)


def build(setup: dict, backbone: str, num_labels: int, device, dtype=torch.float32, agnostic: int | None = None):
    from modeling_promptcam import PromptCamConfig, PromptCamForImageClassification

    torch.manual_seed(0)
    config = PromptCamConfig(
        backbone_config=backbone_config(setup, backbone), num_labels=num_labels, num_agnostic_prompts=agnostic
    )
    model = PromptCamForImageClassification(config)
    model.set_attn_implementation("sdpa")
    return model.to(device=device, dtype=dtype).eval()


def synchronize(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_seconds(function, repeats: int, device, warmup: int = 2) -> float:
    for _ in range(warmup):
        function()
    synchronize(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def images(setup: dict, batch: int, device, dtype=torch.float32) -> torch.Tensor:
    size = setup["image_size"]
    pixels = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(0))
    return pixels.to(device=device, dtype=dtype)


def forward_ratios(setup: dict, backbone: str, dtype, batch: int, repeats: int, device) -> dict:
    pixel_values = images(setup, batch, device, dtype)
    small, large = setup["ratio_classes"]
    times = {}
    # models are built outside inference mode: their parameters stay ordinary tensors (the prompt-state cache reads
    # their version counters)
    model = build(setup, backbone, small, device, dtype)
    with torch.inference_mode():
        times["plain_s"] = median_seconds(lambda: model.backbone(pixel_values), repeats, device)
        times["logits_s"] = median_seconds(lambda: model(pixel_values), repeats, device)
        times["maps_s"] = median_seconds(lambda: model(pixel_values, output_trait_maps=True), repeats, device)
    larger = build(setup, backbone, large, device, dtype)
    with torch.inference_mode():
        times["logits_large_s"] = median_seconds(lambda: larger(pixel_values), repeats, device)
    times["P1"] = times["logits_s"] / times["plain_s"]
    times["P2"] = times["maps_s"] / times["logits_s"]
    times["P5"] = times["logits_large_s"] / times["logits_s"]
    return times


def training_step(model, forward, pixel_values, labels):
    optimizer = torch.optim.SGD(model.prompt_head.parameters(), lr=0.01, momentum=0.9)

    def step():
        optimizer.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(forward(pixel_values), labels).backward()
        optimizer.step()

    return step


def training_ratio(setup: dict, backbone: str, batch: int, repeats: int, device) -> dict:
    from tests.helpers.models import straightforward_forward

    num_labels = setup["ratio_classes"][0]
    model = build(setup, backbone, num_labels, device).train()
    pixel_values = images(setup, batch, device)
    labels = (torch.arange(batch) % num_labels).to(device)
    ours = median_seconds(training_step(model, lambda x: model(x).logits, pixel_values, labels), repeats, device)

    def straightforward(x):
        return straightforward_forward(model, x, capture_maps=False)[0]

    reference = median_seconds(training_step(model, straightforward, pixel_values, labels), repeats, device)
    return {"ours_s": ours, "straightforward_s": reference, "train": ours / reference}


def training_memory(setup: dict, backbone: str, batch: int, num_labels: int, agnostic, device) -> dict:
    """Peak memory of one float32 training step (after one warm-up step), or the out-of-memory error."""
    try:
        return _training_memory(setup, backbone, batch, num_labels, agnostic, device)
    except torch.OutOfMemoryError as error:
        return {"peak_gb": None, "error": f"out of memory: {str(error).splitlines()[0]}"}
    finally:
        if device.type == "cuda":
            torch.cuda.empty_cache()


def _training_memory(setup: dict, backbone: str, batch: int, num_labels: int, agnostic, device) -> dict:
    model = build(setup, backbone, num_labels, device, agnostic=agnostic).train()
    pixel_values = images(setup, batch, device)
    labels = (torch.arange(batch) % num_labels).to(device)
    step = training_step(model, lambda x: model(x).logits, pixel_values, labels)
    step()
    if device.type != "cuda":
        return {"peak_gb": None, "weights_gb": None}
    synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    weights = torch.cuda.memory_allocated(device)
    start = time.perf_counter()
    step()
    synchronize(device)
    return {
        "peak_gb": torch.cuda.max_memory_allocated(device) / 2**30,
        "weights_gb": weights / 2**30,
        "step_s": time.perf_counter() - start,
    }


def explanation_throughput(setup: dict, device) -> dict:
    num_labels = setup["ratio_classes"][0]
    model = build(setup, "vit", num_labels, device)
    batch, total = setup["explain_batch"], setup["explain_images"]
    batches = [images(setup, batch, device) for _ in range(max(1, total // batch))]

    def explain():
        for pixel_values in batches:
            output = model(pixel_values, trait_map_top_k=1)
            model.rank_traits(pixel_values, target_classes=output.trait_map_classes[:, 0])

    def classify():
        for pixel_values in batches:
            model.backbone(pixel_values)

    count = batch * len(batches)
    with torch.inference_mode():
        explain_s = median_seconds(explain, 1, device, warmup=1)
        classify_s = median_seconds(classify, 1, device, warmup=1)
    return {
        "images": count,
        "explain_images_per_s": count / explain_s,
        "backbone_images_per_s": count / classify_s,
        "ratio": (count / explain_s) / (count / classify_s),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="gpu_suite.json", help="JSON results (default: gpu_suite.json)")
    parser.add_argument("--repeats", type=int, default=10, help="timed repeats per measurement (median; default 10)")
    parser.add_argument("--batch", type=int, default=8, help="batch of the forward and training ratios (default 8)")
    parser.add_argument(
        "--smoke-cpu", action="store_true", help="run every step at tiny sizes on the CPU (checks the script only)"
    )
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.batch < 1:
        parser.error("--repeats and --batch must be at least 1")
    if not args.smoke_cpu and not torch.cuda.is_available():
        print(NO_CUDA_MESSAGE)
        return 0
    setup = SMOKE if args.smoke_cpu else FULL
    device = torch.device("cpu" if args.smoke_cpu else "cuda")
    name = "CPU (smoke run)" if args.smoke_cpu else torch.cuda.get_device_name(device)
    print(f"gpu_suite on {name}: torch {torch.__version__}, SDPA, {setup['image_size']} px, median of {args.repeats}")
    result = {
        "device": name,
        "torch": torch.__version__,
        "settings": {"repeats": args.repeats, "batch": args.batch, "image_size": setup["image_size"]},
        "forward": {},
        "training": {},
        "memory": [],
    }

    print(f"\nforward ratios, batch {args.batch}")
    for backbone, (label, _, _) in setup["backbones"].items():
        for dtype in (torch.float32, torch.bfloat16):
            ratios = forward_ratios(setup, backbone, dtype, args.batch, args.repeats, device)
            result["forward"][f"{backbone}/{str(dtype).removeprefix('torch.')}"] = ratios
            verdicts = "  ".join(
                f"{key} {ratios[key]:.3f} ({'meets' if ratios[key] <= TARGETS[key] else 'MISSES'} <= {TARGETS[key]})"
                for key in ("P1", "P2", "P5")
            )
            print(
                f"  {label:12s} {str(dtype).removeprefix('torch.'):9s} plain {ratios['plain_s'] * 1e3:8.2f} ms  {verdicts}"
            )

    print(f"\ntraining step (float32, C = {setup['ratio_classes'][0]}, batch {args.batch}) / straightforward path")
    for backbone, (label, _, _) in setup["backbones"].items():
        ratio = training_ratio(setup, backbone, args.batch, args.repeats, device)
        result["training"][backbone] = ratio
        verdict = "meets" if ratio["train"] <= TARGETS["train"] else "MISSES"
        print(
            f"  {label:12s} ours {ratio['ours_s'] * 1e3:8.2f} ms  straightforward {ratio['straightforward_s'] * 1e3:8.2f}"
            f" ms  ratio {ratio['train']:.3f} ({verdict} <= {TARGETS['train']})"
        )

    print("\npeak memory of a float32 training step (GB, weights included)")
    print(f"  {'backbone':12s} {'batch':>5s} {'C':>6s} {'K':>4s} {'peak GB':>9s}")
    for backbone, (label, _, _) in setup["backbones"].items():
        for batch in setup["memory_batches"]:
            for num_labels in setup["memory_classes"]:
                for agnostic in (None, setup["agnostic"]):
                    memory = training_memory(setup, backbone, batch, num_labels, agnostic, device)
                    result["memory"].append(
                        {
                            "backbone": backbone,
                            "batch": batch,
                            "num_labels": num_labels,
                            "num_agnostic_prompts": agnostic,
                            **memory,
                        }
                    )
                    shown = memory.get("error") or (
                        "n/a (CPU)" if memory["peak_gb"] is None else f"{memory['peak_gb']:9.2f}"
                    )
                    k = "C" if agnostic is None else str(agnostic)
                    print(f"  {label:12s} {batch:5d} {num_labels:6d} {k:>4s} {shown}")

    explanation = explanation_throughput(setup, device)
    result["explanation"] = explanation
    print(
        f"\nwhole-dataset explanation ({explanation['images']} images, forward + rank_traits of the top class): "
        f"{explanation['explain_images_per_s']:.1f} images/s; plain backbone {explanation['backbone_images_per_s']:.1f}"
        f" images/s; ratio {explanation['ratio']:.3f}"
    )
    from modeling_promptcam.files import write_json_atomically

    write_json_atomically(args.out, result)
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
