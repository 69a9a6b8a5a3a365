"""`promptcam` command line (also `python -m modeling_promptcam`).

Exit codes: 0 success, 1 the work failed (bad checkpoint, unreadable file), 2 bad command-line usage.
"""

from __future__ import annotations

import argparse
import os
import sys


def _convert(args: argparse.Namespace) -> int:
    from .convert import NotAnOfficialCheckpointError, convert_official_checkpoint, read_class_names

    if os.path.isdir(args.out_dir) and os.listdir(args.out_dir) and not args.overwrite:
        print(
            f"error: {args.out_dir} exists and is not empty; choose a new folder or pass --overwrite.", file=sys.stderr
        )
        return 1
    try:
        id2label = None
        if args.labels:
            id2label = dict(enumerate(read_class_names(args.labels)))
        model = convert_official_checkpoint(
            args.checkpoint, num_heads=args.num_heads, backbone=args.backbone, id2label=id2label
        )
    except (NotAnOfficialCheckpointError, FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    model.save_pretrained(args.out_dir)
    backbone = model.config.backbone_config
    print(
        f"Converted {args.checkpoint} -> {args.out_dir}: {backbone.model_type} backbone, {backbone.num_hidden_layers} "
        f"layers, width {backbone.hidden_size}, {backbone.num_attention_heads} heads, patch {backbone.patch_size}, "
        f"{backbone.image_size} px, {model.config.num_labels} classes."
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="promptcam",
        description="Prompt-CAM for transformers: interpretable fine-grained classification with frozen ViTs.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    convert = commands.add_parser(
        "convert",
        help="convert an official Prompt-CAM model.pt into a transformers folder",
        description=(
            "Convert one of the authors' released Prompt-CAM checkpoints (timm model.pt) into a folder that "
            "from_pretrained, AutoModel*(trust_remote_code=True) and pipeline('image-classification') load. "
            "Architecture and class count are read from the weights; the head count is not in them."
        ),
    )
    convert.add_argument("checkpoint", help="the official model.pt")
    convert.add_argument("out_dir", help="output folder (must be new or empty unless --overwrite)")
    convert.add_argument(
        "--num-heads", type=int, default=12, help="attention heads of the backbone (default 12, as ViT-B)"
    )
    convert.add_argument(
        "--backbone",
        choices=("dino", "dinov2"),
        help="check the backbone family read from the weights (layer scale means DINOv2)",
    )
    convert.add_argument(
        "--labels",
        metavar="FILE_OR_DIR",
        help="class names: a text file, one per line in class order (official 'NNN.Class_Name' folder names and "
        "CUB classes.txt accepted), or the dataset's train/ folder (sorted class sub-folders); "
        "default class_0, class_1, ...",
    )
    convert.add_argument("--overwrite", action="store_true", help="write into a non-empty output folder")
    convert.set_defaults(run=_convert)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
