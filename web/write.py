"""The Write tab: text from any text bundle, streamed as it is generated.

``write(...)`` is the ``/write`` endpoint.  It builds the same
:class:`~studio.sampling.settings.SampleSettings` the CLI builds from the same options,
runs :func:`studio.api.sample_iter`, and returns the text, its recipe (the
``studio sample ... --out FILE.txt`` command that writes the very same bytes), an HTML
view (Markdown, highlighted code, or confidence colours) and the text file.
"""

from __future__ import annotations

import time

import gradio as gr

from studio.api import load, sample_iter, settings_from
from studio.confine import confine
from studio.heads import Finished, Token
from studio.errors import StudioError
from studio.inspection import confidence_view
from studio.sample_cli import atomic_save
from studio.sampling.settings import command_line
from studio.text_view import VIEWS, corpus_view, view_html

from .common import (MAX_SEED, OutputFolders, as_float, as_int, missing_notice, new_seed,
                     preferred, require_model, user_errors, writes_text, bundles_for)

STREAM_INTERVAL_S = 0.08  # a screen update at least this often while tokens come ...
STREAM_TOKENS = 32  # ... or after this many tokens, so fast small models still stream
MAX_LENGTH = 2000
WRITE_CONCURRENCY = 4
DEFAULT_MODEL = "prose"


def parse_stops(text: str | None) -> tuple[str, ...]:
    """One stop string per line; ``\\n`` and ``\\t`` stand for newline and tab."""
    stops = []
    for line in (text or "").splitlines():
        if line:
            stops.append(line.replace("\\n", "\n").replace("\\t", "\t"))
    return tuple(stops)


def write_settings(model, prime, temperature, top_k, top_p, repetition_penalty, beams, seed,
                   length, stop):
    """The settings `studio sample` would build from the same options."""
    return settings_from(
        require_model(model, "text"), prime=prime or None,
        temperature=as_float(temperature, "temperature"), top_k=as_int(top_k, "top-k"),
        top_p=as_float(top_p, "top-p"),
        repetition_penalty=as_float(repetition_penalty, "repetition penalty"),
        num_beams=as_int(beams, "beams"), seed=as_int(seed, "seed"),
        length=as_int(length, "length"), stop=parse_stops(stop))


def make_write(outputs: OutputFolders):
    @user_errors
    def write(model: str, prime: str, temperature: float, top_k: int, top_p: float,
              repetition_penalty: float, beams: int, seed: int, length: int, stop: str,
              view: str = "auto", confidence: bool = False):
        """Generate text; streams (text, recipe, html, file, stats), the last one complete."""
        settings = write_settings(model, prime, temperature, top_k, top_p, repetition_penalty,
                                  beams, seed, length, stop)
        if settings.length > MAX_LENGTH:
            raise StudioError(f"length is capped at {MAX_LENGTH} tokens here (use the CLI for more)")
        loaded = load(settings.model)
        runtime, domain = loaded.runtime, loaded.domain
        if not writes_text(type(domain)):
            raise StudioError(f"{settings.model} is a {domain.name} model: the Write tab needs a "
                              "text model (music goes in Compose, strokes in Handwrite)")
        if view not in VIEWS:
            raise StudioError(f"view must be one of {', '.join(VIEWS)} (got {view!r})")
        shown, language = corpus_view(runtime.bundle.card) if view == "auto" else (view, None)
        if shown == "code" and language is None:
            language = corpus_view(runtime.bundle.card)[1]

        text = settings.prime or ""
        pieces: list[str] = []
        started = last_update = time.monotonic()
        shown_tokens = 0
        yield text, "", view_html(text, shown, language), None, "writing..."
        samples = []
        for event in sample_iter(settings=settings):
            if isinstance(event, Finished):
                samples = event.samples
                break
            if not isinstance(event, Token):
                continue
            pieces.append(event.text)
            if (time.monotonic() - last_update >= STREAM_INTERVAL_S
                    or len(pieces) - shown_tokens >= STREAM_TOKENS):
                last_update, shown_tokens = time.monotonic(), len(pieces)
                partial = text + "".join(pieces)
                yield partial, "", view_html(partial, shown, language), None, f"{len(pieces)} tokens..."
        seconds = time.monotonic() - started
        sample = samples[0]

        folder = outputs.new("write")
        target = confine(folder, f"{runtime.bundle.name}-seed{settings.seed}.txt", what="output file")
        atomic_save(sample.output, target)
        recipe = command_line(settings, out=target.name)
        if confidence:
            html_view = confidence_view(runtime, domain, settings, sample.tokens)
        else:
            html_view = view_html(sample.text, shown, language)
        count = len(sample.tokens)
        stats = (f"{count} tokens in {seconds:.2f} s ({1000 * seconds / max(1, count):.1f} ms/token); "
                 f"log-probability {sample.logprob:.2f} nats ({sample.logprob / max(1, count):.3f} per token)")
        yield sample.text, recipe, html_view, str(target), stats

    return write


def build_tab(outputs: OutputFolders) -> dict:
    """Components and events of the Write tab; returns the model picker for refreshes."""
    names = bundles_for(writes_text)
    notice = gr.Markdown(missing_notice(names, "text", DEFAULT_MODEL))
    with gr.Row():
        with gr.Column(scale=2, min_width=320):
            model = gr.Dropdown(names, value=preferred(names, DEFAULT_MODEL), label="Model",
                                allow_custom_value=True, elem_id="write-model",
                                info="Any text bundle: prose, Markdown, code or your own.")
            prime = gr.Textbox(label="Prime", lines=3, placeholder="ROMEO:", elem_id="write-prime",
                               info="Text the model continues from.")
            with gr.Row():
                temperature = gr.Slider(0, 2, value=0.8, step=0.05, label="Temperature",
                                        info="0 is greedy.", elem_id="write-temperature")
                length = gr.Slider(1, MAX_LENGTH, value=300, step=1, label="Length (tokens)",
                                   elem_id="write-length")
            with gr.Row():
                top_k = gr.Slider(0, 200, value=0, step=1, label="Top-k", info="0 is off.")
                top_p = gr.Slider(0.01, 1, value=1.0, step=0.01, label="Top-p")
            with gr.Row():
                repetition_penalty = gr.Slider(0.5, 2, value=1.0, step=0.05,
                                               label="Repetition penalty", info="1.0 is off.")
                beams = gr.Slider(1, 8, value=1, step=1, label="Beams")
            with gr.Row():
                seed = gr.Number(value=1, precision=0, minimum=0, maximum=MAX_SEED, label="Seed",
                                 elem_id="write-seed", scale=3)
                dice = gr.Button("Random", scale=1, min_width=60, elem_id="write-dice")
            stop = gr.Textbox(label="Stop strings", lines=2, placeholder="one per line; \\n is a newline")
            with gr.Row():
                view = gr.Radio(list(VIEWS), value="auto", label="Show as",
                                info="auto: Markdown or code when the model was trained on it.")
                confidence = gr.Checkbox(False, label="Colour by confidence", elem_id="write-confidence")
            with gr.Row():
                go = gr.Button("Write", variant="primary", elem_id="write-button")
                cancel = gr.Button("Stop", variant="stop", elem_id="write-stop")
        with gr.Column(scale=3, min_width=360):
            text = gr.Textbox(label="Text", lines=12, max_lines=30, buttons=["copy"],
                              elem_id="write-text", autoscroll=True)
            html_view = gr.HTML(label="View", elem_id="write-view", max_height=520)
            stats = gr.Markdown(elem_id="write-stats")
            recipe = gr.Textbox(label="Recipe (reproduces the text file byte for byte)",
                                buttons=["copy"], elem_id="write-recipe", lines=1)
            file = gr.File(label="Text file", elem_id="write-file")
    event = go.click(make_write(outputs),
                     inputs=[model, prime, temperature, top_k, top_p, repetition_penalty, beams,
                             seed, length, stop, view, confidence],
                     outputs=[text, recipe, html_view, file, stats], api_name="write",
                     concurrency_limit=WRITE_CONCURRENCY, concurrency_id="write")
    cancel.click(None, cancels=[event], api_visibility="private")
    dice.click(new_seed, outputs=seed, api_visibility="private")
    return {"model": model, "notice": notice, "accepts": writes_text, "default": DEFAULT_MODEL,
            "what": "text"}
