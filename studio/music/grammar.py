"""A sampling rule that keeps generated event streams playable.

An event model has to remember, over hundreds of events, which notes it left sounding;
a small LSTM sometimes forgets, and a note that is never released drones to the end of
the piece (inflating polyphony and smearing the harmony).  :class:`NoteGrammar` reads the
events sampled so far (from the last separator) and, before each draw, bans what a
musician would call a mistake:

* ``NOTE_OFF p`` for a pitch that is not sounding (it would do nothing);
* ``NOTE_ON p`` for a pitch that is already sounding (it would cut the note);
* any ``NOTE_ON`` once ``max_voices`` notes sound;
* a ``SHIFT`` that would hold some note longer than ``max_note_ticks``; once a note has
  reached that length, only the note-offs of such notes stay allowed, so it ends now.

Both limits come from the training corpus (the longest note and the most simultaneous
notes in it, recorded in the bundle's card), so the rule never forbids what the corpus
does.  It is a pure function of ``(history, logits)``; a memo keyed by the history
prefix keeps it linear in the length (each step only folds in the newest event).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from studio.music.events import PITCH_COUNT, EventCodec, Piece

NEG_INF = -np.inf
State = tuple[tuple[tuple[int, int], ...], int]  # ((pitch, start), ...) sounding, and the time


def corpus_limits(pieces: Sequence[Piece]) -> tuple[int, int]:
    """(longest note in ticks, most notes sounding at once) over ``pieces``."""
    longest, voices = 1, 1
    for piece in pieces:
        if not piece.notes:
            continue
        longest = max(longest, max(note.end - note.start for note in piece.notes))
        changes = sorted(
            [(note.start, 1) for note in piece.notes] + [(note.end, -1) for note in piece.notes]
        )  # ends sort before starts
        sounding = 0
        for _, delta in changes:
            sounding += delta
            voices = max(voices, sounding)
    return longest, voices


@dataclass(frozen=True)
class NoteGrammar:
    """Bans unplayable events (see the module docstring).  ``history`` is (batch, t)."""

    codec: EventCodec
    max_note_ticks: int
    max_voices: int = PITCH_COUNT
    _memo: dict = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.max_note_ticks < 1 or self.max_voices < 1:
            raise ValueError("note grammar limits must be positive")

    def state(self, row: np.ndarray) -> State:
        """Sounding notes and the time after the events in ``row`` (since its last separator)."""
        n = len(row)
        if n == 0:
            return (), 0
        key = (n, hash(row.tobytes()))
        cached = self._memo.get(key)
        if cached is not None:
            return cached
        previous = self._memo.get((n - 1, hash(row[:-1].tobytes()))) if n > 1 else ((), 0)
        if previous is None:  # not seen step by step (a fresh prime): fold from the start
            previous = ((), 0)
            for token in row[:-1].tolist():
                previous = self._fold(previous, token)
        result = self._fold(previous, int(row[-1]))
        self._memo[key] = result
        return result

    def _fold(self, state: State, token: int) -> State:
        codec = self.codec
        sounding, time = state
        if token == codec.separator_id:
            return (), 0
        if codec.note_on_offset <= token < codec.note_off_offset:
            pitch = token - codec.note_on_offset
            return tuple(sorted([(p, s) for p, s in sounding if p != pitch] + [(pitch, time)])), time
        if codec.note_off_offset <= token < codec.velocity_offset:
            pitch = token - codec.note_off_offset
            return tuple((p, s) for p, s in sounding if p != pitch), time
        if codec.shift_offset <= token < codec.program_offset:
            return sounding, time + token - codec.shift_offset + 1
        return state

    def __call__(self, history: np.ndarray, logits: np.ndarray) -> np.ndarray:
        codec = self.codec
        out = np.array(logits, dtype=np.float64, copy=True)
        on, off, shift = codec.note_on_offset, codec.note_off_offset, codec.shift_offset
        for row in range(out.shape[0]):
            sounding, time = self.state(history[row])
            pitches = np.array([p for p, _ in sounding], dtype=np.int64)
            allowed_off = np.zeros(PITCH_COUNT, dtype=bool)
            allowed_off[pitches] = True
            out[row, off : off + PITCH_COUNT][~allowed_off] = NEG_INF
            out[row, on + pitches] = NEG_INF
            if len(sounding) >= self.max_voices:
                out[row, on : on + PITCH_COUNT] = NEG_INF
            if not sounding:
                continue
            oldest = min(start for _, start in sounding)
            room = self.max_note_ticks - (time - oldest)  # ticks the oldest note may still last
            if room <= 0:  # overdue: release those notes before anything else happens
                overdue = [p for p, s in sounding if time - s >= self.max_note_ticks]
                ids = off + np.array(overdue)
                keep = out[row, ids]
                out[row] = NEG_INF  # an earlier rule may have banned them all: then equal odds
                out[row, ids] = keep if np.isfinite(keep).any() else 0.0
            elif room < codec.max_shift:
                out[row, shift + room : shift + codec.max_shift] = NEG_INF
        return out
