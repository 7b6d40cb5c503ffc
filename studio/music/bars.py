"""Bars in a generated event stream: counting them, keeping them one length, and not
ending the piece before the bars that were asked for.

* :class:`NoEndBeforeBars`.  A model trained on whole pieces learns to end them (it
  writes the separator), and it ends short pieces as readily as long ones; a primer that
  stops at its closing bar line looks to it like a finished piece.  With ``--bars N`` the
  user asked for N bars, so the separator is banned until N bars are complete; the
  sampler stops at the bar line that completes the N-th (``MusicDomain.is_finished``),
  so the piece ends on a bar line.
* :class:`BarGrid`.  A small model places bar markers loosely (a bar of 3 beats, then
  of 4, then of 17 sixteenths), which a MIDI file can only state as a string of metre
  changes.  Once the metre is known (a primer's, or the length of the second bar the
  model writes, its first whole bar), every bar has that length: no marker
  before the bar line, no time shift across it, and at the bar line the marker comes
  before any new note (note-offs may still come first, as the codec orders them).
  Before that, bars last whole eighth notes, so the metre found is one a score can
  state (not 13/16), and at most ``LONGEST_BAR_BEATS`` beats, so that a model that
  forgets bar lines still reaches the bars asked for.  When the card records the
  corpus's metres (``usual_metres``, :mod:`studio.music.metre`), the first whole bar
  ends only at one of their lengths and no bar before it runs longer than the longest,
  so a chorale model writes 4/4 or 3/4, never the 9/8 or 6/4 it drifted into.  The
  first whole bar is at least as long as the first bar: a pickup is shorter than the
  bar it leads into, so a first bar of four beats followed by bars of three (which a
  file can only state as 4/4 changing to 3/4) cannot happen.

A ``BAR`` completes a bar when time has passed since the previous bar line (or since
the start of the stream, itself a bar line): an opening marker, or a second marker at
the same instant, completes nothing, exactly as the decoder keeps one bar line per
instant.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from studio.music.events import EventCodec

NEG_INF = -np.inf
LONGEST_BAR_BEATS = 8  # before the metre is known (4/2; the corpora's longest bar is 3/2)


class Position(NamedTuple):
    """Where an event stream stands, in grid ticks from its start (itself a bar line)."""

    time: int = 0
    line: int = 0  # the latest bar line
    bars: int = 0  # bars completed
    metre: int | None = None  # bar length, once known
    beat: int = 0  # the latest bar or beat marker (a codec with beat markers)


def advance(position: Position, token: int, codec: EventCodec) -> Position:
    """The position after one more event.  The metre, unless given, is the length of
    the second bar, the first whole one (the first may be a pickup)."""
    if codec.shift_offset <= token < codec.program_offset:
        return position._replace(time=position.time + token - codec.shift_offset + 1)
    if token == codec.bar_id and position.time > position.line:
        metre = position.metre
        if metre is None and position.bars == 1:
            metre = position.time - position.line
        return Position(position.time, position.time, position.bars + 1, metre, position.time)
    if token == codec.beat_id:
        return position._replace(beat=position.time)
    return position


def bar_count(ids, codec: EventCodec) -> int:
    """Bars completed by the events ``ids`` (1-D ints, no separator inside); the same
    count as folding :func:`advance` over them, in one vectorised pass."""
    ids = np.asarray(ids, dtype=np.int64)
    is_shift = (ids >= codec.shift_offset) & (ids < codec.program_offset)
    times = np.cumsum(np.where(is_shift, ids - codec.shift_offset + 1, 0))
    lines = times[ids == codec.bar_id]  # non-decreasing, as time only moves forward
    return int(np.count_nonzero(np.diff(lines, prepend=0) > 0))


@dataclass(frozen=True)
class NoEndBeforeBars:
    """Bans the separator while fewer than ``bars`` bars are complete in the events
    after the first ``start`` (the prime: bars count from where the sample begins).
    ``history`` is (batch, t) ids, ``logits`` (batch, vocab)."""

    codec: EventCodec
    bars: int
    start: int = 0

    def __post_init__(self) -> None:
        if self.bars < 1 or self.start < 0:
            raise ValueError("bars must be at least 1 and start 0 or more")

    # incremental form: the state is the :class:`Position` after the events so far
    def initial(self, row: np.ndarray) -> Position:
        return fold(Position(), np.asarray(row)[self.start :], self.codec)

    def advance(self, state: Position, token: int) -> Position:
        return advance(state, int(token), self.codec)

    def apply(self, states: list, logits: np.ndarray) -> np.ndarray:
        out = np.array(logits, copy=True)
        for row, position in enumerate(states):
            if position.bars < self.bars:
                out[row, self.codec.separator_id] = NEG_INF
        return out

    def __call__(self, history: np.ndarray, logits: np.ndarray) -> np.ndarray:
        out = np.array(logits, copy=True)
        generated = history[:, self.start :]
        # a cheap bound first: fewer markers than bars cannot complete them
        markers = np.count_nonzero(generated == self.codec.bar_id, axis=1)
        for row in range(out.shape[0]):
            if markers[row] < self.bars or bar_count(generated[row], self.codec) < self.bars:
                out[row, self.codec.separator_id] = NEG_INF
        return out


@dataclass(frozen=True)
class BarGrid:
    """Keeps every bar ``metre`` ticks long once the metre is known (see the module
    docstring), in the events after the first ``start`` of each history row.  ``metre``
    None: taken from the second bar the model writes.  A memo keyed by the history
    prefix keeps it linear in the length (each step folds in only the newest event)."""

    codec: EventCodec
    start: int = 0
    metre: int | None = None
    metres: tuple[int, ...] | None = None  # the bar lengths the metre may take (the corpus's)
    _memo: dict = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.start < 0 or (self.metre is not None and self.metre < 1):
            raise ValueError("start must be 0 or more and the metre at least one tick")
        if self.metres is not None and (not self.metres or min(self.metres) < 1):
            raise ValueError("the metres the bars may take must be one or more lengths of at least one tick")

    def position(self, events: np.ndarray) -> Position:
        """:class:`Position` after ``events`` (the part of a row after ``start``)."""
        n = len(events)
        if n == 0:
            return Position(metre=self.metre)
        key = (n, hash(events.tobytes()))
        cached = self._memo.get(key)
        if cached is not None:
            return cached
        previous = self._memo.get((n - 1, hash(events[:-1].tobytes()))) if n > 1 else None
        if previous is None:  # not seen step by step (a fresh prime): fold from the start
            previous = Position(metre=self.metre)
            for token in events[:-1].tolist():
                previous = advance(previous, token, self.codec)
        result = advance(previous, int(events[-1]), self.codec)
        self._memo[key] = result
        return result

    # incremental form: the state is the :class:`Position` after the events so far
    def initial(self, row: np.ndarray) -> Position:
        return fold(Position(metre=self.metre), np.asarray(row)[self.start :], self.codec)

    def advance(self, state: Position, token: int) -> Position:
        return advance(state, int(token), self.codec)

    def apply(self, states: list, logits: np.ndarray) -> np.ndarray:
        out = np.array(logits, copy=True)
        for row, position in enumerate(states):
            self._mask(out[row], position)
        return out

    def __call__(self, history: np.ndarray, logits: np.ndarray) -> np.ndarray:
        out = np.array(logits, copy=True)
        for row in range(out.shape[0]):
            self._mask(out[row], self.position(history[row, self.start :]))
        return out

    def _mask(self, out: np.ndarray, position: Position) -> None:
        """The bar line forced where a bar's time is full and banned elsewhere (in place)."""
        codec = self.codec
        now, line, bars, metre, _ = position
        eighth = max(1, codec.ticks_per_beat // 2)
        longest = LONGEST_BAR_BEATS * codec.ticks_per_beat
        if metre is None and self.metres:  # the pickup and the first whole bar: the corpus's metres
            longest = min(longest, max(self.metres))
            if bars >= 1 and now - line not in self.metres:  # this bar's length becomes the metre
                out[codec.bar_id] = NEG_INF
        if metre is None and (now - line) % eighth:  # the first bars: whole eighth notes
            out[codec.bar_id] = NEG_INF
        if metre is None and bars == 1 and now - line < line:  # a pickup is never longer than the bar after it
            out[codec.bar_id] = NEG_INF
        room = line + (metre or longest) - now  # ticks to the bar line
        if room > 0 and codec.beats:  # no shift across a quarter line; on one, its marker first
            tpb, since = codec.ticks_per_beat, now - line
            if since > 0 and since % tpb == 0 and position.beat < now:
                room = 0  # the marker the instant owes: BEAT, or BAR where the bar may end here
            else:
                out[codec.beat_id] = NEG_INF
                room = min(room, tpb - since % tpb)
            if metre is not None:
                out[codec.bar_id] = NEG_INF
        elif codec.beats:
            out[codec.beat_id] = NEG_INF
        if room > 0:
            if metre is not None:
                out[codec.bar_id] = NEG_INF
            out[codec.shift_offset + min(room, codec.max_shift) : codec.program_offset] = NEG_INF
        else:  # on the bar (or beat) line, its marker not yet written: note-offs, then the marker
            out[codec.shift_offset : codec.program_offset] = NEG_INF
            out[codec.note_on_offset : codec.note_off_offset] = NEG_INF  # note-ons
            out[codec.velocity_offset : codec.shift_offset] = NEG_INF  # and velocities (they announce one)


def fold(position: Position, ids, codec: EventCodec) -> Position:
    """:func:`advance` over ``ids``."""
    for token in np.asarray(ids).tolist():
        position = advance(position, int(token), codec)
    return position


def bar_length_bound(position: Position, codec: EventCodec) -> int:
    """Ticks to the end of the current bar, at most (the metre, else the longest bar
    :class:`BarGrid` allows before it is known)."""
    return position.line + (position.metre or LONGEST_BAR_BEATS * codec.ticks_per_beat) - position.time


@dataclass(frozen=True)
class BarsToGo:
    """The music finish test, one event at a time: the state is the :class:`Position`
    of the generated events, finished once ``bars`` bars are complete (what
    ``MusicDomain.is_finished`` says from the whole history).  :meth:`remaining`
    bounds the events still to come: the ticks left to the last bar line, at most
    ``per_instant`` events per tick (the note grammar's bound), plus the opening
    ``KEY``/``PROGRAM``."""

    codec: EventCodec
    bars: int
    per_instant: int
    metre: int | None = None

    def start(self) -> Position:
        return Position(metre=self.metre)

    def advance(self, state: Position, token: int) -> Position:
        return advance(state, int(token), self.codec)

    def finished(self, state: Position) -> bool:
        return state.bars >= self.bars

    def remaining(self, state: Position) -> int:
        bar = state.metre or LONGEST_BAR_BEATS * self.codec.ticks_per_beat
        ticks = max(0, bar_length_bound(state, self.codec)) + max(0, self.bars - state.bars - 1) * bar
        return (ticks + 1) * self.per_instant + 2
