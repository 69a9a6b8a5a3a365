"""How faithful are saliency maps? Insertion / deletion (RISE) and localisation against ground-truth masks.

- [`insertion_deletion`]: the causal metrics of RISE (Petsiuk et al., BMVC 2018).
- [`pointing_game`], [`energy_in_mask`]: does the map's peak / mass fall on the ground-truth region?

The maps they measure come from `evaluation.saliency` (Prompt-CAM and the baselines of the paper's Table 1).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from ..data.masks import grow_region

# RISE's settings (Petsiuk et al. 2018, their reference code): insertion starts from a Gaussian blur of the image
# (kernel 11, sigma 5); deletion sets removed pixels to 0, which after mean / std normalisation is the mean colour.
DEFAULT_STEPS = 50
DEFAULT_BLUR_KERNEL_SIZE = 11
DEFAULT_BLUR_SIGMA = 5.0
DEFAULT_DELETION_VALUE = 0.0
DEFAULT_BATCH_SIZE = 64


# ------------------------------------------------------------------------------------------------------- checks
def _check_pixel_values(pixel_values: torch.Tensor) -> None:
    if not isinstance(pixel_values, torch.Tensor) or pixel_values.ndim != 4 or not pixel_values.is_floating_point():
        shape = tuple(pixel_values.shape) if isinstance(pixel_values, torch.Tensor) else type(pixel_values).__name__
        raise ValueError(
            f"pixel_values must be a floating-point (batch, channels, height, width) tensor of normalised images, got "
            f"{shape}; use the model's image processor and add the batch dimension with pixel_values[None]."
        )


def _check_maps(name: str, maps: torch.Tensor, batch: int) -> None:
    if not isinstance(maps, torch.Tensor) or maps.ndim != 3 or maps.shape[0] != batch:
        shape = tuple(maps.shape) if isinstance(maps, torch.Tensor) else type(maps).__name__
        raise ValueError(
            f"{name} must be a ({batch}, height, width) tensor, one map per image, got {shape}; for Prompt-CAM's "
            "(batch, heads, grid_h, grid_w) trait maps use promptcam_saliency to average the heads first."
        )


def _check_targets(target_classes: torch.Tensor, batch: int, num_classes: int | None = None) -> torch.Tensor:
    target_classes = torch.as_tensor(target_classes)
    if target_classes.shape != (batch,) or target_classes.is_floating_point():
        raise ValueError(
            f"target_classes must hold one integer class index per image, shape ({batch},), got "
            f"{target_classes.dtype} {tuple(target_classes.shape)}."
        )
    if (
        num_classes is not None
        and batch
        and (int(target_classes.min()) < 0 or int(target_classes.max()) >= num_classes)
    ):
        raise ValueError(
            f"target_classes must lie in [0, {num_classes}) (the classifier has {num_classes} classes), got "
            f"[{int(target_classes.min())}, {int(target_classes.max())}]."
        )
    return target_classes


def to_image_resolution(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """`(B, h, w)` maps at `size` `(H, W)`: unchanged when already there, else bilinear (half-pixel centres, as
    OpenCV's and PIL's resize), which keeps a patch's value at its centre. Maps larger than `size` are refused."""
    height, width = size
    if tuple(maps.shape[-2:]) == (height, width):
        return maps.float()
    if maps.shape[-2] > height or maps.shape[-1] > width:
        raise ValueError(
            f"Maps of size {tuple(maps.shape[-2:])} are larger than the images / masks {(height, width)}; give the "
            "masks at image resolution (the maps are upsampled to it, never downsampled)."
        )
    resized = nn.functional.interpolate(
        maps[:, None].float(), size=(height, width), mode="bilinear", align_corners=False
    )
    return resized[:, 0]


def _logits(output) -> torch.Tensor:
    """Logits from a classifier's output: a tensor, a ModelOutput with `logits`, or a tuple starting with them."""
    if isinstance(output, torch.Tensor):
        return output
    logits = getattr(output, "logits", None)
    if logits is None and isinstance(output, tuple):
        logits = output[0]
    if not isinstance(logits, torch.Tensor):
        raise TypeError(
            f"The classifier returned {type(output).__name__}; it must return logits (batch, classes) or an output "
            "with a `logits` field."
        )
    return logits


# ------------------------------------------------------------------------------------------------------- RISE
def gaussian_blur(
    pixel_values: torch.Tensor, kernel_size: int = DEFAULT_BLUR_KERNEL_SIZE, sigma: float = DEFAULT_BLUR_SIGMA
) -> torch.Tensor:
    """A Gaussian blur of `(B, C, H, W)` images, per channel (separable, borders replicated)."""
    if not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0 or sigma <= 0:
        raise ValueError(f"The blur needs an odd kernel size >= 1 and sigma > 0, got {kernel_size} and {sigma}.")
    offsets = torch.arange(kernel_size, dtype=torch.float32, device=pixel_values.device) - kernel_size // 2
    kernel = torch.exp(-(offsets**2) / (2 * sigma**2))
    kernel = (kernel / kernel.sum()).to(pixel_values.dtype)
    channels, pad = pixel_values.shape[1], kernel_size // 2
    padded = nn.functional.pad(pixel_values, (pad, pad, pad, pad), mode="replicate")
    blurred = nn.functional.conv2d(padded, kernel.view(1, 1, 1, -1).expand(channels, 1, 1, -1), groups=channels)
    return nn.functional.conv2d(blurred, kernel.view(1, 1, -1, 1).expand(channels, 1, -1, 1), groups=channels)


def pixel_ranks(saliency: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """`(B, H, W)` maps -> `(B, H * W)` rank of every pixel (0 = most salient). Ties are broken in a random order drawn
    from `seed` (not raster order, which would make a constant map sweep the image from the top); the same order for
    every image, so an image's result does not depend on the batch it is in."""
    batch, pixels = saliency.shape[0], saliency.shape[1] * saliency.shape[2]
    generator = torch.Generator().manual_seed(seed)
    shuffle = torch.randperm(pixels, generator=generator).to(saliency.device).expand(batch, -1)
    flat = saliency.reshape(batch, pixels).float()
    order = shuffle.gather(1, flat.gather(1, shuffle).argsort(dim=1, descending=True, stable=True))
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(pixels, device=saliency.device).expand(batch, -1).contiguous())
    return ranks


def curve_auc(curves: torch.Tensor, fraction: torch.Tensor | None = None) -> torch.Tensor:
    """The area under insertion / deletion curves `(B, S)` by the trapezoidal rule over `fraction` `(S,)`, the share
    of pixels changed at each step (default: S evenly spaced points from 0 to 1). Returns `(B,)`."""
    curves = torch.as_tensor(curves, dtype=torch.float32)
    if curves.ndim != 2 or curves.shape[1] < 2:
        raise ValueError(f"curves must be (batch, steps + 1) with at least 2 points, got {tuple(curves.shape)}.")
    if fraction is None:
        fraction = torch.linspace(0.0, 1.0, curves.shape[1])
    fraction = torch.as_tensor(fraction, dtype=torch.float32, device=curves.device)
    if fraction.shape != curves.shape[1:] or bool((fraction.diff() < 0).any()):
        raise ValueError(
            f"fraction must be {curves.shape[1]} non-decreasing shares of pixels changed (one per curve point), got "
            f"shape {tuple(fraction.shape)}."
        )
    return torch.trapezoid(curves, fraction, dim=-1)


@torch.no_grad()
def insertion_deletion(
    classifier: Callable[[torch.Tensor], torch.Tensor],
    pixel_values: torch.Tensor,
    saliency: torch.Tensor,
    target_classes: torch.Tensor,
    steps: int = DEFAULT_STEPS,
    batch_size: int = DEFAULT_BATCH_SIZE,
    blur_kernel_size: int = DEFAULT_BLUR_KERNEL_SIZE,
    blur_sigma: float = DEFAULT_BLUR_SIGMA,
    deletion_value: float = DEFAULT_DELETION_VALUE,
    seed: int = 0,
    return_curves: bool = False,
    progress: bool = False,
) -> dict[str, torch.Tensor]:
    r"""
    Insertion and deletion AUCs (RISE, Petsiuk et al. 2018) of one saliency map per image.

    Pixels are ordered by saliency, most salient first (ties in a seeded random order). Deletion starts from the image
    and sets the next `ceil(H * W / steps)` pixels (all channels) to `deletion_value` at each step; insertion starts
    from a blurred copy and puts the next pixels of the original back. After each step (and before the first) the
    score is the classifier's softmax probability of the target class. The AUC is the trapezoid integral of the
    score over the fraction of pixels changed (0 to 1). A faithful map gives a high insertion AUC (the class comes
    back as soon as its evidence is) and a low deletion AUC (it goes as soon as its evidence does).

    Args:
        classifier: maps `(n, C, H, W)` pixel values to logits `(n, classes)` (a tensor, or an output with `logits`,
            e.g. a Prompt-CAM model or a [`LinearProbeForImageClassification`]); called in no-grad mode, put it in
            eval mode first.
        pixel_values (`(B, C, H, W)`): the normalised images.
        saliency (`(B, h, w)`): one map per image, at image resolution or lower (then upsampled bilinearly). Only
            the order of the values matters.
        target_classes (`(B,)`): the class whose probability is scored, per image.
        steps (defaults to 50): steps from 0 to all pixels; each curve has `steps + 1` points. RISE's reference code
            changes 224 pixels (one row of a 224 px image) per step, i.e. 224 steps; fewer steps cost proportionally
            less and integrate a coarser curve.
        batch_size (defaults to 64): perturbed images per classifier call (the steps of one or more images).
        blur_kernel_size, blur_sigma (default 11 and 5, RISE's): the Gaussian blur of the insertion start.
        deletion_value (default 0): the value of removed pixels, in normalised space (0 = the normalisation mean,
            i.e. the mean colour).
        seed: the order of pixels of equal saliency.
        return_curves: also return `insertion_curve` and `deletion_curve` `(B, steps + 1)` and `fraction`
            `(steps + 1,)`, the x axis.
        progress: a tqdm progress bar over the classifier calls.
    Returns:
        `{"insertion": (B,), "deletion": (B,)}` AUCs in [0, 1] (float32, on the images' device), plus the curves when
        asked.
    """
    _check_pixel_values(pixel_values)
    batch, _, height, width = pixel_values.shape
    _check_maps("saliency", saliency, batch)
    target_classes = _check_targets(target_classes, batch).to(pixel_values.device)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}.")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}.")

    pixels = height * width
    ranks = pixel_ranks(to_image_resolution(saliency.to(pixel_values.device), (height, width)), seed)
    counts = (torch.arange(steps + 1, device=pixel_values.device) * math.ceil(pixels / steps)).clamp(max=pixels)
    fraction = counts.float() / pixels
    blurred = gaussian_blur(pixel_values, blur_kernel_size, blur_sigma)
    removed = torch.full_like(pixel_values, deletion_value)

    jobs = torch.arange(batch * (steps + 1), device=pixel_values.device)
    chunks = jobs.split(batch_size)
    total = 2 * len(chunks)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, desc="insertion/deletion", unit="batch", leave=False)
    result = {}
    # insertion: from the blurred copy towards the image; deletion: from the image towards the constant
    for metric, start, end in (("insertion", blurred, pixel_values), ("deletion", pixel_values, removed)):
        curve = torch.empty(batch, steps + 1, device=pixel_values.device)
        for chunk in chunks:
            images, step = chunk // (steps + 1), chunk % (steps + 1)
            changed = (ranks[images] < counts[step][:, None]).view(-1, 1, height, width)
            perturbed = torch.where(changed, end[images], start[images])
            probabilities = _logits(classifier(perturbed)).float().softmax(dim=-1)
            if chunk[0] == 0:  # the first call tells how many classes the classifier has
                _check_targets(target_classes, batch, probabilities.shape[-1])
            curve[images, step] = probabilities.gather(1, target_classes[images][:, None])[:, 0]
            if bar is not None:
                bar.update()
        result[metric] = curve_auc(curve, fraction)
        if return_curves:
            result[f"{metric}_curve"] = curve
    if bar is not None:
        bar.close()
    if return_curves:
        result["fraction"] = fraction
    return result


# ------------------------------------------------------------------------------------------------------- localisation
def _check_masks(saliency: torch.Tensor, masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(masks, torch.Tensor) or masks.ndim != 3:
        shape = tuple(masks.shape) if isinstance(masks, torch.Tensor) else type(masks).__name__
        raise ValueError(f"masks must be a (batch, height, width) boolean tensor at image resolution, got {shape}.")
    _check_maps("saliency", saliency, masks.shape[0])
    return to_image_resolution(saliency.to(masks.device), tuple(masks.shape[1:])), masks.bool()


def pointing_game(saliency: torch.Tensor, masks: torch.Tensor, tolerance: int = 0) -> torch.Tensor:
    """Pointing game (Zhang et al., ECCV 2016): is the map's peak inside the ground-truth region?

    The pixel-level measure, for maps of any resolution and any method (`promptcam faithfulness`). Its patch-level
    sibling is `evaluation.localization.peak_hits_mask` (the demo's trait localisation): the same "within N" rule
    (`data.masks.grow_region`), counted in patches on the patch grid, where a patch touched by the mask counts and the
    peak is one patch. The two agree on a patch-grid map shown at image resolution with each patch's value repeated
    (nearest) and a mask of whole patches: `pointing_game(..., tolerance=k * patch_size)` is
    `peak_hits_mask(..., tolerance=k)` when the map has one highest patch.

    Args:
        saliency (`(B, h, w)`): maps at image resolution or lower (upsampled bilinearly).
        masks (`(B, H, W)` bool): the ground-truth regions at image resolution.
        tolerance: count a hit within this many pixels of the region (the mask grown by `tolerance` pixels in the
            8-neighbourhood; Zhang et al. use 15).
    Returns:
        `(B,)` bool. A hit needs every pixel that reaches the peak value (to 1e-6 of the map's range) inside the
        (grown) region, so a flat map, whose "peak" is everywhere, only hits a region that covers the image.
    """
    saliency, masks = _check_masks(saliency, masks)
    masks = grow_region(masks, tolerance)
    flat = saliency.flatten(1)
    high, low = flat.max(dim=1, keepdim=True).values, flat.min(dim=1, keepdim=True).values
    peak = flat >= high - 1e-6 * (high - low)
    return ~(peak & ~masks.flatten(1)).any(dim=1)


def energy_in_mask(saliency: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Energy-based pointing game (Wang et al., Score-CAM, 2020): the share of the map's non-negative mass that falls
    inside the ground-truth region.

    Args:
        saliency (`(B, h, w)`): maps at image resolution or lower (upsampled bilinearly). Negative values count as 0.
        masks (`(B, H, W)` bool): the ground-truth regions at image resolution.
    Returns:
        `(B,)` in [0, 1]. A map with no positive value says nothing about where to look and counts as uniform (its
        energy is the region's share of the image).
    """
    saliency, masks = _check_masks(saliency, masks)
    positive = saliency.clamp(min=0).flatten(1)
    inside = masks.flatten(1).float()
    total = positive.sum(dim=1)
    uniform = inside.mean(dim=1)
    energy = (positive * inside).sum(dim=1) / total.clamp(min=torch.finfo(total.dtype).tiny)
    return torch.where(total > 0, energy, uniform)


__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_BLUR_KERNEL_SIZE",
    "DEFAULT_BLUR_SIGMA",
    "DEFAULT_DELETION_VALUE",
    "DEFAULT_STEPS",
    "curve_auc",
    "energy_in_mask",
    "gaussian_blur",
    "insertion_deletion",
    "pixel_ranks",
    "pointing_game",
    "to_image_resolution",
]
