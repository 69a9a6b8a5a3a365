"""Greedy trait ranking of all heads for one image: ours against the naive loop of full forward passes.

ViT-B/16 shape (random weights, random prompts), C = 200, 224 px, one image, blur="official" (the official code's
loop: one full forward pass per candidate head and step, 78 passes for 12 heads). Ours runs the backbone once and
re-evaluates only the target prompt's row of the last layer, batched over the candidate heads.

Target (BENCHMARKS.md, P4): ours / naive <= 1/50, with the same head order.

    python benchmarks/bench_traits.py [--repeats 3] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch
from transformers import ViTConfig

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from modeling_promptcam import PromptCamConfig, PromptCamForImageClassification  # noqa: E402
from tests.helpers.models import naive_rank_traits  # noqa: E402

TARGET = 1 / 50


def timed(function, repeats: int, warm_up: bool) -> tuple[float, object]:
    result = function() if warm_up else None
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats (median; default 3)")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads (default: all cores)")
    parser.add_argument("--num-labels", type=int, default=200, help="classes C (default 200)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    config = PromptCamConfig(backbone_config=ViTConfig(layer_norm_eps=1e-6), num_labels=args.num_labels)
    model = PromptCamForImageClassification(config).eval()
    with torch.no_grad():
        # trained-like prompts: random prompts would make all classes nearly equal
        model.prompt_head.prompt_embeddings.normal_(0, 1)
    pixel_values = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    target = int(model(pixel_values).logits.argmax())

    print(
        f"torch {torch.__version__}, {args.threads} threads, float32, ViT-B/16, 224 px, C = {args.num_labels}, "
        f"1 image, 12 heads, blur=official, median of {args.repeats}"
    )
    ours_time, ranking = timed(
        lambda: model.rank_traits(pixel_values, target_classes=torch.tensor([target]), blur="official")[0],
        args.repeats,
        warm_up=True,
    )
    with torch.no_grad():
        naive_time, (naive_order, _) = timed(
            lambda: naive_rank_traits(model, pixel_values, target, "official"), args.repeats, warm_up=False
        )
    same = ranking.blur_order == naive_order
    ratio = ours_time / naive_time
    print(f"  naive loop of full forwards   {naive_time:8.3f} s")
    print(f"  rank_traits                   {ours_time:8.3f} s")
    print(f"  ratio {ratio:.4f} (1/{1 / ratio:.0f})   target <= 1/50  {'meets' if ratio <= TARGET else 'MISSES'}")
    print(f"  same head order: {same}  ({ranking.blur_order})")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
