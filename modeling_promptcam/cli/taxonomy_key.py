"""`promptcam taxonomy-key`: the key of each image (and of a class) from a taxonomy folder ([`write_taxonomy_keys`])."""

from __future__ import annotations

from ..taxonomy.options import TaxonomyKeyOptions
from .errors import report_error

NAME = "taxonomy-key"
HELP = "taxonomic keys: per level, the traits that set the predicted group apart from its siblings"
DESCRIPTION = (
    "Classify images with a taxonomy folder (promptcam train --taxonomy) from the root down and write, per image, a "
    "figure with one row per level: the chosen group, its probability, and the maps of its top traits against its "
    "siblings (greedy head ranking); with --class-key CLASS also the heads that recur over the images of that class; "
    "plus report.html with everything embedded. Exit code 1 if any image could not be used (the others are still "
    "processed)."
)
OPTIONS = (TaxonomyKeyOptions,)


def run(options: TaxonomyKeyOptions) -> int:
    from ..taxonomy.key import write_taxonomy_keys

    result = write_taxonomy_keys(options)
    for path, reason in result.failures:
        report_error(f"{path}: {reason}")
    print(f"Wrote the keys of {len(result.keys)} of {len(options.images)} image(s); report {result.report}.")
    return 0 if result.ok else 1
