"""The faithfulness and localisation measures as `evaluate` modules, one folder each (`<name>/<name>.py`, the layout
`evaluate.load(<folder>)` reads). They ship with the package and load from these paths with no Hub access::

    import evaluate
    from modeling_promptcam.evaluation import POINTING_GAME_PATH

    evaluate.load(POINTING_GAME_PATH).compute(predictions=maps, references=masks, tolerance=15)

Each module computes through the functions of `evaluation.metrics`, so the numbers are those of
`promptcam faithfulness`.
"""

import os

_HERE = os.path.dirname(os.path.abspath(__file__))
POINTING_GAME_PATH = os.path.join(_HERE, "pointing_game")
ENERGY_IN_MASK_PATH = os.path.join(_HERE, "energy_in_mask")
INSERTION_DELETION_PATH = os.path.join(_HERE, "insertion_deletion")
# the module name `evaluate.load` gives each -> its folder
METRIC_MODULE_PATHS = {
    "pointing_game": POINTING_GAME_PATH,
    "energy_in_mask": ENERGY_IN_MASK_PATH,
    "insertion_deletion": INSERTION_DELETION_PATH,
}

__all__ = ["ENERGY_IN_MASK_PATH", "INSERTION_DELETION_PATH", "METRIC_MODULE_PATHS", "POINTING_GAME_PATH"]
