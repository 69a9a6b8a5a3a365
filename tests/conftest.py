"""Fixtures shared by the test files (helper functions live in tests/helpers/)."""

from __future__ import annotations

import pytest

from tests.helpers.evaluation import save_model_of_the_classes


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    """A saved tiny ViT Prompt-CAM folder whose classes are the folder names of the evaluation image folder
    (`tests.helpers.evaluation.write_image_folder`): what `promptcam faithfulness` and the saliency tests evaluate."""
    return save_model_of_the_classes(tmp_path_factory.mktemp("promptcam"))
