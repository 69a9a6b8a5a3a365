"""The energy-based pointing game (Wang et al., Score-CAM, 2020) as an `evaluate` module: the mean share of each
saliency map's non-negative mass inside the ground-truth region. It ships inside modeling-promptcam and loads from
its folder, offline::

    import evaluate
    from modeling_promptcam.evaluation import ENERGY_IN_MASK_PATH

    evaluate.load(ENERGY_IN_MASK_PATH).compute(predictions=maps, references=masks)

The rule itself is `modeling_promptcam.evaluation.energy_in_mask` (one place); this module feeds it one image at a
time, so the maps and masks of different images may differ in size.
"""

import datasets
import evaluate
import torch

from modeling_promptcam.evaluation.metrics import energy_in_mask

_DESCRIPTION = """
Energy in mask: the share of a map's non-negative mass inside the ground-truth region (a map with no positive value
counts as uniform: the region's share of the image), averaged over the images.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of 2-D float arrays `(h, w)`): one saliency map per image, at image resolution or lower
        (upsampled bilinearly to its mask's size). Negative values count as 0.
    references (`list` of 2-D bool arrays `(H, W)`): the ground-truth region of each image, at image resolution.
Returns:
    energy_in_mask (`float` in [0, 1]): the mean over the images.
"""

_CITATION = """@inproceedings{wang2020score,
  title     = {Score-CAM: Score-Weighted Visual Explanations for Convolutional Neural Networks},
  author    = {Wang, Haofan and Wang, Zifan and Du, Mengnan and Yang, Fan and Zhang, Zijian and Ding, Sirui and Mardziel, Piotr and Hu, Xia},
  booktitle = {CVPR Workshops},
  year      = {2020}
}"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class EnergyInMask(evaluate.Metric):
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

    def _compute(self, predictions, references) -> dict:
        shares = [
            float(energy_in_mask(torch.as_tensor(saliency)[None], torch.as_tensor(mask)[None])[0])
            for saliency, mask in zip(predictions, references)
        ]
        return {"energy_in_mask": sum(shares) / len(shares) if shares else float("nan")}
