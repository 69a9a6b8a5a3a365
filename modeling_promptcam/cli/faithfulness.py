"""`promptcam faithfulness`: insertion / deletion and trait localisation of Prompt-CAM against Grad-CAM-family
baselines ([`run_faithfulness`] does the work)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from ..evaluation.options import FaithfulnessOptions

NAME = "faithfulness"
HELP = "insertion / deletion and trait localisation of Prompt-CAM vs Grad-CAM-family baselines"
DESCRIPTION = (
    "The paper's Table 1 on your data: insertion and deletion AUCs (RISE) of Prompt-CAM's maps and of Grad-CAM, "
    "Layer-CAM, Eigen-CAM and attention rollout on a linear probe trained on DATA/train with the same frozen backbone; "
    "with ground-truth masks in DATA/masks/<split>/<class>/<image stem>.png (mode L, nonzero = trait region), also the "
    "pointing game and the energy in the mask. Every method is evaluated on the same images of DATA/val, for the true "
    "class (--target). Writes OUT/faithfulness.json (means, per-image values, settings) and the probe (OUT/probe), and "
    "prints the table."
)


@dataclass
class TableOptions:
    """How the command prints its table (not a setting of the run, so not in `FaithfulnessOptions`)."""

    markdown: bool = field(default=False, metadata={"help": "print a Markdown table beside the paper's values"})


OPTIONS = (FaithfulnessOptions, TableOptions)


def run(options: FaithfulnessOptions, table: TableOptions) -> int:
    from ..evaluation.faithfulness import RESULT_FILE, format_table, run_faithfulness

    result = run_faithfulness(options)
    print(format_table(result, markdown=table.markdown))
    print(f"Per-image results and settings: {os.path.join(options.output_dir, RESULT_FILE)}")
    return 0
