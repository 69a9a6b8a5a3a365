"""Data in: image files and folders, the one RGB conversion, region masks, part annotations (CUB keypoints, keypoint JSON, per-part masks), the paper's transforms, `datasets`
loading, and the synthetic trait dataset. Depends only on the model files (for the normalisation constants).
"""

from .folders import VALIDATION_FOLDERS, DataError, ImageFolderSplits, check_image_folder, verify_image_files
from .images import IMAGE_EXTENSIONS, image_size, open_rgb, to_rgb
from .loading import load_image_folder, load_saved_dataset
from .masks import (
    MASK_THRESHOLD,
    MASKS_DIR,
    MaskError,
    grow_region,
    load_trait_mask,
    mask_path,
    patch_mask,
    read_mask,
    resize_mask,
)
from .options import SyntheticOptions
from .parts import (
    ImageParts,
    PartAnnotations,
    PartsError,
    read_cub_parts,
    read_keypoints_json,
    read_part_annotations,
    read_part_masks,
)
from .synthetic import (
    CLASSES,
    DATASET_FILE,
    MAX_TRAIT_FRACTION,
    PART_NAMES,
    TRAIT_PARTS,
    TraitClass,
    class_names,
    draw_bird,
    draw_bird_with_keypoints,
    generate_dataset,
)
from .transforms import SAMPLE_ID, EvalTransform, PromptCamCollator, TrainTransform, batch_transform

__all__ = [
    "CLASSES",
    "DATASET_FILE",
    "DataError",
    "EvalTransform",
    "IMAGE_EXTENSIONS",
    "ImageParts",
    "PART_NAMES",
    "PartAnnotations",
    "PartsError",
    "TRAIT_PARTS",
    "ImageFolderSplits",
    "MASKS_DIR",
    "MASK_THRESHOLD",
    "MaskError",
    "MAX_TRAIT_FRACTION",
    "PromptCamCollator",
    "SAMPLE_ID",
    "SyntheticOptions",
    "TrainTransform",
    "TraitClass",
    "VALIDATION_FOLDERS",
    "batch_transform",
    "check_image_folder",
    "class_names",
    "draw_bird",
    "draw_bird_with_keypoints",
    "generate_dataset",
    "grow_region",
    "load_image_folder",
    "load_saved_dataset",
    "load_trait_mask",
    "mask_path",
    "image_size",
    "open_rgb",
    "patch_mask",
    "read_cub_parts",
    "read_keypoints_json",
    "read_mask",
    "read_part_annotations",
    "read_part_masks",
    "resize_mask",
    "to_rgb",
    "verify_image_files",
]
