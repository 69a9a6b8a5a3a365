"""What goes to the Hub: a model card for a trained folder, and the upload itself."""

from __future__ import annotations

import os
import re

CITATION = """@InProceedings{Chowdhury_2025_CVPR,
  author    = {Chowdhury, Arpita and Paul, Dipanjyoti and Mai, Zheda and Gu, Jianyang and Zhang, Ziheng and
               Mehrab, Kazi Sajeed and Campolongo, Elizabeth G. and Rubenstein, Daniel and Stewart, Charles V. and
               Karpatne, Anuj and Berger-Wolf, Tanya and Su, Yu and Chao, Wei-Lun},
  title     = {Prompt-CAM: Making Vision Transformers Interpretable for Fine-Grained Analysis},
  booktitle = {Proceedings of the Computer Vision and Pattern Recognition Conference (CVPR)},
  year      = {2025},
  pages     = {4375-4385}
}"""


# what the card's `license:` says until the user sets it: the weights inherit the backbone's and the data's terms,
# which only the user knows (the Hub reads "other" with a `license_name` as "see the card")
LICENSE_PLACEHOLDER = "other"
LICENSE_NAME_PLACEHOLDER = "set-me-to-the-licence-of-the-backbone-and-data"
TAGS = ("prompt-cam", "interpretability", "fine-grained", "image-classification")
# the validation metrics the card reports: summary["validation_metrics"] key -> (model-index metric type, name)
CARD_METRICS = {
    "accuracy": ("accuracy", "top-1 accuracy"),
    "top5_accuracy": ("top_5_accuracy", "top-5 accuracy"),
    "mean_per_class_accuracy": ("mean_per_class_accuracy", "mean per-class accuracy"),
}
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def hub_id_or_none(name: object) -> str | None:
    """`name` when it reads as a Hub repository id (`owner/name`) and is not a local folder, else None."""
    name = str(name or "")
    return name if _HUB_ID.match(name) and not os.path.exists(name) else None


def card_data(summary: dict):
    """The card's metadata (`huggingface_hub.ModelCardData`): library, task, base model, tags, data, metrics, licence.

    `base_model` is the backbone's Hub id when the run named one (a local backbone folder has no id to give);
    `datasets` the Hub id of the data when it has one, else the local folder's name; `model-index` holds the
    validation metrics the run measured (none without a validation split). `license` is `summary["license"]`, or
    a placeholder ("other" with a `license_name` asking to set it) for the user to replace.
    """
    from huggingface_hub import EvalResult, ModelCardData

    source = str(summary.get("data_dir") or "").rstrip("/")
    dataset = hub_id_or_none(source) or os.path.basename(source) or None
    metrics = dict(summary.get("validation_metrics") or {})
    if "accuracy" not in metrics and isinstance(summary.get("validation_accuracy"), float):
        metrics["accuracy"] = summary["validation_accuracy"]
    eval_results = [
        EvalResult(
            task_type="image-classification",
            task_name="Image Classification",
            dataset_type=dataset,
            dataset_name=dataset,
            dataset_split="validation",
            metric_type=metric_type,
            metric_name=metric_name,
            metric_value=float(metrics[key]),
        )
        for key, (metric_type, metric_name) in CARD_METRICS.items()
        if dataset and isinstance(metrics.get(key), (int, float))
    ]
    license_id = summary.get("license") or LICENSE_PLACEHOLDER
    base_model = hub_id_or_none(summary.get("backbone"))
    return ModelCardData(
        library_name="transformers",
        pipeline_tag="image-classification",
        base_model=base_model,
        tags=[*TAGS, *(["peft"] if summary.get("prompts_only") else [])],
        datasets=[dataset] if dataset else None,
        metrics=[result.metric_type for result in eval_results] or None,
        license=license_id,
        license_name=LICENSE_NAME_PLACEHOLDER if license_id == LICENSE_PLACEHOLDER else None,
        model_name=f"prompt-cam-{base_model.split('/')[-1]}" if base_model else "prompt-cam",
        eval_results=eval_results or None,
    )


def model_card(summary: dict) -> str:
    """A README.md for a trained Prompt-CAM folder: metadata front matter (see [`card_data`]), then data, metrics,
    recipe, how to load, citation."""
    recipe = summary.get("recipe", {})
    accuracy = summary.get("validation_accuracy")
    accuracy_text = f"{accuracy:.4f}" if isinstance(accuracy, float) else "not measured (no validation split)"
    prompts_only = summary.get("prompts_only", False)
    rows = "\n".join(f"| {key} | {value} |" for key, value in recipe.items())
    metric_rows = "".join(
        f"\n| validation {name} | {value:.4f} |"
        for key, (_, name) in CARD_METRICS.items()
        if key != "accuracy" and isinstance(value := (summary.get("validation_metrics") or {}).get(key), float)
    )
    front_matter = f"---\n{card_data(summary).to_yaml()}\n---"
    if prompts_only:
        loading = f"""This folder holds only the prompts and the scoring head (a PEFT adapter, `modules_to_save`), to be
loaded on the backbone `{summary.get("backbone")}`:

```python
from modeling_promptcam import load_prompt_adapter

model = load_prompt_adapter("path/or/repo")  # a plain PromptCamForImageClassification
```"""
    else:
        loading = """```python
from transformers import AutoModelForImageClassification, pipeline

model = AutoModelForImageClassification.from_pretrained("path/or/repo", trust_remote_code=True)
classifier = pipeline("image-classification", model="path/or/repo", trust_remote_code=True)
explainer = pipeline("prompt-cam", model="path/or/repo", trust_remote_code=True)  # + trait maps per label
```

With `pip install modeling-promptcam` and `import modeling_promptcam`, `trust_remote_code` is not needed."""
    return f"""{front_matter}

# Prompt-CAM on {summary.get("backbone")}

A Prompt-CAM model (Chowdhury et al., CVPR 2025): the frozen backbone `{summary.get("backbone")}` with one learned
prompt per class and a shared scoring vector. Besides class scores it gives, per attention head, where each class's
prompt looks in the image (its trait maps).

## Data

- classes: {summary.get("classes")}
- training images: {summary.get("train_images")}, validation images: {summary.get("validation_images")}
- source: `{os.path.basename(str(summary.get("data_dir", "")).rstrip("/"))}` (image folder){f", preset `{summary['preset']}`" if summary.get("preset") else ""}

## Results

| metric | value |
|---|---|
| validation top-1 accuracy | {accuracy_text} |{metric_rows}
| final training loss | {summary.get("train_loss")} |

## Training recipe

| setting | value |
|---|---|
{rows}

SGD with momentum, cosine schedule with linear warm-up (stepped per optimizer step) down to `lr_min`; training
images resized to `train_resize`, randomly cropped to `image_size` and flipped; evaluation images resized to
`image_size` without crop; mean = std = 0.5.

## How to use

{loading}

## License

{_license_text(summary)}

## Citation

```bibtex
{CITATION}
```
"""


def _license_text(summary: dict) -> str:
    if summary.get("license"):
        return f"`{summary['license']}`."
    return (
        "Not set: replace `license:` (and `license_name:`) in the metadata above with the terms of these weights; "
        "they derive from the backbone's weights and the training data, so those licences apply."
    )


def write_model_card(folder: str, summary: dict) -> None:
    with open(os.path.join(folder, "README.md"), "w", encoding="utf-8") as handle:
        handle.write(model_card(summary))


def push_folder(folder: str, repo_id: str, private: bool = False) -> str:
    """Upload a saved folder (weights, config, code, image processor, model card) to the Hub; returns its URL."""
    from huggingface_hub import create_repo, upload_folder

    create_repo(repo_id, exist_ok=True, private=private)
    upload_folder(repo_id=repo_id, folder_path=folder, commit_message="Upload Prompt-CAM model")
    return f"https://huggingface.co/{repo_id}"


__all__ = ["card_data", "hub_id_or_none", "model_card", "push_folder", "write_model_card"]
