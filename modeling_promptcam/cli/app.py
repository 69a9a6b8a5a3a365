"""`promptcam app`: serve the trait explorer web app ([`serve_app`] does the work)."""

from __future__ import annotations

from ..app.options import AppOptions

NAME = "app"
HELP = "serve the trait explorer web app (Gradio; the app extra)"
DESCRIPTION = (
    "A web app to upload an image (or pick an example) and browse its traits: the top-k predictions, the predicted "
    "class's top traits in rank order and all its heads, how any other class's prompt sees the same image, true vs "
    "predicted for labelled examples, and a class gallery over the example images. The model is loaded once; requests "
    "are queued and answered one at a time. Serves on 127.0.0.1 (this machine only) unless --host says otherwise. "
    'Needs pip install "modeling-promptcam[app]".'
)
OPTIONS = (AppOptions,)


def run(options: AppOptions) -> int:
    from ..app.run import serve_app

    serve_app(options)  # serves until stopped; Gradio prints the address
    return 0
