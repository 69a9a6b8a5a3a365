"""The K-agnostic-prompts accuracy benchmark runs end to end in its smoke mode (tiny random backbone, tiny data):
the real runs are benchmarks, measured and recorded in docs/benchmarks.md."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import bench_agnostic_prompts  # noqa: E402

HAS_ANIMAL_MNIST = importlib.util.find_spec("animal_mnist") is not None


def test_smoke_run_writes_side_by_side_accuracies(tmp_path, capsys):
    datasets = ["animal-mnist", "birds"] if HAS_ANIMAL_MNIST else ["birds"]
    out = tmp_path / "k"
    code = bench_agnostic_prompts.main(
        ["--smoke", "--threads", "1", "--out", str(out), "--datasets", *datasets, "--k-values", "C", "3"]
    )
    assert code == 0
    report = json.loads((out / "agnostic_prompts.json").read_text())
    assert report["settings"]["k_values"] == ["C", "3"] and report["settings"]["target_points"] == 2.0
    assert [row["dataset"] for row in report["results"]] == datasets
    for row in report["results"]:
        assert row["reference_k"] == "C" and row["steps"] == 2 * -(-row["train_images"] // 16)
        assert row["train_images"] == 2 * row["classes"] and row["val_images"] == row["classes"]
        reference, other = row["runs"]
        assert (reference["k"], reference["num_agnostic_prompts"], other["num_agnostic_prompts"]) == ("C", None, 3)
        assert "difference_points" not in reference
        for run in row["runs"]:
            assert 0.0 <= run["accuracy"] <= 1.0 and run["seconds"] > 0
        assert other["difference_points"] == round(100 * (other["accuracy"] - reference["accuracy"]), 2)
        assert other["within_target"] == (abs(other["difference_points"]) <= 2.0)
        assert other["at_most_target_below"] == (other["difference_points"] >= -2.0)
        # the start of each run's agnostic prompts: by layout, as promptcam train chooses it
        assert (reference["agnostic_prompt_init"], other["agnostic_prompt_init"]) == ("uniform", "image-tokens")
        # each K trained its own model, with its own prompt count
        config = json.loads((out / row["dataset"] / "promptcam_k_3" / "final" / "config.json").read_text())
        assert config["num_agnostic_prompts"] == 3
    table = capsys.readouterr().out
    assert "diff (pts)" in table and "birds" in table and "image-tokens" in table


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--k-values", "C", "zero"], "'C' or a positive integer"),
        (["--k-values", "50", "50"], "holds a value twice"),
        (["--epochs", "1"], "at least 2"),
    ],
)
def test_bad_arguments_are_usage_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as exited:
        bench_agnostic_prompts.main(argv)
    assert exited.value.code == 2
    assert message in capsys.readouterr().err
