# Copyright 2026 The modeling-promptcam authors. Licensed under the Apache License, Version 2.0.
"""The `prompt-cam` pipeline: image classification that also returns each predicted class's trait maps.

One of the remote-code files saved next to checkpoints: imports nothing beyond torch and transformers, and
uses only the model's public API (`forward(..., trait_map_top_k=...)` and `rank_traits`).
"""

from __future__ import annotations

import torch
from transformers import ImageClassificationPipeline

PROMPT_CAM_TASK = "prompt-cam"


class PromptCamImageClassificationPipeline(ImageClassificationPipeline):
    r"""
    Classify images with a Prompt-CAM model and return, for each of the top-k labels, its trait maps.

    ```python
    from transformers import pipeline

    explainer = pipeline("prompt-cam", model="path/to/promptcam")  # add trust_remote_code=True without the package
    result = explainer("bird.jpg", top_k=3, rank_traits=True)
    result[0]["label"], result[0]["score"]  # as the image-classification pipeline
    result[0]["trait_maps"]  # numpy (num_heads, grid_height, grid_width): the class prompt's attention per head
    result[0]["ranked_heads"], result[0]["top_traits"]  # with rank_traits=True
    ```

    Call arguments (besides the image-classification ones, `top_k`, `function_to_apply`, `timeout`):
        rank_traits (`bool`, defaults to `False`): also rank the heads of each returned label (greedy head blurring,
            see `PromptCamForImageClassification.rank_traits`): adds `ranked_heads` (all heads, most important first),
            `top_traits` and `target_scores` (the label's logit after each greedy step).
        blur (`"paper"`, `"official"` or `"spatial"`, defaults to `"paper"`): what the target prompt's attention in a
            blurred head becomes: uniform over the patches (the paper), uniform over all tokens (the official code), or
            only its patch part spread evenly (see `BLUR_MODE_TABLE` in `modeling_promptcam.py`).
        stop (`"misclassified"` or an int k, defaults to `"misclassified"`): the top traits are the heads still
            unblurred when another class first scores higher (the paper), or the k most important heads.
    """

    def _sanitize_parameters(
        self, top_k=None, function_to_apply=None, timeout=None, rank_traits=None, blur=None, stop=None
    ):
        preprocess_params, _, postprocess_params = super()._sanitize_parameters(
            top_k=top_k, function_to_apply=function_to_apply, timeout=timeout
        )
        forward_params = {}
        if top_k is not None:
            forward_params["top_k"] = top_k
        if rank_traits is not None:
            forward_params["rank_traits"] = bool(rank_traits)
        if blur is not None:
            forward_params["blur"] = blur
        if stop is not None:
            forward_params["stop"] = stop
        return preprocess_params, forward_params, postprocess_params

    def _forward(self, model_inputs, top_k=5, rank_traits=False, blur="paper", stop="misclassified"):
        top_k = min(top_k, self.model.config.num_labels)
        outputs = self.model(**model_inputs, trait_map_top_k=top_k)
        result = {
            "logits": outputs.logits,
            "trait_maps": outputs.trait_maps,
            "trait_map_classes": outputs.trait_map_classes,
            "rankings": None,
        }
        if rank_traits:
            result["rankings"] = self.model.rank_traits(
                model_inputs["pixel_values"], target_classes=outputs.trait_map_classes, blur=blur, stop=stop
            )
        return result

    def postprocess(self, model_outputs, function_to_apply=None, top_k=5):
        num_labels = self.model.config.num_labels
        top_k = min(top_k, num_labels)
        # the stock scores (softmax by default) for every label, then the top-k labels in the model's order
        all_scores = super().postprocess(model_outputs, function_to_apply=function_to_apply, top_k=num_labels)
        score_of = {entry["label"]: entry["score"] for entry in all_scores}
        classes = model_outputs["trait_map_classes"][0].tolist()[:top_k]
        maps = model_outputs["trait_maps"][0].to(torch.float32)
        rankings = model_outputs["rankings"]
        if rankings is not None and rankings and isinstance(rankings[0], list):
            rankings = rankings[0]  # not unbatched by the pipeline loader (batch of one)
        results = []
        for index, class_index in enumerate(classes):
            label = self.model.config.id2label[class_index]
            entry = {"label": label, "score": score_of[label], "trait_maps": maps[index].contiguous().numpy()}
            if rankings is not None:
                ranking = rankings[index]
                entry.update(
                    ranked_heads=ranking.ranked_heads,
                    top_traits=ranking.top_traits,
                    target_scores=ranking.target_scores,
                )
            results.append(entry)
        return results


__all__ = ["PROMPT_CAM_TASK", "PromptCamImageClassificationPipeline"]
