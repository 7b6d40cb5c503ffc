"""The Compose tab: music from a MIDI-event bundle, heard, seen and downloaded.

``compose(...)`` is the ``/compose`` endpoint: the same settings `studio sample` builds
(``--bars``, ``--tempo``, ``--key``, ``--prime-midi`` ...), one sample, written as MIDI,
WAV and a piano-roll PNG exactly as ``studio sample ... --out NAME.mid --wav
--piano-roll`` writes them.  An uploaded primer is kept under a content-named path so
the recipe can name it.
"""

from __future__ import annotations

import gradio as gr

from studio.api import load, sample, settings_from
from studio.confine import confine, contain
from studio.errors import StudioError
from studio.sample_cli import atomic_save
from studio.sampling.settings import command_line

from .common import (MAX_SEED, OutputFolders, as_float, as_int, bundles_for, missing_notice,
                     new_seed, preferred, require_model, upload_folder, user_errors, writes_music)

DEFAULT_MODEL = "songs"
MAX_BARS = 64
KEYS = ["(any)"] + [f"{tonic} {mode}" for mode in ("major", "minor") for tonic in
                    ("C", "G", "D", "A", "E", "B", "F#", "F", "Bb", "Eb", "Ab", "Db")] + [
    "D dorian", "E phrygian", "F lydian", "G mixolydian", "A minor pentatonic", "C blues"]
MIDI_SUFFIXES = (".mid", ".midi")


def make_compose(outputs: OutputFolders):
    @user_errors
    def compose(model: str, primer: str | None, tempo: float, bars: int, key: str,
                temperature: float, beams: int, seed: int):
        """Compose one piece; returns (summary, recipe, midi, wav, piano roll png)."""
        model = require_model(model, "music")
        prime_file = None
        if primer:
            primer = contain(primer, [upload_folder()], what="primer")
            if primer.suffix.lower() not in MIDI_SUFFIXES:
                raise StudioError(f"the primer must be a MIDI file (.mid), not {primer.name}")
            prime_file = str(outputs.keep(primer, "primers", primer.suffix.lower()))
        tempo = as_float(tempo, "tempo") if tempo else None
        settings = settings_from(
            model, prime_file=prime_file, tempo=tempo, bars=as_int(bars, "bars"),
            key=None if key in (None, "", KEYS[0]) else key,
            temperature=as_float(temperature, "temperature"), num_beams=as_int(beams, "beams"),
            seed=as_int(seed, "seed"), length=None)
        if settings.bars > MAX_BARS:
            raise StudioError(f"at most {MAX_BARS} bars here (use the CLI for longer pieces)")
        loaded = load(settings.model)
        runtime = loaded.runtime
        if not writes_music(type(loaded.domain)):
            raise StudioError(f"{model} is not a music model: pick one trained on MIDI")
        [piece] = sample(settings=settings)
        folder = outputs.new("compose")
        midi = atomic_save(piece.output, confine(folder, f"{runtime.bundle.name}-seed{settings.seed}.mid",
                                                 what="output file"))
        wav = atomic_save(piece.output, midi.with_suffix(".wav"))
        roll = atomic_save(piece.output, midi.with_suffix(".png"))
        recipe = command_line(settings, out=midi.name) + " --wav --piano-roll"
        return piece.text, recipe, str(midi), str(wav), str(roll)

    return compose


def build_tab(outputs: OutputFolders) -> dict:
    names = bundles_for(writes_music)
    notice = gr.Markdown(missing_notice(names, "music", DEFAULT_MODEL))
    with gr.Row():
        with gr.Column(scale=2, min_width=320):
            model = gr.Dropdown(names, value=preferred(names, DEFAULT_MODEL), label="Model",
                                allow_custom_value=True, elem_id="compose-model")
            primer = gr.File(label="Prime MIDI (optional)", file_types=list(MIDI_SUFFIXES),
                             type="filepath", elem_id="compose-primer")
            with gr.Row():
                tempo = gr.Slider(0, 240, value=110, step=1, label="Tempo (bpm)",
                                  info="0 takes the primer's tempo (else 120).")
                bars = gr.Slider(1, MAX_BARS, value=8, step=1, label="Bars")
            key = gr.Dropdown(KEYS, value=KEYS[0], label="Key / scale", allow_custom_value=True,
                              info="Notes outside the scale are never played; type any key, "
                                   "e.g. 'Bb mixolydian'.")
            with gr.Row():
                temperature = gr.Slider(0, 2, value=1.0, step=0.05, label="Temperature")
                beams = gr.Slider(1, 8, value=1, step=1, label="Beams")
            with gr.Row():
                seed = gr.Number(value=3, precision=0, minimum=0, maximum=MAX_SEED, label="Seed",
                                 scale=3, elem_id="compose-seed")
                dice = gr.Button("Random", scale=1, min_width=60)
            go = gr.Button("Compose", variant="primary", elem_id="compose-button")
        with gr.Column(scale=3, min_width=360):
            summary = gr.Textbox(label="Piece", elem_id="compose-summary")
            audio = gr.Audio(label="Listen (WAV)", type="filepath", elem_id="compose-audio")
            roll = gr.Image(label="Piano roll", type="filepath", elem_id="compose-roll")
            midi = gr.File(label="MIDI", elem_id="compose-midi")
            recipe = gr.Textbox(label="Recipe (writes the same MIDI, WAV and PNG)",
                                buttons=["copy"], elem_id="compose-recipe")
    go.click(make_compose(outputs),
             inputs=[model, primer, tempo, bars, key, temperature, beams, seed],
             outputs=[summary, recipe, midi, audio, roll], api_name="compose",
             concurrency_limit=2, concurrency_id="render")
    dice.click(new_seed, outputs=seed, api_visibility="private")
    return {"model": model, "notice": notice, "accepts": writes_music, "default": DEFAULT_MODEL,
            "what": "music"}
