"""Forward and training-step speed of Prompt-CAM's fast path, as ratios measured side by side in one process.

For ViT-B/16 and DINOv2-B/14 shapes (random weights), 224 px, batch 8:

- P1: our forward (logits only) at C = 200 / the plain backbone forward (`ViTModel` / `Dinov2Model`, SDPA);
- P2: our forward with trait maps for all classes / our forward with logits only (C = 200);
- P5: our forward at C = 1000 / our forward at C = 200;
- training step (forward + backward + SGD) of ours / of the straightforward path (prompts concatenated, every HF
  layer over the whole sequence: the official computation, the stand-in for the reference implementation).

Targets (shared docs, BENCHMARKS.md): P1 <= 1.10, P2 <= 1.10, P5 <= 1.8, training step <= 0.40.

    python benchmarks/bench_forward.py [--repeats 5] [--threads N] [--backbones vit dinov2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch
from transformers import Dinov2Config, ViTConfig

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from modeling_promptcam import PromptCamConfig, PromptCamForImageClassification  # noqa: E402
from tests.helpers.models import straightforward_forward  # noqa: E402

BACKBONES = {
    "vit": ("ViT-B/16", lambda: ViTConfig(layer_norm_eps=1e-6)),
    "dinov2": ("DINOv2-B/14", lambda: Dinov2Config(image_size=224)),
}
TARGETS = {"P1": 1.10, "P2": 1.10, "P5": 1.8, "train": 0.40}


def median_seconds(function, repeats: int) -> float:
    function()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def build(backbone: str, num_labels: int) -> PromptCamForImageClassification:
    torch.manual_seed(0)
    config = PromptCamConfig(backbone_config=BACKBONES[backbone][1](), num_labels=num_labels)
    return PromptCamForImageClassification(config).eval()


def training_step(model, forward, pixel_values, labels, optimizer):
    def step():
        optimizer.zero_grad(set_to_none=True)
        logits = forward(pixel_values)
        torch.nn.functional.cross_entropy(logits, labels).backward()
        optimizer.step()

    return step


def bench_backbone(backbone: str, batch: int, repeats: int) -> dict[str, float]:
    pixel_values = torch.randn(batch, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    times = {}
    with torch.no_grad():
        for num_labels in (200, 1000):
            model = build(backbone, num_labels)
            if num_labels == 200:
                times["plain"] = median_seconds(lambda m=model: m.backbone(pixel_values), repeats)
                times["maps"] = median_seconds(lambda m=model: m(pixel_values, output_trait_maps=True), repeats)
            times[f"ours_{num_labels}"] = median_seconds(lambda m=model: m(pixel_values), repeats)

    model = build(backbone, 200).train()
    labels = torch.arange(batch) % 200
    optimizer = torch.optim.SGD(model.prompt_head.parameters(), lr=0.01, momentum=0.9)
    times["train_ours"] = median_seconds(
        training_step(model, lambda x: model(x).logits, pixel_values, labels, optimizer), repeats
    )
    times["train_straightforward"] = median_seconds(
        training_step(
            model, lambda x: straightforward_forward(model, x, capture_maps=False)[0], pixel_values, labels, optimizer
        ),
        repeats,
    )
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats per measurement (median; default 5)")
    parser.add_argument("--batch", type=int, default=8, help="batch size (default 8)")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads (default: all cores)")
    parser.add_argument("--backbones", nargs="+", choices=sorted(BACKBONES), default=["vit", "dinov2"])
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, {args.threads} threads, float32, 224 px, batch {args.batch}, "
        f"median of {args.repeats}"
    )

    for backbone in args.backbones:
        times = bench_backbone(backbone, args.batch, args.repeats)
        name = BACKBONES[backbone][0]
        print(f"\n{name}")
        print(f"  plain backbone forward             {times['plain']:8.3f} s")
        print(f"  Prompt-CAM forward, C=200, logits  {times['ours_200']:8.3f} s")
        print(f"  Prompt-CAM forward, C=200, maps    {times['maps']:8.3f} s")
        print(f"  Prompt-CAM forward, C=1000, logits {times['ours_1000']:8.3f} s")
        print(f"  training step, Prompt-CAM          {times['train_ours']:8.3f} s")
        print(f"  training step, straightforward     {times['train_straightforward']:8.3f} s")
        ratios = {
            "P1": times["ours_200"] / times["plain"],
            "P2": times["maps"] / times["ours_200"],
            "P5": times["ours_1000"] / times["ours_200"],
            "train": times["train_ours"] / times["train_straightforward"],
        }
        for key, ratio in ratios.items():
            verdict = "meets" if ratio <= TARGETS[key] else "MISSES"
            print(f"  {key:6s} ratio {ratio:6.3f}   target <= {TARGETS[key]:.2f}  {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
