"""The metre rule (studio.music.metre): time stops only on the corpus's grid, no note
outlasts the corpus's long notes, the card carries both, and old cards get no rule."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from studio.domains.base import Document
from studio.domains.music import MusicDomain
from studio.music.events import Note, Piece
from studio.music.metre import MetreGrid, metre_stats
from studio.sampling.rules import draw
from studio.sampling.settings import SampleSettings

DOMAIN = MusicDomain()
CODEC = DOMAIN.codec
ON, OFF, SHIFT1, BAR = CODEC.note_on_offset, CODEC.note_off_offset, CODEC.shift_offset, CODEC.bar_id
V = CODEC.vocab_size
SIXTEENTHS = (0, 3, 6, 9)


def allowed(rule: MetreGrid, events: list[int]) -> set[int]:
    logits = np.zeros((1, V))
    out = rule(np.asarray([events], dtype=np.int64), logits)
    assert np.array_equal(logits, np.zeros((1, V)))  # the input is never edited
    return set(np.flatnonzero(np.isfinite(out[0])).tolist())


def shift(ticks: int) -> int:
    return SHIFT1 + ticks - 1


def shifts(ok: set[int]) -> set[int]:
    return {t - SHIFT1 + 1 for t in ok if SHIFT1 <= t < SHIFT1 + CODEC.max_shift}


def test_time_stops_only_on_the_grid() -> None:
    rule = MetreGrid(CODEC, SIXTEENTHS)
    assert shifts(allowed(rule, [0])) == set(range(3, CODEC.max_shift + 1, 3))
    # from tick 6 of a beat: to 9, 12 (the next beat), 15 ...
    assert min(shifts(allowed(rule, [0, ON + 60, shift(6)]))) == 3
    # a primer that left time off the grid (tick 1) gets back on it at once
    ok = shifts(allowed(rule, [0, shift(1)]))
    assert min(ok) == 2 and all((1 + k) % 3 == 0 for k in ok)
    # everything but shifts is left alone
    assert {ON + 60, OFF + 60, BAR} <= allowed(rule, [0, ON + 60])
    # a separator starts a new piece at time 0
    assert shifts(allowed(rule, [0, shift(1), 0])) == shifts(allowed(rule, [0]))


def test_long_notes_end() -> None:
    rule = MetreGrid(CODEC, SIXTEENTHS, longest=24)
    ok = shifts(allowed(rule, [0, ON + 60, shift(12)]))
    assert max(ok) == 12  # 12 more ticks: the note reaches 24 and no more
    assert allowed(rule, [0, ON + 60, shift(12), shift(12)]) == {OFF + 60}
    assert allowed(rule, [0, ON + 60, shift(12), ON + 64, shift(12)]) == {OFF + 60}
    assert max(shifts(allowed(rule, [0, ON + 60, shift(12), OFF + 60]))) == CODEC.max_shift


def test_bad_grids_are_refused() -> None:
    with pytest.raises(ValueError, match="include 0"):
        MetreGrid(CODEC, (3, 6))
    with pytest.raises(ValueError, match="lie in 0..11"):
        MetreGrid(CODEC, (0, 12))
    with pytest.raises(ValueError, match="at least 1 tick"):
        MetreGrid(CODEC, (0,), longest=0)


def test_the_corpus_grid_travels_in_the_card() -> None:
    """Starts and ends on eighths, a few sixteenths: the grid keeps the sixteenths'
    position once they make MIN_POSITION_SHARE (0.3%) of the starts and ends, not before."""
    eighths = tuple(Note(6 * i, 60 + i % 5, 6 * i + 6) for i in range(400))
    sixteenths = tuple(Note(2403 + 12 * i, 72, 2406 + 12 * i) for i in range(4))
    stats = metre_stats([Piece(eighths + sixteenths)], 12)
    assert stats.positions() == (0, 3, 6)  # 4 of 808 starts and ends at tick 3
    assert metre_stats([Piece(eighths + sixteenths[:1])], 12).positions() == (0, 6)  # 1 of 802
    assert metre_stats([Piece(eighths)], 12).positions() == (0, 6)
    assert stats.long_note() == 6
    domain = MusicDomain.from_documents([Document("a", Piece(eighths))])
    again = MusicDomain.from_config(domain.to_config())
    assert again.grid_positions == (0, 6) and again.long_note_ticks == 6
    metre = [rule for rule in again.constraints(SampleSettings()) if isinstance(rule, MetreGrid)]
    assert len(metre) == 1 and metre[0].positions == (0, 6) and metre[0].longest == 6
    # a card from before the grid was recorded samples as it always did
    old = {k: v for k, v in domain.to_config().items() if k not in ("grid_positions", "long_note_ticks")}
    assert not any(isinstance(rule, MetreGrid) for rule in MusicDomain.from_config(old).constraints(SampleSettings()))


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 2**31 - 1), st.sampled_from([(0, 6), SIXTEENTHS, (0, 4, 8)]), st.integers(6, 48))
def test_sampled_pieces_stay_on_the_grid(seed: int, positions: tuple[int, ...], longest: int) -> None:
    """Random logits through the rule: every onset and every end lies on the grid, and
    no finished note is longer than ``longest``."""
    rule = MetreGrid(CODEC, positions, longest=longest)
    rng = np.random.default_rng(seed)
    generator = np.random.default_rng([seed, 0])
    events, sounding = [0], set()
    for _ in range(200):
        logits = rng.normal(0, 2, (1, V))
        logits[0, 0] = -np.inf  # keep going: no separator
        logits[0, OFF : OFF + 128] = -np.inf  # the note grammar's job: only offs of sounding notes
        logits[0, [OFF + p for p in sounding]] = 0.0
        logits[0, [ON + p for p in sounding]] = -np.inf
        token = int(draw(rule(np.asarray([events]), logits), [generator])[0])
        events.append(token)
        if ON <= token < OFF:
            sounding.add(token - ON)
        elif OFF <= token < OFF + 128:
            sounding.discard(token - OFF)
    piece = DOMAIN.decode(events)
    assert all(n.start % 12 in positions for n in piece.notes)
    closed = [n for n in piece.notes if n.end < piece.length]
    assert all(n.end % 12 in positions and n.end - n.start <= longest for n in closed)


def test_usual_tempo_and_key() -> None:
    """The median tempo; the most common key only for a corpus that keeps to its scale."""
    from studio.domains.music import usual_tempo_and_key

    tunes = [(120.0, (2, "major"), 1.0), (120.0, (2, "major"), 0.99), (100.0, (7, "major"), 0.98), (None, None, 1.0)]
    assert usual_tempo_and_key(tunes) == (120.0, "D major")
    chromatic = [(96.0, (7, "major"), 0.93), (96.0, (7, "major"), 0.95)]  # chorales: accidentals
    assert usual_tempo_and_key(chromatic) == (96.0, None)
    assert usual_tempo_and_key([(None, None, 1.0)]) == (None, None)
    domain = MusicDomain(corpus_tempo=120.0, corpus_key="D major")
    assert MusicDomain.from_config(domain.to_config()).sample_defaults() == {"tempo": 120.0, "key": "D major"}
    assert MusicDomain().sample_defaults() == {}


def test_the_voice_cap_is_the_corpus_usual_most() -> None:
    """A melody with one closing chord: the grammar caps voices at 1, not the chord's 3."""
    from studio.music.grammar import NoteGrammar

    melody = tuple(Note(12 * i, 60 + i % 7, 12 * i + 12) for i in range(300))
    chord = (Note(3600, 55, 3648), Note(3600, 59, 3648), Note(3600, 62, 3648))
    stats = metre_stats([Piece(melody + chord)], 12)
    assert stats.usual_voices() == 1
    domain = MusicDomain.from_documents([Document("tune", Piece(melody + chord))])
    assert (domain.max_voices, domain.usual_voices) == (3, 1)
    grammar = [
        r
        for r in MusicDomain.from_config(domain.to_config()).constraints(SampleSettings())
        if isinstance(r, NoteGrammar)
    ]
    assert grammar[0].max_voices == 1
    assert (
        MusicDomain.from_config({**domain.to_config(), "usual_voices": None})
        .constraints(SampleSettings())[0]
        .max_voices
        == 3
    )
