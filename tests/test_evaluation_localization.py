"""The two localisation measures: `peak_hits_mask` (patch level, the demo's) and `pointing_game` (pixel level, the
faithfulness run's) share one "within N" rule, agree where they mean the same thing, and differ where documented."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from modeling_promptcam.data.masks import grow_region, patch_mask
from modeling_promptcam.evaluation import peak_hits_mask, pointing_game

PATCH = 4
GRID = (5, 6)


def _grown_by_hand(region: np.ndarray, radius: int) -> np.ndarray:
    """Every cell with a region cell at Chebyshev distance <= radius, by looking at each cell's neighbours."""
    rows, columns = np.nonzero(region)
    grown = np.zeros_like(region)
    for row in range(region.shape[0]):
        for column in range(region.shape[1]):
            distances = np.maximum(np.abs(rows - row), np.abs(columns - column))
            grown[row, column] = bool(len(distances)) and distances.min() <= radius
    return grown


@pytest.mark.parametrize("radius", [0, 1, 2, 3])
def test_grow_region_is_the_chebyshev_neighbourhood_for_numpy_and_torch(radius):
    rng = np.random.default_rng(radius)
    for _ in range(5):
        region = rng.random((7, 9)) > 0.9
        expected = _grown_by_hand(region, radius)
        grown = grow_region(region, radius)
        assert isinstance(grown, np.ndarray) and grown.dtype == bool
        np.testing.assert_array_equal(grown, expected)
        batch = torch.from_numpy(np.stack([region, region[::-1].copy()]))
        np.testing.assert_array_equal(grow_region(batch, radius)[1].numpy(), _grown_by_hand(region[::-1], radius))
    with pytest.raises(ValueError, match="must be an integer >= 0, got -1"):
        grow_region(np.zeros((2, 2), bool), -1)


def _pixels(patch_values: np.ndarray) -> np.ndarray:
    """A patch-grid array shown at image resolution, each patch's value repeated over its pixels (nearest)."""
    return np.kron(patch_values, np.ones((PATCH, PATCH), dtype=patch_values.dtype))


def test_on_patch_aligned_maps_and_masks_the_two_measures_agree():
    rng = np.random.default_rng(0)
    outcomes = set()
    for _ in range(60):
        trait_map = rng.random(GRID).astype(np.float32)  # one highest patch (ties have probability 0)
        patches = rng.random(GRID) > 0.85
        if not patches.any():
            continue
        mask = _pixels(patches.astype(np.uint8)).astype(bool)  # a mask of whole patches
        saliency = torch.from_numpy(_pixels(trait_map))[None]
        for tolerance in (0, 1, 2):
            patch_level = peak_hits_mask(trait_map, mask, tolerance)
            pixel_level = bool(pointing_game(saliency, torch.from_numpy(mask)[None], tolerance=tolerance * PATCH)[0])
            assert patch_level == pixel_level, (tolerance, trait_map, patches)
            outcomes.add(patch_level)
    assert outcomes == {True, False}  # both answers occurred: the agreement is not vacuous


def test_where_the_measures_differ():
    trait_map = np.zeros(GRID, dtype=np.float32)
    trait_map[2, 3] = 1.0
    # a trait smaller than a patch, inside the peak patch: the patch level counts the patch it touches, the pixel level
    # needs every pixel of the peak (the whole patch) inside the region
    mask = np.zeros((GRID[0] * PATCH, GRID[1] * PATCH), dtype=bool)
    mask[2 * PATCH + 1, 3 * PATCH + 1] = True
    assert patch_mask(mask, GRID)[2, 3]
    assert peak_hits_mask(trait_map, mask, tolerance=0)
    assert not pointing_game(torch.from_numpy(_pixels(trait_map))[None], torch.from_numpy(mask)[None])[0]
    # a flat map: the patch level takes the first patch as the peak, the pixel level has its peak everywhere
    flat = np.ones(GRID, dtype=np.float32)
    corner = np.zeros_like(mask)
    corner[:PATCH, :PATCH] = True
    assert peak_hits_mask(flat, corner, tolerance=0)
    assert not pointing_game(torch.from_numpy(_pixels(flat))[None], torch.from_numpy(corner)[None])[0]
