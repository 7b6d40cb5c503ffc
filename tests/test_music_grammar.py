"""Music's note grammar: the sampling rule that keeps generated events playable."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from studio.domains.base import Document
from studio.domains.music import MusicDomain
from studio.music.events import Note, Piece
from studio.music.grammar import NoteGrammar, corpus_limits
from studio.sampling.rules import draw
from studio.sampling.settings import SampleSettings

DOMAIN = MusicDomain()
CODEC = DOMAIN.codec
ON, OFF, SHIFT1 = CODEC.note_on_offset, CODEC.note_off_offset, CODEC.shift_offset
V = CODEC.vocab_size


def allowed(rule: NoteGrammar, events: list[int]) -> set[int]:
    logits = np.zeros((1, V))
    out = rule(np.asarray([events], dtype=np.int64), logits)
    assert np.array_equal(logits, np.zeros((1, V)))  # the input is never edited
    return set(np.flatnonzero(np.isfinite(out[0])).tolist())


def shift(ticks: int) -> int:
    return SHIFT1 + ticks - 1


def test_offs_only_for_sounding_notes_and_no_restrikes() -> None:
    rule = NoteGrammar(CODEC, max_note_ticks=48)
    ok = allowed(rule, [0, ON + 60, ON + 64])
    assert {OFF + 60, OFF + 64} <= ok
    assert not ({OFF + p for p in range(128)} - {OFF + 60, OFF + 64}) & ok
    assert ON + 60 not in ok and ON + 64 not in ok and ON + 67 in ok
    # after the separator a new piece starts with nothing sounding
    ok = allowed(rule, [0, ON + 60, 0])
    assert OFF + 60 not in ok and ON + 60 in ok


def test_a_note_at_its_longest_must_end_now() -> None:
    rule = NoteGrammar(CODEC, max_note_ticks=24)
    # 12 ticks in: shifts up to 12 more ticks are fine, longer ones are banned
    ok = allowed(rule, [0, ON + 60, shift(12)])
    assert shift(12) in ok and shift(13) not in ok and ON + 62 in ok
    # 24 ticks in: only its note-off is left
    assert allowed(rule, [0, ON + 60, shift(12), shift(12)]) == {OFF + 60}
    # a later note does not hold the older one back: only the overdue note must end
    assert allowed(rule, [0, ON + 60, shift(12), ON + 64, shift(12)]) == {OFF + 60}


def test_voice_cap() -> None:
    rule = NoteGrammar(CODEC, max_note_ticks=48, max_voices=2)
    ok = allowed(rule, [0, ON + 60, ON + 64])
    assert not any(ON <= t < ON + 128 for t in ok) and OFF + 60 in ok and shift(1) in ok


def test_corpus_limits_and_the_card_carry_them() -> None:
    chord = Piece(notes=(Note(0, 60, 12), Note(0, 64, 36), Note(12, 67, 24), Note(20, 72, 30)))
    assert corpus_limits([chord]) == (36, 3)  # 60 ends as 67 starts; 64, 67, 72 at tick 20
    domain = MusicDomain.from_documents([Document("a", chord)])
    assert (domain.max_note_ticks, domain.max_voices) == (36, 3)
    again = MusicDomain.from_config(domain.to_config())
    assert (again.max_note_ticks, again.max_voices) == (36, 3)
    rule, _grid, *_ = again.constraints(SampleSettings())  # the note grammar, the bar grid (then the metre)
    assert rule.max_note_ticks == 36 and rule.max_voices == 3


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(6, 60), st.integers(1, 4))
def test_sampled_pieces_obey_the_limits(seed: int, longest: int, voices: int) -> None:
    """Draw from random logits through the rule: the decoded piece never breaks it."""
    rule = NoteGrammar(CODEC, max_note_ticks=longest, max_voices=voices)
    rng = np.random.default_rng(seed)
    generator = np.random.default_rng([seed, 0])
    events = [0]
    for _ in range(200):
        logits = rng.normal(0, 2, (1, V))
        logits[0, 0] = -np.inf  # keep going: no separator
        token = int(draw(rule(np.asarray([events]), logits), [generator])[0])
        events.append(token)
    # the stream itself never turns off a silent note nor restrikes a sounding one
    sounding: set[int] = set()
    for token in events:
        if ON <= token < OFF:
            assert token - ON not in sounding
            sounding.add(token - ON)
        elif OFF <= token < OFF + 128:
            assert token - OFF in sounding
            sounding.discard(token - OFF)
    piece = DOMAIN.decode(events)
    closed = [n for n in piece.notes if n.end < piece.length]  # still sounding at the end: cut
    assert all(n.end - n.start <= longest for n in closed)
    assert corpus_limits([piece])[1] <= voices


def test_lockstep_bans_a_note_over_a_held_one_but_not_a_double_stop() -> None:
    rule = NoteGrammar(CODEC, max_note_ticks=48, max_voices=2, lockstep=True)
    # struck together: a double stop may take its second note
    assert ON + 64 in allowed(rule, [0, ON + 60])
    # time has moved with 60 still sounding: it must end before anything new starts
    ok = allowed(rule, [0, ON + 60, shift(6)])
    assert not any(ON <= t < ON + 128 for t in ok) and OFF + 60 in ok and shift(1) in ok
    # released: the next note may start
    assert ON + 62 in allowed(rule, [0, ON + 60, shift(6), OFF + 60])
    # without lockstep the same history may start a note over the held one
    assert ON + 64 in allowed(NoteGrammar(CODEC, max_note_ticks=48, max_voices=2), [0, ON + 60, shift(6)])


def test_lockstep_is_measured_on_the_corpus_and_carried_by_the_card() -> None:
    melody = Piece(notes=(Note(0, 60, 12), Note(0, 64, 12), Note(12, 62, 24), Note(24, 67, 36)))
    overlapping = Piece(notes=(Note(0, 60, 24), Note(12, 64, 36)))  # 64 starts over the held 60
    domain = MusicDomain.from_documents([Document("a", melody)])
    assert domain.lockstep and domain.to_config()["lockstep"] is True
    again = MusicDomain.from_config(domain.to_config())
    assert again.lockstep
    grammar = again.constraints(SampleSettings(lockstep=True))[0]
    assert isinstance(grammar, NoteGrammar) and grammar.lockstep
    assert not again.constraints(SampleSettings())[0].lockstep  # the rule is asked for, not the default
    voices = MusicDomain.from_documents([Document("a", melody), Document("b", overlapping)])
    assert not voices.lockstep and "lockstep" not in voices.to_config()
    # cards written before the measure existed sample as before
    old = {key: value for key, value in domain.to_config().items() if key != "lockstep"}
    assert not MusicDomain.from_config(old).lockstep


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_lockstep_samples_never_start_a_note_over_a_held_one(seed: int) -> None:
    rule = NoteGrammar(CODEC, max_note_ticks=36, max_voices=3, lockstep=True)
    rng = np.random.default_rng(seed)
    generator = np.random.default_rng([seed, 1])
    events = [0]
    for _ in range(400):
        logits = rng.normal(0, 2, (1, V))
        logits[0, 0] = -np.inf
        logits[0, ON : OFF + 128] += 3.0  # random logits favour other events: more note-ons and -offs
        events.append(int(draw(rule(np.asarray([events]), logits), [generator])[0]))
    piece = DOMAIN.decode(events)
    assert len({note.start for note in piece.notes}) >= 3
    for note in piece.notes:
        assert not any(other.start < note.start < other.end for other in piece.notes), note
