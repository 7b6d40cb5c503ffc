"""The Look inside tab: one hidden cell's activation over a text, and the cells that
best track simple features of it.  The analysis is :func:`studio.inspection.look_inside`;
this module only builds the tab and turns its inputs into a call.
"""

from __future__ import annotations

import gradio as gr

from studio.api import load
from studio.errors import StudioError
from studio.inspection import look_inside

from .common import as_int, bundles_for, missing_notice, preferred, require_model, user_errors, writes_text

DEFAULT_MODEL = "code"
SAMPLE_TEXT = '''def greet(name, times=2):
    """Say hello."""
    for i in range(times):
        if name:
            print("Hello, " + name + "!")
    return {"name": name, "said": times}
'''


@user_errors
def inspect_cells(model: str, text: str, cell: int):
    """Returns (coloured text HTML, ranked cells table, number of cells)."""
    loaded = load(require_model(model, "text"))
    runtime, domain = loaded.runtime, loaded.domain
    if not writes_text(type(domain)):
        raise StudioError(f"{model} is a {domain.name} model: Look inside works on text models")
    return look_inside(runtime, domain, text or "", as_int(cell, "cell"))


def build_tab() -> dict:
    names = bundles_for(writes_text)
    notice = gr.Markdown(missing_notice(names, "text", DEFAULT_MODEL))
    gr.Markdown("Each hidden cell's activation colours the text (red positive, blue negative). "
                "The table ranks cells by how closely they follow simple features of the text; "
                "click a row to see that cell.")
    with gr.Row():
        with gr.Column(scale=2, min_width=320):
            model = gr.Dropdown(names, value=preferred(names, DEFAULT_MODEL), label="Model",
                                allow_custom_value=True, elem_id="inspect-model")
            text = gr.Textbox(SAMPLE_TEXT, label="Text", lines=10, elem_id="inspect-text")
            cell = gr.Number(0, precision=0, minimum=0, label="Cell", elem_id="inspect-cell")
            go = gr.Button("Look inside", variant="primary", elem_id="inspect-button")
        with gr.Column(scale=3, min_width=360):
            coloured = gr.HTML(elem_id="inspect-html")
            count = gr.Number(label="Cells in this model", interactive=False)
            ranking = gr.Dataframe(headers=["feature", "cell", "label", "r"],
                                   datatype=["str", "number", "str", "number"],
                                   label="Cells that track features", interactive=False,
                                   elem_id="inspect-ranking")
    go.click(inspect_cells, inputs=[model, text, cell], outputs=[coloured, ranking, count],
             api_name="inspect")

    def pick(event: gr.SelectData, table):
        row = event.index[0]
        return int(table.iloc[row, 1])

    ranking.select(pick, inputs=ranking, outputs=cell, api_visibility="private").then(
        inspect_cells, inputs=[model, text, cell], outputs=[coloured, ranking, count],
        api_visibility="private")
    return {"model": model, "notice": notice, "accepts": writes_text, "default": DEFAULT_MODEL,
            "what": "text"}
