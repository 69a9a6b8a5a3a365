"""A tiny saved model with bird class names, example folders and test images for the trait explorer's tests."""

import struct
import zlib

import numpy as np
from PIL import Image

from tests.helpers.models import save_tiny_model

CLASS_NAMES = ["Black_footed_Albatross", "Laysan_Albatross", "Sooty_Albatross", "Groove_billed_Ani"]


def random_image(seed, size=(160, 120), mode="RGB"):
    channels = {"L": (), "RGB": (3,), "RGBA": (4,)}[mode]
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], *channels), dtype=np.uint8)
    if mode == "RGBA":
        pixels[..., 3] = np.linspace(0, 255, size[0], dtype=np.uint8)  # transparent on the left, opaque on the right
    return Image.fromarray(pixels)


def save_model(folder):
    return save_tiny_model(folder, CLASS_NAMES)


def make_examples(folder):
    """An imagefolder tree: two classes by plain name, one by official numbered name, one unknown to the model."""
    for seed, name in enumerate(["Laysan_Albatross", "003.Sooty_Albatross", "Not_A_Model_Class"]):
        (folder / name).mkdir(parents=True)
        for number in range(2):
            random_image(10 * seed + number).save(folder / name / f"bird{number}.png")
    (folder / "Laysan_Albatross" / "notes.txt").write_text("not an example")
    return folder


def huge_png(path, width, height):
    """A valid all-black 1-bit PNG of any size, written without holding its pixels (a decompression bomb)."""
    row = b"\x00" * (1 + (width + 7) // 8)  # filter byte + packed bits
    compressor, chunks = zlib.compressobj(9), []
    for _ in range(height):
        chunks.append(compressor.compress(row))
    data = b"".join(chunks) + compressor.flush()

    def chunk(kind, payload):
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b""))
    return path


def make_atlas(path, model, examples_folder):
    """`atlas.json` (`promptcam atlas`'s layout) of `model` on the example images of its classes, with two keypoints
    per image, every image evaluated: what the app's Class atlas tab reads."""
    import json

    from modeling_promptcam.app import find_examples
    from modeling_promptcam.data import read_keypoints_json
    from modeling_promptcam.evaluation.atlas import trait_atlas

    examples = [example for example in find_examples(examples_folder, model) if example.class_index is not None]
    keypoints = {
        f"{example.path.split('/')[-2]}/{example.path.split('/')[-1]}": {"beak": [40.0, 30.0], "tail": [120.0, 90.0]}
        for example in examples
    }
    keypoints_file = path.parent / "keypoints.json"
    keypoints_file.write_text(json.dumps(keypoints))
    atlas = trait_atlas(
        model,
        [example.path for example in examples],
        [example.class_index for example in examples],
        read_keypoints_json(keypoints_file),
        all_images=True,
        min_images=1,
        gallery=1,
        progress=False,
    )
    atlas.save(path)
    return atlas
