"""A linear probe on a frozen backbone: the paper's accuracy baseline (Table 2) and the classifier the Grad-CAM-family
baselines explain (Table 1).

The probe reads the backbone's final-normed CLS token and trains one `nn.Linear` on it. Training runs on cached
features ([`extract_features`] once, then [`fit_linear_probe`] for many epochs), so it costs one backbone pass over
the training images. A probe is saved as `probe.safetensors` (weight, bias) beside `probe_config.json` (num_labels,
hidden size, id2label); the backbone is not saved with it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable

import torch
from torch import nn
from transformers import PreTrainedModel

from ..files import write_atomically, write_json_atomically

PROBE_WEIGHTS = "probe.safetensors"
PROBE_CONFIG = "probe_config.json"


def backbone_features(backbone: PreTrainedModel, pixel_values: torch.Tensor) -> torch.Tensor:
    """The image feature a linear probe reads, `(B, D)`: the final-normed CLS token.

    ViT, DINOv2 (with registers), DINOv3: `last_hidden_state[:, 0]` (these models apply their final LayerNorm to every
    token). CLIP vision towers: `pooler_output` (CLS after `post_layernorm`; `last_hidden_state` is not normed).
    SigLIP has no CLS token: the mean of its normed tokens.
    """
    output = backbone(pixel_values=pixel_values)
    model_type = backbone.config.model_type
    if model_type == "clip_vision_model":
        return output.pooler_output
    if model_type == "siglip_vision_model":
        return output.last_hidden_state.mean(dim=1)
    return output.last_hidden_state[:, 0]


class LinearProbeForImageClassification(nn.Module):
    """A frozen backbone and a trainable `classifier = nn.Linear(hidden_size, num_labels)` on its CLS feature.

    `forward(pixel_values) -> logits (B, num_labels)`. The backbone's parameters do not require gradients, but the
    forward pass is differentiable with respect to `pixel_values` and to the backbone's activations, which is what
    Grad-CAM and Layer-CAM need (see [`modeling_promptcam.evaluation.grad_cam`]). The backbone module may be shared
    with a Prompt-CAM model (`model.backbone`): the probe does not change it.
    """

    def __init__(self, backbone: PreTrainedModel, num_labels: int, id2label: dict[int, str] | None = None):
        super().__init__()
        if not isinstance(num_labels, int) or num_labels < 1:
            raise ValueError(f"num_labels must be a positive integer, got {num_labels!r}.")
        self.backbone = backbone
        self.backbone.requires_grad_(False)
        self.num_labels = num_labels
        self.id2label = {int(k): str(v) for k, v in (id2label or {}).items()} or {
            i: f"LABEL_{i}" for i in range(num_labels)
        }
        self.classifier = nn.Linear(backbone.config.hidden_size, num_labels)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """`(B, 3, H, W)` normalised images -> logits `(B, num_labels)`."""
        features = backbone_features(self.backbone, pixel_values)
        return self.classifier(features.to(self.classifier.weight.dtype))

    def save_probe(self, directory: str | os.PathLike) -> None:
        """Write the classifier (not the backbone) to `directory`; see [`save_linear_probe`]."""
        save_linear_probe(self.classifier, directory, self.id2label)

    @classmethod
    def from_probe(cls, backbone: PreTrainedModel, directory: str | os.PathLike) -> LinearProbeForImageClassification:
        """A probe on `backbone` with the classifier saved in `directory` (checks that the widths agree)."""
        classifier, id2label = load_linear_probe(directory)
        hidden_size = backbone.config.hidden_size
        if classifier.in_features != hidden_size:
            raise ValueError(
                f"The probe in {directory} reads {classifier.in_features}-wide features but the backbone is "
                f"{hidden_size} wide; it was trained on another backbone. Train a probe on this one."
            )
        probe = cls(backbone, classifier.out_features, id2label)
        probe.classifier = classifier.to(next(backbone.parameters()).device)
        return probe


@torch.no_grad()
def extract_features(
    backbone: PreTrainedModel,
    pixel_values_batches: Iterable[torch.Tensor],
    device: torch.device | str | None = None,
    progress: bool | str = False,
    total: int | None = None,
) -> torch.Tensor:
    """Backbone features ([`backbone_features`]) of every image, without gradients, in eval mode.

    Args:
        backbone: a transformers vision backbone (ViTModel, Dinov2Model, ...).
        pixel_values_batches: an iterable of `(b, 3, H, W)` normalised image batches (a DataLoader, a list, ...).
        device: where to run the backbone (default: where its parameters are).
        progress: show a tqdm progress bar; a string is used as its description.
        total: the number of batches, for the progress bar (default: `len(pixel_values_batches)` when it has one).
    Returns:
        `(N, D)` float32 features on the CPU, in the order of the batches.
    """
    device = torch.device(device) if device is not None else next(backbone.parameters()).device
    was_training = backbone.training
    backbone.eval()
    batches = pixel_values_batches
    if progress:
        from tqdm.auto import tqdm

        total = total if total is not None else (len(batches) if hasattr(batches, "__len__") else None)
        batches = tqdm(batches, desc=progress if isinstance(progress, str) else "features", unit="batch", total=total)
    features = []
    try:
        for pixel_values in batches:
            if not isinstance(pixel_values, torch.Tensor) or pixel_values.ndim != 4:
                raise ValueError(
                    "extract_features takes batches of pixel_values shaped (batch, channels, height, width), got "
                    f"{tuple(pixel_values.shape) if isinstance(pixel_values, torch.Tensor) else type(pixel_values)}."
                )
            pixel_values = pixel_values.to(device, next(backbone.parameters()).dtype)
            features.append(backbone_features(backbone, pixel_values).float().cpu())
    finally:
        backbone.train(was_training)
    if not features:
        raise ValueError("extract_features got no batches: the image list is empty.")
    return torch.cat(features)


def fit_linear_probe(
    features: torch.Tensor,
    labels: torch.Tensor,
    num_labels: int,
    epochs: int = 100,
    lr: float = 1e-3,
    weight_decay: float = 1e-4,
    batch_size: int = 256,
    seed: int = 0,
) -> nn.Linear:
    """Train `nn.Linear(D, num_labels)` on cached features with AdamW and cross-entropy.

    Defaults: 100 epochs, learning rate 1e-3 (constant), weight decay 1e-4, mini-batches of 256 shuffled every epoch.
    On cached features this takes seconds for thousands of images. Deterministic for a given `seed` (initialisation
    and shuffling use their own generator; the global random state is left untouched).

    Args:
        features: `(N, D)` features ([`extract_features`]).
        labels: `(N,)` integer class indices in `[0, num_labels)`.
    Returns:
        the trained classifier (float32, on the features' device).
    """
    if features.ndim != 2:
        raise ValueError(f"features must be (N, D), got shape {tuple(features.shape)}.")
    if labels.ndim != 1 or labels.shape[0] != features.shape[0] or labels.is_floating_point():
        raise ValueError(
            f"labels must be {features.shape[0]} integer class indices (one per feature row), got {labels.dtype} "
            f"{tuple(labels.shape)}."
        )
    if labels.numel() == 0:
        raise ValueError("fit_linear_probe got no training examples.")
    if int(labels.min()) < 0 or int(labels.max()) >= num_labels:
        raise ValueError(f"labels must lie in [0, {num_labels}), got [{int(labels.min())}, {int(labels.max())}].")
    for name, value in (("epochs", epochs), ("batch_size", batch_size)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}.")

    features = features.float()
    labels = labels.to(features.device)
    generator = torch.Generator().manual_seed(seed)
    classifier = nn.Linear(features.shape[1], num_labels).to(features.device)
    with torch.no_grad():  # nn.Linear's default initialisation, drawn from our generator
        bound = 1.0 / features.shape[1] ** 0.5
        classifier.weight.copy_(
            torch.empty_like(classifier.weight, device="cpu").uniform_(-bound, bound, generator=generator)
        )
        classifier.bias.copy_(
            torch.empty_like(classifier.bias, device="cpu").uniform_(-bound, bound, generator=generator)
        )
    optimizer = torch.optim.AdamW(classifier.parameters(), lr=lr, weight_decay=weight_decay)
    with torch.enable_grad():
        for _ in range(epochs):
            order = torch.randperm(features.shape[0], generator=generator).to(features.device)
            for start in range(0, features.shape[0], batch_size):
                rows = order[start : start + batch_size]
                loss = nn.functional.cross_entropy(classifier(features[rows]), labels[rows])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
    classifier.requires_grad_(False)
    return classifier


def save_linear_probe(
    classifier: nn.Linear, directory: str | os.PathLike, id2label: dict[int, str] | None = None
) -> None:
    """Write `probe.safetensors` (weight `(num_labels, D)`, bias `(num_labels,)`) and `probe_config.json` to
    `directory` (created if needed), each atomically."""
    from safetensors.torch import save

    os.makedirs(directory, exist_ok=True)
    tensors = {
        "weight": classifier.weight.detach().float().cpu().contiguous(),
        "bias": classifier.bias.detach().float().cpu().contiguous(),
    }
    config = {
        "num_labels": classifier.out_features,
        "hidden_size": classifier.in_features,
        "id2label": {str(k): v for k, v in (id2label or {}).items()},
    }
    write_atomically(os.path.join(directory, PROBE_WEIGHTS), save(tensors))
    write_json_atomically(os.path.join(directory, PROBE_CONFIG), config)


def load_linear_probe(directory: str | os.PathLike) -> tuple[nn.Linear, dict[int, str]]:
    """Read a probe written by [`save_linear_probe`]: the classifier and its id2label."""
    from safetensors.torch import load_file

    weights_path, config_path = os.path.join(directory, PROBE_WEIGHTS), os.path.join(directory, PROBE_CONFIG)
    for path in (weights_path, config_path):
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"{directory} is not a saved linear probe: {os.path.basename(path)} is missing (save_linear_probe "
                "writes probe.safetensors and probe_config.json)."
            )
    with open(config_path, encoding="utf-8") as handle:
        config = json.load(handle)
    tensors = load_file(weights_path)
    weight, bias = tensors["weight"], tensors["bias"]
    if weight.shape != (config["num_labels"], config["hidden_size"]) or bias.shape != (config["num_labels"],):
        raise ValueError(
            f"{weights_path} holds weight {tuple(weight.shape)} and bias {tuple(bias.shape)}, but {PROBE_CONFIG} says "
            f"{config['num_labels']} labels on {config['hidden_size']}-wide features; the files do not belong together."
        )
    classifier = nn.Linear(config["hidden_size"], config["num_labels"])
    with torch.no_grad():
        classifier.weight.copy_(weight)
        classifier.bias.copy_(bias)
    classifier.requires_grad_(False)
    return classifier, {int(k): v for k, v in config.get("id2label", {}).items()}


__all__ = [
    "LinearProbeForImageClassification",
    "backbone_features",
    "extract_features",
    "fit_linear_probe",
    "load_linear_probe",
    "save_linear_probe",
]
