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
* with ``lockstep`` (``--lockstep``: for a corpus whose notes never start over a held
  note, as a melody's do), any ``NOTE_ON`` while a note from an earlier instant still
  sounds: the model releases it first, as the corpus always does.  Without it a melody
  model that forgets a note-off writes a second voice the corpus never has.

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


class FoldedRule:
    """A rule whose per-row state is a fold over the ids (``_fold``) and whose ban is a
    function of that state (``_mask``, in place on one row): the full-history call and
    the incremental form beam search carries (``initial``/``advance``/``apply``) share
    both.  Subclasses give ``initial``, ``state``, ``_fold`` and ``_mask``."""

    def advance(self, state, token: int):
        return self._fold(state, int(token))

    def apply(self, states: list, logits: np.ndarray) -> np.ndarray:
        out = np.array(logits, dtype=np.float64, copy=True)
        for row, state in enumerate(states):
            self._mask(out[row], state)
        return out

    def __call__(self, history: np.ndarray, logits: np.ndarray) -> np.ndarray:
        out = np.array(logits, dtype=np.float64, copy=True)
        for row in range(out.shape[0]):
            self._mask(out[row], self.state(history[row]))
        return out


@dataclass(frozen=True)
class NoteGrammar(FoldedRule):
    """Bans unplayable events (see the module docstring).  ``history`` is (batch, t)."""

    codec: EventCodec
    max_note_ticks: int
    max_voices: int = PITCH_COUNT
    lockstep: bool = False
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

    # incremental form (beam search carries one state per hypothesis) --------------------
    def initial(self, row: np.ndarray) -> State:
        """The state after the ids ``row`` (a whole history row, prime included)."""
        state: State = ((), 0)
        for token in np.asarray(row).tolist():
            state = self._fold(state, token)
        return state

    def _mask(self, out: np.ndarray, state: State) -> None:
        """Bans, in place on one row of logits, what is unplayable after ``state``."""
        codec = self.codec
        on, off, shift = codec.note_on_offset, codec.note_off_offset, codec.shift_offset
        sounding, time = state
        pitches = np.array([p for p, _ in sounding], dtype=np.int64)
        allowed_off = np.zeros(PITCH_COUNT, dtype=bool)
        allowed_off[pitches] = True
        out[off : off + PITCH_COUNT][~allowed_off] = NEG_INF
        out[on + pitches] = NEG_INF
        if len(sounding) >= self.max_voices or (self.lockstep and any(start < time for _, start in sounding)):
            out[on : on + PITCH_COUNT] = NEG_INF
            out[codec.velocity_offset : codec.shift_offset] = NEG_INF  # a velocity announces a note-on
        if not sounding:
            return
        oldest = min(start for _, start in sounding)
        room = self.max_note_ticks - (time - oldest)  # ticks the oldest note may still last
        if room <= 0:  # overdue: release those notes before anything else happens
            overdue = [p for p, s in sounding if time - s >= self.max_note_ticks]
            ids = off + np.array(overdue)
            keep = out[ids]
            out[:] = NEG_INF  # an earlier rule may have banned them all: then equal odds
            out[ids] = keep if np.isfinite(keep).any() else 0.0
        elif room < codec.max_shift:
            out[shift + room : shift + codec.max_shift] = NEG_INF


Instant = tuple[int, int, bool]  # (phase, last pitch at this instant, only header events so far)
OFFS, AFTER_BAR, AFTER_VELOCITY, ONS = range(4)


@dataclass(frozen=True)
class InstantOrder:
    """Keeps each instant in the codec's own order, so time has to move on.

    The codec writes one instant as: note-offs by rising pitch, the bar (or beat) marker, then
    note-ons by rising pitch, each perhaps after a ``VELOCITY``; ``KEY`` and
    ``PROGRAM`` only open a piece.  Every encoded corpus piece follows this order, so
    banning what breaks it forbids nothing the corpus does.  What it closes: streams
    that never advance time (a note-on and its note-off at one instant, a zero-length
    note; runs of velocities, keys or programs; a second bar marker at one instant),
    which beam search, preferring cheap events, would otherwise spin in for ever.
    After a ``VELOCITY`` only a higher note-on or a time shift may follow (so no rule
    combination can leave nothing allowed).  At most ``3 * voices + 2`` events fit in
    one instant (see :func:`events_per_instant`)."""

    codec: EventCodec

    def initial(self, row: np.ndarray) -> Instant:
        state: Instant = (OFFS, -1, True)
        for token in np.asarray(row).tolist():
            state = self.advance(state, token)
        return state

    def advance(self, state: Instant, token: int) -> Instant:
        codec = self.codec
        phase, last, header = state
        token = int(token)
        if token == codec.separator_id:
            return (OFFS, -1, True)
        if codec.shift_offset <= token < codec.program_offset:
            return (OFFS, -1, False)
        if token == codec.bar_id or token == codec.beat_id:
            return (AFTER_BAR, -1, False)
        if token >= codec.program_offset:  # KEY or PROGRAM: header events, no instant change
            return state
        if codec.note_off_offset <= token < codec.velocity_offset:
            return (OFFS, token - codec.note_off_offset, False)
        if codec.velocity_offset <= token < codec.shift_offset:
            return (AFTER_VELOCITY, last if phase in (ONS, AFTER_VELOCITY) else -1, False)
        return (ONS, token - codec.note_on_offset, False)  # a note-on

    def apply(self, states: list, logits: np.ndarray) -> np.ndarray:
        out = np.array(logits, dtype=np.float64, copy=True)
        for row, state in enumerate(states):
            self._mask(out[row], state)
        return out

    def __call__(self, history: np.ndarray, logits: np.ndarray) -> np.ndarray:
        # the last instant starts after the last shift: fold from there (bounded work)
        codec = self.codec
        out = np.array(logits, dtype=np.float64, copy=True)
        for row in range(out.shape[0]):
            ids = np.asarray(history[row])
            shifts = np.flatnonzero(((ids >= codec.shift_offset) & (ids < codec.program_offset)) | (ids == 0))
            begin = int(shifts[-1]) if shifts.size else 0
            header = not shifts.size or ids[begin] == codec.separator_id
            state: Instant = (OFFS, -1, bool(header))
            for token in ids[begin:].tolist():
                state = self.advance(state, token)
            self._mask(out[row], state)
        return out

    def _mask(self, out: np.ndarray, state: Instant) -> None:
        codec = self.codec
        phase, last, header = state
        on, off = codec.note_on_offset, codec.note_off_offset
        if not header:  # KEY and PROGRAM only open a piece
            out[codec.program_offset : codec.key_end] = NEG_INF
        if phase == OFFS:
            out[off : off + last + 1] = NEG_INF  # note-offs by rising pitch
            return
        out[off : off + PITCH_COUNT] = NEG_INF  # no note-off after the bar marker or a note-on
        out[codec.bar_id] = NEG_INF  # one bar (or beat) marker, before any note-on
        if codec.beat_id is not None:
            out[codec.beat_id] = NEG_INF
        out[on : on + last + 1] = NEG_INF  # note-ons by rising pitch
        if phase == AFTER_VELOCITY:
            out[codec.velocity_offset : codec.shift_offset] = NEG_INF
        elif last >= PITCH_COUNT - 1:
            out[codec.velocity_offset : codec.shift_offset] = NEG_INF  # no note-on left to announce


def events_per_instant(max_voices: int) -> int:
    """The most events :class:`InstantOrder` and :class:`NoteGrammar` let one instant
    hold: its note-offs (at most ``max_voices`` notes sound), a bar marker, a velocity
    and a note-on per new note (at most ``max_voices``), and the shift that ends it."""
    return 3 * max_voices + 2
