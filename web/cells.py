"""Look inside: what single recurrent cells track (Karpathy, Johnson & Fei-Fei 2015,
"Visualizing and Understanding Recurrent Networks"; Strobelt et al., LSTMVis).

:func:`record_activations` feeds a text through a bundle one token at a time with
``runtime.logits(token[None, None], state)`` and keeps every state tensor after each
token; a *cell* is one unit of one state tensor in one layer (``c`` and ``h`` for an
LSTM).  :func:`text_features` gives simple per-token features of the text (inside
quotes, position in the line, indentation, bracket depth) and :func:`rank_cells`
orders cells by the absolute Pearson correlation of their activation with each.
"""

from __future__ import annotations

import html
from dataclasses import dataclass

import gradio as gr
import numpy as np

from studio.api import load
from studio.errors import StudioError
from studio.previews import READING_SAMPLES, reading_sample

from .common import (action, as_int, bundles_for, error_box, listed_bundle, missing_notice, preferred,
                     require_model, user_errors, writes_text)

MAX_TOKENS = 3000
TOP_CELLS = 8  # ranked cells shown per feature
DEFAULT_MODEL = "code"
OPENERS, CLOSERS = "([{", ")]}"


@dataclass(frozen=True)
class Activations:
    """``values`` (T, cells): every state unit after reading each of the T tokens,
    whose texts are ``pieces``; ``labels`` names each cell (``"c layer 1 unit 17"``)."""

    pieces: list[str]
    values: np.ndarray
    labels: list[str]


def record_activations(runtime, domain, text: str) -> Activations:
    """Step the model through ``text`` from a fresh document (after the separator)."""
    ids = domain.encode(text)
    if not ids:
        raise StudioError("give some text to look inside")
    if len(ids) > MAX_TOKENS:
        raise StudioError(f"at most {MAX_TOKENS} tokens here (got {len(ids)}): shorten the text")
    state = runtime.init_state(1)
    _, state = runtime.logits(np.asarray([[domain.separator_id]]), state)
    names = sorted(state)
    labels = [f"{name} layer {layer + 1} unit {unit}"
              for name in names for layer in range(state[name].shape[0])
              for unit in range(state[name].shape[-1])]
    rows = []
    for token in ids:
        _, state = runtime.logits(np.asarray([[token]], dtype=np.int64), state)
        rows.append(np.concatenate([state[name][:, 0, :].ravel() for name in names]))  # [L, B, H] -> L*H
    return Activations([domain.token_text(t) for t in ids], np.asarray(rows, dtype=np.float64), labels)


def text_features(pieces: list[str]) -> dict[str, np.ndarray]:
    """Per-token features of the text read so far (each token included):
    inside a double-quoted string, characters since the line began, the line's leading
    whitespace, and bracket nesting depth."""
    in_quotes = column = indent = depth = 0
    leading = True
    rows = []
    for piece in pieces:
        for ch in piece:
            if ch == "\n":
                column, indent, leading = 0, 0, True
                continue
            column += 1
            if leading and ch in " \t":
                indent += 1
            else:
                leading = False
            if ch == '"':
                in_quotes ^= 1
            elif ch in OPENERS:
                depth += 1
            elif ch in CLOSERS:
                depth = max(0, depth - 1)
        rows.append((in_quotes, column, indent, depth))
    table = np.asarray(rows, dtype=np.float64).reshape(-1, 4)
    return {"inside quotes": table[:, 0], "line length so far": table[:, 1],
            "indentation": table[:, 2], "bracket depth": table[:, 3]}


def correlations(values: np.ndarray, feature: np.ndarray) -> np.ndarray:
    """Pearson r of each column of ``values`` (T, cells) with ``feature`` (T,); 0 where
    either side is constant."""
    centred = values - values.mean(0)
    target = feature - feature.mean()
    scale = np.sqrt((centred ** 2).sum(0) * (target ** 2).sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (centred * target[:, None]).sum(0) / scale
    return np.nan_to_num(r)


def rank_cells(activations: Activations, top: int = TOP_CELLS) -> list[list]:
    """Rows ``[feature, cell index, cell label, r]``, the ``top`` cells per feature by |r|;
    features constant over the text (no quotes in it, say) are left out."""
    rows = []
    for feature, series in text_features(activations.pieces).items():
        if np.ptp(series) == 0:
            continue
        r = correlations(activations.values, series)
        for index in np.argsort(-np.abs(r))[:top]:
            rows.append([feature, int(index), activations.labels[index], round(float(r[index]), 3)])
    return rows


def activation_html(activations: Activations, cell: int) -> str:
    """Each token on a background for the cell's activation: blue negative, red positive,
    scaled by the largest magnitude over the text (hover for the value)."""
    values = activations.values[:, cell]
    scale = float(np.abs(values).max()) or 1.0
    spans = []
    for piece, value in zip(activations.pieces, values):
        strength = min(1.0, abs(value) / scale)
        colour = (f"rgba(220,40,40,{strength:.2f})" if value > 0
                  else f"rgba(40,90,220,{strength:.2f})")
        shown = html.escape(piece).replace("\n", "↵\n")
        spans.append(f'<span style="background:{colour}" title="{value:+.3f}">{shown}</span>')
    return (f'<div style="font-size:0.85em;margin-bottom:0.3em">{html.escape(activations.labels[cell])}'
            f" (range {values.min():+.3f} to {values.max():+.3f})</div>"
            '<pre class="studio-cells" style="white-space:pre-wrap;font-family:var(--font-mono,monospace);'
            f'line-height:1.6;margin:0">{"".join(spans)}</pre>')


def inspect_cells(model: str, text: str | None = None, cell: int = 0):
    """Returns (coloured text HTML, ranked cells table, number of cells)."""
    loaded = load(require_model(model, "text"))
    runtime, domain = loaded.runtime, loaded.domain
    if not writes_text(type(domain)):
        raise StudioError(f"{model} is a {domain.name} model: Look inside works on text models")
    activations = record_activations(runtime, domain, text or "")
    count = activations.values.shape[1]
    cell = as_int(cell, "cell")
    if not 0 <= cell < count:
        raise StudioError(f"cell must be 0 to {count - 1} for {model} (got {cell})")
    return activation_html(activations, cell), rank_cells(activations), count


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
    gr.Markdown("Each hidden cell's activation colours the text (red positive, blue negative). "
                "The table ranks cells by how closely they follow simple features of the text; "
                "click a row to see that cell.")
    with gr.Row():
        with gr.Column(scale=2, min_width=320):
            model = gr.Dropdown(names, value=first, label="Model",
                                allow_custom_value=True, elem_id="inspect-model")
            text = gr.Textbox(text_for(first, READING_SAMPLES[0]) if first else READING_SAMPLES[0],
                              label="Text", lines=10, elem_id="inspect-text",
                              info="Changes with the model to a text the model can read, unless it is yours.")
            cell = gr.Number(0, step=1, label="Cell", elem_id="inspect-cell")
            go = gr.Button("Look inside", variant="primary", elem_id="inspect-button")
            error = error_box("inspect")
        with gr.Column(scale=3, min_width=360):
            coloured = gr.HTML(label="Coloured text", elem_id="inspect-html")
            count = gr.Number(label="Cells in this model", interactive=False)
            ranking = gr.Dataframe(headers=["feature", "cell", "label", "r"],
                                   datatype=["str", "number", "str", "number"],
                                   label="Cells that track features", interactive=False,
                                   elem_id="inspect-ranking")
    action(go, inspect_cells, inputs=[model, text, cell], outputs=[coloured, ranking, count], error=error,
           api_name="inspect")
    model.change(text_for, inputs=[model, text], outputs=text, api_visibility="private")

    def pick(event: gr.SelectData, table):
        row = event.index[0]
        return int(table.iloc[row, 1])

    ranking.select(pick, inputs=ranking, outputs=cell, api_visibility="private").then(
        user_errors(inspect_cells), inputs=[model, text, cell], outputs=[coloured, ranking, count],
        api_visibility="private")
    return {"model": model, "notice": notice, "accepts": writes_text, "default": DEFAULT_MODEL,
            "what": "text"}
