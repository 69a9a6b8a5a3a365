"""The trait atlas (`evaluation.atlas.trait_atlas`) on hand-made cases with known answers: a head that always peaks on
one keypoint is consistent (1.0), stable and named after that part; a head whose peak is uniformly random scores the
chance level computed from the box's area; counts come with every statistic and small classes are flagged."""

from __future__ import annotations

import json

import pytest

from modeling_promptcam.data import PartsError, read_keypoints_json
from modeling_promptcam.evaluation.atlas import trait_atlas
from tests.helpers.atlas import INPUT_SIZE, PeakingModel, image_processor, write_dot_images


def _annotations(tmp_path, keypoints):
    file = tmp_path / "keypoints.json"
    file.write_text(json.dumps(keypoints))
    return read_keypoints_json(file)


def test_a_head_that_always_peaks_on_one_keypoint_is_consistent_and_named_after_it(tmp_path):
    paths, keypoints = write_dot_images(tmp_path, 12)
    atlas = trait_atlas(
        PeakingModel(), paths, [0] * len(paths), _annotations(tmp_path, keypoints), image_processor=image_processor(),
        data_dir=tmp_path, cls_baseline=False, batch_size=5, progress=False,
    )  # fmt: skip
    assert list(atlas.classes) == ["dot"]
    dot = atlas.classes["dot"]
    assert dot.images == dot.annotated_images == 12 and not dot.small_sample
    first, second = dot.heads
    assert (first.head, second.head) == (0, 1)  # rank order: head 0 is the top trait of every image
    assert first.top_trait_rate == 1.0 and second.top_trait_rate == 0.0
    assert first.named_part == "beak" and first.named_part_rate == 1.0
    assert first.consistency == 1.0 and first.consistency_part == "beak" and first.consistent
    assert first.part_rates == {"beak": 1.0, "tail": 0.0} and first.part_counts == {"beak": 12, "tail": 12}
    assert first.stability == 1.0
    # the other class's head 0 peaks at the same place on every image; its random head almost never does
    assert first.distinctiveness == 0.0
    assert second.distinctiveness > 0.8
    # the gallery holds the head's most confident images, each peak on the dot (input pixels)
    assert len(first.gallery) == 4
    for item in first.gallery:
        beak = keypoints[f"val/dot/{paths[item.image].rsplit('/', 1)[1]}"]["beak"]
        assert (
            abs(item.peak[0] - beak[0] * INPUT_SIZE / 336) <= 1 and abs(item.peak[1] - beak[1] * INPUT_SIZE / 168) <= 1
        )
    assert dot.consistent_share == 0.5
    assert atlas.summary["prompt-cam"] == {"consistent_heads": 1, "judged_heads": 2, "consistent_share": 0.5}
    entry = atlas.to_json()["dot"]
    assert entry["images"] == 12 and [h["head"] for h in entry["heads"]] == [0, 1]
    assert {"named_part", "named_part_rate", "consistency", "stability", "top_trait_rate"} <= set(entry["heads"][0])


def test_a_head_peaking_uniformly_at_random_scores_the_chance_level_of_the_box(tmp_path):
    count = 100
    paths, keypoints = write_dot_images(tmp_path, count, seed=1)
    atlas = trait_atlas(
        PeakingModel(seed=2), paths, [0] * count, _annotations(tmp_path, keypoints), image_processor=image_processor(),
        data_dir=tmp_path, cls_baseline=False, batch_size=50, progress=False,
    )  # fmt: skip
    random_head = next(h for h in atlas.classes["dot"].heads if h.head == 1)
    # every keypoint lies at least 44 px from the borders, so the 72 x 72 box is never clipped: a uniformly random
    # peak catches a keypoint with probability (box area) / (image area)
    chance = 72 * 72 / (INPUT_SIZE * INPUT_SIZE)
    assert atlas.summary["box_share_of_input"] == pytest.approx(chance)
    standard_error = (chance * (1 - chance) / count) ** 0.5
    assert abs(random_head.part_rates["beak"] - chance) < 4 * standard_error
    assert not random_head.consistent and random_head.consistency < 0.25
    assert random_head.stability < 0.9  # a new random peak under noise


def test_small_classes_are_flagged_and_foreign_annotations_refused(tmp_path):
    paths, keypoints = write_dot_images(tmp_path, 3)
    atlas = trait_atlas(
        PeakingModel(), paths, [0, 0, 0], _annotations(tmp_path, keypoints), image_processor=image_processor(),
        data_dir=tmp_path, cls_baseline=False, min_images=5, progress=False,
    )  # fmt: skip
    assert atlas.classes["dot"].small_sample and atlas.summary["small_sample_classes"] == ["dot"]
    assert atlas.classes["dot"].heads[0].images == 3
    foreign = _annotations(tmp_path, {"another/bird.jpg": {"beak": [1, 1]}})
    with pytest.raises(PartsError, match="cover none"):
        trait_atlas(PeakingModel(), paths, [0, 0, 0], foreign, image_processor=image_processor(), data_dir=tmp_path,
                    cls_baseline=False, progress=False)  # fmt: skip
    outside = dict(keypoints)
    first = next(iter(outside))
    outside[first] = {"beak": [5000, 1]}
    with pytest.raises(PartsError, match="outside the 336x168 image"):
        trait_atlas(PeakingModel(), paths, [0, 0, 0], _annotations(tmp_path, outside),
                    image_processor=image_processor(), data_dir=tmp_path, cls_baseline=False, progress=False)  # fmt: skip
    # the fake model predicts class 0 for every image: labelled 1, none is correct, and only all_images measures them
    with pytest.raises(ValueError, match=r"None of the 3 image\(s\) was classified correctly.*all_images=True"):
        trait_atlas(PeakingModel(), paths, [1, 1, 1], image_processor=image_processor(), cls_baseline=False,
                    progress=False)  # fmt: skip
    everything = trait_atlas(PeakingModel(), paths, [1, 1, 1], image_processor=image_processor(), all_images=True,
                             cls_baseline=False, progress=False)  # fmt: skip
    assert list(everything.classes) == ["other"] and everything.confusions == [("other", "dot", 3)]
    with pytest.raises(ValueError, match="threshold"):
        trait_atlas(PeakingModel(), paths, [0, 0, 0], threshold=1.5, cls_baseline=False)


def test_part_masks_name_the_part_holding_the_peak_and_measure_the_attention_in_it(tmp_path):
    import numpy as np
    from PIL import Image

    from modeling_promptcam.data import read_part_masks
    from tests.helpers.atlas import ORIGINAL_SIZE

    paths, keypoints = write_dot_images(tmp_path, 6)
    width, height = ORIGINAL_SIZE
    for name, points in keypoints.items():
        folder = tmp_path / "masks" / name.rsplit(".", 1)[0]
        folder.mkdir(parents=True)
        for part, (x, y) in points.items():
            mask = np.zeros((height, width), dtype=np.uint8)
            mask[int(y) - 6 : int(y) + 6, int(x) - 9 : int(x) + 9] = 255  # about one input patch around the point
            Image.fromarray(mask, mode="L").save(folder / f"{part}.png")
        Image.fromarray(np.zeros((height, width), dtype=np.uint8), mode="L").save(folder / "fin.png")  # never visible
    atlas = trait_atlas(
        PeakingModel(), paths, [0] * 6, read_part_masks(tmp_path), image_processor=image_processor(),
        data_dir=tmp_path, cls_baseline=False, progress=False,
    )  # fmt: skip
    first = atlas.classes["dot"].heads[0]
    assert first.named_part == "beak" and first.named_part_rate == 1.0 and first.consistency == 1.0
    # head 0's positive attention is the dot's patch, spread by the bilinear upsampling: most of it is in the mask
    assert 0.5 < first.part_mask_mass <= 1.0
    assert atlas.summary["parts_without_visible_instances"] == ["fin"]
    rows = atlas.to_dataset()
    assert rows.num_rows == 2 and rows[0]["class_name"] == "dot" and rows[0]["method"] == "prompt-cam"
    assert rows[0]["named_part"] == "beak" and rows[0]["rank"] == 0
    # masks of another size than their image are refused before the pass
    Image.fromarray(np.zeros((10, 10), dtype=np.uint8), mode="L").save(folder / "beak.png")
    with pytest.raises(PartsError, match="10x10 but its image is 336x168"):
        trait_atlas(PeakingModel(), paths, [0] * 6, read_part_masks(tmp_path), image_processor=image_processor(),
                    data_dir=tmp_path, cls_baseline=False, progress=False)  # fmt: skip
