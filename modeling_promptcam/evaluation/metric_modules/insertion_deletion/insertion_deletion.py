"""RISE's insertion and deletion scores (Petsiuk et al., BMVC 2018) from given curves, as an `evaluate` module: the
area under each image's curve of the target class's probability as pixels are inserted / deleted in saliency order,
averaged over the images. It ships inside modeling-promptcam and loads from its folder, offline::

    import evaluate
    from modeling_promptcam.evaluation import INSERTION_DELETION_PATH, insertion_deletion

    curves = insertion_deletion(classifier, pixel_values, saliency, targets, return_curves=True)
    evaluate.load(INSERTION_DELETION_PATH).compute(
        insertion_curve=curves["insertion_curve"], deletion_curve=curves["deletion_curve"], fraction=curves["fraction"]
    )

The curves come from `modeling_promptcam.evaluation.insertion_deletion` (or any other implementation); the area is
`modeling_promptcam.evaluation.curve_auc` (one place).
"""

import datasets
import evaluate
import torch

from modeling_promptcam.evaluation.metrics import curve_auc

_DESCRIPTION = """
Insertion (higher is better) and deletion (lower is better) AUCs from per-image curves of the target class's
probability, integrated by the trapezoidal rule over the share of pixels changed.
"""

_KWARGS_DESCRIPTION = """
Args:
    insertion_curve (`list` of float lists, shape (N, S)): the probability after each insertion step, from the
        blurred image (step 0) to the whole image.
    deletion_curve (`list` of float lists, shape (N, S)): the probability after each deletion step, from the whole
        image (step 0) to nothing left.
    fraction (`list` of `float`, shape (S,), *optional*): the share of pixels changed at each step (what
        `insertion_deletion(..., return_curves=True)` returns as `fraction`); defaults to S evenly spaced points
        from 0 to 1.
Returns:
    insertion, deletion (`float` in [0, 1]): the mean AUCs over the images.
"""

_CITATION = """@inproceedings{petsiuk2018rise,
  title     = {RISE: Randomized Input Sampling for Explanation of Black-box Models},
  author    = {Petsiuk, Vitali and Das, Abir and Saenko, Kate},
  booktitle = {British Machine Vision Conference (BMVC)},
  year      = {2018}
}"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class InsertionDeletion(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "insertion_curve": datasets.Sequence(datasets.Value("float32")),
                    "deletion_curve": datasets.Sequence(datasets.Value("float32")),
                }
            ),
        )

    def _compute(self, insertion_curve, deletion_curve, fraction=None) -> dict:
        if not len(insertion_curve):
            return {"insertion": float("nan"), "deletion": float("nan")}
        fraction = None if fraction is None else torch.as_tensor(fraction, dtype=torch.float32)
        return {
            "insertion": float(curve_auc(torch.as_tensor(insertion_curve), fraction).mean()),
            "deletion": float(curve_auc(torch.as_tensor(deletion_curve), fraction).mean()),
        }
