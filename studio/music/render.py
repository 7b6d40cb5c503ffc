"""What a music sample becomes: a MIDI file, audio, a piano-roll picture.

:class:`Rendered` wraps a decoded :class:`~studio.music.events.Piece` at a tempo;
``save(path)`` picks the format from the suffix: ``.mid``/``.midi`` (mido), ``.wav``
(fluidsynth with a General MIDI soundfont when installed, else a small numpy synth),
``.png`` (piano roll, matplotlib Agg).  Every format is byte-identical for identical
input, so seeded samples stay reproducible.

Audio set-up (Debian): ``apt-get install -y --no-install-recommends fluidsynth
timgm6mb-soundfont``.  ``STUDIO_SOUNDFONT`` points at another ``.sf2``.  Without
fluidsynth the fallback synth plays each note as a few decaying harmonics: enough to
hear the music, not a substitute for a soundfont.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from studio.errors import StudioError
from studio.music.events import Piece
from studio.music.files import write_midi

SAMPLE_RATE = 44_100
FALLBACK_SAMPLE_RATE = 22_050
SOUNDFONTS = (
    "/usr/share/sounds/sf2/TimGM6mb.sf2",
    "/usr/share/sounds/sf2/default-GM.sf2",
    "/usr/share/sounds/sf2/FluidR3_GM.sf2",
    "/usr/share/soundfonts/default.sf2",
)
RELEASE_SECONDS = 0.3  # tail after the last note so the sound can die away
SUFFIXES = (".mid", ".midi", ".wav", ".png")
ROLL_HEIGHT_INCHES = 4
ROLL_DPI = 100
CLEAR_TOP = 0.12  # of the piano roll's height, left empty for a viewer's label and toolbar
CAPTION_INCHES = 0.32


@dataclass(frozen=True)
class Rendered:
    """A finished piece at a tempo; ``text`` summarises it (with ``note``, when there is
    something the user should know), ``save`` writes it."""

    piece: Piece
    tempo: float
    note: str = ""

    @property
    def bars(self) -> int:
        return max(0, len(self.piece.bar_lines()) - 1)

    @property
    def seconds(self) -> float:
        return self.piece.end / self.piece.ticks_per_beat * 60.0 / self.tempo

    @property
    def metre(self) -> tuple[int, int]:
        """The time signature that holds longest: the piece's metre, even when its first
        bar (or a bar a model wrote loosely) has another."""
        signatures = sorted(self.piece.time_signatures)
        ends = [tick for tick, *_ in signatures[1:]] + [max(self.piece.end, signatures[-1][0])]
        held: dict[tuple[int, int], int] = {}
        for (tick, numerator, denominator), end in zip(signatures, ends):
            held[(numerator, denominator)] = held.get((numerator, denominator), 0) + end - tick
        return max(held, key=held.__getitem__)  # on a tie, the earliest

    @property
    def text(self) -> str:
        signature = "/".join(map(str, self.metre))
        text = (
            f"{self.bars} bars, {len(self.piece.notes)} notes, {self.tempo:g} bpm, "
            f"{signature}, {self.seconds:.1f} s, program {self.piece.program}"
        )
        return f"{text} ({self.note})" if self.note else text

    def save(self, path: Path) -> Path:
        path = Path(path)
        suffix = path.suffix.lower()
        if suffix not in SUFFIXES:
            raise StudioError(f"cannot write {path.name}: music is saved as {', '.join(SUFFIXES)}")
        path.parent.mkdir(parents=True, exist_ok=True)
        if suffix in (".mid", ".midi"):
            write_midi(self.piece, path, self.tempo)
        elif suffix == ".wav":
            write_wav(self.piece, self.tempo, path)
        else:
            write_piano_roll(self.piece, self.tempo, path, self.text)
        return path


# --- audio ------------------------------------------------------------------------


def soundfont() -> Path | None:
    """The soundfont fluidsynth will use, or None."""
    candidates = [os.environ.get("STUDIO_SOUNDFONT", "")] + list(SOUNDFONTS)
    return next((Path(c) for c in candidates if c and Path(c).is_file()), None)


def write_wav(piece: Piece, tempo: float, path: Path) -> None:
    """fluidsynth when it and a soundfont are installed, else :func:`synthesize`."""
    fluidsynth, font = shutil.which("fluidsynth"), soundfont()
    if fluidsynth and font:
        with tempfile.TemporaryDirectory() as folder:
            midi = Path(folder) / "piece.mid"
            write_midi(piece, midi, tempo)
            partial = Path(folder) / "out.wav"
            command = [
                fluidsynth,
                "-ni",
                "-q",
                "-g",
                "0.6",
                "-r",
                str(SAMPLE_RATE),
                "-T",
                "wav",
                "-F",
                str(partial),
                str(font),
                str(midi),
            ]
            result = subprocess.run(command, capture_output=True, text=True, timeout=600)
            if result.returncode == 0 and partial.is_file() and partial.stat().st_size > 44:
                shutil.move(str(partial), path)
                return
    audio = synthesize(piece, tempo)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(FALLBACK_SAMPLE_RATE)
        out.writeframes((audio * 32767).astype("<i2").tobytes())


def synthesize(piece: Piece, tempo: float, rate: int = FALLBACK_SAMPLE_RATE) -> np.ndarray:
    """Mono float audio in [-1, 1]: each note a few harmonics under an attack-decay envelope."""
    seconds_per_tick = 60.0 / tempo / piece.ticks_per_beat
    total = int((piece.end * seconds_per_tick + RELEASE_SECONDS) * rate) + 1
    audio = np.zeros(total, dtype=np.float64)
    for note in piece.notes:
        start = int(note.start * seconds_per_tick * rate)
        length = int(((note.end - note.start) * seconds_per_tick + RELEASE_SECONDS) * rate)
        length = min(length, total - start)
        t = np.arange(length) / rate
        frequency = 440.0 * 2.0 ** ((note.pitch - 69) / 12)
        tone = sum(np.sin(2 * np.pi * frequency * k * t) / k**1.5 for k in (1, 2, 3, 4))
        held = (note.end - note.start) * seconds_per_tick
        envelope = np.minimum(1.0, t / 0.01) * np.exp(-2.0 * t)
        envelope *= np.where(t < held, 1.0, np.exp(-(t - held) / 0.06))
        audio[start : start + length] += tone * envelope * (note.velocity / 127)
    peak = np.abs(audio).max()
    return audio / peak * 0.8 if peak > 0 else audio


# --- piano roll ---------------------------------------------------------------------


def piano_roll(piece: Piece) -> np.ndarray:
    """[128, ticks] float matrix of velocities / 127 (pitch rows, grid-tick columns)."""
    roll = np.zeros((128, max(1, piece.end)), dtype=np.float32)
    for note in piece.notes:
        roll[note.pitch, note.start : note.end] = note.velocity / 127
    return roll


def piano_roll_figure(piece: Piece, tempo: float, caption: str | None = None):
    """The piano roll as a matplotlib Figure (Agg): notes as bars, grey bar lines, and
    ``caption`` (by default the piece's summary) under the beat axis.  The top
    ``CLEAR_TOP`` of the picture stays empty: viewers such as the web studio's image box
    lay their label and toolbar over the top of an image, and nothing readable should
    sit under them."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    pitches = [note.pitch for note in piece.notes]
    low, high = (min(pitches) - 2, max(pitches) + 2) if pitches else (55, 80)
    tick = 1 / piece.ticks_per_beat
    beats = max(1, piece.end) * tick
    # at most 3:1, so that a viewer fitting it to a column keeps the caption readable
    width = min(3 * ROLL_HEIGHT_INCHES, max(6, beats / 4))
    figure = Figure(figsize=(width, ROLL_HEIGHT_INCHES), dpi=ROLL_DPI)
    axes = figure.add_subplot()
    # one bar per note, a hair short of its end so repeated notes stay apart
    for note in piece.notes:
        shade = (0.1, 0.3 + 0.4 * (1 - note.velocity / 127), 0.7)
        axes.broken_barh(
            [(note.start * tick, (note.end - note.start) * tick * 0.96)], (note.pitch - 0.4, 0.8), facecolors=shade
        )
    axes.set_xlim(0, beats)
    axes.set_ylim(low, high)
    for line in piece.bar_lines():
        axes.axvline(line / piece.ticks_per_beat, color="0.75", linewidth=0.6)
    axes.set_xlabel("beat")
    axes.set_ylabel("MIDI pitch")
    caption = Rendered(piece, tempo).text if caption is None else caption
    figure.text(0.01, 0.02, caption, fontsize=11, ha="left", va="bottom")
    below = CAPTION_INCHES / ROLL_HEIGHT_INCHES  # room for the caption under the axis label
    figure.tight_layout(rect=(0, below, 1, 1 - CLEAR_TOP))
    return figure


def write_piano_roll(piece: Piece, tempo: float, path: Path, caption: str | None = None) -> None:
    piano_roll_figure(piece, tempo, caption).savefig(path, metadata={"Software": None})
