"""What `promptcam faithfulness` takes: [`FaithfulnessOptions`] and the choices of its settings."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..compat import renamed_fields
from ..explain.trait_options import blur_field, stop_field
from ..ranges import check_ranges
from .atlas import (
    DEFAULT_BOX_SIZE,
    DEFAULT_GALLERY,
    DEFAULT_MIN_IMAGES,
    DEFAULT_NOISE_CLIP,
    DEFAULT_NOISE_STD,
    DEFAULT_THRESHOLD,
    REFERENCE_SIZE,
)
from .metrics import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_BLUR_KERNEL_SIZE,
    DEFAULT_BLUR_SIGMA,
    DEFAULT_DELETION_VALUE,
    DEFAULT_STEPS,
)
from .saliency import DEFAULT_METHODS, SALIENCY_METHODS, parse_heads

# the methods compared by default, in table order: the registry's entries that are not opt-in (Finer-CAM is); every
# name of the registry is a choice of --methods and is accepted by `run_faithfulness`
METHODS = DEFAULT_METHODS
ALL_METHODS = tuple(SALIENCY_METHODS)


TARGETS = ("true", "predicted")


# which classifier scores a method's maps: its own (Prompt-CAM's maps by Prompt-CAM, the baselines' by the probe: the
# paper's protocol), or one classifier for every method (a control for differences in the classifiers' confidence)
SCORERS = ("own", "prompt-cam", "probe")


@renamed_fields(out="output_dir")
@dataclass
class FaithfulnessOptions:
    """What `promptcam faithfulness` takes.

    Each field's `metadata["help"]` is its `--help` text (the CLI is generated from this class, docs/cli.md).
    """

    model: str = field(metadata={"help": "a trained Prompt-CAM folder (save_pretrained)"})
    data: str = field(
        metadata={"help": "folder with train/<class>/ and val/<class>/ (and optionally masks/val/<class>/)"}
    )
    output_dir: str = field(
        default="promptcam_faithfulness",
        metadata={"help": "output folder: faithfulness.json and the probe", "aliases": ["--out"]},
    )
    methods: tuple[str, ...] = field(
        default=METHODS,
        metadata={
            "help": f"methods to compare (opt-in: {', '.join(sorted(set(ALL_METHODS) - set(METHODS)))})",
            "choices": ALL_METHODS,
            "metavar": "METHOD",
        },
    )
    max_images: int | None = field(
        default=None,
        metadata={"help": "evaluate a seeded random subset of this many val images (default: all)", "min": 1},
    )
    steps: int = field(
        default=DEFAULT_STEPS,
        metadata={"help": "insertion / deletion steps (RISE changed one 224-pixel row per step)", "min": 1},
    )
    batch_size: int = field(
        default=DEFAULT_BATCH_SIZE, metadata={"help": "images per forward pass (and per map batch)", "min": 1}
    )
    blur_kernel_size: int = field(
        default=DEFAULT_BLUR_KERNEL_SIZE,
        metadata={
            "min": 1,
            "help": "Gaussian blur of the insertion start: kernel size (default: RISE's, %(default)s)",
        },
    )
    blur_sigma: float = field(
        default=DEFAULT_BLUR_SIGMA,
        metadata={"above": 0, "help": "... and sigma in pixels (default: RISE's, %(default)s)"},
    )
    deletion_value: float = field(
        default=DEFAULT_DELETION_VALUE,
        metadata={
            "help": "value of deleted pixels in normalised space (default: %(default)s, the normalisation mean, i.e. "
            "the mean colour)"
        },
    )
    target: str = field(
        default="true",
        metadata={
            "help": "class explained and scored: the true class (the same for every method) or each classifier's own "
            "prediction",
            "choices": TARGETS,
        },
    )
    scorer: str = field(
        default="own",
        metadata={
            "help": "classifier that scores the maps: 'own' (the paper's: Prompt-CAM's maps by Prompt-CAM, the "
            "baselines' by the probe), or one classifier for every method (a control for the classifiers' confidence)",
            "choices": SCORERS,
        },
    )
    heads: str | int = field(
        default="top",
        metadata={
            "help": "Prompt-CAM's map: mean of the 'top' traits, of 'all' heads, or of the k highest-ranked heads",
            "parse": parse_heads,
        },
    )
    blur: str = blur_field()
    stop: str | int = stop_field()
    probe: str | None = field(
        default=None,
        metadata={"help": "use this saved probe (OUT/probe of an earlier run; default: train one)"},
    )
    probe_epochs: int = field(default=100, metadata={"help": "probe training epochs", "min": 1})
    probe_lr: float = field(default=1e-3, metadata={"above": 0, "help": "probe learning rate, AdamW"})
    probe_weight_decay: float = field(default=1e-4, metadata={"min": 0, "help": "probe weight decay"})
    seed: int = field(default=0, metadata={"min": 0, "help": "image subset, probe, pixel tie order"})
    device: str | None = field(
        default=None, metadata={"help": "cpu, cuda, cuda:1, ... (default: cuda when available)"}
    )
    progress: bool = field(default=True, metadata={"help": "no progress bars"})
    # recorded in the settings as given (e.g. a dataset name)
    extra: dict = field(default_factory=dict, metadata={"help": "recorded in the settings as given", "cli": False})

    def __post_init__(self) -> None:
        check_ranges(self)  # the metadata's ranges (modeling_promptcam/ranges.py), as the command line checks them


@dataclass
class AtlasOptions:
    """What `promptcam atlas` takes (the statistics: `evaluation.atlas`, docs/atlas.md).

    Each field's `metadata["help"]` is its `--help` text (the CLI is generated from this class, docs/cli.md).
    """

    model: str = field(metadata={"help": "a trained Prompt-CAM folder (save_pretrained)"})
    data: str = field(metadata={"help": "image folder: DATA/train/<class>/ and the evaluated DATA/val/<class>/"})
    output_dir: str = field(
        default="promptcam_atlas",
        metadata={"help": "output folder: atlas.html, atlas.json, atlas_summary.json", "aliases": ["--out"]},
    )
    parts: str | None = field(
        default=None,
        metadata={
            "help": "CUB-200-2011's part files: CUB_ROOT/images.txt, parts/parts.txt, parts/part_locs.txt",
            "metavar": "CUB_ROOT",
        },
    )
    keypoints: str | None = field(
        default=None, metadata={"help": "a keypoints JSON {image: {part: [x, y]}}", "metavar": "FILE"}
    )
    masks: str | None = field(
        default=None,
        metadata={"help": "per-part masks DIR/masks/<split>/<class>/<image stem>/<part>.png", "metavar": "DIR"},
    )
    all_images: bool = field(
        default=False, metadata={"help": "every image of a class, not only the correctly classified ones"}
    )
    max_images: int | None = field(
        default=None, metadata={"help": "a seeded random subset of this many images (default: all)", "min": 1}
    )
    box_size: float = field(
        default=DEFAULT_BOX_SIZE,
        metadata={
            "above": 0,
            "max": REFERENCE_SIZE,
            "help": "consistency box in pixels at a 224-pixel input (EvalProtoPNet: %(default)s)",
        },
    )
    threshold: float = field(
        default=DEFAULT_THRESHOLD,
        metadata={"above": 0, "max": 1, "help": "a head is consistent at this part rate (EvalProtoPNet: %(default)s)"},
    )
    noise_std: float = field(
        default=DEFAULT_NOISE_STD,
        metadata={"min": 0, "help": "stability: Gaussian noise on the normalised image (EvalProtoPNet: %(default)s)"},
    )
    noise_clip: float = field(
        default=DEFAULT_NOISE_CLIP, metadata={"above": 0, "help": "... clipped to +- this (default: %(default)s)"}
    )
    blur: str = blur_field()
    stop: str | int = stop_field()
    min_images: int = field(
        default=DEFAULT_MIN_IMAGES,
        metadata={"min": 1, "help": "classes with fewer evaluated images are flagged as small samples"},
    )
    gallery: int = field(default=DEFAULT_GALLERY, metadata={"min": 0, "help": "most-confident images per head"})
    confused_pairs: int = field(default=5, metadata={"min": 0, "help": "most-confused class pairs shown side by side"})
    cls_baseline: bool = field(default=True, metadata={"help": "skip the backbone's CLS-attention heads baseline"})
    batch_size: int = field(default=DEFAULT_BATCH_SIZE, metadata={"help": "images per forward pass", "min": 1})
    seed: int = field(default=0, metadata={"min": 0, "help": "image subset and stability noise"})
    device: str | None = field(
        default=None, metadata={"help": "cpu, cuda, cuda:1, ... (default: cuda when available)"}
    )
    progress: bool = field(default=True, metadata={"help": "no progress bar"})

    def __post_init__(self) -> None:
        check_ranges(self)
