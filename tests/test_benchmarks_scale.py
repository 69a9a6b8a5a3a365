"""The scale benchmark and the GPU suite run as scripts: the GPU suite without CUDA, one variant of the scale
benchmark's worker at tiny sizes (the full runs are benchmarks, measured on idle machines)."""

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import bench_scale  # noqa: E402
import gpu_suite  # noqa: E402


def test_gpu_suite_without_cuda_exits_0_with_one_line_and_writes_nothing(tmp_path):
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": str(REPO)}
    completed = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "gpu_suite.py"), "--out", str(tmp_path / "suite.json")],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout == gpu_suite.NO_CUDA_MESSAGE + "\n"
    assert "no CUDA device" in completed.stdout
    assert not (tmp_path / "suite.json").exists()


def test_bench_scale_worker_measures_one_variant():
    spec = {
        **{key: bench_scale.QUICK[key] for key in ("backbone", "image_size", "patch_size", "batch")},
        "repeats": 2,
        "threads": 1,
        "num_labels": 30,
        "agnostic": 4,
        "candidates": 3,
    }
    result = bench_scale.worker(spec)
    assert len(result["times_s"]) == 2 and result["median_s"] > 0 and result["first_s"] > 0
    assert result["peak_rss_gb"] > 0.05  # a Python process with torch loaded
    json.dumps(result)
    assert bench_scale.variant_name(30, 4, 3) == "C=30 K=4 score_classes=3"
    assert bench_scale.variant_name(10000, None, None) == "C=10000 K=C"
