"""Convert one of the authors' released Prompt-CAM checkpoints and classify an image with it.

    python examples/convert_official.py checkpoints/dino/cub/model.pt promptcam-cub-dino \
        --num-heads 12 --labels data/cub/train --image some_bird.jpg

The same conversion is `promptcam convert ...`; this script spells out the steps a user can copy.
"""

import argparse

from transformers import pipeline

from modeling_promptcam.convert import convert_official_checkpoint, read_class_names


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="official model.pt")
    parser.add_argument("out_dir", help="folder to write the converted model to")
    parser.add_argument("--num-heads", type=int, default=12, help="backbone attention heads (ViT-B: 12)")
    parser.add_argument("--labels", help="class-name file or the dataset's train/ folder")
    parser.add_argument("--image", help="an image to classify with the converted model")
    args = parser.parse_args()

    # 1. read the official weights (weights_only) and build the matching transformers model
    id2label = dict(enumerate(read_class_names(args.labels))) if args.labels else None
    model = convert_official_checkpoint(args.checkpoint, num_heads=args.num_heads, id2label=id2label)
    print(model.config.backbone_config.model_type, "backbone,", model.config.num_labels, "classes")

    # 2. save: safetensors weights, config, model code and the official evaluation preprocessing
    model.save_pretrained(args.out_dir)

    # 3. the folder serves the stock pipeline (no package needed with trust_remote_code=True)
    if args.image:
        classifier = pipeline("image-classification", model=args.out_dir)
        for prediction in classifier(args.image, top_k=5):
            print(f"{prediction['score']:.3f}  {prediction['label']}")


if __name__ == "__main__":
    main()
