"""Upload a trained (or converted) Prompt-CAM folder to the Hugging Face Hub.

    huggingface-cli login
    python examples/push_to_hub.py runs/cub/final your-name/promptcam-cub-dinov2

The folder written by `promptcam train` (OUTPUT_DIR/final) already holds everything the Hub needs: safetensors
weights, config, the model / pipeline code for `trust_remote_code=True`, the image processor and a model card
(README.md). A folder without a model card (e.g. from `promptcam convert`) gets a minimal one.
"""

import argparse
import os

from modeling_promptcam.training import push_folder, write_model_card


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", help="a saved Prompt-CAM folder")
    parser.add_argument("repo_id", help="Hub repository, e.g. your-name/promptcam-cub")
    parser.add_argument("--private", action="store_true", help="create the repository as private")
    args = parser.parse_args()

    if not os.path.isfile(os.path.join(args.folder, "config.json")) and not os.path.isfile(
        os.path.join(args.folder, "adapter_config.json")
    ):
        raise SystemExit(f"{args.folder} is not a saved Prompt-CAM folder (no config.json / adapter_config.json).")
    if not os.path.isfile(os.path.join(args.folder, "README.md")):
        write_model_card(args.folder, {"backbone": "see config.json"})
    print(push_folder(args.folder, args.repo_id, private=args.private))


if __name__ == "__main__":
    main()
