"""What goes to the Hub: a model card for a trained folder, and the upload itself."""

from __future__ import annotations

import os

CITATION = """@InProceedings{Chowdhury_2025_CVPR,
  author    = {Chowdhury, Arpita and Paul, Dipanjyoti and Mai, Zheda and Gu, Jianyang and Zhang, Ziheng and
               Mehrab, Kazi Sajeed and Campolongo, Elizabeth G. and Rubenstein, Daniel and Stewart, Charles V. and
               Karpatne, Anuj and Berger-Wolf, Tanya and Su, Yu and Chao, Wei-Lun},
  title     = {Prompt-CAM: Making Vision Transformers Interpretable for Fine-Grained Analysis},
  booktitle = {Proceedings of the Computer Vision and Pattern Recognition Conference (CVPR)},
  year      = {2025},
  pages     = {4375-4385}
}"""


def model_card(summary: dict) -> str:
    """A README.md for a trained Prompt-CAM folder: data, metrics, recipe, how to load, citation."""
    recipe = summary.get("recipe", {})
    accuracy = summary.get("validation_accuracy")
    accuracy_text = f"{accuracy:.4f}" if isinstance(accuracy, float) else "not measured (no validation split)"
    prompts_only = summary.get("prompts_only", False)
    rows = "\n".join(f"| {key} | {value} |" for key, value in recipe.items())
    front_matter = "\n".join(
        [
            "---",
            "library_name: transformers",
            "pipeline_tag: image-classification",
            "tags:",
            "- prompt-cam",
            "- interpretability",
            "- image-classification",
            *(["- peft"] if prompts_only else []),
            f"base_model: {summary.get('backbone')}",
            "---",
        ]
    )
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
| validation top-1 accuracy | {accuracy_text} |
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

## Citation

```bibtex
{CITATION}
```
"""


def write_model_card(folder: str, summary: dict) -> None:
    with open(os.path.join(folder, "README.md"), "w", encoding="utf-8") as handle:
        handle.write(model_card(summary))


def push_folder(folder: str, repo_id: str, private: bool = False) -> str:
    """Upload a saved folder (weights, config, code, image processor, model card) to the Hub; returns its URL."""
    from huggingface_hub import create_repo, upload_folder

    create_repo(repo_id, exist_ok=True, private=private)
    upload_folder(repo_id=repo_id, folder_path=folder, commit_message="Upload Prompt-CAM model")
    return f"https://huggingface.co/{repo_id}"


__all__ = ["model_card", "push_folder", "write_model_card"]
