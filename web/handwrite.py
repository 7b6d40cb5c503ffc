"""The Handwrite tab: pen strokes from a mixture-density bundle.

``handwrite(...)`` is the ``/handwrite`` endpoint: the settings `studio sample` builds
from ``--text --style --bias --seed --stroke-width --color``, one drawing, saved as SVG,
PNG and an animated GIF exactly as ``studio sample ... --out NAME.svg`` (``.png``,
``.gif``) saves them.  A handwriting model needs text (an empty box is refused, never
filled in); an unconditional bundle (doodles) takes none, so the page hides the text box,
the style picker and the drawing pad while one is chosen.  The drawing pad
(:mod:`.drawing_pad`) and "What you wrote" give ``--style-file`` and ``--style-text``:
the pad's strokes are saved beside the drawing as ``my-hand.json``, which the recipe
names.  "Page width" is ``--page-width``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import gradio as gr

from studio.api import load, settings_from
from studio.confine import confine
from studio.errors import StudioError
from studio.handwriting.style_file import MAX_FILE_BYTES, strokes_from_json
from studio.sample_cli import atomic_save
from studio.sampling.settings import command_line
from studio.serve import Batcher

from . import browser
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
from .drawing_pad import build_pad, build_strokes_box

DEFAULT_MODEL = "handwriting"
DEFAULT_PAGE_WIDTH = 800
STYLE_FILE = "my-hand.json"
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
    """Updates for (text box, style picker, own-hand pad) when ``model`` is chosen: each
    shown only when the model uses it (a doodle model takes neither text nor a hand)."""
    try:
        loaded = load(listed_bundle(model).path) if model else None
    except StudioError:
        loaded = None
    writes = loaded is not None and draws_strokes(type(loaded.domain)) and loaded.domain.conditional
    styles = style_choices(model)
    return (
        gr.update(visible=writes or loaded is None),
        gr.update(choices=styles, value=NO_STYLE, visible=len(styles) > 1),
        gr.update(visible=writes or loaded is None),
    )


def browser_settings(model, text, style, bias, seed, stroke_width, color):
    """The settings the Handwrite button builds, for "Run in my browser"."""
    model = require_model(model, "handwriting")
    domain = load(model).domain
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
        # the in-browser sampler writes each model line in its own hand, one line a page
        # line: the recipe says so, and the CLI draws exactly that with these flags
        **({"page_width": 0, "hand_per_line": True} if domain.conditional else {}),
    )
    LIMITS.check(settings, domain)
    return settings


def save_style_strokes(strokes_json: str | None, folder: Path) -> Path | None:
    """The drawing pad's strokes as ``folder/my-hand.json`` (None when nothing is drawn);
    a pad that sent something unreadable is refused in one line."""
    if not strokes_json or not strokes_json.strip():
        return None
    if len(strokes_json) > MAX_FILE_BYTES:
        raise StudioError("the drawing is too large for a style sample: clear the pad and write a word or two")
    try:
        data = json.loads(strokes_json)
    except json.JSONDecodeError:
        raise StudioError("the drawing pad sent unreadable strokes: clear the pad and write again") from None
    runs = strokes_from_json(data, "the drawing")
    if not runs:
        return None
    path = folder / STYLE_FILE
    path.write_text(json.dumps([run.tolist() for run in runs]), encoding="utf-8")
    return path


def make_handwrite(outputs: OutputFolders, batcher: Batcher):
    def handwrite(
        model: str,
        text: str | None = None,
        style: str = NO_STYLE,
        bias: float = 1.5,
        seed: int = 1,
        stroke_width: float = 2.0,
        color: str = "#1a1a2e",
        page_width: float = DEFAULT_PAGE_WIDTH,
        style_strokes: str | None = None,
        style_text: str | None = None,
    ):
        """Write ``text``; returns (summary, recipe, svg markup, png, gif, files).
        ``style_strokes`` (JSON from the drawing pad) and ``style_text`` (what they say)
        make it write in the user's hand; they are kept beside the drawing as
        ``my-hand.json``, which the recipe names as ``--style-file``."""
        model = require_model(model, "handwriting")
        loaded = load(model)
        runtime, domain = loaded.runtime, loaded.domain
        if not draws_strokes(type(domain)):
            raise StudioError(f"{model} does not draw strokes: pick a handwriting or doodle model")
        folder = outputs.new("handwrite")
        style_file = save_style_strokes(style_strokes, folder)
        if style_file is None and (style_text or "").strip():
            raise StudioError("write those words on the pad too, or empty the box of what you wrote")
        settings = settings_from(
            model,
            text=(text or "") if domain.conditional else None,
            style=parse_style(style),
            style_file=str(style_file) if style_file else None,
            style_text=(style_text or "").strip() or None if style_file else None,
            page_width=as_int(page_width, "page width"),
            bias=as_float(bias, "legibility"),
            seed=as_int(seed, "seed"),
            stroke_width=as_float(stroke_width, "stroke width"),
            color=hex_colour(color),
        )
        LIMITS.check(settings, domain)
        [drawing] = batcher.sample(settings)
        stem = f"{runtime.bundle.name}-seed{settings.seed}"
        files = [
            atomic_save(drawing.output, confine(folder, f"{stem}{suffix}", what="output file")) for suffix in FORMATS
        ]
        svg, png, gif = files
        shown = settings.with_(style_file=style_file.name) if style_file else settings
        recipe = "\n".join(command_line(shown, out=path.name) for path in files)
        return (
            drawing.text,
            recipe,
            svg.read_text(encoding="utf-8"),
            str(png),
            str(gif),
            [str(path) for path in [*files, *([style_file] if style_file else [])]],
        )

    return handwrite


def build_tab(outputs: OutputFolders, batcher: Batcher) -> dict:
    names = bundles_for(draws_strokes)
    first = preferred(names, DEFAULT_MODEL)
    shows_text, shows_style, shows_pad = controls(first)
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
            pad_strokes = build_strokes_box()
            go = gr.Button("Write by hand", variant="primary", elem_id="handwrite-button")
            browser_go = gr.Button(
                "Write by hand", variant="primary", elem_id="handwrite-browser-button", visible=False
            )
            in_browser = gr.Checkbox(
                False,
                label="Run in my browser",
                elem_id="handwrite-in-browser",
                info="Draw on this computer (onnxruntime-web, fp32; no stored or drawn style, "
                "each line its own hand): the recipe's SVG.",
            )
            error = error_box("handwrite")
            with gr.Accordion(
                "Your own hand", open=True, elem_id="handwrite-own-hand", visible=shows_pad["visible"]
            ) as own:
                build_pad()
                style_text = gr.Textbox(
                    "",
                    label="What you wrote",
                    elem_id="handwrite-style-text",
                    info="Exactly the words on the pad; the pen then writes your text in that hand. "
                    "Leave the pad empty to use the Style above.",
                )
            with gr.Row():
                bias = gr.Number(
                    1.5,
                    step=0.1,
                    label="Legibility (bias)",
                    elem_id="handwrite-bias",
                    info="0 to 100: 0 is wild, 3 and up is neat.",
                )
                seed = gr.Number(1, step=1, label="Seed", elem_id="handwrite-seed", info="0 or more.")
                dice = gr.Button("Random", scale=0, min_width=80)
            with gr.Row():
                stroke_width = gr.Number(
                    2.0, step=0.5, label="Stroke width", elem_id="handwrite-width", info="Above 0, up to 100 pixels."
                )
                color = gr.ColorPicker("#1a1a2e", label="Ink colour")
            page_width = gr.Slider(
                200,
                2400,
                value=DEFAULT_PAGE_WIDTH,
                step=20,
                label="Page width (pixels)",
                elem_id="handwrite-page-width",
                info="Lines fill the page; spacing follows it.",
            )
        with gr.Column(scale=3, min_width=360):
            summary = gr.Textbox(label="Drawing", elem_id="handwrite-summary")
            svg = gr.HTML(label="SVG", elem_id="handwrite-svg")
            # one above the other, at the column's full width, below their labels and buttons
            png = gr.Image(label="PNG", type="filepath", elem_id="handwrite-png", elem_classes=["studio-drawing"])
            gif = gr.Image(
                label="Pen animation", type="filepath", elem_id="handwrite-gif", elem_classes=["studio-drawing"]
            )
            files = gr.File(label="Downloads", file_count="multiple", elem_id="handwrite-files")
            recipe = gr.Textbox(label="Recipes (one per format)", buttons=["copy"], lines=3, elem_id="handwrite-recipe")
    action(
        go,
        make_handwrite(outputs, batcher),
        inputs=[model, text, style, bias, seed, stroke_width, color, page_width, pad_strokes, style_text],
        outputs=[summary, recipe, svg, png, gif, files],
        error=error,
        api_name="handwrite",
        concurrency_limit=SAMPLING_CONCURRENCY,
        concurrency_id="handwrite",
    )
    model.change(controls, inputs=model, outputs=[text, style, own], api_visibility="private")
    browser.wire(
        browser_go,
        [model, text, style, bias, seed, stroke_width, color],
        [summary, recipe, svg, png, gif, files],
        outputs,
        browser_settings,
        kind="strokes",
    )
    in_browser.change(
        lambda on: (gr.update(visible=not on), gr.update(visible=bool(on))),
        inputs=in_browser,
        outputs=[go, browser_go],
        api_visibility="private",
    )
    dice.click(new_seed, outputs=seed, api_visibility="private")
    return {"model": model, "notice": notice, "accepts": draws_strokes, "default": DEFAULT_MODEL, "what": "handwriting"}
