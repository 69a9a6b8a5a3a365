"""Serving the trait explorer from its options: the checks and the launch behind `promptcam app`."""

from __future__ import annotations

import os

from ..files import check_model_folder
from .options import AppOptions


class AppLoadError(OSError):
    """The model to serve could not be loaded (a Hub id that does not exist or cannot be reached, a broken folder)."""


def serve_app(options: AppOptions) -> None:
    """Build the trait explorer for `options.model` (a saved folder or a Hub id) and serve it until stopped.

    Raises `FileNotFoundError` for an examples path that is not a folder, an atlas path that is not a file, or a
    folder that is not a saved model, `AtlasFileError` for an atlas.json of another layout or model,
    `ImportError` without gradio (the `app` extra), and [`AppLoadError`] when the model cannot be loaded.
    """
    from ..evaluation.atlas import AtlasFileError
    from .explorer import MAX_PIXELS
    from .ui import build_app, launch

    if options.examples is not None and not os.path.isdir(options.examples):
        raise FileNotFoundError(f"--examples {options.examples} is not a folder (expected DIR/<class name>/<image>).")
    if os.path.isdir(options.model):
        check_model_folder(options.model)  # a folder; anything else is a Hub id
    if options.atlas is not None and not os.path.isfile(options.atlas):
        raise FileNotFoundError(f"--atlas {options.atlas} is not a file (expected OUT/atlas.json of promptcam atlas).")
    try:
        app = build_app(
            options.model, options.examples, max_pixels=options.max_pixels or MAX_PIXELS, atlas_file=options.atlas
        )
    except AtlasFileError:
        raise  # the atlas's own message: the model loaded
    except (OSError, ValueError) as error:
        raise AppLoadError(f"cannot load the model {options.model}: {error}") from error
    launch(app, host=options.host, port=options.port)


__all__ = ["AppLoadError", "serve_app"]
