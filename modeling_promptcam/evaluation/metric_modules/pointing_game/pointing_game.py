"""The pointing game (Zhang et al., ECCV 2016) as an `evaluate` module: the share of saliency maps whose peak lies in
the ground-truth region. It ships inside modeling-promptcam and loads from its folder, offline::

    import evaluate
    from modeling_promptcam.evaluation import POINTING_GAME_PATH

    evaluate.load(POINTING_GAME_PATH).compute(predictions=maps, references=masks, tolerance=15)

The rule itself is `modeling_promptcam.evaluation.pointing_game` (one place); this module feeds it one image at a
time, so the maps and masks of different images may differ in size.
"""

import datasets
import evaluate
import torch

from modeling_promptcam.evaluation.metrics import pointing_game

_DESCRIPTION = """
Pointing game: a map hits when every pixel reaching its peak value lies inside the ground-truth region (grown by
`tolerance` pixels). The result is the hit rate over the images.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of 2-D float arrays `(h, w)`): one saliency map per image, at image resolution or lower
        (upsampled bilinearly to its mask's size).
    references (`list` of 2-D bool arrays `(H, W)`): the ground-truth region of each image, at image resolution.
    tolerance (`int`, defaults to 0): pixels of slack around the region (Zhang et al. use 15).
Returns:
    pointing_game (`float` in [0, 1]): the share of images whose map hits.
"""

_CITATION = """@article{zhang2018top,
  title   = {Top-Down Neural Attention by Excitation Backprop},
  author  = {Zhang, Jianming and Bargal, Sarah Adel and Lin, Zhe and Brandt, Jonathan and Shen, Xiaohui and Sclaroff, Stan},
  journal = {International Journal of Computer Vision},
  year    = {2018}
}"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class PointingGame(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Sequence(datasets.Sequence(datasets.Value("float32"))),
                    "references": datasets.Sequence(datasets.Sequence(datasets.Value("bool"))),
                }
            ),
        )

    def _compute(self, predictions, references, tolerance: int = 0) -> dict:
        hits = [
            bool(pointing_game(torch.as_tensor(saliency)[None], torch.as_tensor(mask)[None], tolerance)[0])
            for saliency, mask in zip(predictions, references)
        ]
        return {"pointing_game": sum(hits) / len(hits) if hits else float("nan")}
