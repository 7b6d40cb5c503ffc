"""The Handwrite tab: pen strokes from a mixture-density bundle.

``handwrite(...)`` is the ``/handwrite`` endpoint: the settings `studio sample` builds
from ``--text --style --bias --seed --stroke-width --color``, one drawing, saved as SVG,
PNG and an animated GIF exactly as ``studio sample ... --out NAME.svg`` (``.png``,
``.gif``) saves them.  Unconditional bundles (doodles) ignore the text.
"""

from __future__ import annotations

import re

import gradio as gr

from studio.api import load, sample, settings_from
from studio.bundle import Bundle
from studio.confine import confine
from studio.errors import StudioError
from studio.sample_cli import atomic_save
from studio.sampling.settings import command_line

from .common import (MAX_SEED, OutputFolders, as_float, as_int, bundles_for, draws_strokes,
                     listed_bundle, missing_notice, new_seed, preferred, require_model, user_errors)

DEFAULT_MODEL = "handwriting"
NO_STYLE = "none"
MAX_TEXT = 200
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
    """"none" plus one entry per style stored in the bundle's card."""
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


def make_handwrite(outputs: OutputFolders):
    @user_errors
    def handwrite(model: str, text: str, style: str, bias: float, seed: int,
                  stroke_width: float, color: str):
        """Write ``text``; returns (summary, recipe, svg markup, png, gif, files)."""
        model = require_model(model, "handwriting")
        if text and len(text) > MAX_TEXT:
            raise StudioError(f"at most {MAX_TEXT} characters here (got {len(text)}); use the CLI for more")
        loaded = load(model)
        runtime, domain = loaded.runtime, loaded.domain
        if not draws_strokes(type(domain)):
            raise StudioError(f"{model} does not draw strokes: pick a handwriting or doodle model")
        conditional = domain.conditional
        settings = settings_from(
            model, text=(text or None) if conditional else None, style=parse_style(style),
            bias=as_float(bias, "legibility"), seed=as_int(seed, "seed"),
            stroke_width=as_float(stroke_width, "stroke width"), color=hex_colour(color))
        [drawing] = sample(settings=settings)
        folder = outputs.new("handwrite")
        stem = f"{runtime.bundle.name}-seed{settings.seed}"
        files = [atomic_save(drawing.output, confine(folder, f"{stem}{suffix}", what="output file"))
                 for suffix in FORMATS]
        svg, png, gif = files
        recipe = "\n".join(command_line(settings, out=path.name) for path in files)
        return (drawing.text, recipe, svg.read_text(encoding="utf-8"), str(png), str(gif),
                [str(path) for path in files])

    return handwrite


def build_tab(outputs: OutputFolders) -> dict:
    names = bundles_for(draws_strokes)
    first = preferred(names, DEFAULT_MODEL)
    notice = gr.Markdown(missing_notice(names, "handwriting", DEFAULT_MODEL))
    with gr.Row():
        with gr.Column(scale=2, min_width=320):
            model = gr.Dropdown(names, value=first, label="Model", allow_custom_value=True,
                                elem_id="handwrite-model")
            text = gr.Textbox("Sequence Studio", label="Text", lines=2, max_length=MAX_TEXT,
                              elem_id="handwrite-text",
                              info="Long text wraps at the line length the model was trained on.")
            style = gr.Dropdown(style_choices(first), value=NO_STYLE, label="Style", allow_custom_value=True,
                                info="Prime the pen with a stored sample's hand.")
            bias = gr.Slider(0, 4, value=1.5, step=0.1, label="Legibility (bias)",
                             info="0 is wild, 3 and up is neat.")
            with gr.Row():
                seed = gr.Number(value=1, precision=0, minimum=0, maximum=MAX_SEED, label="Seed",
                                 scale=3, elem_id="handwrite-seed")
                dice = gr.Button("Random", scale=1, min_width=60)
            with gr.Row():
                stroke_width = gr.Slider(0.5, 8, value=2.0, step=0.5, label="Stroke width")
                color = gr.ColorPicker("#1a1a2e", label="Ink colour")
            go = gr.Button("Write by hand", variant="primary", elem_id="handwrite-button")
        with gr.Column(scale=3, min_width=360):
            summary = gr.Textbox(label="Drawing", elem_id="handwrite-summary")
            svg = gr.HTML(label="SVG", elem_id="handwrite-svg", max_height=400)
            with gr.Row():
                png = gr.Image(label="PNG", type="filepath", elem_id="handwrite-png")
                gif = gr.Image(label="Pen animation", type="filepath", elem_id="handwrite-gif")
            files = gr.File(label="Downloads", file_count="multiple", elem_id="handwrite-files")
            recipe = gr.Textbox(label="Recipes (one per format)", buttons=["copy"], lines=3,
                                elem_id="handwrite-recipe")
    go.click(make_handwrite(outputs),
             inputs=[model, text, style, bias, seed, stroke_width, color],
             outputs=[summary, recipe, svg, png, gif, files], api_name="handwrite",
             concurrency_limit=2, concurrency_id="render")
    model.change(lambda name: gr.update(choices=style_choices(name), value=NO_STYLE),
                 inputs=model, outputs=style, api_visibility="private")
    dice.click(new_seed, outputs=seed, api_visibility="private")
    return {"model": model, "notice": notice, "accepts": draws_strokes, "default": DEFAULT_MODEL,
            "what": "handwriting"}
