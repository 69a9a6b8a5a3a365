"""Validation metrics through the package's `evaluate` modules (offline), the faithfulness modules, and the model card's
metadata."""

import json
import os
import subprocess
import sys
import textwrap

import evaluate
import numpy as np
import pytest
import torch
from huggingface_hub import ModelCard
from huggingface_hub.repocard import metadata_load
from transformers import EvalPrediction

from modeling_promptcam.evaluation import (
    ENERGY_IN_MASK_PATH,
    INSERTION_DELETION_PATH,
    POINTING_GAME_PATH,
    energy_in_mask,
    insertion_deletion,
    pointing_game,
)
from modeling_promptcam.training import (
    CLASSIFICATION_ACCURACY_PATH,
    ClassificationMetrics,
    accuracy_metric,
    card_data,
    model_card,
    run_training,
    write_model_card,
)
from tests.helpers.training import tiny_training_options

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# 6 images, 6 classes. Rows: logits; the label of each row and where it ranks (1 = the top score):
LOGITS = np.array(
    [
        [9.0, 1.0, 2.0, 3.0, 4.0, 5.0],  # label 0, rank 1
        [9.0, 1.0, 2.0, 3.0, 4.0, 5.0],  # label 5, rank 2
        [1.0, 9.0, 8.0, 7.0, 6.0, 5.0],  # label 0, rank 6 (last)
        [1.0, 9.0, 8.0, 7.0, 6.0, 5.0],  # label 1, rank 1
        [0.0, 0.0, 0.0, 0.0, 0.0, 0.0],  # label 3, all tied: ties rank the lower index first -> rank 4
        [0.0, 1.0, 2.0, 3.0, 4.0, 5.0],  # label 5, rank 1
    ],
    dtype=np.float32,
)
LABELS = np.array([0, 5, 0, 1, 3, 5])
# top-1 hits: rows 0, 3, 5 -> 3 / 6. top-5 hits: every row but row 2 (rank 6) -> 5 / 6.
# per class, top-1: class 0 rows 0, 2 -> 1/2; class 1 row 3 -> 1; class 3 row 4 -> 0; class 5 rows 1, 5 -> 1/2.
# mean over the 4 classes that have images: (0.5 + 1 + 0 + 0.5) / 4 = 0.5; top-2: rows 0, 1, 3, 5 -> 4 / 6.
EXPECTED = {"accuracy": 0.5, "top5_accuracy": 5 / 6, "mean_per_class_accuracy": 0.5}


def test_trainer_metrics_are_top1_top5_and_mean_per_class_accuracy():
    result = ClassificationMetrics()(EvalPrediction(predictions=LOGITS, label_ids=LABELS))
    assert result == pytest.approx(EXPECTED)
    assert set(result) == set(EXPECTED)
    # the Trainer may hand over a tuple of outputs: the logits come first
    assert accuracy_metric(EvalPrediction(predictions=(LOGITS, np.zeros(3)), label_ids=LABELS)) == pytest.approx(
        EXPECTED
    )


def test_trainer_metrics_refuse_multi_hot_labels_naming_the_fix():
    with pytest.raises(
        ValueError, match=r"label_ids must be class indices \(N,\), got shape \(6, 6\).*compute_metrics"
    ):
        ClassificationMetrics()(EvalPrediction(predictions=LOGITS, label_ids=np.eye(6)))


def test_the_accuracy_module_takes_any_k_and_caps_it_at_the_class_count():
    metric = evaluate.load(CLASSIFICATION_ACCURACY_PATH, keep_in_memory=True)
    assert metric.compute(predictions=LOGITS, references=LABELS, top_k=2)["top2_accuracy"] == pytest.approx(4 / 6)
    assert metric.compute(predictions=LOGITS, references=LABELS, top_k=1)["top1_accuracy"] == pytest.approx(0.5)
    three_classes = LOGITS[:, :3]
    labels = np.array([0, 2, 0, 1, 1, 2])
    # k = 5 of 3 classes counts every class
    assert metric.compute(predictions=three_classes, references=labels)["top5_accuracy"] == 1.0
    # batches added one at a time give the same numbers
    for start in range(0, 6, 4):
        metric.add_batch(predictions=LOGITS[start : start + 4], references=LABELS[start : start + 4])
    assert metric.compute() == pytest.approx(EXPECTED)


def test_the_accuracy_module_refuses_bad_input_with_the_fix():
    metric = evaluate.load(CLASSIFICATION_ACCURACY_PATH, keep_in_memory=True)
    with pytest.raises(ValueError, match=r"references must be class indices in \[0, 6\), got \[0, 6\]"):
        metric.compute(predictions=LOGITS, references=[0, 1, 2, 3, 4, 6])
    with pytest.raises(ValueError, match="top_k must be a positive integer, got 0"):
        metric.compute(predictions=LOGITS, references=LABELS, top_k=0)


def test_every_module_loads_from_its_folder_with_the_network_cut(tmp_path):
    # a fresh HF_HOME (nothing cached) and every socket refused: loading and computing must not need the Hub
    script = textwrap.dedent(
        """
        import socket

        def refuse(*args, **kwargs):
            raise OSError("network access attempted")

        socket.socket.connect = refuse
        socket.create_connection = refuse
        import evaluate
        from modeling_promptcam.evaluation import METRIC_MODULE_PATHS
        from modeling_promptcam.training import CLASSIFICATION_ACCURACY_PATH

        accuracy = evaluate.load(CLASSIFICATION_ACCURACY_PATH)
        print(accuracy.compute(predictions=[[0.0, 1.0], [1.0, 0.0]], references=[1, 1], top_k=1))
        pointing = evaluate.load(METRIC_MODULE_PATHS["pointing_game"])
        print(pointing.compute(predictions=[[[0.0, 1.0]]], references=[[[False, True]]]))
        for name, path in METRIC_MODULE_PATHS.items():
            assert evaluate.load(path).name == name, name
        """
    )
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1", "PYTHONPATH": REPO}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["{'accuracy': 0.5, 'top1_accuracy': 0.5, 'mean_per_class_accuracy': 0.5}"] + [
        "{'pointing_game': 1.0}"
    ]


# ------------------------------------------------------------------------------ faithfulness / localisation modules
MAPS = [
    np.array([[0.0, 3.0], [1.0, 0.0]]),  # peak at (0, 1)
    np.array([[2.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 2.0]]),  # two peaks: (0, 0) and (2, 2)
    np.array([[-1.0, -1.0], [-1.0, -1.0]]),  # no positive mass
]
MASKS = [
    np.array([[False, True], [True, False]]),
    np.array([[False, False, False], [False, False, False], [False, False, True]]),
    np.array([[True, False], [False, False]]),
]


def test_pointing_game_module_gives_hand_computed_hit_rate():
    metric = evaluate.load(POINTING_GAME_PATH, keep_in_memory=True)
    # image 0: its peak (0, 1) is in the mask; image 1: one of its two peaks is outside; image 2: a flat map's
    # "peak" is everywhere, outside the one-pixel mask -> 1 hit of 3
    assert metric.compute(predictions=MAPS, references=MASKS)["pointing_game"] == pytest.approx(1 / 3)
    # a tolerance of 2 pixels grows image 1's mask over its other peak (2 steps away in the 8-neighbourhood)
    assert metric.compute(predictions=MAPS[:2], references=MASKS[:2], tolerance=2)["pointing_game"] == 1.0


def test_energy_module_gives_hand_computed_share():
    metric = evaluate.load(ENERGY_IN_MASK_PATH, keep_in_memory=True)
    # image 0: (3 + 1) / 4 = 1; image 1: 2 / 4 = 0.5; image 2: no positive mass -> the mask's share, 1 / 4
    assert metric.compute(predictions=MAPS, references=MASKS)["energy_in_mask"] == pytest.approx((1 + 0.5 + 0.25) / 3)


def test_localisation_modules_equal_the_library_functions_on_random_maps():
    generator = torch.Generator().manual_seed(0)
    maps = torch.rand(5, 4, 4, generator=generator)  # upsampled to the 16 x 16 masks
    masks = torch.rand(5, 16, 16, generator=generator) > 0.6
    pointing = evaluate.load(POINTING_GAME_PATH, keep_in_memory=True)
    energy = evaluate.load(ENERGY_IN_MASK_PATH, keep_in_memory=True)
    expected_hits = pointing_game(maps, masks, tolerance=1).float().mean().item()
    expected_energy = energy_in_mask(maps, masks).mean().item()
    assert pointing.compute(predictions=maps.numpy(), references=masks.numpy(), tolerance=1)[
        "pointing_game"
    ] == pytest.approx(expected_hits)
    assert energy.compute(predictions=maps.numpy(), references=masks.numpy())["energy_in_mask"] == pytest.approx(
        expected_energy, rel=1e-6
    )


def test_insertion_deletion_module_integrates_given_curves():
    metric = evaluate.load(INSERTION_DELETION_PATH, keep_in_memory=True)
    # evenly spaced 0, 0.5, 1: trapezoids of width 0.5. [0, 0.5, 1] -> 0.5; [1, 1, 1] -> 1; [1, 0, 0] -> 0.25; 0 -> 0
    result = metric.compute(insertion_curve=[[0.0, 0.5, 1.0], [1.0, 1.0, 1.0]], deletion_curve=[[1, 0, 0], [0, 0, 0]])
    assert result == pytest.approx({"insertion": 0.75, "deletion": 0.125})
    # uneven steps: fraction 0, 0.25, 1 -> [0, 1, 1]: 0.25 * 0.5 + 0.75 * 1 = 0.875
    result = metric.compute(insertion_curve=[[0, 1, 1]], deletion_curve=[[1, 1, 0]], fraction=[0.0, 0.25, 1.0])
    assert result == pytest.approx({"insertion": 0.875, "deletion": 0.25 + 0.375})


def test_insertion_deletion_module_matches_the_rise_run_from_its_curves():
    torch.manual_seed(0)
    weights = torch.randn(3 * 10 * 10, 4)

    def classifier(images):
        return images.flatten(1) @ weights

    pixel_values = torch.randn(2, 3, 10, 10)
    saliency = torch.rand(2, 10, 10)
    run = insertion_deletion(classifier, pixel_values, saliency, torch.tensor([1, 3]), steps=7, return_curves=True)
    result = evaluate.load(INSERTION_DELETION_PATH, keep_in_memory=True).compute(
        insertion_curve=run["insertion_curve"].numpy(),
        deletion_curve=run["deletion_curve"].numpy(),
        fraction=run["fraction"].numpy(),
    )
    assert result["insertion"] == pytest.approx(run["insertion"].mean().item(), rel=1e-6)
    assert result["deletion"] == pytest.approx(run["deletion"].mean().item(), rel=1e-6)


# ------------------------------------------------------------------------------------------------- model card
SUMMARY = {
    "backbone": "facebook/dinov2-base",
    "data_dir": "/data/birds/cub",
    "classes": 200,
    "train_images": 5994,
    "validation_images": 5794,
    "recipe": {"learning_rate": 0.001},
    "train_loss": 0.5,
    "validation_accuracy": 0.741,
    "validation_metrics": {"accuracy": 0.741, "top5_accuracy": 0.925, "mean_per_class_accuracy": 0.738},
    "prompts_only": False,
}


def test_model_card_front_matter_parses_with_the_hub_metadata(tmp_path):
    write_model_card(str(tmp_path), SUMMARY)
    metadata = metadata_load(tmp_path / "README.md")
    assert metadata["library_name"] == "transformers"
    assert metadata["pipeline_tag"] == "image-classification"
    assert metadata["base_model"] == "facebook/dinov2-base"
    assert {"prompt-cam", "interpretability", "fine-grained"} <= set(metadata["tags"])
    assert metadata["datasets"] == ["cub"]
    assert metadata["license"] == "other" and "licence" in metadata["license_name"]
    assert metadata["metrics"] == ["accuracy", "top_5_accuracy", "mean_per_class_accuracy"]

    assert metadata["model-index"][0]["name"] == "prompt-cam-dinov2-base"
    card = ModelCard.load(tmp_path / "README.md")
    results = {result.metric_type: result for result in card.data.eval_results}
    assert {name: result.metric_value for name, result in results.items()} == {
        "accuracy": 0.741,
        "top_5_accuracy": 0.925,
        "mean_per_class_accuracy": 0.738,
    }
    accuracy = results["accuracy"]
    assert (accuracy.task_type, accuracy.dataset_type, accuracy.dataset_split) == (
        "image-classification",
        "cub",
        "validation",
    )
    # the body still reads as before, with the new rows
    text = (tmp_path / "README.md").read_text()
    assert "| validation top-1 accuracy | 0.7410 |" in text and "| validation top-5 accuracy | 0.9250 |" in text
    assert "Chowdhury_2025_CVPR" in text and "Not set: replace `license:`" in text


def test_model_card_metadata_for_a_local_backbone_an_adapter_and_a_set_licence():
    data = card_data(
        {**SUMMARY, "backbone": "/models/my-dinov2", "prompts_only": True, "license": "cc-by-nc-4.0"}
    ).to_dict()
    assert "base_model" not in data  # a local folder is not a Hub id
    assert data["model-index"][0]["name"] == "prompt-cam"
    assert data["tags"][-1] == "peft" and data["license"] == "cc-by-nc-4.0" and "license_name" not in data
    no_validation = card_data({**SUMMARY, "validation_accuracy": None, "validation_metrics": {}}).to_dict()
    assert "model-index" not in no_validation and "metrics" not in no_validation
    # a summary from before the extra metrics still reports its top-1 accuracy
    older = card_data({key: value for key, value in SUMMARY.items() if key != "validation_metrics"})
    assert [(result.metric_type, result.metric_value) for result in older.eval_results] == [("accuracy", 0.741)]
    assert "\n---\n" in model_card(SUMMARY)


# ------------------------------------------------------------------------------------------- through Trainer
def test_training_reports_the_three_metrics_in_the_summary_and_the_card(tmp_path):
    options = tiny_training_options(tmp_path, train_per_class=6, val_per_class=4, batch_size=8, learning_rate=0.05)
    summary = run_training(options)
    metrics = summary["validation_metrics"]
    assert set(metrics) == {"accuracy", "top5_accuracy", "mean_per_class_accuracy"}
    assert metrics["accuracy"] == summary["validation_accuracy"]
    assert metrics["top5_accuracy"] == 1.0  # 3 classes: the top 5 hold every class
    # 4 validation images per class: the mean of per-class accuracies equals the overall accuracy
    assert metrics["mean_per_class_accuracy"] == pytest.approx(metrics["accuracy"])
    saved = json.loads((tmp_path / "run" / "training_summary.json").read_text())
    assert saved["validation_metrics"] == metrics
    card = ModelCard.load(tmp_path / "run" / "final" / "README.md")
    assert card.data.base_model is None  # the backbone is a local folder
    assert card.data.datasets == ["data"]
    assert {r.metric_type: r.metric_value for r in card.data.eval_results}["accuracy"] == metrics["accuracy"]
