"""The trait atlas where the answer is known: `promptcam atlas --parts DATA` on a finished demo run (the demo's model
and synthetic birds, whose generator writes CUB-format part keypoints), and the table of issue 17's targets.

Per trait class: the named part of its top-ranked head and that head's consistency, against the class's trait part
(`data.TRAIT_PARTS`: crest -> crest, forked tail -> tail, wing textures -> wing, spotted throat -> throat, masked ->
eye). Targets: the named part is the trait part for at least 6 of the 7 trait classes, each with consistency >= 0.8;
Prompt-CAM's share of consistent heads above the backbone's CLS-attention heads' share.

    make demo                                   # or: promptcam demo --out demo_output
    python benchmarks/bench_atlas.py --demo demo_output [--out demo_output/atlas] [--all-images] [--blur MODE]
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from modeling_promptcam import BLUR_MODES  # noqa: E402
from modeling_promptcam.data import TRAIT_PARTS  # noqa: E402
from modeling_promptcam.evaluation import AtlasOptions  # noqa: E402
from modeling_promptcam.evaluation.atlas_report import run_atlas  # noqa: E402

TARGET_CLASSES = 6  # of the 7 trait classes
TARGET_CONSISTENCY = 0.8


def atlas_table(atlas) -> tuple[str, bool]:
    """The Markdown table of the top-ranked head per trait class, and whether the targets are met."""
    lines = [
        "| class | images | trait part | top head | named part (rate) | consistency (part) | stability | hit |",
        "|---|---|---|---|---|---|---|---|",
    ]
    hits = 0
    for name, part in TRAIT_PARTS.items():
        entry = atlas.classes.get(name)
        if entry is None:
            lines.append(f"| {name} | 0 | {part} | – | – | – | – | no |")
            continue
        head = entry.heads[0]
        hit = head.named_part == part and (head.consistency or 0) >= TARGET_CONSISTENCY
        hits += hit
        rate = f"{head.named_part_rate:.2f}" if head.named_part_rate is not None else "–"
        consistency = f"{head.consistency:.2f} ({head.consistency_part})" if head.consistency is not None else "–"
        stability = f"{head.stability:.2f}" if head.stability is not None else "–"
        lines.append(
            f"| {name} | {entry.images} | {part} | {head.head} | {head.named_part} ({rate}) | {consistency} | "
            f"{stability} | {'yes' if hit else 'no'} |"
        )
    ours = atlas.summary["prompt-cam"]
    baseline = atlas.summary["cls-attention"]
    above = (ours["consistent_share"] or 0) > (baseline["consistent_share"] or 0)
    lines += [
        "",
        f"Trait classes whose top head names the trait part with consistency >= {TARGET_CONSISTENCY}: {hits} of "
        f"{len(TRAIT_PARTS)} (target >= {TARGET_CLASSES}).",
        f"Share of consistent heads: Prompt-CAM {ours['consistent_share']:.3f} ({ours['consistent_heads']} of "
        f"{ours['judged_heads']}), CLS-attention heads {baseline['consistent_share']:.3f} "
        f"({baseline['consistent_heads']} of {baseline['judged_heads']}) (target: Prompt-CAM above).",
    ]
    return "\n".join(lines), hits >= TARGET_CLASSES and above


def _demo_folder(recorded: str, in_layout: str) -> str:
    return recorded if os.path.isabs(recorded) or not os.path.isdir(in_layout) else in_layout


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--demo", default="demo_output", help="a finished demo run (its summary.json)")
    parser.add_argument("--out", default=None, help="atlas output folder (default: DEMO/atlas)")
    parser.add_argument("--all-images", action="store_true", help="every val image, not only the correct ones")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument(
        "--blur",
        choices=BLUR_MODES,
        help="blur mode of the ranking that orders the heads (default: the one the demo ranked with, from its "
        "summary.json, so the atlas's top head is the demo's top-ranked head)",
    )
    args = parser.parse_args()
    summary_file = os.path.join(args.demo, "summary.json")
    if not os.path.isfile(summary_file):
        parser.error(f"{summary_file} does not exist: run `make demo` (or promptcam demo --out {args.demo}) first.")
    with open(summary_file, encoding="utf-8") as file:
        demo = json.load(file)
    blur = args.blur or demo.get("settings", {}).get("blur")
    if blur is None:
        parser.error(f"{summary_file} does not record the demo's blur mode (settings.blur): give --blur MODE.")
    # the summary names its folders as the demo was given them (relative to where it ran); the demo's own layout
    # (DEMO/training/final, DEMO/data) finds them from anywhere
    model_dir = _demo_folder(demo["model_dir"], os.path.join(args.demo, "training", "final"))
    data_dir = _demo_folder(demo["data_dir"], os.path.join(args.demo, "data"))
    options = AtlasOptions(
        model=model_dir,
        data=data_dir,
        parts=data_dir,
        output_dir=args.out or os.path.join(args.demo, "atlas"),
        all_images=args.all_images,
        batch_size=args.batch_size,
        blur=blur,
    )
    atlas = run_atlas(options)
    table, met = atlas_table(atlas)
    print(table)
    print(f"\natlas.html and atlas.json in {options.output_dir}; targets {'met' if met else 'NOT met'}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
