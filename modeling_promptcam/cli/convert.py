"""`promptcam convert`: one of the authors' official Prompt-CAM checkpoints into a transformers folder."""

from __future__ import annotations

from ..convert.options import ConvertOptions

NAME = "convert"
HELP = "convert an official Prompt-CAM model.pt into a transformers folder"
DESCRIPTION = (
    "Convert one of the authors' released Prompt-CAM checkpoints (timm model.pt) into a folder that from_pretrained, "
    "AutoModel*(trust_remote_code=True) and pipeline('image-classification') load. Architecture and class count are "
    "read from the weights; the head count is not in them."
)
OPTIONS = (ConvertOptions,)


def run(options: ConvertOptions) -> int:
    from ..convert.run import convert_checkpoint

    model = convert_checkpoint(options)
    backbone = model.config.backbone_config
    print(
        f"Converted {options.checkpoint} -> {options.output_dir}: {backbone.model_type} backbone, "
        f"{backbone.num_hidden_layers} layers, width {backbone.hidden_size}, {backbone.num_attention_heads} heads, "
        f"patch {backbone.patch_size}, {backbone.image_size} px, {model.config.num_labels} classes."
    )
    return 0
