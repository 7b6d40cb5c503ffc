"""The Handwrite tab: pen strokes from a mixture-density bundle.

``handwrite(...)`` is the ``/handwrite`` endpoint: the settings `studio sample` builds
from ``--text --style --bias --seed --stroke-width --color``, one drawing, saved as SVG,
PNG and an animated GIF exactly as ``studio sample ... --out NAME.svg`` (``.png``,
``.gif``) saves them.  A handwriting model needs text (an empty box is refused, never
filled in); an unconditional bundle (doodles) takes none, so the page hides the text box
and the style picker while one is chosen.
"""

from __future__ import annotations

import re

import gradio as gr

from studio.api import load, settings_from
from studio.confine import confine
from studio.errors import StudioError
from studio.sample_cli import atomic_save
from studio.sampling.settings import command_line
from studio.serve import Batcher

from .common import (
    LIMITS,
    SAMPLING_CONCURRENCY,
    OutputFolders,
    action,
    as_float,
    as_int,
    bundles_for,
    draws_strokes,
    error_box,
    listed_bundle,
    missing_notice,
    new_seed,
    preferred,
    require_model,
)

DEFAULT_MODEL = "handwriting"
NO_STYLE = "none"
FORMATS = (".svg", ".png", ".gif")
_RGB = re.compile(r"rgba?\(\s*([\d.]+)\s*,\s*([\d.]+)\s*,\s*([\d.]+)")


def hex_colour(colour: str | None) -> str:
    """Colour pickers may answer ``rgb(26, 26, 46)``; recipes spell ``#1a1a2e``."""
    colour = (colour or "#1a1a2e").strip()
    match = _RGB.match(colour)
    if match:
        return "#" + "".join(f"{min(255, int(round(float(v)))):02x}" for v in match.groups())
    return colour


def style_choices(model: str | None) -> list[str]:
    """ "none" plus one entry per style stored in the bundle's card."""
    if not model:
        return [NO_STYLE]
    try:
        styles = listed_bundle(model).card.get("styles", [])
    except StudioError:
        return [NO_STYLE]
    labels = [NO_STYLE]
    for index, style in enumerate(styles):
        label = style.get("text") or "doodle"
        labels.append(f"{index}: {label}" + (f" ({style['font']})" if style.get("font") else ""))
    return labels


def parse_style(choice) -> int | None:
    if choice in (None, "", NO_STYLE):
        return None
    return as_int(str(choice).split(":")[0], "style")


def controls(model: str | None) -> tuple:
    """Updates for (text box, style picker) when ``model`` is chosen: each shown only
    when the model uses it (a doodle model takes neither text nor a stored hand)."""
    try:
        loaded = load(listed_bundle(model).path) if model else None
    except StudioError:
        loaded = None
    writes = loaded is not None and draws_strokes(type(loaded.domain)) and loaded.domain.conditional
    styles = style_choices(model)
    return gr.update(visible=writes or loaded is None), gr.update(
        choices=styles, value=NO_STYLE, visible=len(styles) > 1
    )


def make_handwrite(outputs: OutputFolders, batcher: Batcher):
    def handwrite(
        model: str,
        text: str | None = None,
        style: str = NO_STYLE,
        bias: float = 1.5,
        seed: int = 1,
        stroke_width: float = 2.0,
        color: str = "#1a1a2e",
    ):
        """Write ``text``; returns (summary, recipe, svg markup, png, gif, files)."""
        model = require_model(model, "handwriting")
        loaded = load(model)
        runtime, domain = loaded.runtime, loaded.domain
        if not draws_strokes(type(domain)):
            raise StudioError(f"{model} does not draw strokes: pick a handwriting or doodle model")
        settings = settings_from(
            model,
            text=(text or "") if domain.conditional else None,
            style=parse_style(style),
            bias=as_float(bias, "legibility"),
            seed=as_int(seed, "seed"),
            stroke_width=as_float(stroke_width, "stroke width"),
            color=hex_colour(color),
        )
        LIMITS.check(settings, domain)
        [drawing] = batcher.sample(settings)
        folder = outputs.new("handwrite")
        stem = f"{runtime.bundle.name}-seed{settings.seed}"
        files = [
            atomic_save(drawing.output, confine(folder, f"{stem}{suffix}", what="output file")) for suffix in FORMATS
        ]
        svg, png, gif = files
        recipe = "\n".join(command_line(settings, out=path.name) for path in files)
        return (
            drawing.text,
            recipe,
            svg.read_text(encoding="utf-8"),
            str(png),
            str(gif),
            [str(path) for path in files],
        )

    return handwrite


def build_tab(outputs: OutputFolders, batcher: Batcher) -> dict:
    names = bundles_for(draws_strokes)
    first = preferred(names, DEFAULT_MODEL)
    shows_text, shows_style = controls(first)
    notice = gr.Markdown(missing_notice(names, "handwriting", DEFAULT_MODEL))
    with gr.Row():
        with gr.Column(scale=2, min_width=320):
            model = gr.Dropdown(names, value=first, label="Model", allow_custom_value=True, elem_id="handwrite-model")
            text = gr.Textbox(
                "Sequence Studio",
                label="Text",
                lines=2,
                elem_id="handwrite-text",
                visible=shows_text["visible"],
                info=f"Up to {LIMITS.max_text} characters; long text wraps at the line "
                "length the model was trained on.",
            )
            style = gr.Dropdown(
                shows_style["choices"],
                value=NO_STYLE,
                label="Style",
                allow_custom_value=True,
                visible=shows_style["visible"],
                elem_id="handwrite-style",
                info="Prime the pen with a stored sample's hand.",
            )
            go = gr.Button("Write by hand", variant="primary", elem_id="handwrite-button")
            error = error_box("handwrite")
            with gr.Row():
                bias = gr.Number(
                    1.5,
                    step=0.1,
                    label="Legibility (bias)",
                    elem_id="handwrite-bias",
                    info="0 or more: 0 is wild, 3 and up is neat.",
                )
                seed = gr.Number(1, step=1, label="Seed", elem_id="handwrite-seed", info="0 or more.")
                dice = gr.Button("Random", scale=0, min_width=80)
            with gr.Row():
                stroke_width = gr.Number(
                    2.0, step=0.5, label="Stroke width", elem_id="handwrite-width", info="Above 0 (pixels)."
                )
                color = gr.ColorPicker("#1a1a2e", label="Ink colour")
        with gr.Column(scale=3, min_width=360):
            summary = gr.Textbox(label="Drawing", elem_id="handwrite-summary")
            svg = gr.HTML(label="SVG", elem_id="handwrite-svg", max_height=400)
            with gr.Row():
                png = gr.Image(label="PNG", type="filepath", elem_id="handwrite-png")
                gif = gr.Image(label="Pen animation", type="filepath", elem_id="handwrite-gif")
            files = gr.File(label="Downloads", file_count="multiple", elem_id="handwrite-files")
            recipe = gr.Textbox(label="Recipes (one per format)", buttons=["copy"], lines=3, elem_id="handwrite-recipe")
    action(
        go,
        make_handwrite(outputs, batcher),
        inputs=[model, text, style, bias, seed, stroke_width, color],
        outputs=[summary, recipe, svg, png, gif, files],
        error=error,
        api_name="handwrite",
        concurrency_limit=SAMPLING_CONCURRENCY,
        concurrency_id="handwrite",
    )
    model.change(controls, inputs=model, outputs=[text, style], api_visibility="private")
    dice.click(new_seed, outputs=seed, api_visibility="private")
    return {"model": model, "notice": notice, "accepts": draws_strokes, "default": DEFAULT_MODEL, "what": "handwriting"}
