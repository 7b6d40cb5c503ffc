"""The Write tab: text from any text bundle, streamed as it is generated.

``write(...)`` is the ``/write`` endpoint.  It builds the same
:class:`~studio.sampling.settings.SampleSettings` the CLI builds from the same options,
runs :func:`studio.api.sample_iter`, and returns the text, its recipe (the
``studio sample ... --out FILE.txt`` command that writes the very same bytes), an HTML
view (Markdown, highlighted code, or confidence colours), the text file and a stats line.
The page shows the text once: plain text in the text box, anything rendered in the view.

Stop on the page ends the running write at its next token: what was written so far is
kept, with the file and recipe of exactly those tokens (``--length N``).
"""

from __future__ import annotations

import threading
import time

import gradio as gr

from studio.api import load, settings_from
from studio.confine import confine
from studio.errors import StudioError
from studio.heads import Finished, Token
from studio.inspection import UNCERTAINTY_PASSES, confidence_view, uncertainty_view
from studio.sample_cli import atomic_save
from studio.sampling.settings import command_line, unescape_stop
from studio.serve import Batcher
from studio.text_view import VIEWS, corpus_view, view_html
from studio.uncertainty import require_mc_graph, require_passes

from . import browser
from .common import (
    LIMITS,
    SAMPLING_CONCURRENCY,
    OutputFolders,
    action,
    as_float,
    as_int,
    bundles_for,
    error_box,
    missing_notice,
    new_seed,
    preferred,
    require_model,
    writes_text,
)

STREAM_INTERVAL_S = 0.08  # a screen update at least this often while tokens come ...
STREAM_TOKENS = 32  # ... or after this many tokens, so fast small models still stream
DEFAULT_MODEL = "prose"


class StopRequests:
    """Sessions (browser tabs) whose user pressed Stop while a write of theirs ran.  A
    Stop with no write running is ignored, so it never cuts the next write short."""

    def __init__(self):
        self._lock = threading.Lock()
        self._running: set[str] = set()
        self._pressed: set[str] = set()

    def start(self, session: str | None) -> None:
        with self._lock:
            if session is not None:
                self._running.add(session)
                self._pressed.discard(session)

    def finish(self, session: str | None) -> None:
        with self._lock:
            self._running.discard(session)
            self._pressed.discard(session)

    def press(self, session: str | None) -> None:
        with self._lock:
            if session in self._running:
                self._pressed.add(session)

    def pressed(self, session: str | None) -> bool:
        with self._lock:
            return session in self._pressed


def parse_stops(text: str | None) -> tuple[str, ...]:
    """One stop string per line; ``\\n`` and ``\\t`` stand for newline and tab."""
    return tuple(unescape_stop(line) for line in (text or "").splitlines() if line)


def write_settings(model, prime, temperature, top_k, top_p, repetition_penalty, beams, seed, length, stop, best_of=1):
    """The settings `studio sample` would build from the same options."""
    return settings_from(
        require_model(model, "text"),
        prime=prime or None,
        temperature=as_float(temperature, "temperature"),
        top_k=as_int(top_k, "top-k"),
        top_p=as_float(top_p, "top-p"),
        repetition_penalty=as_float(repetition_penalty, "repetition penalty"),
        num_beams=as_int(beams, "beams"),
        seed=as_int(seed, "seed"),
        length=as_int(length, "length"),
        stop=parse_stops(stop),
        best_of=as_int(best_of, "candidates"),
    )


def make_write(outputs: OutputFolders, stops: StopRequests, batcher: Batcher):
    def write(
        model: str,
        prime: str | None = None,
        temperature: float = 0.8,
        top_k: int = 0,
        top_p: float = 1.0,
        repetition_penalty: float = 1.0,
        beams: int = 1,
        seed: int = 1,
        length: int = 300,
        stop: str | None = None,
        view: str = "auto",
        confidence: bool = False,
        uncertainty: bool = False,
        mc_passes: int = UNCERTAINTY_PASSES,
        best_of: int = 1,
        request: gr.Request = None,
    ):
        """Generate text; streams (text, recipe, html, file, stats, rendered), the last one
        complete; ``rendered`` says whether ``html`` shows more than the plain text."""
        settings = write_settings(
            model, prime, temperature, top_k, top_p, repetition_penalty, beams, seed, length, stop, best_of
        )
        loaded = load(settings.model)
        runtime, domain = loaded.runtime, loaded.domain
        if not writes_text(type(domain)):
            raise StudioError(
                f"{settings.model} is a {domain.name} model: the Write tab needs a "
                "text model (music goes in Compose, strokes in Handwrite)"
            )
        LIMITS.check(settings, domain)
        if view not in VIEWS:
            raise StudioError(f"view must be one of {', '.join(VIEWS)} (got {view!r})")
        shown, language = corpus_view(runtime.bundle.card) if view == "auto" else (view, None)
        if shown == "code" and language is None:
            language = corpus_view(runtime.bundle.card)[1]
        rendered = bool(confidence) or bool(uncertainty) or shown != "plain"
        if uncertainty:
            require_passes(as_int(mc_passes, "MC-dropout passes"))
            require_mc_graph(runtime.bundle)  # no MC graph: say so before sampling

        session = request.session_hash if request is not None else None
        text = settings.prime or ""
        pieces: list[str] = []
        started = last_update = time.monotonic()
        shown_tokens = 0
        stopped = False
        samples = []
        stops.start(session)
        try:
            yield text, "", view_html(text, shown, language), None, "writing...", rendered
            for event in batcher.sample_iter(settings):
                if isinstance(event, Finished):
                    samples = event.samples
                    break
                if not isinstance(event, Token):
                    continue
                pieces.append(event.text)
                if stops.pressed(session):
                    stopped = True
                    break
                if time.monotonic() - last_update >= STREAM_INTERVAL_S or len(pieces) - shown_tokens >= STREAM_TOKENS:
                    last_update, shown_tokens = time.monotonic(), len(pieces)
                    partial = text + "".join(pieces)
                    yield (partial, "", view_html(partial, shown, language), None, f"{len(pieces)} tokens...", rendered)
        finally:
            stops.finish(session)
        seconds = time.monotonic() - started
        if stopped:
            # what exists is what `--length N` writes: the recipe's own run gives its file
            settings = settings.with_(length=len(pieces))
            samples = batcher.sample(settings)
        finished = samples[0]

        folder = outputs.new("write")
        target = confine(folder, f"{runtime.bundle.name}-seed{settings.seed}.txt", what="output file")
        atomic_save(finished.output, target)
        recipe = command_line(settings, out=target.name)
        if uncertainty:
            html_view = uncertainty_view(runtime, domain, settings, finished.tokens, int(mc_passes))
        elif confidence:
            html_view = confidence_view(runtime, domain, settings, finished.tokens)
        else:
            html_view = view_html(finished.text, shown, language)
        count = len(finished.tokens)
        logprob = f"log-probability {finished.logprob:.2f} nats ({finished.logprob / max(1, count):.3f} per token)"
        if stopped:
            stats = (
                f"stopped at {count} tokens after {seconds:.2f} s; the text file and the recipe "
                f"hold these {count} tokens; {logprob}"
            )
        else:
            stats = f"{count} tokens in {seconds:.2f} s ({1000 * seconds / max(1, count):.1f} ms/token); {logprob}"
        yield finished.text, recipe, html_view, str(target), stats, rendered

    return write


def for_api(values: tuple) -> tuple:
    """(text, recipe, html, file, stats): the endpoint's outputs."""
    return values[:5]


def for_page(values: tuple) -> tuple:
    """The text once: in the text box when plain, in the view when rendered."""
    text, recipe, html_view, file, stats, rendered = values
    return (
        gr.update(value=text, visible=not rendered),
        recipe,
        gr.update(value=html_view, visible=rendered),
        file,
        stats,
    )


def build_tab(outputs: OutputFolders, batcher: Batcher) -> dict:
    """Components and events of the Write tab; returns the model picker for refreshes."""
    names = bundles_for(writes_text)
    stops = StopRequests()
    notice = gr.Markdown(missing_notice(names, "text", DEFAULT_MODEL))
    with gr.Row():
        with gr.Column(scale=2, min_width=320):
            model = gr.Dropdown(
                names,
                value=preferred(names, DEFAULT_MODEL),
                label="Model",
                allow_custom_value=True,
                elem_id="write-model",
                info="Any text bundle: prose, Markdown, code or your own.",
            )
            prime = gr.Textbox(
                "",
                label="Prime",
                lines=3,
                placeholder="ROMEO:",
                elem_id="write-prime",
                info="Text the model continues from; empty starts a fresh document.",
            )
            with gr.Row():
                go = gr.Button("Write", variant="primary", elem_id="write-button")
                browser_go = gr.Button("Write", variant="primary", elem_id="write-browser-button", visible=False)
                cancel = gr.Button("Stop", variant="stop", elem_id="write-stop")
            error = error_box("write")
            with gr.Row():
                temperature = gr.Number(
                    0.8, step=0.05, label="Temperature", elem_id="write-temperature", info="0 (greedy) to 100."
                )
                length = gr.Number(
                    300, step=1, label="Length (tokens)", elem_id="write-length", info=f"1 to {LIMITS.max_length:,}."
                )
                beams = gr.Number(1, step=1, label="Beams", elem_id="write-beams", info=f"1 to {LIMITS.max_beams}.")
                best_of = gr.Number(
                    1,
                    step=1,
                    label="Candidates",
                    elem_id="write-best-of",
                    info=f"1 to {LIMITS.max_best_of}: write this many, keep the one the model finds likeliest.",
                )
            with gr.Row():
                top_k = gr.Number(0, step=1, label="Top-k", info="0 is off.", elem_id="write-top-k")
                top_p = gr.Number(1.0, step=0.01, label="Top-p", info="Above 0, up to 1 (off).", elem_id="write-top-p")
                repetition_penalty = gr.Number(
                    1.0,
                    step=0.05,
                    label="Repetition penalty",
                    info="Above 0, up to 100; 1 is off.",
                    elem_id="write-repetition",
                )
            with gr.Row():
                seed = gr.Number(
                    1,
                    step=1,
                    label="Seed",
                    elem_id="write-seed",
                    scale=3,
                    info="0 or more: the same seed writes the same text.",
                )
                dice = gr.Button("Random", scale=1, min_width=60, elem_id="write-dice")
            stop = gr.Textbox(
                "",
                label="Stop strings",
                lines=2,
                elem_id="write-stop-strings",
                placeholder="one per line; \\n is a newline",
            )
            with gr.Row():
                view = gr.Radio(
                    list(VIEWS),
                    value="auto",
                    label="Show as",
                    info="auto: Markdown or code when the model was trained on it.",
                )
                confidence = gr.Checkbox(False, label="Colour by confidence", elem_id="write-confidence")
                uncertainty = gr.Checkbox(
                    False,
                    label="Colour by uncertainty",
                    elem_id="write-uncertainty",
                    info="MC dropout: the spread of each token's probability over passes with dropout on "
                    "(models trained with dropout).",
                )
                mc_passes = gr.Slider(
                    2, 50, UNCERTAINTY_PASSES, step=1, label="MC-dropout passes", elem_id="write-mc-passes"
                )
            in_browser = gr.Checkbox(
                False,
                label="Run in my browser",
                elem_id="write-in-browser",
                info="Sample on this computer (onnxruntime-web, fp32): the same text as the recipe.",
            )
        with gr.Column(scale=3, min_width=360):
            text = gr.Textbox(
                label="Text", lines=12, max_lines=30, buttons=["copy"], elem_id="write-text", autoscroll=True
            )
            html_view = gr.HTML(label="View", elem_id="write-view", max_height=520, visible=False)
            stats = gr.Markdown(label="Stats", elem_id="write-stats")
            recipe = gr.Textbox(
                label="Recipe (reproduces the text file byte for byte)",
                buttons=["copy"],
                elem_id="write-recipe",
                lines=1,
            )
            file = gr.File(label="Text file", elem_id="write-file")
    action(
        go,
        make_write(outputs, stops, batcher),
        inputs=[
            model,
            prime,
            temperature,
            top_k,
            top_p,
            repetition_penalty,
            beams,
            seed,
            length,
            stop,
            view,
            confidence,
            uncertainty,
            mc_passes,
            best_of,
        ],
        outputs=[text, recipe, html_view, file, stats],
        error=error,
        api_name="write",
        api=for_api,
        page=for_page,
        concurrency_limit=SAMPLING_CONCURRENCY,
        concurrency_id="write",
    )

    settings_inputs = [model, prime, temperature, top_k, top_p, repetition_penalty, beams, seed, length, stop, best_of]
    browser.wire(browser_go, settings_inputs, [text, recipe, stats], outputs, write_settings)
    in_browser.change(
        browser.switch, inputs=in_browser, outputs=[go, browser_go, text, html_view], api_visibility="private"
    )

    def press_stop(request: gr.Request):
        stops.press(request.session_hash)

    cancel.click(press_stop, queue=False, api_visibility="private", show_progress="hidden")
    dice.click(new_seed, outputs=seed, api_visibility="private")
    return {"model": model, "notice": notice, "accepts": writes_text, "default": DEFAULT_MODEL, "what": "text"}
