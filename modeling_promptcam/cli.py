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


def _explain(args: argparse.Namespace) -> int:
    try:
        from .visualization import figures_for, png_bytes, write_html_report
    except ImportError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    from PIL import Image, UnidentifiedImageError
    from tqdm.auto import tqdm
    from transformers import AutoImageProcessor

    from .explain import explain_image, resolve_class
    from .modeling_promptcam import PromptCamForImageClassification

    if not os.path.isfile(os.path.join(args.model, "config.json")):
        print(f"error: {args.model} is not a saved Prompt-CAM model folder (no config.json).", file=sys.stderr)
        return 1
    model = PromptCamForImageClassification.from_pretrained(args.model).eval()
    processor = AutoImageProcessor.from_pretrained(args.model)
    failures: list[tuple[str, str]] = []

    classes = []
    for name in args.classes or []:
        index = resolve_class(model, name)
        if index is None:
            known = ", ".join(list(model.config.id2label.values())[:8])
            message = f"unknown class name {name!r} (the model's classes include: {known}, ...)"
            print(f"error: {message}", file=sys.stderr)
            failures.append((name, message))
        else:
            classes.append(index)

    os.makedirs(args.out, exist_ok=True)
    items, used_names = [], set()
    for path in tqdm(args.images, desc="explaining", unit="image"):
        try:
            with Image.open(path) as opened:
                image = opened.copy()
        except FileNotFoundError:
            failures.append((path, "no such file"))
        except (UnidentifiedImageError, OSError) as error:
            failures.append((path, f"not a readable image ({error})"))
        else:
            # imagefolder layout: a parent folder named like a class gives the true class
            true_class = resolve_class(model, os.path.basename(os.path.dirname(os.path.abspath(path))))
            explanation = explain_image(
                model, processor, image, args.top_k, classes, true_class, blur=args.blur, stop=args.stop
            )
            name = _unique(os.path.splitext(os.path.basename(path))[0], used_names)
            folder = os.path.join(args.out, name)
            os.makedirs(folder, exist_ok=True)
            pngs = {stem: png_bytes(figure) for stem, figure in figures_for(explanation, alpha=args.alpha).items()}
            for stem, data in pngs.items():
                _write_atomically(os.path.join(folder, f"{stem}.png"), data)
            items.append((path, explanation, pngs))
            continue
        print(f"error: {path}: {failures[-1][1]}", file=sys.stderr)

    report = os.path.join(args.out, "report.html")
    write_html_report(items, report, failures=failures)
    print(f"Explained {len(items)} of {len(args.images)} image(s); figures and {report} in {args.out}.")
    return 1 if failures else 0


def _unique(name: str, used: set[str]) -> str:
    candidate, number = name, 2
    while candidate in used:
        candidate, number = f"{name}_{number}", number + 1
    used.add(candidate)
    return candidate


def _write_atomically(path: str, data: bytes) -> None:
    temporary = f"{path}.tmp"
    with open(temporary, "wb") as handle:
        handle.write(data)
    os.replace(temporary, path)


def _stop_rule(value: str) -> str | int:
    if value == "misclassified":
        return value
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be 'misclassified' or a number of heads, got {value!r}") from None


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

    explain = commands.add_parser(
        "explain",
        help="trait-map figures and an HTML report for images",
        description=(
            "Classify images with a Prompt-CAM model and write, per image, the predicted class's top traits, all its "
            "heads, the true-vs-predicted view when an image's parent folder names another class (imagefolder "
            "layout), and how each --classes class's prompt sees it; plus report.html with everything embedded. "
            "Exit code 1 if any image or class name could not be used (the others are still processed)."
        ),
    )
    explain.add_argument("--model", required=True, help="a folder saved by save_pretrained / promptcam convert")
    explain.add_argument("images", nargs="+", metavar="IMAGE", help="image files")
    explain.add_argument(
        "--classes", nargs="+", metavar="NAME", help="also show how these classes' prompts see each image"
    )
    explain.add_argument("--top-k", type=int, default=5, help="predictions listed per image (default 5)")
    explain.add_argument(
        "--blur", choices=("paper", "official"), default="paper", help="head blurring for the ranking (default paper)"
    )
    explain.add_argument(
        "--stop",
        type=_stop_rule,
        default="misclassified",
        help="top traits: 'misclassified' (paper, default) or a number of heads",
    )
    explain.add_argument("--alpha", type=float, default=0.5, help="opacity of the maps over the image (default 0.5)")
    explain.add_argument("--out", default="promptcam_explain", help="output folder (default promptcam_explain)")
    explain.set_defaults(run=_explain)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
