"""What a training run takes: [`TrainOptions`] (the fields of `promptcam train`), resolved into a [`Recipe`]."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..compat import renamed_fields
from .recipe import Recipe, load_preset


@renamed_fields(lr="learning_rate")
@dataclass
class TrainOptions:
    """What `promptcam train` takes; every recipe value left at None comes from the preset (or the paper's recipe)."""

    backbone: str
    data_dir: str | None
    output_dir: str
    preset: str | None = None
    epochs: int | None = None
    warmup_epochs: int | None = None
    batch_size: int | None = None
    learning_rate: float | None = None
    lr_min: float | None = None
    weight_decay: float | None = None
    momentum: float | None = None
    prompt_mode: str | None = None
    prompt_dropout: float | None = None
    drop_path_rate: float | None = None
    image_size: int | None = None
    save_prompts_only: bool = False
    resume: bool = False
    overwrite_output_dir: bool = False
    push_to_hub: str | None = None
    seed: int = 42
    eval_steps: int | None = None
    gradient_accumulation_steps: int = 1
    num_workers: int = 0
    verify_images: bool = True
    dataset: str | None = None  # a `datasets` dataset (save_to_disk folder or load_dataset name) instead of data_dir
    image_column: str = "image"
    label_column: str = "label"
    extra: dict = field(default_factory=dict)  # further TrainingArguments, for programmatic use

    def recipe(self) -> Recipe:
        base, _ = load_preset(self.preset) if self.preset else (Recipe(), None)
        overrides = {
            "learning_rate": self.learning_rate,
            "epochs": self.epochs,
            "warmup_epochs": self.warmup_epochs,
            "batch_size": self.batch_size,
            "lr_min": self.lr_min,
            "weight_decay": self.weight_decay,
            "momentum": self.momentum,
            "prompt_mode": self.prompt_mode,
            "prompt_dropout": self.prompt_dropout,
            "drop_path_rate": self.drop_path_rate,
            "image_size": self.image_size,
        }
        values = {**base.to_dict(), **{k: v for k, v in overrides.items() if v is not None}}
        if self.image_size is not None and self.image_size != base.image_size:
            # keep the recipe's resize-then-crop ratio (240 -> 224)
            values["train_resize"] = round(self.image_size * base.train_resize / base.image_size)
        return Recipe(**values)
