"""What a training run takes: [`TrainOptions`] (the fields of `promptcam train`), resolved into a [`Recipe`]."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..compat import renamed_fields
from ..configuration_promptcam import CLASSIFICATION_LOSSES, PROMPT_MODES
from ..ranges import check_ranges
from .recipe import AGNOSTIC_PROMPT_INITS, Recipe, load_preset

# the two ways of training a taxonomy (docs/taxonomy.md): one model per node with two or more children, or per level
TAXONOMY_MODES = ("node", "level")
DEFAULT_TAXONOMY_MODE = "node"  # what a taxonomy run uses when --taxonomy-mode is not given


def parse_levels(text: str) -> tuple[str, ...]:
    """`--levels family,genus,species` -> ("family", "genus", "species") (root first, the class level last)."""
    names = tuple(name.strip() for name in text.split(","))
    if any(not name for name in names):
        raise ValueError(f"--levels {text!r}: give comma-separated level names, root first, e.g. family,genus,species")
    if len(set(names)) != len(names):
        raise ValueError(f"--levels {text!r} names a level twice.")
    return names


@renamed_fields(lr="learning_rate")
@dataclass
class TrainOptions:
    """What `promptcam train` takes; every recipe value left at None comes from the preset (or the paper's recipe).

    Each field's `metadata["help"]` is its `--help` text (the CLI is generated from this class, docs/cli.md).
    """

    backbone: str = field(
        metadata={
            "help": "the frozen backbone: a transformers folder or Hub id (ViT, DINOv2, DINOv3, CLIP / SigLIP vision "
            "towers; docs/backbones.md)"
        }
    )
    data_dir: str | None = field(metadata={"help": "folder with train/<class>/ (and val/<class>/)", "one_of": "data"})
    output_dir: str = field(metadata={"help": "checkpoints, logs and final/ go here"})
    preset: str | None = field(
        default=None,
        metadata={"help": "a recipe from hub_configs/, e.g. cub-dino, cub-dinov2 (default: the paper's recipe)"},
    )
    epochs: int | None = field(
        default=None, metadata={"min": 1, "help": "training epochs (default: the recipe's; paper: 100-130)"}
    )
    warmup_epochs: int | None = field(
        default=None, metadata={"min": 0, "help": "linear warm-up epochs (default: the recipe's; paper: 20)"}
    )
    batch_size: int | None = field(
        default=None, metadata={"min": 1, "help": "images per device and step (default: the recipe's; paper: 16)"}
    )
    learning_rate: float | None = field(
        default=None,
        metadata={
            "above": 0,
            "help": "peak learning rate (default: the recipe's; paper: 0.001-0.01 by dataset)",
            "aliases": ["--lr"],
        },
    )
    lr_min: float | None = field(
        default=None,
        metadata={"min": 0, "help": "final learning rate of the cosine schedule (default: the recipe's; paper: 1e-6)"},
    )
    weight_decay: float | None = field(
        default=None, metadata={"min": 0, "help": "SGD weight decay (default: the recipe's; paper: 1e-3)"}
    )
    momentum: float | None = field(
        default=None, metadata={"min": 0, "max": 1, "help": "SGD momentum (default: the recipe's; paper: 0.9)"}
    )
    prompt_mode: str | None = field(
        default=None,
        metadata={"help": "prompt variant (default: the recipe's; paper: deep)", "choices": PROMPT_MODES},
    )
    num_agnostic_prompts: int | None = field(
        default=None,
        metadata={
            "min": 1,
            "help": "class-agnostic prompts per layer in layers 1..L-1, deep mode only; the last layer keeps its C "
            "class prompts (default: the recipe's; paper: C, one per class; docs/model.md)",
        },
    )
    agnostic_prompt_init: str | None = field(
        default=None,
        metadata={
            "help": "how the class-agnostic prompts of layers 1..L-1 start, deep mode only: "
            + "; ".join(f"{name} = {what}" for name, what in AGNOSTIC_PROMPT_INITS.items())
            + " (default: the recipe's, else uniform with the paper's C prompts per layer and image-tokens with "
            "--num-agnostic-prompts K; docs/training.md)",
            "choices": tuple(AGNOSTIC_PROMPT_INITS),
        },
    )
    classification_loss: str | None = field(
        default=None,
        metadata={
            "help": "how labels are scored in training: cross_entropy (softmax over the classes, the paper's) or "
            "one_vs_rest (binary cross-entropy per class: every class prompt answers for its own class) (default: "
            "one_vs_rest with --taxonomy / --levels, where a two-child node under cross-entropy lets one child's "
            "prompt stay constant; otherwise the recipe's, cross_entropy; docs/taxonomy.md)",
            "choices": tuple(CLASSIFICATION_LOSSES),
        },
    )
    prompt_dropout: float | None = field(
        default=None,
        metadata={"min": 0, "max": 1, "help": "prompt dropout (default: the recipe's; paper: 0.1 DINO, 0 DINOv2)"},
    )
    drop_path_rate: float | None = field(
        default=None,
        metadata={"min": 0, "max": 1, "help": "stochastic depth (default: the recipe's; paper: 0.1 DINO, 0 DINOv2)"},
    )
    image_size: int | None = field(
        default=None,
        metadata={"min": 1, "help": "training / evaluation image size (default: the recipe's; paper: 224)"},
    )
    save_prompts_only: bool = field(
        default=False,
        metadata={
            "help": "checkpoints and the final folder hold only the prompts and head (a PEFT adapter, a few MB)"
        },
    )
    resume: bool = field(default=False, metadata={"help": "continue from the newest complete checkpoint"})
    overwrite_output_dir: bool = field(default=False, metadata={"help": "delete what OUTPUT_DIR holds first"})
    push_to_hub: str | None = field(
        default=None,
        metadata={"help": "upload the final folder to this Hub repository (default: no upload)", "metavar": "REPO"},
    )
    seed: int = field(default=42, metadata={"min": 0, "help": "random seed"})
    eval_steps: int | None = field(
        default=None, metadata={"min": 1, "help": "evaluate and save every N steps (default: every epoch)"}
    )
    gradient_accumulation_steps: int = field(
        default=1, metadata={"min": 1, "help": "steps whose gradients are summed per update"}
    )
    num_workers: int = field(default=0, metadata={"min": 0, "help": "data loading worker processes"})
    verify_images: bool = field(
        default=True,
        metadata={
            "help": "do not decode every image of --data-dir once before training (a broken one then fails later)"
        },
    )
    dataset: str | None = field(
        default=None,
        metadata={
            "help": "instead of --data-dir: a datasets dataset (a save_to_disk folder or a load_dataset name) with a "
            "train split (and validation / val / test), an Image column and a ClassLabel column",
            "one_of": "data",
        },
    )
    image_column: str = field(default="image", metadata={"help": "image column of --dataset"})
    label_column: str = field(default="label", metadata={"help": "class-label column of --dataset"})
    taxonomy: str | None = field(
        default=None,
        metadata={
            "help": "a CSV / TSV table mapping every class to its ancestors, one column per level with a header such "
            "as species,genus,family: trains one prompt-only model per node or level on the shared backbone "
            "(docs/taxonomy.md; default: one flat model)",
            "metavar": "FILE",
        },
    )
    taxonomy_mode: str | None = field(
        default=None,
        metadata={
            "help": "with --taxonomy: node = one model per group with two or more children, trained on its images to "
            "tell its children apart (a key); level = one model per level, on all images relabelled to their group "
            f"at that level (default: {DEFAULT_TAXONOMY_MODE})",
            "choices": TAXONOMY_MODES,
        },
    )
    taxonomy_min_steps: int | None = field(
        default=None,
        metadata={
            "min": 1,
            "help": "with --taxonomy: train every model for at least N optimizer steps, its epochs raised to reach "
            "them (a node with a quarter of the images otherwise gets a quarter of the root's steps; "
            "docs/taxonomy.md; default: every model trains for --epochs)",
            "metavar": "N",
        },
    )
    levels: tuple[str, ...] | str | None = field(
        default=None,
        metadata={
            "help": "the taxonomy levels to use, root first and the class level last, comma-separated, e.g. "
            "family,genus,species (default: every column of --taxonomy); with --dataset and no --taxonomy, the "
            "dataset's columns holding the levels above the classes",
            "parse": parse_levels,
            "metavar": "NAMES",
        },
    )
    # further TrainingArguments, for programmatic use
    extra: dict = field(default_factory=dict, metadata={"help": "further TrainingArguments", "cli": False})

    def __post_init__(self) -> None:
        check_ranges(self)  # the metadata's ranges (modeling_promptcam/ranges.py), as the command line checks them
        if isinstance(self.levels, str):
            self.levels = parse_levels(self.levels)
        if self.taxonomy_mode is not None and self.taxonomy_mode not in TAXONOMY_MODES:
            raise ValueError(f"taxonomy_mode must be one of {', '.join(TAXONOMY_MODES)}, got {self.taxonomy_mode!r}.")
        # taxonomy-only settings given to a flat run are refused, not ignored: (given, as named, why a flat run has none)
        taxonomy_only = (
            (self.taxonomy_mode, f"--taxonomy-mode {self.taxonomy_mode}", "a flat model has no taxonomy mode"),
            (self.taxonomy_min_steps, "--taxonomy-min-steps", "a flat model trains for --epochs"),
        )
        for value, named, why in taxonomy_only:
            if value is not None and not self.trains_taxonomy:
                raise ValueError(
                    f"{named} applies to taxonomy training only: add --taxonomy FILE (or --levels with --dataset), "
                    f"or leave it out ({why})."
                )

    @property
    def trains_taxonomy(self) -> bool:
        """Whether this run trains a taxonomy (a table, or dataset columns named by `levels`): see
        `taxonomy.run_taxonomy_training`."""
        return self.taxonomy is not None or self.levels is not None

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
            "num_agnostic_prompts": self.num_agnostic_prompts,
            "agnostic_prompt_init": self.agnostic_prompt_init,
            "classification_loss": self.classification_loss,
            "prompt_dropout": self.prompt_dropout,
            "drop_path_rate": self.drop_path_rate,
            "image_size": self.image_size,
        }
        values = {**base.to_dict(), **{k: v for k, v in overrides.items() if v is not None}}
        if self.image_size is not None and self.image_size != base.image_size:
            # keep the recipe's resize-then-crop ratio (240 -> 224)
            values["train_resize"] = round(self.image_size * base.train_resize / base.image_size)
        return Recipe(**values)
