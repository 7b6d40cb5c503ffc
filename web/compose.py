"""The Compose tab: music from a MIDI-event bundle, heard, seen and downloaded.

``compose(...)`` is the ``/compose`` endpoint: the same settings `studio sample` builds
(``--bars``, ``--tempo``, ``--key``, ``--metre``, ``--prime-file`` ...), one sample, written as MIDI,
WAV and a piano-roll PNG exactly as ``studio sample ... --out NAME.mid --wav
--piano-roll`` writes them.  An uploaded primer (any file the music domain reads) is
kept under a content-named path on the server; the recipe and every message name it by
the user's own file name.
"""

from __future__ import annotations

import gradio as gr

from studio.api import load, settings_from
from studio.confine import confine, contain
from studio.domains import DOMAINS, Medium
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
    error_box,
    missing_notice,
    named_as_uploaded,
    new_seed,
    preferred,
    require_model,
    upload_folder,
    writes_music,
)

DEFAULT_MODEL = "songs"
DEFAULT_TEMPO = 110.0  # for a model whose card records no corpus tempo
KEYS = (
    ["(any)"]
    + [
        f"{tonic} {mode}"
        for mode in ("major", "minor")
        for tonic in ("C", "G", "D", "A", "E", "B", "F#", "F", "Bb", "Eb", "Ab", "Db")
    ]
    + ["D dorian", "E phrygian", "F lydian", "G mixolydian", "A minor pentatonic", "C blues"]
)
ANY_METRE = "(model's choice)"
# what the music domains read: MIDI, MusicXML, ABC, Humdrum
PRIMER_SUFFIXES = tuple(
    dict.fromkeys(suffix for cls in DOMAINS.values() if cls.medium is Medium.MUSIC for suffix in cls.suffixes)
)


def model_defaults(model: str | None) -> tuple[float, str]:
    """(tempo, key) the tab offers first for ``model``: its corpus's usual ones when its
    card records them (``folk``: the O'Neill tunes' 120 bpm and G major), else
    ``DEFAULT_TEMPO`` and any key; those too for a name that is no music bundle."""
    try:
        defaults = load(require_model(model, "music")).domain.sample_defaults()
    except StudioError:
        defaults = {}
    return float(defaults.get("tempo", DEFAULT_TEMPO)), str(defaults.get("key", KEYS[0]))


def metre_choices(model: str | None) -> list[str]:
    """The time signatures the tab offers for ``model``: the model's choice first, then
    those its corpus keeps to (``songs``: 3/4 and 4/4), with the other name of each bar
    length (3/4 beside 6/8, 2/2 beside 4/4) that writes the same bars."""
    try:
        domain = load(require_model(model, "music")).domain
    except StudioError:
        return [ANY_METRE]
    named = [f"{n}/{d}" for n, d in getattr(domain, "usual_signatures", None) or ()]
    twins = {"3/4": "6/8", "6/8": "3/4", "4/4": "2/2", "2/2": "4/4"}
    return [ANY_METRE, *dict.fromkeys(named + [twins[name] for name in named if name in twins])]


def model_changed(model: str | None):
    """The tempo, key and time signatures the tab offers when the model changes."""
    tempo, key = model_defaults(model)
    return tempo, key, gr.Dropdown(choices=metre_choices(model), value=ANY_METRE)


def make_compose(outputs: OutputFolders, batcher: Batcher):
    def compose(
        model: str,
        primer: str | None = None,
        tempo: float = 110,
        bars: int = 8,
        key: str = KEYS[0],
        temperature: float = 1.0,
        beams: int = 1,
        seed: int = 3,
        metre: str = ANY_METRE,
        best_of: int = 1,
        pitch_temp: float = 1.0,
        lockstep: bool = False,
    ):
        """Compose one piece; returns (summary, recipe, midi, wav, piano roll png)."""
        model = require_model(model, "music")
        prime_file, uploaded = None, {}
        if primer:
            primer = contain(primer, [upload_folder()], what="primer")
            if primer.suffix.lower() not in PRIMER_SUFFIXES:
                raise StudioError(
                    f"{primer.name} is not a music file: give a MIDI (.mid), MusicXML, ABC or Humdrum file"
                )
            kept = outputs.keep(primer, "primers", primer.suffix.lower())
            # library messages name a file by its path or by its own (content-hash) name
            prime_file = str(kept)
            uploaded = {str(kept): primer.name, str(primer): primer.name, kept.name: primer.name}
        tempo = as_float(tempo, "tempo")
        settings = settings_from(
            model,
            prime_file=prime_file,
            tempo=tempo or None,
            bars=as_int(bars, "bars"),
            key=None if key in (None, "", KEYS[0]) else key,
            metre=None if metre in (None, "", ANY_METRE) else str(metre).strip(),
            temperature=as_float(temperature, "temperature"),
            num_beams=as_int(beams, "beams"),
            best_of=as_int(best_of, "candidates"),
            pitch_temperature=as_float(pitch_temp, "pitch temperature"),
            lockstep=bool(lockstep),
            seed=as_int(seed, "seed"),
            length=None,
        )
        loaded = load(settings.model)
        if not writes_music(type(loaded.domain)):
            raise StudioError(f"{model} is not a music model: pick one trained on MIDI")
        LIMITS.check(settings, loaded.domain)
        with named_as_uploaded(uploaded):
            [piece] = batcher.sample(settings)
        folder = outputs.new("compose")
        midi = atomic_save(piece.output, confine(folder, f"{loaded.name}-seed{settings.seed}.mid", what="output file"))
        wav = atomic_save(piece.output, midi.with_suffix(".wav"))
        roll = atomic_save(piece.output, midi.with_suffix(".png"))
        shown = settings.with_(prime_file=uploaded[prime_file]) if prime_file else settings
        recipe = command_line(shown, out=midi.name) + " --wav --piano-roll"
        return piece.text, recipe, str(midi), str(wav), str(roll)

    return compose


def build_tab(outputs: OutputFolders, batcher: Batcher) -> dict:
    names = bundles_for(writes_music)
    notice = gr.Markdown(missing_notice(names, "music", DEFAULT_MODEL))
    first_tempo, first_key = model_defaults(preferred(names, DEFAULT_MODEL))
    with gr.Row():
        with gr.Column(scale=2, min_width=320):
            model = gr.Dropdown(
                names,
                value=preferred(names, DEFAULT_MODEL),
                label="Model",
                allow_custom_value=True,
                elem_id="compose-model",
            )
            with gr.Row():
                tempo = gr.Number(
                    first_tempo,
                    step=1,
                    label="Tempo (bpm)",
                    elem_id="compose-tempo",
                    info="10 to 400; 0 takes the primer's (else 120).",
                )
                bars = gr.Number(
                    8,
                    step=1,
                    label="Bars",
                    elem_id="compose-bars",
                    info=f"1 to {LIMITS.max_bars}; new bars after a primer.",
                )
            key = gr.Dropdown(
                KEYS if first_key in KEYS else KEYS + [first_key],
                value=first_key,
                label="Key / scale",
                allow_custom_value=True,
                elem_id="compose-key",
                info="Notes outside the scale are never played; type any key, e.g. 'Bb mixolydian'.",
            )
            metre = gr.Dropdown(
                metre_choices(preferred(names, DEFAULT_MODEL)),
                value=ANY_METRE,
                label="Time signature",
                allow_custom_value=True,
                elem_id="compose-metre",
                info="Every bar this long after an optional pickup; one the model's corpus keeps to.",
            )
            with gr.Row():
                temperature = gr.Number(
                    1.0, step=0.05, label="Temperature", elem_id="compose-temperature", info="0 (greedy) to 100."
                )
                beams = gr.Number(1, step=1, label="Beams", elem_id="compose-beams", info=f"1 to {LIMITS.max_beams}.")
                seed = gr.Number(3, step=1, label="Seed", elem_id="compose-seed", info="0 or more.")
            with gr.Row():
                go = gr.Button("Compose", variant="primary", elem_id="compose-button", scale=3)
                dice = gr.Button("Random seed", scale=1, min_width=60)
            error = error_box("compose")
            best_of = gr.Number(
                1,
                step=1,
                label="Candidates",
                elem_id="compose-best-of",
                info=f"1 to {LIMITS.max_best_of}: compose this many and keep the one the model finds likeliest "
                "(16 suits the chorale model; folk tunes lose their ornaments, keep 1 there; not with beams).",
            )
            pitch_temp = gr.Number(
                1.0,
                step=0.05,
                label="Pitch temperature",
                elem_id="compose-pitch-temp",
                info="Above 0, up to 10; 1 is off. Below 1 sharpens which note is played, not when "
                "(folk: 0.85 with temperature 0.95).",
            )
            lockstep = gr.Checkbox(
                False,
                label="One note at a time",
                elem_id="compose-lockstep",
                info="No note starts while an earlier one still sounds, as in a fiddle tune.",
            )
            primer = gr.File(
                label="Primer to continue (optional)",
                file_types=list(PRIMER_SUFFIXES),
                type="filepath",
                elem_id="compose-primer",
                height=120,
            )
        with gr.Column(scale=3, min_width=360):
            summary = gr.Textbox(label="Piece", elem_id="compose-summary")
            audio = gr.Audio(label="Listen (WAV)", type="filepath", elem_id="compose-audio")
            roll = gr.Image(label="Piano roll", type="filepath", elem_id="compose-roll")
            midi = gr.File(label="MIDI", elem_id="compose-midi")
            recipe = gr.Textbox(
                label="Recipe (writes the same MIDI, WAV and PNG)", buttons=["copy"], elem_id="compose-recipe"
            )
    action(
        go,
        make_compose(outputs, batcher),
        inputs=[model, primer, tempo, bars, key, temperature, beams, seed, metre, best_of, pitch_temp, lockstep],
        outputs=[summary, recipe, midi, audio, roll],
        error=error,
        api_name="compose",
        concurrency_limit=SAMPLING_CONCURRENCY,
        concurrency_id="compose",
    )
    dice.click(new_seed, outputs=seed, api_visibility="private")
    model.change(model_changed, inputs=model, outputs=[tempo, key, metre], api_visibility="private")
    return {"model": model, "notice": notice, "accepts": writes_music, "default": DEFAULT_MODEL, "what": "music"}
