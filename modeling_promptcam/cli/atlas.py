"""`promptcam atlas`: name every head's trait and measure its consistency over each class ([`run_atlas`] does the
work)."""

from __future__ import annotations

import os

from ..evaluation.options import AtlasOptions

NAME = "atlas"
HELP = "the trait atlas: every head's named part, consistency and stability over each class"
DESCRIPTION = (
    "For every class and every head of its prompt, over the class's correctly classified images of DATA/val: where "
    "the head peaks, which annotated part it names (the nearest visible keypoint, or the part mask holding the peak, "
    "most often), EvalProtoPNet's consistency (a part in the 72 x 72 box around the peak in at least 80 percent of the images "
    "where it is visible) and stability (the same parts under Gaussian noise), how often the head is a top trait, and "
    "how distinct its peaks are from the other classes' prompts; the backbone's CLS-attention heads as a baseline. "
    "Part annotations: CUB-200-2011's files (--parts), a keypoints JSON (--keypoints) or per-part masks (--masks). "
    "Writes OUT/atlas.html (self-contained), OUT/atlas.json and OUT/atlas_summary.json."
)
OPTIONS = (AtlasOptions,)


def run(options: AtlasOptions) -> int:
    from ..evaluation.atlas_report import ATLAS_FILE, HTML_FILE, run_atlas

    atlas = run_atlas(options)
    share = atlas.summary["prompt-cam"]["consistent_share"]
    baseline = atlas.summary["cls-attention"]["consistent_share"]
    shares = (
        f"; consistent heads: {share:.2f} (CLS attention: {baseline:.2f})"
        if share is not None and baseline is not None
        else (f"; consistent heads: {share:.2f}" if share is not None else "")
    )
    print(
        f"Atlas of {len(atlas.classes)} class(es){shares}: {os.path.join(options.output_dir, HTML_FILE)}, "
        f"{os.path.join(options.output_dir, ATLAS_FILE)}"
    )
    return 0
