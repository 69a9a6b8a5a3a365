"""`promptcam` command line (also `python -m modeling_promptcam`).

Exit codes: 0 success, 1 the work failed (bad checkpoint, unreadable file), 2 bad command-line usage.
"""

from __future__ import annotations

import argparse
import os
import sys


def _refuse_occupied(folder: str, overwrite: bool) -> bool:
    """True (after saying so) when `folder` holds files and --overwrite was not given."""
    if os.path.isdir(folder) and os.listdir(folder) and not overwrite:
        print(f"error: {folder} exists and is not empty; choose a new folder or pass --overwrite.", file=sys.stderr)
        return True
    return False


def _convert(args: argparse.Namespace) -> int:
    from .convert import NotAnOfficialCheckpointError, convert_official_checkpoint, read_class_names

    if _refuse_occupied(args.out_dir, args.overwrite):
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
    from .files import write_atomically
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
                write_atomically(os.path.join(folder, f"{stem}.png"), data)
            items.append((path, explanation, pngs))
            continue
        print(f"error: {path}: {failures[-1][1]}", file=sys.stderr)

    report = os.path.join(args.out, "report.html")
    write_html_report(items, report, failures=failures)
    print(f"Explained {len(items)} of {len(args.images)} image(s); figures and {report} in {args.out}.")
    return 1 if failures else 0


def _app(args: argparse.Namespace) -> int:
    try:
        from .app import MAX_PIXELS, build_app, launch
    except ImportError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if args.examples is not None and not os.path.isdir(args.examples):
        print(
            f"error: --examples {args.examples} is not a folder (expected DIR/<class name>/<image>).", file=sys.stderr
        )
        return 1
    if os.path.isdir(args.model) and not os.path.isfile(os.path.join(args.model, "config.json")):
        print(f"error: {args.model} is not a saved Prompt-CAM model folder (no config.json).", file=sys.stderr)
        return 1
    try:
        app = build_app(args.model, args.examples, max_pixels=args.max_pixels or MAX_PIXELS)
    except ImportError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except (OSError, ValueError) as error:  # a Hub id that does not exist or cannot be reached, a broken folder
        print(f"error: cannot load the model {args.model}: {error}", file=sys.stderr)
        return 1
    launch(app, host=args.host, port=args.port)
    return 0


def _train(args: argparse.Namespace) -> int:
    from .data import DataError
    from .training import TrainOptions, run_training

    options = TrainOptions(
        backbone=args.backbone,
        data_dir=args.data_dir,
        dataset=args.dataset,
        image_column=args.image_column,
        label_column=args.label_column,
        output_dir=args.output_dir,
        preset=args.preset,
        epochs=args.epochs,
        warmup_epochs=args.warmup_epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        lr_min=args.lr_min,
        weight_decay=args.weight_decay,
        momentum=args.momentum,
        prompt_mode=args.prompt_mode,
        prompt_dropout=args.prompt_dropout,
        drop_path_rate=args.drop_path_rate,
        image_size=args.image_size,
        save_prompts_only=args.save_prompts_only,
        resume=args.resume,
        overwrite_output_dir=args.overwrite_output_dir,
        push_to_hub=args.push_to_hub,
        seed=args.seed,
        eval_steps=args.eval_steps,
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        num_workers=args.num_workers,
    )
    try:
        summary = run_training(options)
    except (DataError, ValueError, ImportError, FileNotFoundError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    finally:
        _end_distributed()
    if "final_dir" in summary:
        accuracy = summary["validation_accuracy"]
        shown = f"{accuracy:.4f}" if accuracy is not None else "n/a (no validation split)"
        print(f"Validation accuracy {shown}; model in {summary['final_dir']}")
    return 0


def _backbone(args: argparse.Namespace) -> int:
    from .backbones import NotAnOpenClipCheckpointError, convert_open_clip_vision, save_open_clip_vision

    if _refuse_occupied(args.out, args.overwrite):
        return 1
    try:
        model = convert_open_clip_vision(
            args.checkpoint,
            num_heads=args.num_heads,
            activation=args.activation,
            open_clip_config=args.open_clip_config,
        )
    except (NotAnOpenClipCheckpointError, FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    save_open_clip_vision(model, args.out)
    config = model.config
    print(
        f"Wrote a CLIPVisionModel ({config.num_hidden_layers} layers, width {config.hidden_size}, "
        f"{config.num_attention_heads} heads, patch {config.patch_size}, {config.image_size} px, {config.hidden_act}) "
        f"to {args.out}; train on it with: promptcam train --backbone {args.out} ..."
    )
    return 0


def _end_distributed() -> None:
    """Close the process group of a data-parallel run, so every process exits cleanly: all ranks meet first, so none
    tears down its connections while another still talks to it."""
    import torch

    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


def _unique(name: str, used: set[str]) -> str:
    candidate, number = name, 2
    while candidate in used:
        candidate, number = f"{name}_{number}", number + 1
    used.add(candidate)
    return candidate


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

    app = commands.add_parser(
        "app",
        help="serve the trait explorer web app (Gradio; the app extra)",
        description=(
            "A web app to upload an image (or pick an example) and browse its traits: the top-k predictions, the "
            "predicted class's top traits in rank order and all its heads, how any other class's prompt sees the "
            "same image, true vs predicted for labelled examples, and a class gallery over the example images. The "
            "model is loaded once; requests are queued and answered one at a time. Serves on 127.0.0.1 (this "
            'machine only) unless --host says otherwise. Needs pip install "modeling-promptcam[app]".'
        ),
    )
    app.add_argument(
        "--model", required=True, help="a folder saved by save_pretrained / promptcam convert, or a Hub id"
    )
    app.add_argument(
        "--examples",
        metavar="DIR",
        help="example images as DIR/<class name>/<image> (imagefolder layout): the folder name is the true class",
    )
    app.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to bind (default 127.0.0.1, this machine only; 0.0.0.0 serves every network interface)",
    )
    app.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    app.add_argument(
        "--max-pixels",
        type=int,
        default=None,
        help="refuse larger uploads with a message (default: PIL's decompression-bomb limit, about 89 megapixels)",
    )
    app.set_defaults(run=_app)

    train = commands.add_parser(
        "train",
        help="train Prompt-CAM on an image folder",
        description=(
            "Train Prompt-CAM (frozen backbone, learned class prompts) with the paper's recipe on DATA/train/<class>/* "
            "with evaluation on DATA/val/<class>/* each epoch; the best epoch on validation is kept. Values not given "
            "come from --preset (see hub_configs/) or the paper's default recipe. Data-parallel: "
            "'accelerate launch -m modeling_promptcam train ...' or 'torchrun --nproc_per_node N -m modeling_promptcam "
            "train ...'. Writes checkpoints to OUTPUT_DIR and the final model to OUTPUT_DIR/final."
        ),
    )
    train.add_argument("--backbone", required=True, help="ViT / DINOv2 checkpoint: a folder or a Hub id")
    data = train.add_mutually_exclusive_group(required=True)
    data.add_argument("--data-dir", help="folder with train/<class>/ (and val/<class>/)")
    data.add_argument(
        "--dataset",
        help="instead of --data-dir: a datasets dataset (a save_to_disk folder or a load_dataset name) with a train "
        "split (and validation / val / test), an Image column and a ClassLabel column",
    )
    train.add_argument("--image-column", default="image", help="image column of --dataset (default image)")
    train.add_argument("--label-column", default="label", help="class-label column of --dataset (default label)")
    train.add_argument("--output-dir", required=True, help="checkpoints, logs and final/ go here")
    train.add_argument("--preset", help="a recipe from hub_configs/, e.g. cub-dino, cub-dinov2 (default: the paper's)")
    train.add_argument("--epochs", type=int, help="training epochs (paper: 100-130)")
    train.add_argument("--warmup-epochs", type=int, help="linear warm-up epochs (paper: 20)")
    train.add_argument("--batch-size", type=int, help="images per device and step (paper: 16)")
    train.add_argument("--lr", type=float, help="peak learning rate (paper: 0.001-0.01 by dataset)")
    train.add_argument("--lr-min", type=float, help="final learning rate of the cosine schedule (paper: 1e-6)")
    train.add_argument("--weight-decay", type=float, help="SGD weight decay (paper: 1e-3)")
    train.add_argument("--momentum", type=float, help="SGD momentum (paper: 0.9)")
    train.add_argument("--prompt-mode", choices=("deep", "shallow"), help="prompt variant (paper: deep)")
    train.add_argument("--prompt-dropout", type=float, help="prompt dropout (paper: 0.1 DINO, 0 DINOv2)")
    train.add_argument("--drop-path-rate", type=float, help="stochastic depth (paper: 0.1 DINO, 0 DINOv2)")
    train.add_argument("--image-size", type=int, help="training / evaluation image size (paper: 224)")
    train.add_argument(
        "--save-prompts-only",
        action="store_true",
        help="checkpoints and the final folder hold only the prompts and head (a PEFT adapter, a few MB)",
    )
    train.add_argument("--resume", action="store_true", help="continue from the newest complete checkpoint")
    train.add_argument("--overwrite-output-dir", action="store_true", help="delete what OUTPUT_DIR holds first")
    train.add_argument("--push-to-hub", metavar="REPO", help="upload the final folder to this Hub repository")
    train.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
    train.add_argument("--eval-steps", type=int, help="evaluate and save every N steps instead of every epoch")
    train.add_argument("--gradient-accumulation-steps", type=int, default=1, help="default 1")
    train.add_argument("--num-workers", type=int, default=0, help="data loading worker processes (default 0)")
    train.set_defaults(run=_train)

    backbone = commands.add_parser(
        "backbone",
        help="rebuild a backbone from another format as a transformers folder",
        description=(
            "bioclip: the vision tower of an OpenCLIP checkpoint (BioCLIP's open_clip_pytorch_model.bin from "
            "imageomics/bioclip, or any OpenCLIP ViT) as a CLIPVisionModel folder with OpenCLIP's preprocessing."
        ),
    )
    backbone.add_argument("kind", choices=("bioclip",), help="the source format")
    backbone.add_argument("--checkpoint", required=True, help="open_clip_pytorch_model.bin (or .safetensors)")
    backbone.add_argument("--out", required=True, help="output folder (new or empty unless --overwrite)")
    backbone.add_argument("--num-heads", type=int, help="attention heads (default: width / 64, as OpenCLIP)")
    backbone.add_argument(
        "--activation",
        choices=("gelu", "quick_gelu"),
        help="MLP activation (default: from --open-clip-config, else gelu, OpenCLIP's default)",
    )
    backbone.add_argument("--open-clip-config", help="the checkpoint's open_clip_config.json (read for quick_gelu)")
    backbone.add_argument("--overwrite", action="store_true", help="write into a non-empty output folder")
    backbone.set_defaults(run=_backbone)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
