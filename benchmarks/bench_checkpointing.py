"""Peak training memory and step time of Prompt-CAM with and without activation checkpointing (CPU).

ViT-B/16 shape (random weights), 224 px, C = 200, batch 16, deep prompts, by default. Each variant runs in a fresh
process, so that its peak resident memory (the operating system's high-water mark, VmHWM, restarted once the model
and batch exist and one warm-up step ran) is its own: the peak training memory is that mark minus the memory held
then, i.e. what the training steps (activations saved for backward, gradients, optimizer state) add. CPU has no
allocator statistics like `torch.cuda.max_memory_allocated`, hence the operating system's count.

Targets (issue 14): peak training memory with checkpointing <= 0.5x without, step time <= 1.4x.

    python benchmarks/bench_checkpointing.py [--repeats 3] [--batch 16] [--classes 200] [--threads N]
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
import warnings

TARGETS = {"memory": 0.5, "time": 1.4}


def resident_bytes() -> int:
    """The process's resident memory now (Linux: /proc/self/statm)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def reset_peak_resident() -> None:
    """Restart the high-water mark of resident memory from now (Linux >= 4.0), so that a transient peak while the
    model was built does not count; where that is not allowed the mark stays the process's (an over-estimate)."""
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
    except OSError:
        pass


def peak_resident_bytes() -> int:
    """The high-water mark of resident memory (VmHWM) since the last reset, or since the process started."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def measure(checkpointed: bool, batch: int, num_labels: int, image_size: int, layers: int, repeats: int) -> dict:
    """One variant in this process: median step time (forward + backward + SGD) and peak memory the steps add."""
    import torch
    from transformers import ViTConfig

    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from modeling_promptcam import PromptCamConfig, PromptCamForImageClassification

    torch.manual_seed(0)
    backbone = ViTConfig(layer_norm_eps=1e-6, image_size=image_size, num_hidden_layers=layers)
    model = PromptCamForImageClassification(PromptCamConfig(backbone_config=backbone, num_labels=num_labels)).train()
    if checkpointed:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            model.gradient_checkpointing_enable()
    pixel_values = torch.randn(batch, 3, image_size, image_size)
    labels = torch.randint(0, num_labels, (batch,))
    optimizer = torch.optim.SGD(model.prompt_head.parameters(), lr=0.01)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        model(pixel_values, labels=labels).loss.backward()
        optimizer.step()

    step()  # warm-up: one-time costs (kernel caches, thread pools, optimizer state) are not the steps' memory
    optimizer.zero_grad(set_to_none=True)
    baseline = resident_bytes()
    reset_peak_resident()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    peak = peak_resident_bytes()
    return {"step_seconds": statistics.median(times), "peak_training_bytes": max(peak - baseline, 0)}


def run_variant(checkpointed: bool, arguments: argparse.Namespace) -> dict:
    command = [sys.executable, os.path.abspath(__file__), "--variant", "checkpointed" if checkpointed else "plain"]
    for name in ("repeats", "batch", "classes", "image_size", "layers", "threads"):
        command += [f"--{name.replace('_', '-')}", str(getattr(arguments, name))]
    # every allocation over 64 KiB gets its own mapping, returned to the system when freed, so that the resident
    # memory follows the live tensors instead of what the C allocator keeps cached
    environment = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    result = subprocess.run(command, capture_output=True, text=True, check=True, env=environment)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="timed steps per variant (median; default 3)")
    parser.add_argument("--batch", type=int, default=16, help="batch size (default 16)")
    parser.add_argument("--classes", type=int, default=200, help="number of classes C (default 200)")
    parser.add_argument("--image-size", type=int, default=224, help="image size in pixels (default 224)")
    parser.add_argument("--layers", type=int, default=12, help="backbone layers (default 12, ViT-B)")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads (default: all cores)")
    parser.add_argument("--variant", choices=["plain", "checkpointed"], help=argparse.SUPPRESS)
    arguments = parser.parse_args(argv)

    if arguments.variant:  # the child process: one variant, one JSON line
        import torch

        torch.set_num_threads(arguments.threads)
        result = measure(
            arguments.variant == "checkpointed",
            arguments.batch,
            arguments.classes,
            arguments.image_size,
            arguments.layers,
            arguments.repeats,
        )
        print(json.dumps(result))
        return 0

    plain = run_variant(False, arguments)
    checkpointed = run_variant(True, arguments)
    ratios = {
        "memory": checkpointed["peak_training_bytes"] / max(plain["peak_training_bytes"], 1),
        "time": checkpointed["step_seconds"] / plain["step_seconds"],
    }
    print(
        f"ViT-B/16 shape, {arguments.image_size} px, C = {arguments.classes}, batch {arguments.batch}, "
        f"{arguments.layers} layers, {arguments.threads} threads"
    )
    for name, result in (("without checkpointing", plain), ("with checkpointing", checkpointed)):
        print(
            f"  {name:22s} step {result['step_seconds']:.3f} s, "
            f"peak training memory {result['peak_training_bytes'] / 2**20:.0f} MiB"
        )
    failed = False
    for name, ratio in ratios.items():
        verdict = "ok" if ratio <= TARGETS[name] else "MISSED"
        failed |= ratio > TARGETS[name]
        print(f"  {name} ratio (with / without): {ratio:.2f} (target <= {TARGETS[name]}) {verdict}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
