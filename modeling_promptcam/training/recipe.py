"""Training presets: the paper's recipe, and one preset per released (dataset, backbone) pair from `hub_configs/`."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

from ..configuration_promptcam import CLASSIFICATION_LOSSES

# How the class-agnostic prompts of layers 1..L-1 start (`Recipe.agnostic_prompt_init`; docs/training.md, "How the
# prompts start"): name -> what it does. The class prompts and the scoring head always start as `_init_weights` sets.
AGNOSTIC_PROMPT_INITS = {
    "uniform": "uniform random in +-sqrt(6 / (3 p^2 + D)) for patch size p and width D (VPT's and the official code's)",
    "image-tokens": "patch tokens of their layer, drawn from sample training images run through the plain backbone "
    "and rescaled to the uniform start's norm (PromptCamForImageClassification.init_agnostic_prompts_from_images)",
}


@dataclass(frozen=True)
class Recipe:
    """Prompt-CAM training settings (defaults: the paper's / official code's recipe, docs/training.md "The recipe").

    `prompt_dropout` and `drop_path_rate` of None mean "by backbone family": 0.1 for ViT (DINO) backbones, 0.0 for
    every other family (DINOv2, DINOv3, CLIP, SigLIP). `agnostic_prompt_init` of None means "by layout": `uniform`
    (the paper's) with `num_agnostic_prompts=None`, `image-tokens` with an integer K.
    """

    learning_rate: float = 0.005
    epochs: int = 100
    warmup_epochs: int = 20
    lr_min: float = 1e-6
    batch_size: int = 16
    momentum: float = 0.9
    weight_decay: float = 1e-3
    prompt_mode: str = "deep"
    num_agnostic_prompts: int | None = None  # None: C per layer (the paper); K: K per layer (docs/model.md)
    # an AGNOSTIC_PROMPT_INITS name; None: by layout, filled by `resolved`
    agnostic_prompt_init: str | None = None
    prompt_dropout: float | None = None
    drop_path_rate: float | None = None
    image_size: int = 224
    train_resize: int = 240
    # `PromptCamConfig.classification_loss`: the paper's softmax cross-entropy, or one_vs_rest (taxonomy models' default)
    classification_loss: str = "cross_entropy"

    def resolved(self, backbone_type: str) -> Recipe:
        """Fill the per-family regularisers for a backbone `model_type`, and the prompts' start by layout."""
        family_default = 0.1 if backbone_type == "vit" else 0.0
        # the paper's layout keeps the paper's start; K prompts per layer start from image tokens (at K = 50 and C = 8,
        # uniform ones fell 23 points below K = C on the birds and 39 on the demo task; docs/model.md, "Many classes")
        layout_default = "uniform" if self.num_agnostic_prompts is None else "image-tokens"
        return replace(
            self,
            prompt_dropout=family_default if self.prompt_dropout is None else self.prompt_dropout,
            drop_path_rate=family_default if self.drop_path_rate is None else self.drop_path_rate,
            agnostic_prompt_init=self.agnostic_prompt_init or layout_default,
        )

    def validate(self) -> None:
        checks = [
            (self.learning_rate > 0, "learning rate must be positive"),
            (self.epochs >= 1, "epochs must be at least 1"),
            (0 <= self.warmup_epochs < self.epochs, "warmup epochs must be in [0, epochs)"),
            (0 <= self.lr_min < self.learning_rate, "lr_min must be in [0, learning rate)"),
            (self.batch_size >= 1, "batch size must be at least 1"),
            (0 < self.image_size <= self.train_resize, "train_resize must be at least the image size"),
            (
                self.num_agnostic_prompts is None or self.prompt_mode == "deep",
                "num_agnostic_prompts does not apply to prompt mode 'shallow', which has no class-agnostic prompts; "
                "drop --num-agnostic-prompts or use --prompt-mode deep",
            ),
            (
                self.agnostic_prompt_init is None or self.agnostic_prompt_init in AGNOSTIC_PROMPT_INITS,
                f"agnostic prompt init must be one of {', '.join(AGNOSTIC_PROMPT_INITS)}",
            ),
            (
                self.agnostic_prompt_init != "image-tokens" or self.prompt_mode == "deep",
                "agnostic prompt init 'image-tokens' does not apply to prompt mode 'shallow', which has no "
                "class-agnostic prompts; drop --agnostic-prompt-init or use --prompt-mode deep",
            ),
            (
                self.classification_loss in CLASSIFICATION_LOSSES,
                f"classification loss must be one of {', '.join(CLASSIFICATION_LOSSES)}",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"Bad training setting: {message} ({self}).")

    def to_dict(self) -> dict:
        return asdict(self)


def hub_config_dir() -> Path:
    """Where the JSON presets are: inside the installed package, or hub_configs/ of a source checkout."""
    try:
        from importlib.resources import files

        packaged = Path(str(files("modeling_promptcam.hub_configs")))
        if packaged.is_dir():
            return packaged
    except ModuleNotFoundError:
        pass
    return Path(__file__).resolve().parents[2] / "hub_configs"


def preset_names() -> list[str]:
    return sorted(path.stem for path in hub_config_dir().glob("*.json"))


def load_preset(name: str) -> tuple[Recipe, dict]:
    """The recipe of a named preset (`cub-dino`, `cub-dinov2`, ...) and its whole hub config."""
    path = hub_config_dir() / f"{name}.json"
    if not path.is_file():
        raise ValueError(f"Unknown preset {name!r}; available: {', '.join(preset_names())}.")
    hub = json.loads(path.read_text())
    recipe = hub["recipe"]
    known = {field.name for field in fields(Recipe)}
    values = {key: value for key, value in recipe.items() if key in known}
    return Recipe(**values, image_size=hub["image_processor"]["image_size"]), hub


__all__ = ["AGNOSTIC_PROMPT_INITS", "Recipe", "hub_config_dir", "load_preset", "preset_names"]
