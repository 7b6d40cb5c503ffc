"""The Look inside tab: one hidden cell's activation over a text, and the cells that
best track simple features of it.  The analysis is :func:`studio.inspection.look_inside`;
this module only builds the tab and turns its inputs into a call.
"""

from __future__ import annotations

import gradio as gr

from studio.api import load
from studio.errors import StudioError
from studio.inspection import look_inside
from studio.previews import READING_SAMPLES, reading_sample

from .common import (
    action,
    as_int,
    bundles_for,
    error_box,
    listed_bundle,
    missing_notice,
    preferred,
    require_model,
    user_errors,
    writes_text,
)

DEFAULT_MODEL = "code"


def inspect_cells(model: str, text: str | None = None, cell: int = 0):
    """Returns (coloured text HTML, ranked cells table, number of cells)."""
    loaded = load(require_model(model, "text"))
    if not writes_text(type(loaded.domain)):
        raise StudioError(f"{model} is a {loaded.domain.name} model: Look inside works on text models")
    return look_inside(loaded.runtime, loaded.domain, text or "", as_int(cell, "cell"))


def text_for(model: str | None, current: str | None) -> str:
    """The text to show when ``model`` is picked: ``current`` if the model reads it and
    it is the user's own, else a stock text the model reads (:func:`reading_sample`)."""
    try:
        loaded = load(listed_bundle(model).path)
    except StudioError:
        return current or ""
    if not writes_text(type(loaded.domain)):
        return current or ""
    return reading_sample(loaded, current)


def build_tab() -> dict:
    names = bundles_for(writes_text)
    first = preferred(names, DEFAULT_MODEL)
    notice = gr.Markdown(missing_notice(names, "text", DEFAULT_MODEL))
    gr.Markdown(
        "Each hidden cell's activation colours the text (red positive, blue negative). "
        "The table ranks cells by how closely they follow simple features of the text; "
        "click a row to see that cell."
    )
    with gr.Row():
        with gr.Column(scale=2, min_width=320):
            model = gr.Dropdown(names, value=first, label="Model", allow_custom_value=True, elem_id="inspect-model")
            text = gr.Textbox(
                text_for(first, READING_SAMPLES[0]) if first else READING_SAMPLES[0],
                label="Text",
                lines=10,
                elem_id="inspect-text",
                info="Changes with the model to a text the model can read, unless it is yours.",
            )
            cell = gr.Number(0, step=1, label="Cell", elem_id="inspect-cell")
            go = gr.Button("Look inside", variant="primary", elem_id="inspect-button")
            error = error_box("inspect")
        with gr.Column(scale=3, min_width=360):
            coloured = gr.HTML(label="Coloured text", elem_id="inspect-html")
            count = gr.Number(label="Cells in this model", interactive=False)
            ranking = gr.Dataframe(
                headers=["feature", "cell", "label", "r"],
                datatype=["str", "number", "str", "number"],
                label="Cells that track features",
                interactive=False,
                elem_id="inspect-ranking",
            )
    action(
        go,
        inspect_cells,
        inputs=[model, text, cell],
        outputs=[coloured, ranking, count],
        error=error,
        api_name="inspect",
    )
    model.change(text_for, inputs=[model, text], outputs=text, api_visibility="private")

    def pick(event: gr.SelectData, table):
        row = event.index[0]
        return int(table.iloc[row, 1])

    ranking.select(pick, inputs=ranking, outputs=cell, api_visibility="private").then(
        user_errors(inspect_cells),
        inputs=[model, text, cell],
        outputs=[coloured, ranking, count],
        api_visibility="private",
    )
    return {"model": model, "notice": notice, "accepts": writes_text, "default": DEFAULT_MODEL, "what": "text"}
