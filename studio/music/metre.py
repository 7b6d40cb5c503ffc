"""A metre-aware sampling rule: time moves only to where the corpus puts notes.

An event model writes time as ``SHIFT k`` events and may land anywhere on the grid of
``ticks_per_beat`` ticks.  The corpus does not: Bach's chorales start and end every note
on a sixteenth (ticks 0, 3, 6 and 9 of 12), O'Neill's tunes on sixteenths and a few
eighth-note triplets.  A sampled stream that drifts to tick 1 or 5 puts every later
onset off the beat until it drifts back, which is most of what a classifier hears as
"wandering rhythm" (see :mod:`studio.music.two_sample`).

:class:`MetreGrid` bans every ``SHIFT`` that would stop time at a position within the
beat the corpus does not use (:class:`MetreStats` measures them: the positions of at
least :data:`MIN_POSITION_SHARE` of the corpus's note starts and ends).  Since notes
start and end only where time stops, onsets and durations follow the grid.  With
``longest`` it also bans a ``SHIFT`` that would hold a note longer than that many ticks
(the corpus's :data:`LONGEST_QUANTILE` note length, tighter than the note grammar's
absolute longest note, :mod:`studio.music.grammar`); once a note has reached it, only
releasing such notes is allowed.

A pure function of ``(history, logits)`` that never edits its input; a memo keyed by
the history prefix keeps it linear in the length.  Bundles whose card records no grid
(older ones) get no such rule.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from studio.music.events import EventCodec, Piece, bar_length, time_signature_of
from studio.music.grammar import FoldedRule

NEG_INF = -np.inf
MIN_POSITION_SHARE = 0.003  # positions rarer than this in the corpus are treated as noise
LONGEST_QUANTILE = 0.999  # note lengths beyond this quantile are the corpus's outliers
VOICES_QUANTILE = 0.99  # chords in a melody corpus (a tune's final chord) are its outliers
MIN_METRE_SHARE = 0.01  # metres of fewer pieces than this are the corpus's outliers
LOCKSTEP_SHARE = 0.001  # at most this share of note starts over an earlier, still sounding note: lockstep
State = tuple[int, tuple[tuple[int, int], ...]]  # time since the separator, ((pitch, start), ...)


class MetreStats:
    """What :class:`MetreGrid` needs from a corpus, gathered a piece at a time (so a
    streamed corpus needs no second pass): :meth:`positions` and :meth:`long_note`."""

    def __init__(self, ticks_per_beat: int):
        self.ticks_per_beat = ticks_per_beat
        self.counts = np.zeros(ticks_per_beat, dtype=np.int64)
        self.lengths: list[int] = []
        self.voices: list[int] = []  # notes sounding as each note starts
        self.metres: list[int] = []  # each piece's usual bar length (ticks)
        self.signatures: list[tuple[int, int] | None] = []  # and its time signature, where the score states it
        self.starts = 0  # note starts
        self.held_starts = 0  # of them, starts while a note from an earlier instant still sounds

    def add(self, piece: Piece) -> None:
        for note in piece.notes:
            self.counts[note.start % self.ticks_per_beat] += 1
            self.counts[note.end % self.ticks_per_beat] += 1
            self.lengths.append(note.end - note.start)
        starts = np.array([note.start for note in piece.notes], dtype=np.int64)
        ends = np.array([note.end for note in piece.notes], dtype=np.int64)
        if starts.size:
            sounding = (starts[None, :] <= starts[:, None]) & (ends[None, :] > starts[:, None])
            self.voices.extend(sounding.sum(axis=1).tolist())
            held = (starts[None, :] < starts[:, None]) & (ends[None, :] > starts[:, None])
            self.starts += int(starts.size)
            self.held_starts += int(held.any(axis=1).sum())
        lines = piece.bar_lines()
        bars = np.diff(lines[1:-1]) if len(lines) > 3 else np.diff(lines)  # not a pickup or the last bar
        if bars.size:
            values, counts = np.unique(bars, return_counts=True)
            metre = int(values[np.argmax(counts)])
            stated = [(n, d) for _, n, d in piece.time_signatures if bar_length(n, d, self.ticks_per_beat) == metre]
            self.metres.append(metre)
            self.signatures.append(stated[0] if stated else None)

    def positions(self) -> tuple[int, ...]:
        """Positions within the beat (ticks, sorted) of at least ``MIN_POSITION_SHARE`` of
        the note starts and ends; the downbeat (0) always."""
        shares = self.counts / max(1, int(self.counts.sum()))
        return tuple(sorted({0} | {int(p) for p in np.flatnonzero(shares >= MIN_POSITION_SHARE)}))

    def usual_voices(self) -> int:
        """The ``VOICES_QUANTILE`` quantile of the notes sounding as a note starts (1
        without notes).  For O'Neill's melodies it is 2, not 1: 2.1% of their note starts
        find another note still sounding (3,509 of 199,623), above the 1% the quantile
        leaves out; for the four-part chorales it is 6."""
        if not self.voices:
            return 1
        return int(np.quantile(np.array(self.voices), VOICES_QUANTILE, method="higher"))

    def lockstep(self) -> bool:
        """Whether the corpus's notes move in lockstep: at most ``LOCKSTEP_SHARE`` of its
        note starts find a note from an earlier instant still sounding, so every note
        ends before the next one starts (notes struck together may end together or
        apart).  O'Neill's melodies do: 1 start in 200,335 (their double stops start
        together); Bach's chorales do not: a third of their starts are over a held voice.
        The card records it; ``--lockstep`` holds samples to it."""
        return self.starts > 0 and self.held_starts <= LOCKSTEP_SHARE * self.starts

    def usual_metres(self, longest: int) -> tuple[int, ...]:
        """Bar lengths (ticks, sorted) that are the usual bar of at least
        ``MIN_METRE_SHARE`` of the pieces, whole eighth notes and at most ``longest``
        ticks: 36 and 48 (3/4 and 4/4) for the chorales, whose one 3/2 and one 12/8
        chorale fall below the share; 24, 36, 48 and 54 for O'Neill's tunes (2/4, 6/8,
        4/4 and 9/8)."""
        eighth = max(1, self.ticks_per_beat // 2)
        values, counts = np.unique(np.array(self.metres, dtype=np.int64), return_counts=True)
        shares = counts / max(1, len(self.metres))
        usual = (shares >= MIN_METRE_SHARE) & (values % eighth == 0) & (values > 0) & (values <= longest)
        return tuple(int(v) for v in values[usual])

    def usual_signatures(self, metres: Sequence[int]) -> tuple[tuple[int, int], ...]:
        """For each bar length in ``metres``, the time signature the pieces of that metre
        state most often (the simplest one when none does): O'Neill's tunes are in 6/8
        rather than 3/4 and in 2/2 rather than 4/4, though the bars are the same length."""
        named = []
        for metre in metres:
            stated = Counter(sig for length, sig in zip(self.metres, self.signatures) if length == metre and sig)
            named.append(stated.most_common(1)[0][0] if stated else time_signature_of(metre, self.ticks_per_beat))
        return tuple(named)

    def long_note(self) -> int:
        """The ``LONGEST_QUANTILE`` quantile of the note lengths (ticks; 1 without notes)."""
        if not self.lengths:
            return 1
        return int(np.quantile(np.array(self.lengths), LONGEST_QUANTILE, method="higher"))


def named_metres(piece: Piece, names: Sequence[tuple[int, int]]) -> Piece:
    """``piece`` with each time signature renamed to the one of ``names`` whose bar is as
    long (6/8 for a bar of three quarter notes, where the decoder writes the simplest,
    3/4); bar lines do not move."""
    by_length = {bar_length(n, d, piece.ticks_per_beat): (n, d) for n, d in reversed(list(names))}
    signatures = tuple(
        (tick, *by_length.get(bar_length(n, d, piece.ticks_per_beat), (n, d))) for tick, n, d in piece.time_signatures
    )
    return replace(piece, time_signatures=signatures)


def metre_stats(pieces: Sequence[Piece], ticks_per_beat: int) -> MetreStats:
    """:class:`MetreStats` of ``pieces``."""
    stats = MetreStats(ticks_per_beat)
    for piece in pieces:
        stats.add(piece)
    return stats


@dataclass(frozen=True)
class MetreGrid(FoldedRule):
    """Bans shifts to positions off ``positions`` (ticks within the beat) and, with
    ``longest``, shifts that would hold a note longer.  ``history`` is (batch, t)."""

    codec: EventCodec
    positions: tuple[int, ...]
    longest: int | None = None
    _memo: dict = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        tpb = self.codec.ticks_per_beat
        if 0 not in self.positions or any(not 0 <= p < tpb for p in self.positions):
            raise ValueError(f"metre grid positions must include 0 and lie in 0..{tpb - 1} (got {self.positions})")
        if self.longest is not None and self.longest < 1:
            raise ValueError(f"the longest note must be at least 1 tick (got {self.longest})")

    def state(self, row: np.ndarray) -> State:
        """Time and sounding notes after the events in ``row`` (since its last separator)."""
        n = len(row)
        if n == 0:
            return 0, ()
        key = (n, hash(row.tobytes()))
        cached = self._memo.get(key)
        if cached is not None:
            return cached
        previous = self._memo.get((n - 1, hash(row[:-1].tobytes()))) if n > 1 else (0, ())
        if previous is None:  # not seen step by step (a fresh prime): fold from the start
            previous = (0, ())
            for token in row[:-1].tolist():
                previous = self._fold(previous, token)
        result = self._fold(previous, int(row[-1]))
        self._memo[key] = result
        return result

    def _fold(self, state: State, token: int) -> State:
        codec = self.codec
        time, sounding = state
        if token == codec.separator_id:
            return 0, ()
        if codec.shift_offset <= token < codec.program_offset:
            return time + token - codec.shift_offset + 1, sounding
        if self.longest is None:
            return state  # only the time matters
        if codec.note_on_offset <= token < codec.note_off_offset:
            pitch = token - codec.note_on_offset
            return time, tuple([(p, s) for p, s in sounding if p != pitch] + [(pitch, time)])
        if codec.note_off_offset <= token < codec.velocity_offset:
            pitch = token - codec.note_off_offset
            return time, tuple((p, s) for p, s in sounding if p != pitch)
        return state

    # incremental form (beam search carries one state per hypothesis)
    def initial(self, row: np.ndarray) -> State:
        state: State = (0, ())
        for token in np.asarray(row).tolist():
            state = self._fold(state, int(token))
        return state

    def _mask(self, out: np.ndarray, state: State) -> None:
        codec = self.codec
        shift, tpb = codec.shift_offset, codec.ticks_per_beat
        on_grid = np.zeros(tpb, dtype=bool)
        on_grid[list(self.positions)] = True
        steps = np.arange(1, codec.max_shift + 1)
        time, sounding = state
        banned = ~on_grid[(time + steps) % tpb]
        if self.longest is not None and sounding:
            room = self.longest - (time - min(start for _, start in sounding))
            if room <= 0:  # a note has reached the longest length: release it first
                overdue = [p for p, s in sounding if time - s >= self.longest]
                ids = codec.note_off_offset + np.array(overdue)
                keep = out[ids]
                out[:] = NEG_INF
                out[ids] = keep if np.isfinite(keep).any() else 0.0
                return
            banned |= steps > room
        out[shift : shift + codec.max_shift][banned] = NEG_INF
