"""`promptcam explain`: trait-map figures and an HTML report for images ([`explain_images`] does the work)."""

from __future__ import annotations

from ..explain.options import ExplainOptions
from .errors import report_error

NAME = "explain"
HELP = "trait-map figures and an HTML report for images"
DESCRIPTION = (
    "Classify images with a Prompt-CAM model and write, per image, the predicted class's top traits, all its heads, "
    "the true-vs-predicted view when an image's parent folder names another class (imagefolder layout), and how each "
    "--classes class's prompt sees it; plus report.html with everything embedded. Exit code 1 if any image or class "
    "name could not be used (the others are still processed)."
)
OPTIONS = (ExplainOptions,)


def run(options: ExplainOptions) -> int:
    from ..explain.run import explain_images

    result = explain_images(options)
    for message in result.errors:
        report_error(message)
    print(
        f"Explained {len(result.explained)} of {result.images} image(s); figures and {result.report} in "
        f"{result.output_dir}."
    )
    return 0 if result.ok else 1
