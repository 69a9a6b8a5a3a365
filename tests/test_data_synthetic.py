"""The synthetic trait dataset: deterministic, masks cover what differs between classes, the imagefolder layout."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from PIL import Image

from modeling_promptcam import cli
from modeling_promptcam.data import (
    CLASSES,
    MAX_TRAIT_FRACTION,
    draw_bird,
    generate_dataset,
    load_trait_mask,
    patch_mask,
)
from modeling_promptcam.evaluation import chance_level, map_peak, peak_hits_mask


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


@pytest.mark.parametrize("seed", [0, 7])
def test_classes_differ_only_where_their_traits_are(seed):
    """The same random draw rendered as every class: images differ only inside the two classes' trait masks, and each
    class differs from every other somewhere."""
    drawn = [draw_bird(c, _rng(seed)) for c in range(len(CLASSES))]
    for a in range(len(CLASSES)):
        for b in range(a + 1, len(CLASSES)):
            image_a, mask_a = drawn[a]
            image_b, mask_b = drawn[b]
            differs = np.any(np.asarray(image_a, np.int16) != np.asarray(image_b, np.int16), axis=-1)
            assert differs.any(), (CLASSES[a].name, CLASSES[b].name)
            outside = differs & ~(mask_a | mask_b)
            assert outside.sum() == 0, (CLASSES[a].name, CLASSES[b].name, int(outside.sum()))


def test_masks_are_small_and_cover_visible_traits():
    for c, trait in enumerate(CLASSES):
        for seed in range(5):
            image, mask = draw_bird(c, _rng(seed))
            if trait.name == "plain":  # the reference class has no trait
                assert not mask.any()
                continue
            assert image.size == (224, 224) and image.mode == "RGB"
            assert 0.003 < mask.mean() <= MAX_TRAIT_FRACTION, (trait.name, mask.mean())
            # the trait is visible: inside its mask the image is not one flat colour
            inside = np.asarray(image)[mask]
            assert inside.std(axis=0).max() > 10, trait.name


def test_generation_is_deterministic_and_seeded(tmp_path):
    def digest(folder) -> str:
        files = sorted(p for p in folder.rglob("*.png"))
        return hashlib.sha256(b"".join(p.read_bytes() for p in files)).hexdigest()

    first = generate_dataset(tmp_path / "a", train_per_class=2, val_per_class=1, seed=3, progress=False)
    generate_dataset(tmp_path / "b", train_per_class=2, val_per_class=1, seed=3, progress=False)
    generate_dataset(tmp_path / "c", train_per_class=2, val_per_class=1, seed=4, progress=False)
    assert digest(tmp_path / "a") == digest(tmp_path / "b")
    assert digest(tmp_path / "a") != digest(tmp_path / "c")
    # the layout: an imagefolder tree plus a mask per image
    for split, count in (("train", 2), ("val", 1)):
        for trait in CLASSES:
            images = sorted((tmp_path / "a" / split / trait.name).glob("*.png"))
            assert len(images) == count
            for image in images:
                mask = load_trait_mask(tmp_path / "a", image)
                assert mask.shape == (224, 224) and mask.any() == (trait.name != "plain")
    info = json.loads((tmp_path / "a" / "dataset.json").read_text())
    assert info["classes"] == [c.name for c in CLASSES] and info["seed"] == 3
    assert info["trait_fraction"] == first["trait_fraction"] and info["trait_fraction"]["max"] <= MAX_TRAIT_FRACTION


def test_bad_arguments_and_occupied_folders_are_refused(tmp_path):
    with pytest.raises(ValueError, match="at least 1"):
        generate_dataset(tmp_path / "x", train_per_class=0, progress=False)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "file.txt").write_text("mine")
    with pytest.raises(ValueError, match="already holds files"):
        generate_dataset(tmp_path / "full", train_per_class=1, val_per_class=1, progress=False)
    with pytest.raises(FileNotFoundError, match="No trait mask"):
        load_trait_mask(tmp_path, tmp_path / "train" / "x" / "missing.png")


def test_cli_writes_the_dataset(tmp_path, capsys):
    assert cli.main(["synthetic", "--out", str(tmp_path / "d"), "--train-per-class", "1", "--val-per-class", "1"]) == 0
    assert f"{len(CLASSES)} classes" in capsys.readouterr().out
    assert len(list((tmp_path / "d" / "train").glob("*/*.png"))) == len(CLASSES)
    assert cli.main(["synthetic", "--out", str(tmp_path / "d")]) == 1


def test_patch_mask_and_peak_hits():
    mask = np.zeros((8, 8), bool)
    mask[0:2, 0:2] = True  # patch (0, 0) of a 4 x 4 grid of 2-pixel patches
    assert patch_mask(mask, (4, 4)).sum() == 1
    grown = patch_mask(mask, (4, 4), dilation=1)
    assert grown.sum() == 4 and grown[1, 1] and not grown[2, 2]
    peak_near = np.zeros((4, 4))
    peak_near[1, 1] = 1.0
    peak_far = np.zeros((4, 4))
    peak_far[3, 2] = 1.0
    assert map_peak(peak_near) == (1, 1)
    assert peak_hits_mask(peak_near, mask, tolerance=1)
    assert not peak_hits_mask(peak_near, mask, tolerance=0)
    assert not peak_hits_mask(peak_far, mask, tolerance=1)
    assert chance_level(mask, (4, 4), tolerance=1) == pytest.approx(4 / 16)
    with pytest.raises(ValueError, match="patch grid"):
        patch_mask(np.zeros((7, 8), bool), (4, 4))


def test_mask_images_are_binary(tmp_path):
    generate_dataset(tmp_path / "d", train_per_class=1, val_per_class=1, progress=False)
    for path in (tmp_path / "d" / "masks").rglob("*.png"):
        values = np.unique(np.asarray(Image.open(path)))
        assert set(values.tolist()) <= {0, 255}


# the pixels of every image and mask of `generate_dataset(..., train_per_class=1, val_per_class=1, image_size=64,
# seed=3)`, as the generator drew them before it wrote part keypoints: writing the keypoints must not change a pixel
PIXELS_BEFORE_KEYPOINTS = "6fbed06cfe380a9d31b3a1bf1368f8f4280ed98fa5ee207f79ba5093178ce930"


def _pixel_hash(root) -> str:
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.png")):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(np.asarray(Image.open(path)).tobytes())
    return digest.hexdigest()


def test_keypoints_leave_every_image_and_mask_as_it_was(tmp_path):
    generate_dataset(tmp_path, train_per_class=1, val_per_class=1, image_size=64, seed=3, progress=False)
    assert _pixel_hash(tmp_path) == PIXELS_BEFORE_KEYPOINTS


def test_the_keypoints_are_written_in_cub_format_and_read_back(tmp_path):
    from modeling_promptcam.data import PART_NAMES, TRAIT_PARTS, read_cub_parts

    generate_dataset(tmp_path, train_per_class=2, val_per_class=1, image_size=96, seed=1, progress=False)
    assert PART_NAMES == ("head", "eye", "crest", "throat", "wing", "tail", "body", "legs")
    assert (tmp_path / "parts" / "parts.txt").read_text().splitlines() == [
        f"{i} {name}" for i, name in enumerate(PART_NAMES, 1)
    ]
    lines = (tmp_path / "images.txt").read_text().splitlines()
    assert len(lines) == 3 * len(CLASSES)
    names = [line.split(" ", 1)[1] for line in lines]
    assert all((tmp_path / name).is_file() for name in names)
    locations = (tmp_path / "parts" / "part_locs.txt").read_text().splitlines()
    assert len(locations) == len(lines) * len(PART_NAMES)
    annotations = read_cub_parts(tmp_path)
    assert annotations.part_names == PART_NAMES
    for name in names:
        visible = set(annotations.keypoints[name])
        crested = name.split("/")[1] == "crested"
        assert visible == set(PART_NAMES) - (set() if crested else {"crest"}), name
    info = json.loads((tmp_path / "dataset.json").read_text())
    assert info["parts"]["names"] == list(PART_NAMES) and info["parts"]["trait_parts"] == TRAIT_PARTS


@pytest.mark.parametrize("seed", [0, 5])
def test_each_trait_keypoint_lies_on_its_trait(seed):
    """The keypoint of a class's trait part is inside that class's trait mask (the ground truth the atlas is checked
    against), and every keypoint lies inside the image."""
    from modeling_promptcam.data import TRAIT_PARTS, draw_bird_with_keypoints

    for index, trait_class in enumerate(CLASSES):
        image, mask, keypoints = draw_bird_with_keypoints(index, _rng(seed), 224)
        for x, y, _ in keypoints.values():
            assert 0 <= x < 224 and 0 <= y < 224
        if trait_class.name in TRAIT_PARTS:
            x, y, visible = keypoints[TRAIT_PARTS[trait_class.name]]
            assert visible and mask[int(y), int(x)], (trait_class.name, x, y)
        image_again, mask_again = draw_bird(index, _rng(seed), 224)
        assert np.array_equal(np.asarray(image), np.asarray(image_again)) and np.array_equal(mask, mask_again)
