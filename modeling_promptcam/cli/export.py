"""`promptcam export`: a saved Prompt-CAM model as an ONNX graph with its preprocessing ([`export_model`])."""

from __future__ import annotations

from ..export.options import ExportOptions

NAME = "export"
HELP = "export a Prompt-CAM model as an ONNX graph (logits and top-k trait maps)"
DESCRIPTION = (
    "Write a saved Prompt-CAM model as an ONNX graph: input pixel_values (any batch, the image processor's size), "
    "outputs logits, the trait maps of each image's top-k classes and their class indices. The folder also gets the "
    "model's config.json (its classes), preprocessor_config.json and export.json; the graph's metadata carries the "
    "preprocessing. The graph is checked against the PyTorch model under onnxruntime before anything is written "
    "(docs/export.md runs it with onnxruntime, numpy and PIL only)."
)
OPTIONS = (ExportOptions,)


def run(options: ExportOptions) -> int:
    from ..export.run import export_model

    result = export_model(options)
    parity = result.parity
    height, width = result.image_size
    print(
        f"Exported {options.model} -> {result.output_dir}/{result.files[0]}: {result.backbone} backbone, "
        f"{result.num_labels} classes, trait maps of the top {result.top_k}, {height}x{width} px, opset "
        f"{result.opset}; onnxruntime vs PyTorch max |difference|: logits {parity['logits_max_abs_difference']:.2g}, "
        f"trait maps {parity['trait_maps_max_abs_difference']:.2g}."
    )
    return 0
