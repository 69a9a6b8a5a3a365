"""Training Prompt-CAM with `Trainer`: options, the paper's recipe and presets, the backbone loader, the trainer wiring
and its callbacks, prompt-only (PEFT) adapters, and what goes to the Hub.
"""

from .adapters import load_prompt_adapter, merge_prompt_adapter, save_prompt_adapter, wrap_for_prompt_training
from .backbone import BACKBONE_KEY_MAPPING, build_model
from .callbacks import (
    AugmentationEpoch,
    CollationObserver,
    RunTrainingLoss,
    SampleIdRecorder,
    TrainerCheckpointFormat,
    run_mean_loss,
)
from .hub import card_data, model_card, push_folder, write_model_card
from .metrics import CLASSIFICATION_ACCURACY_PATH, METRIC_MODULES, ClassificationMetrics, load_metric_module
from .options import TrainOptions
from .recipe import Recipe, hub_config_dir, load_preset, preset_names
from .trainer import (
    SUMMARY_FILE,
    TRAINER_STATE,
    accuracy_metric,
    check_output_dir,
    last_complete_checkpoint,
    run_training,
    save_final,
)

__all__ = [
    "AugmentationEpoch",
    "BACKBONE_KEY_MAPPING",
    "CLASSIFICATION_ACCURACY_PATH",
    "ClassificationMetrics",
    "METRIC_MODULES",
    "CollationObserver",
    "Recipe",
    "RunTrainingLoss",
    "SampleIdRecorder",
    "TrainerCheckpointFormat",
    "SUMMARY_FILE",
    "TRAINER_STATE",
    "TrainOptions",
    "accuracy_metric",
    "build_model",
    "card_data",
    "check_output_dir",
    "hub_config_dir",
    "last_complete_checkpoint",
    "load_metric_module",
    "load_preset",
    "load_prompt_adapter",
    "merge_prompt_adapter",
    "model_card",
    "preset_names",
    "push_folder",
    "run_mean_loss",
    "run_training",
    "save_final",
    "save_prompt_adapter",
    "wrap_for_prompt_training",
    "write_model_card",
]
