"""Consecutive 2-process data-parallel launches of a tiny `promptcam train`: does every launcher exit, every time?

Issue 15 item 7: twice in the test suite a 2-process launch finished training, wrote `final/`, and the launcher never
exited. This script repeats the launches the tests make (docs/training.md, "Data-parallel training"):

- `torchrun`: `python -m torch.distributed.run --nproc_per_node 2 -m modeling_promptcam train ...`
- `accelerate`: `accelerate launch --multi_gpu --num_processes 2 -m modeling_promptcam train ...` (torchrun inside)
- `accelerate-mpi`: `accelerate launch --cpu --num_processes 2 --mpirun_hostfile HOSTS ...` (needs Open MPI's mpirun)

each on a tiny random ViT and a 3-class folder of 24 + 6 images (one epoch, evaluation, final folder), with a timeout
per launch. A launch passes when the launcher exits 0 within the timeout and the run's `final/` and
`training_summary.json` (world size 2) exist. A launch that times out is reported with the processes still alive
(the launcher, its workers) and the Python stacks of those processes (`PYTHONFAULTHANDLER=1`, dumped on SIGABRT into
the launch's log), then its process group is killed.

    python benchmarks/ddp_launch_loop.py [--launches 21] [--launcher all|torchrun|accelerate|accelerate-mpi]
        [--timeout 300] [--workdir DIR]

Prints one line per launch (launcher, exit code, wall time, and how long after the main process wrote
`training_summary.json`, its last file, the launcher exited) and a summary; exits 1 if any launch hung or failed.
CPU only (gloo); each launch starts three or four Python processes, so run it on an otherwise idle machine for
meaningful wall times (the pass / hang count does not depend on that).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LAUNCHERS = ("torchrun", "accelerate", "accelerate-mpi")
CLASS_COLOURS = {"001.Red_Finch": (200, 40, 40), "002.Green_Finch": (40, 200, 40), "003.Blue_Finch": (40, 40, 200)}
TRAIN_FLAGS = ["--epochs", "1", "--warmup-epochs", "0", "--batch-size", "4", "--image-size", "32", "--lr", "0.05"]


def write_task(root: Path) -> tuple[Path, Path]:
    """A 3-class folder of noisy single-colour 32 x 32 images (8 train, 2 val per class) and a tiny random ViT."""
    import numpy as np
    import torch
    from PIL import Image
    from transformers import ViTConfig, ViTModel

    rng = np.random.default_rng(0)
    data = root / "data"
    for split, count in (("train", 8), ("val", 2)):
        for name, colour in CLASS_COLOURS.items():
            folder = data / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for index in range(count):
                noise = rng.normal(0, 30, (32, 32, 3))
                Image.fromarray(np.clip(np.asarray(colour) + noise, 0, 255).astype(np.uint8)).save(
                    folder / f"{index}.png"
                )
    torch.manual_seed(0)
    config = ViTConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, image_size=32, patch_size=8
    )
    backbone = root / "backbone"
    ViTModel(config, add_pooling_layer=False).save_pretrained(backbone)
    return data, backbone


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def launch_command(launcher: str, data: Path, backbone: Path, output: Path, hosts: Path) -> list[str]:
    train = ["-m", "modeling_promptcam", "train", "--backbone", str(backbone), "--data-dir", str(data)]
    train += ["--output-dir", str(output), *TRAIN_FLAGS]
    port = str(free_port())
    if launcher == "torchrun":
        return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", port, *train]
    accelerate = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "2", "--num_machines", "1"]
    accelerate += ["--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", port]
    if launcher == "accelerate":
        return [*accelerate, "--multi_gpu", *train]
    return [*accelerate, "--cpu", "--mpirun_hostfile", str(hosts), *train]


MARKER = "PROMPTCAM_LAUNCH_LOOP"  # set in each launch's environment: finds its processes, even those in new sessions


def environment(index: int) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_"))}
    env.update(
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        OMP_NUM_THREADS="1",
        PYTHONPATH=str(REPO),
        PYTHONFAULTHANDLER="1",  # a hung process dumps its Python stacks on SIGABRT
        OMPI_ALLOW_RUN_AS_ROOT="1",
        OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
    )
    env[MARKER] = f"{os.getpid()}-{index}"
    return env


def launch_processes(index: int) -> list[tuple[int, str]]:
    """The processes of launch `index` still running (torchrun starts its workers in sessions of their own, so they
    are found by the marker in their environment): pid and "state command line"."""
    marker = f"{MARKER}={os.getpid()}-{index}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if marker not in (entry / "environ").read_bytes().split(b"\0"):
                continue
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        found.append((int(entry.name), f"[{state}] {command[:200]}"))
    return found


def end_launch(index: int, process: subprocess.Popen) -> list[str]:
    """Dump the Python stacks of the launch's processes (SIGABRT, faulthandler), then kill them; returns what was
    alive."""
    alive = launch_processes(index)
    for pid, description in alive:
        if "python" in description:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGABRT)
    time.sleep(3)
    for pid, _ in launch_processes(index):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    process.wait()
    return [f"{pid} {description}" for pid, description in alive]


def run_launch(index: int, launcher: str, data: Path, backbone: Path, workdir: Path, hosts: Path, timeout: float):
    output = workdir / f"run-{index:02d}"
    log = workdir / f"launch-{index:02d}-{launcher}.log"
    command = launch_command(launcher, data, backbone, output, hosts)
    start = time.perf_counter()
    with open(log, "wb") as handle:
        process = subprocess.Popen(
            command, env=environment(index), cwd=workdir, stdout=handle, stderr=subprocess.STDOUT
        )
        try:
            code = process.wait(timeout=timeout)
            alive = []
            time.sleep(0.5)
            left_behind = end_launch(index, process) if launch_processes(index) else []  # orphans of the launcher
        except subprocess.TimeoutExpired:
            code, left_behind = None, []
            alive = end_launch(index, process)
    wall = time.perf_counter() - start
    summary_file = output / "training_summary.json"
    # how long the processes took to leave after the main process wrote the summary, its last file
    exit_lag = time.time() - summary_file.stat().st_mtime if summary_file.is_file() else None
    problem = None
    if code is None:
        problem = "hung; alive: " + "; ".join(alive)
    elif code != 0:
        problem = f"exit code {code}"
    elif left_behind:
        problem = "the launcher exited but left processes running: " + "; ".join(left_behind)
    else:
        if not (output / "final" / "config.json").is_file() or not summary_file.is_file():
            problem = "exit code 0 but no final/ or training_summary.json"
        elif json.loads(summary_file.read_text()).get("world_size") != 2:
            problem = "exit code 0 but the summary's world_size is not 2"
    return {
        "index": index,
        "launcher": launcher,
        "code": code,
        "wall": wall,
        "exit_lag": exit_lag,
        "problem": problem,
        "log": str(log),
    }


def _seconds(value: float | None) -> str:
    return "   n/a" if value is None else f"{value:5.1f} s"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--launches", type=int, default=21, help="consecutive launches (default: 21)")
    parser.add_argument(
        "--launcher",
        choices=("all", *LAUNCHERS),
        default="all",
        help="which launcher; 'all' takes them in turn (default: all; accelerate-mpi is left out without mpirun)",
    )
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds before a launch counts as hung (300)")
    parser.add_argument("--workdir", help="keep the runs and logs here (default: a temporary folder, deleted)")
    args = parser.parse_args()
    if args.launches < 1 or args.timeout <= 0:
        parser.error("--launches must be at least 1 and --timeout positive")

    launchers = list(LAUNCHERS) if args.launcher == "all" else [args.launcher]
    if shutil.which("mpirun") is None:
        if args.launcher == "accelerate-mpi":
            parser.error("accelerate-mpi needs mpirun (Debian: openmpi-bin)")
        launchers = [name for name in launchers if name != "accelerate-mpi"]
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="ddp-launch-loop-"))
    workdir.mkdir(parents=True, exist_ok=True)
    data, backbone = write_task(workdir)
    hosts = workdir / "hosts"
    hosts.write_text("localhost slots=2\n")

    results = []
    for index in range(args.launches):
        launcher = launchers[index % len(launchers)]
        result = run_launch(index, launcher, data, backbone, workdir, hosts, args.timeout)
        results.append(result)
        status = "ok" if result["problem"] is None else result["problem"]
        print(
            f"launch {index + 1:2d}/{args.launches} {launcher:14s} exit {result['code']!s:4s} "
            f"{result['wall']:6.1f} s  exit {_seconds(result['exit_lag'])} after the summary  {status}",
            flush=True,
        )
        if result["problem"] is not None:
            print(f"    log: {result['log']}", flush=True)

    print("\nsummary")
    for launcher in launchers:
        mine = [r for r in results if r["launcher"] == launcher]
        if not mine:
            continue
        walls = [r["wall"] for r in mine]
        hung = sum(r["code"] is None for r in mine)
        failed = sum(r["problem"] is not None and r["code"] is not None for r in mine)
        lags = [r["exit_lag"] for r in mine if r["exit_lag"] is not None and r["code"] is not None]
        print(
            f"  {launcher:14s} {len(mine):2d} launches: {len(mine) - hung - failed} ok, {hung} hung, {failed} failed; "
            f"wall min {min(walls):.1f} s, median {statistics.median(walls):.1f} s, max {max(walls):.1f} s; "
            f"exit after the summary max {_seconds(max(lags) if lags else None)}"
        )
    bad = [r for r in results if r["problem"] is not None]
    print(f"  all            {len(results):2d} launches: {len(results) - len(bad)} ok, {len(bad)} hung or failed")
    if not args.workdir and not bad:
        shutil.rmtree(workdir, ignore_errors=True)
    elif bad:
        print(f"  logs and runs kept in {workdir}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
