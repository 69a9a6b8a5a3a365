"""What `promptcam faithfulness` takes: [`FaithfulnessOptions`] and the choices of its settings."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..compat import renamed_fields
from .metrics import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_BLUR_KERNEL_SIZE,
    DEFAULT_BLUR_SIGMA,
    DEFAULT_DELETION_VALUE,
    DEFAULT_STEPS,
)
from .saliency import SALIENCY_METHODS

# the methods compared, in table order: the names of the registry (a method registered later is accepted by
# `run_faithfulness` too; this tuple is the default and the CLI's choices)
METHODS = tuple(SALIENCY_METHODS)


TARGETS = ("true", "predicted")


# which classifier scores a method's maps: its own (Prompt-CAM's maps by Prompt-CAM, the baselines' by the probe: the
# paper's protocol), or one classifier for every method (a control for differences in the classifiers' confidence)
SCORERS = ("own", "prompt-cam", "probe")


@renamed_fields(out="output_dir")
@dataclass
class FaithfulnessOptions:
    """What `promptcam faithfulness` takes (see its --help for each option)."""

    model: str
    data: str
    output_dir: str = "promptcam_faithfulness"
    methods: tuple[str, ...] = METHODS
    max_images: int | None = None
    steps: int = DEFAULT_STEPS
    batch_size: int = DEFAULT_BATCH_SIZE
    blur_kernel_size: int = DEFAULT_BLUR_KERNEL_SIZE
    blur_sigma: float = DEFAULT_BLUR_SIGMA
    deletion_value: float = DEFAULT_DELETION_VALUE
    target: str = "true"
    scorer: str = "own"
    heads: str | int = "top"
    blur: str = "paper"
    stop: str | int = "misclassified"
    probe: str | None = None
    probe_epochs: int = 100
    probe_lr: float = 1e-3
    probe_weight_decay: float = 1e-4
    seed: int = 0
    device: str | None = None
    progress: bool = True
    extra: dict = field(default_factory=dict)  # recorded in the settings as given (e.g. a dataset name)
