"""Train Prompt-CAM on an image folder: the steps of `promptcam train`, written out to read and adapt.

    python examples/train.py --backbone facebook/dinov2-base --data-dir data/cub --output-dir runs/cub \
        --epochs 130 --lr 0.001

DATA/train/<class>/*.jpg and DATA/val/<class>/*.jpg, as the official preparation scripts produce them. For every
option (presets, resume, prompt-only adapters, Hub upload) use `promptcam train --help`.
"""

import argparse

from transformers import Trainer, TrainingArguments

from modeling_promptcam.data import (
    EvalTransform,
    PromptCamCollator,
    TrainTransform,
    batch_transform,
    load_image_folder,
)
from modeling_promptcam.modeling_promptcam import promptcam_image_processor
from modeling_promptcam.training import (
    AugmentationEpoch,
    Recipe,
    TrainerCheckpointFormat,
    TrainOptions,
    accuracy_metric,
    build_model,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", required=True)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--output-dir", required=True)
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--lr", type=float, default=0.005)
    parser.add_argument("--image-size", type=int, default=224)
    args = parser.parse_args()

    # 1. the paper's recipe (SGD 0.9, weight decay 1e-3, batch 16, 20 warm-up epochs, cosine to 1e-6)
    recipe = Recipe(
        learning_rate=args.lr,
        epochs=args.epochs,
        warmup_epochs=min(20, args.epochs // 5),
        image_size=args.image_size,
        train_resize=round(args.image_size * 240 / 224),
    )
    recipe.validate()

    # 2. data: checked up front (missing classes, unreadable files), read with datasets' imagefolder
    dataset, class_names = load_image_folder(args.data_dir)

    # 3. the model: stock backbone weights, new prompts for these classes, frozen backbone
    options = TrainOptions(backbone=args.backbone, data_dir=args.data_dir, output_dir=args.output_dir)
    model, recipe = build_model(options, recipe, class_names)
    processor = promptcam_image_processor(model.config, image_size=recipe.image_size)

    # 4. transforms: random resize-crop-flip for training, the saved image processor for evaluation
    # (crops and flips are a function of (seed, epoch, sample id): AugmentationEpoch sets the epoch, so a resumed run
    # sees the same images)
    augmentation = TrainTransform(recipe.image_size, recipe.train_resize, seed=42)
    train = dataset["train"].with_transform(batch_transform(augmentation))
    validation = dataset["validation"].with_transform(batch_transform(EvalTransform(processor)))

    # 5. Trainer: evaluation and checkpoint each epoch, the best epoch on validation kept
    training_args = TrainingArguments(
        output_dir=args.output_dir,
        num_train_epochs=recipe.epochs,
        per_device_train_batch_size=recipe.batch_size,
        learning_rate=recipe.learning_rate,
        weight_decay=recipe.weight_decay,
        optim="sgd",
        optim_args=f"momentum={recipe.momentum}",
        max_grad_norm=0.0,  # no gradient clipping, as the official recipe (the Trainer clips to 1.0 by default)
        lr_scheduler_type="cosine_with_min_lr",
        lr_scheduler_kwargs={"min_lr": recipe.lr_min},
        warmup_steps=recipe.warmup_epochs / recipe.epochs,
        eval_strategy="epoch",
        save_strategy="epoch",
        load_best_model_at_end=True,
        metric_for_best_model="accuracy",
        remove_unused_columns=False,
    )
    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=train,
        eval_dataset=validation,
        data_collator=PromptCamCollator(),
        compute_metrics=accuracy_metric,
        processing_class=processor,
        # checkpoints in the layout Trainer reloads (best model, resume); the portable layout again when training ends
        callbacks=[TrainerCheckpointFormat(), AugmentationEpoch(augmentation)],
    )
    trainer.train()
    print(trainer.evaluate())

    # 6. the final folder: weights, config, code, image processor
    model.save_pretrained(f"{args.output_dir}/final", image_processor=processor)


if __name__ == "__main__":
    main()
