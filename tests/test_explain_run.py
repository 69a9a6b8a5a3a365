"""`explain_images`, the loop behind `promptcam explain`, as a library call: files, failures, and images converted the
way training converts them."""

import numpy as np
import pytest
from PIL import Image

from modeling_promptcam.data import to_rgb
from modeling_promptcam.explain import ExplainOptions, explain_images
from tests.helpers.app import CLASS_NAMES, random_image, save_model


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("model")
    save_model(folder)
    return folder


def test_explains_every_readable_image_and_lists_the_rest(folder, tmp_path):
    good = tmp_path / "bird.png"
    random_image(0).save(good)
    # a 16-bit grey image: PIL's own convert("RGB") would clip it to white
    sixteen = tmp_path / "depth.png"
    Image.fromarray(np.linspace(0, 60000, 64 * 48).reshape(48, 64).astype(np.uint16)).save(sixteen)
    missing = tmp_path / "missing.png"
    out = tmp_path / "out"

    result = explain_images(
        ExplainOptions(
            str(folder),
            (str(good), str(sixteen), str(missing), str(good)),
            classes=(CLASS_NAMES[1], "Unknown_Bird"),
            top_k=2,
            output_dir=str(out),
            progress=False,
        )
    )
    assert not result.ok and result.images == 4
    assert [path for path, _ in result.explained] == [str(good), str(sixteen), str(good)]
    assert result.failures[0][0] == "Unknown_Bird" and result.failures[1] == (str(missing), "no such file")
    assert result.errors[1] == f"{missing}: no such file" and "unknown class name 'Unknown_Bird'" in result.errors[0]
    # one folder per image; the same name twice gets a suffix
    for name in ("bird", "depth", "bird_2"):
        assert (out / name / "top_traits.png").is_file() and (out / name / f"class_{CLASS_NAMES[1]}.png").is_file()
    assert (out / "report.html").is_file() and result.report == str(out / "report.html")

    with Image.open(sixteen) as opened:
        expected = np.asarray(to_rgb(opened))
    shown = np.asarray(result.explained[1][1].image)
    assert np.array_equal(shown, expected) and shown.min() == 0 and shown.max() == 255
    assert (shown < 255).mean() > 0.9  # rescaled, not clipped


def test_all_good_is_ok_and_a_missing_model_is_refused(folder, tmp_path):
    image = tmp_path / "x.png"
    random_image(1).save(image)
    assert explain_images(ExplainOptions(str(folder), (str(image),), output_dir=str(tmp_path / "o"), stop=2)).ok
    with pytest.raises(FileNotFoundError, match="is not a saved Prompt-CAM model folder"):
        explain_images(ExplainOptions(str(tmp_path / "nothing"), (str(image),)))
