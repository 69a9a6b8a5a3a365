"""The trait explorer's Gradio layer: the page layout, the events, and serving (`promptcam app`).

All the work is done by [`TraitExplorer`] (`app/explorer.py`, no Gradio types); this module lays it out and turns
[`InputError`]s into readable messages in the page. Model calls go through one queue (one request at a time, the
others wait their turn), and [`launch`] binds to 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import html
import os

from ..extras import require
from ..modeling_promptcam import BLUR_MODES, PromptCamForImageClassification
from .explorer import (
    ATLAS_COLUMNS,
    BLUR_LABELS,
    DEFAULT_HOST,
    DEFAULT_PORT,
    EXAMPLES_PER_CLASS,
    GALLERY_IMAGES,
    MAX_PIXELS,
    QUEUE_SIZE,
    STOP_LABELS,
    STOP_MISCLASSIFIED,
    ExampleImage,
    InputError,
    TraitExplorer,
    figures_module,
    find_examples,
    markdown_escape,
    read_atlas,
)


def _gradio():
    return require("gradio", "app", "The trait explorer")


def _class_name(example: ExampleImage, names: list[str]) -> str | None:
    return names[example.class_index] if example.class_index is not None else None


def _first_of_each(examples: list[ExampleImage]) -> list[ExampleImage]:
    """Up to EXAMPLES_PER_CLASS examples of each folder: a whole validation set (thousands of images) would make the
    table unusable and the start slow (Gradio copies every example into its cache)."""
    shown, counts = [], {}
    for example in examples:
        counts[example.label] = counts.get(example.label, 0) + 1
        if counts[example.label] <= EXAMPLES_PER_CLASS:
            shown.append(example)
    return shown


def _path_of(payload) -> str | None:
    """The uploaded file's path from an image input's raw value (the app reads files itself, with its own checks and
    messages, instead of letting Gradio decode them first)."""
    if payload is None:
        return None
    if isinstance(payload, dict):
        return payload.get("path")
    return str(payload)


def _figure_gallery(gr, label: str, columns: int, elem_id: str):
    """A gallery of figures: PNGs shown whole (never cropped) at their own height, `columns` to a row."""
    return gr.Gallery(
        label=label,
        columns=columns,
        fit_columns=False,
        height="auto",
        format="png",
        object_fit="contain",
        elem_id=elem_id,
    )


def _figure(gr, label: str, elem_id: str, visible: bool = True):
    """One figure, shown as a PNG the user cannot edit."""
    return gr.Image(label=label, format="png", interactive=False, visible=visible, elem_id=elem_id)


def _on_model_call(gr, triggers, event, inputs, outputs, api_name: str) -> None:
    """Wire an event that calls the model (inside the Blocks being built)."""
    # every model call shares one queue slot (concurrency_id): requests wait their turn instead of competing; the
    # events read uploads themselves (preprocess=False), with the explorer's checks and messages
    gr.on(
        triggers,
        event,
        inputs=inputs,
        outputs=outputs,
        api_name=api_name,
        concurrency_id="model",
        preprocess=False,
    )


def build_app(
    model_or_path: str | os.PathLike | PromptCamForImageClassification | TraitExplorer,
    examples_dir: str | os.PathLike | None = None,
    *,
    image_processor=None,
    max_pixels: int = MAX_PIXELS,
    title: str = "Prompt-CAM trait explorer",
    warm_up: bool = True,
    atlas_file: str | os.PathLike | None = None,
):
    """The trait explorer as a `gradio.Blocks` (queued: one model call at a time, at most `QUEUE_SIZE` waiting).

    Args:
        model_or_path: a saved folder or Hub id (loaded once, here), a loaded model, or a ready [`TraitExplorer`].
        examples_dir: an imagefolder tree `DIR/<class name>/<image>`; its images are the examples to pick and the
            class gallery, their folder names the true labels.
        image_processor: for a loaded model (default: Prompt-CAM's evaluation preprocessing for its config).
        max_pixels: larger uploads are refused with a message (default: PIL's decompression-bomb threshold).
        warm_up: explain a blank image once before serving (see [`TraitExplorer.warm_up`]).
        atlas_file: an `atlas.json` of `promptcam atlas` for this model: the "Class atlas" tab shows it.
    """
    gr = _gradio()
    figures_module()  # fail now, not on the first request, when matplotlib is missing
    if isinstance(model_or_path, TraitExplorer):
        explorer = model_or_path
    elif isinstance(model_or_path, PromptCamForImageClassification):
        examples = find_examples(examples_dir, model_or_path) if examples_dir is not None else []
        atlas = read_atlas(atlas_file, model_or_path) if atlas_file is not None else None
        explorer = TraitExplorer(model_or_path, image_processor, examples, max_pixels, atlas)
    else:
        explorer = TraitExplorer.load(os.fspath(model_or_path), examples_dir, max_pixels, atlas_file)
    if warm_up:
        explorer.warm_up()

    def shown(error: InputError) -> Exception:
        # Gradio shows the message as HTML: escape what the user typed (class names) so it shows as written
        return gr.Error(html.escape(str(error), quote=False), title="Cannot use this input")

    def explain_event(image, true_class, compare_class, blur, rule, count, alpha, top_k):
        path = _path_of(image)
        if path is None:
            hidden = gr.update(value=None, visible=False)
            return None, "Upload an image or pick an example.", [], None, hidden, hidden
        try:
            view = explorer.explain(
                path, true_class, compare_class, blur, explorer.stop_rule(rule, count), alpha, top_k
            )
        except InputError as error:
            raise shown(error) from None
        return (
            view.predictions,
            view.summary,
            view.top_traits,
            view.heads,
            gr.update(value=view.misclassified, visible=view.misclassified is not None),
            gr.update(value=view.comparison, visible=view.comparison is not None),
        )

    def gallery_event(class_name, count, blur, rule, traits, alpha):
        try:
            figures = explorer.gallery(class_name, int(count), blur, explorer.stop_rule(rule, traits), alpha)
        except InputError as error:
            raise shown(error) from None
        return figures, f"Top traits of **{markdown_escape(class_name)}** on {len(figures)} example image(s)."

    def atlas_event(class_name, count, alpha):
        try:
            view = explorer.class_atlas(class_name, int(count), alpha)
        except InputError as error:
            raise shown(error) from None
        return view.summary, gr.update(value=view.rows, headers=list(ATLAS_COLUMNS)), view.gallery

    names = explorer.class_names
    with_examples = {example.class_index for example in explorer.examples} - {None}
    gallery_classes = [names[index] for index in sorted(with_examples)]
    heads = explorer.num_heads
    config = explorer.model.config
    with gr.Blocks(title=title, analytics_enabled=False) as demo:
        gr.Markdown(
            f"# {html.escape(title)}\n{config.num_labels} classes, {heads} attention heads "
            f"({config.backbone_config.model_type} backbone). Each class has its own prompt; each head's map shows "
            "where that prompt looks in the image: its traits. The top traits are the heads the class's score needs."
        )
        with gr.Accordion("Settings", open=True):
            with gr.Row():
                blur = gr.Radio(
                    [(BLUR_LABELS.get(mode, mode), mode) for mode in BLUR_MODES],
                    value="paper",
                    label="Blur mode of the trait ranking",
                )
                rule = gr.Radio(
                    [(STOP_LABELS[name], name) for name in STOP_LABELS],
                    value=STOP_MISCLASSIFIED,
                    label="Top traits",
                )
                count = gr.Slider(1, heads, value=min(4, heads), step=1, label="Number of traits (fixed number)")
                alpha = gr.Slider(0.0, 1.0, value=0.5, step=0.05, label="Map opacity")
                top_k = gr.Slider(
                    1, min(10, config.num_labels), value=min(5, config.num_labels), step=1, label="Top-k"
                )
        with gr.Tab("Explain an image"):
            with gr.Row():
                with gr.Column(scale=1):
                    image = gr.Image(type="filepath", image_mode=None, label="Image", elem_id="image-input")
                    true_class = gr.Dropdown(
                        names, value=None, allow_custom_value=True, label="True class (optional)", elem_id="true-class"
                    )
                    compare_class = gr.Dropdown(
                        names,
                        value=None,
                        allow_custom_value=True,
                        label="Compare with class: how its prompt sees this image",
                        elem_id="compare-class",
                    )
                    explain_button = gr.Button("Explain", variant="primary", elem_id="explain-button")
                    if explorer.examples:
                        gr.Examples(
                            # the model's own class name: the dropdown shows (and selects) only names it offers
                            [
                                [example.path, _class_name(example, names)]
                                for example in _first_of_each(explorer.examples)
                            ],
                            inputs=[image, true_class],
                            label=f"Examples (the folder name is the true class; up to {EXAMPLES_PER_CLASS} per class)",
                            examples_per_page=12,
                            elem_id="examples",
                        )
                with gr.Column(scale=2):
                    predictions = gr.Label(num_top_classes=10, label="Predictions", elem_id="predictions")
                    summary = gr.Markdown(elem_id="summary")
                    top_traits = _figure_gallery(
                        gr, "Top traits of the predicted class, in rank order", 4, elem_id="top-traits"
                    )
                    head_grid = _figure(gr, "All heads of the predicted class (rank per head)", "head-grid")
                    misclassified = _figure(gr, "True vs predicted", "misclassified", visible=False)
                    comparison = _figure(gr, "Compared class", "comparison", visible=False)
        with gr.Tab("Class gallery"):
            with gr.Row():
                gallery_class = gr.Dropdown(
                    gallery_classes,
                    value=None,
                    allow_custom_value=True,
                    label="Class (those with example images)",
                    elem_id="gallery-class",
                )
                gallery_count = gr.Slider(1, 12, value=GALLERY_IMAGES, step=1, label="Images")
                gallery_button = gr.Button("Show", variant="primary", elem_id="gallery-button")
            gallery_note = gr.Markdown(
                "" if explorer.examples else "No example images: start the app with --examples DIR/<class>/<image>."
            )
            gallery = _figure_gallery(gr, "Top traits", 2, elem_id="gallery")

        with gr.Tab("Class atlas"):
            with gr.Row():
                atlas_class = gr.Dropdown(
                    explorer.atlas_classes,
                    value=None,
                    allow_custom_value=True,
                    label="Class (those in the atlas)",
                    elem_id="atlas-class",
                )
                atlas_count = gr.Slider(1, heads, value=min(GALLERY_IMAGES, heads), step=1, label="Heads shown")
                atlas_button = gr.Button("Show", variant="primary", elem_id="atlas-button")
            atlas_summary = gr.Markdown(
                "Every head of the class's prompt in rank order (most often a top trait first), the part it names "
                "and EvalProtoPNet's consistency and stability (docs/atlas.md)."
                if explorer.atlas
                else "No atlas: write one with promptcam atlas and start the app with --atlas OUT/atlas.json.",
                elem_id="atlas-summary",
            )
            atlas_table = gr.Dataframe(
                headers=list(ATLAS_COLUMNS), interactive=False, wrap=True, elem_id="atlas-table"
            )
            atlas_gallery = _figure_gallery(
                gr, "Each head's most confident image, with its map", 4, elem_id="atlas-gallery"
            )

        _on_model_call(
            gr,
            [image.change, explain_button.click, compare_class.input],
            explain_event,
            [image, true_class, compare_class, blur, rule, count, alpha, top_k],
            [predictions, summary, top_traits, head_grid, misclassified, comparison],
            "explain",
        )
        _on_model_call(
            gr,
            [gallery_button.click, gallery_class.input],
            gallery_event,
            [gallery_class, gallery_count, blur, rule, count, alpha],
            [gallery, gallery_note],
            "gallery",
        )
        _on_model_call(
            gr,
            [atlas_button.click, atlas_class.input],
            atlas_event,
            [atlas_class, atlas_count, alpha],
            [atlas_summary, atlas_table, atlas_gallery],
            "atlas",
        )
    demo.queue(default_concurrency_limit=1, max_size=QUEUE_SIZE)
    return demo


def launch(app, host: str = DEFAULT_HOST, port: int | None = DEFAULT_PORT, block: bool = True, **kwargs) -> str:
    """Serve a [`build_app`] app on `host:port` (127.0.0.1 by default: reachable from this machine only; pass
    0.0.0.0 to serve a network). With `block=False` it returns at once, the server running in a thread
    (`app.close()` stops it). Returns the local URL; other keyword arguments go to `gradio.Blocks.launch`."""
    kwargs.setdefault("max_file_size", "200mb")  # larger uploads get Gradio's own message before reaching the app
    _, local_url, _ = app.launch(server_name=host, server_port=port, prevent_thread_lock=not block, **kwargs)
    return local_url
