"""The trait options the commands share, one definition each: how heads are ranked (`--blur`, `--stop`) and how
maps are drawn over an image (`--alpha`). Every options dataclass that ranks or draws traits (`explain`,
`taxonomy-key`, `demo`, `faithfulness`, `atlas`) declares these fields through [`blur_field`], [`stop_field`] and
[`alpha_field`], so their `--help` text, their choices (the model's blur-mode registry) and their reader (the model's
`parse_stop_rule`) are written once.
"""

from __future__ import annotations

from dataclasses import field

from ..modeling_promptcam import BLUR_MODES, parse_stop_rule

BLUR_HELP = "head blurring for the ranking (see docs/traits.md)"
STOP_HELP = "top traits: 'misclassified' (paper) or a number of heads"
ALPHA_HELP = "opacity of the maps over the image"


def blur_field(default: str = "paper"):
    """The `blur` field: a blur mode of the model's registry (`BLUR_MODES`), `default` unless given."""
    return field(default=default, metadata={"help": BLUR_HELP, "choices": BLUR_MODES})


def stop_field(default: str | int = "misclassified"):
    """The `stop` field: the stop rule of the ranking, read by the model's `parse_stop_rule` (a rule's name or a
    number of heads)."""
    return field(default=default, metadata={"help": STOP_HELP, "parse": parse_stop_rule})


def alpha_field(default: float = 0.5, applies_to: str | None = None):
    """The `alpha` field: the maps' opacity, from 0 to 1; `applies_to` names the flag the figures need (its help
    then ends with it, e.g. "(--format html)")."""
    help_text = ALPHA_HELP if applies_to is None else f"{ALPHA_HELP} ({applies_to})"
    return field(default=default, metadata={"min": 0, "max": 1, "help": help_text})


__all__ = ["ALPHA_HELP", "BLUR_HELP", "STOP_HELP", "alpha_field", "blur_field", "stop_field"]
