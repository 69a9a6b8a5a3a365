"""The trait explorer (`promptcam app`) as a Hugging Face Space: copy this file into a Gradio Space as `app.py`.

Configuration, from environment variables (a Space's Settings -> Variables and secrets):

    PROMPTCAM_MODEL     the Prompt-CAM model: a Hub id (or a folder in the Space). Required.
    PROMPTCAM_EXAMPLES  a folder of example images, <class name>/<image> (default: example_images/ beside this file,
                        when there is one).
    HF_TOKEN            a secret, for a private or gated model.

Spaces set GRADIO_SERVER_NAME=0.0.0.0 so that their proxy reaches the app; run anywhere else, it binds to 127.0.0.1:

    PROMPTCAM_MODEL=my-promptcam python examples/space_app.py

See docs/app.md ("Deploying as a Hub Space") for the Space's README and requirements.txt.
"""

from __future__ import annotations

import os

from modeling_promptcam.app import DEFAULT_HOST, DEFAULT_PORT, build_app, launch

MODEL_VARIABLE = "PROMPTCAM_MODEL"
EXAMPLES_VARIABLE = "PROMPTCAM_EXAMPLES"
BUNDLED_EXAMPLES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "example_images")


def create_app():
    """The app for the model named by PROMPTCAM_MODEL (loaded once, here)."""
    model = os.environ.get(MODEL_VARIABLE, "").strip()
    if not model:
        raise SystemExit(
            f"Set {MODEL_VARIABLE} to the Prompt-CAM model to serve: a Hub id such as your-name/promptcam-cub "
            "(in a Space: Settings -> Variables and secrets) or a saved folder."
        )
    examples = os.environ.get(EXAMPLES_VARIABLE) or (BUNDLED_EXAMPLES if os.path.isdir(BUNDLED_EXAMPLES) else None)
    return build_app(model, examples)


def main() -> None:
    host = os.environ.get("GRADIO_SERVER_NAME", DEFAULT_HOST)
    port = int(os.environ.get("GRADIO_SERVER_PORT", DEFAULT_PORT))
    launch(create_app(), host=host, port=port)


if __name__ == "__main__":
    main()
