"""`promptcam synthetic`: draw the synthetic fine-grained bird dataset with trait masks ([`generate_dataset`])."""

from __future__ import annotations

from ..data.options import SyntheticOptions

NAME = "synthetic"
HELP = "draw the synthetic fine-grained bird dataset with trait masks"
DESCRIPTION = (
    "Birds of one body plan whose classes differ only in one small trait (wing-patch texture, crest, forked tail, eye "
    "band, spotted throat), as an image folder OUT/train/<class>/, OUT/val/<class>/ with masks of each image's trait "
    "under OUT/masks/. Deterministic by --seed. With --taxonomy: a three-level taxonomy whose every level is "
    "decided by its own trait, with OUT/taxonomy.csv and a mask per level under OUT/masks-<level>/."
)
OPTIONS = (SyntheticOptions,)


def run(options: SyntheticOptions) -> int:
    from ..data.synthetic import generate_dataset, generate_taxonomy_dataset

    generate = generate_taxonomy_dataset if options.taxonomy else generate_dataset
    info = generate(
        options.output_dir,
        options.train_per_class,
        options.val_per_class,
        options.seed,
        options.image_size,
        progress=options.progress,
    )
    if options.taxonomy:
        print(
            f"Wrote a {len(info['levels'])}-level taxonomy of {len(info['classes'])} species x "
            f"({options.train_per_class} train + {options.val_per_class} val) images, a trait mask per level and "
            f"{info['taxonomy']} to {options.output_dir}."
        )
        return 0
    fraction = info["trait_fraction"]
    print(
        f"Wrote {len(info['classes'])} classes x ({options.train_per_class} train + {options.val_per_class} val) images "
        f"and their trait masks to {options.output_dir} (traits cover {fraction['min']:.1%} to {fraction['max']:.1%} "
        "of an image)."
    )
    return 0
