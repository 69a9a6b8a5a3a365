"""The trait explorer web app: the explorer core (no Gradio types) and its Gradio layer (the `app` extra)."""

from .explorer import (
    ATLAS_COLUMNS,
    DEFAULT_HOST,
    DEFAULT_PORT,
    MAX_PIXELS,
    ClassAtlasView,
    ExampleImage,
    ExplorerView,
    InputError,
    TraitExplorer,
    find_examples,
    load_model,
    open_image,
    read_atlas,
)
from .options import AppOptions
from .run import AppLoadError, serve_app
from .ui import build_app, launch

__all__ = [
    "ATLAS_COLUMNS",
    "AppLoadError",
    "AppOptions",
    "ClassAtlasView",
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "ExampleImage",
    "ExplorerView",
    "InputError",
    "MAX_PIXELS",
    "TraitExplorer",
    "build_app",
    "find_examples",
    "read_atlas",
    "launch",
    "load_model",
    "open_image",
    "serve_app",
]
