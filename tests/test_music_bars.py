"""Bars in generated event streams (studio.music.bars) and pickups (studio.music.events):
counting, the rule that bans the end before N bars, the metre grid, pickup padding."""

from __future__ import annotations

import json
from pathlib import Path

import mido
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from studio.domains.base import Document
from studio.domains.music import MusicDomain
from studio.errors import StudioError
from studio.music.bars import BarGrid, NoEndBeforeBars, Position, advance, bar_count
from studio.music.events import Note, Piece, pickup_padding, without_pickup
from studio.music.files import read_midi, write_midi
from studio.music.render import Rendered
from studio.sampling.rules import draw
from studio.sampling.settings import SampleSettings

DOMAIN = MusicDomain()
CODEC = DOMAIN.codec
SEP, BAR = CODEC.separator_id, CODEC.bar_id
ON, OFF, SHIFT1 = CODEC.note_on_offset, CODEC.note_off_offset, CODEC.shift_offset
PROGRAM = CODEC.program_offset
V = CODEC.vocab_size
BEAT = CODEC.ticks_per_beat
ROOT = Path(__file__).resolve().parent.parent


def shift(ticks: int) -> int:
    return SHIFT1 + ticks - 1


def allowed(rule, events: list[int]) -> set[int]:
    logits = np.zeros((1, V))
    out = rule(np.asarray([events], dtype=np.int64), logits)
    assert np.array_equal(logits, np.zeros((1, V)))  # the input is never edited
    return set(np.flatnonzero(np.isfinite(out[0])).tolist())


EVENTS = st.lists(
    st.sampled_from([BAR, BAR, ON + 60, OFF + 60, shift(1), shift(6), shift(12), shift(48), PROGRAM]), max_size=80
)


@settings(max_examples=200, deadline=None)
@given(EVENTS)
def test_bar_count_is_the_fold_of_advance(events: list[int]) -> None:
    """The vectorised count agrees with the step-by-step fold (naive vs fast)."""
    position = Position()
    for token in events:
        position = advance(position, token, CODEC)
    assert bar_count(events, CODEC) == position.bars


def test_bar_count_ignores_openings_and_repeated_markers() -> None:
    assert bar_count([PROGRAM, BAR, ON + 60, BAR], CODEC) == 0  # no time has passed
    assert bar_count([BAR, shift(48), BAR, BAR, shift(36), BAR], CODEC) == 2
    assert bar_count([ON + 60, shift(12), BAR], CODEC) == 1  # the start is a bar line


def test_no_end_before_the_bars_asked_for_counted_after_the_prime() -> None:
    prime = [SEP, BAR, shift(48), BAR]  # a primer's bar: it does not count
    rule = NoEndBeforeBars(CODEC, bars=2, start=len(prime))
    one = prime + [ON + 60, shift(48), BAR]
    assert SEP not in allowed(rule, prime) and SEP not in allowed(rule, one)
    assert SEP in allowed(rule, one + [shift(48), BAR])
    assert allowed(rule, one) == set(range(V)) - {SEP}
    with pytest.raises(ValueError):
        NoEndBeforeBars(CODEC, bars=0)


def test_the_domain_builds_the_bar_rules_from_the_settings() -> None:
    def kinds(settings):
        return [type(rule).__name__ for rule in DOMAIN.constraints(settings)]

    assert kinds(SampleSettings()) == ["NoteGrammar", "BarGrid"]
    assert kinds(SampleSettings(bars=8)) == ["NoteGrammar", "BarGrid", "NoEndBeforeBars"]
    beams = ["InstantOrder", "NoteGrammar", "BarGrid", "NoEndBeforeBars"]
    assert kinds(SampleSettings(bars=8, num_beams=4)) == beams  # beams: each instant in order
    rule = DOMAIN.constraints(SampleSettings(bars=8, key="D minor"))[-1]
    assert (rule.bars, rule.start) == (8, 2)  # after [SEP, KEY]


def test_grid_takes_the_metre_from_the_second_bar() -> None:
    grid = BarGrid(CODEC)
    pickup = [BAR, ON + 60, shift(BEAT), OFF + 60, BAR]  # a one-beat upbeat
    assert grid.position(np.asarray(pickup)).metre is None
    assert BAR not in allowed(grid, pickup + [shift(BEAT + 1)])  # before: whole eighths only
    assert BAR in allowed(grid, pickup + [shift(BEAT + BEAT // 2)])
    whole = pickup + [ON + 62, shift(4 * BEAT), BAR]
    assert grid.position(np.asarray(whole)) == Position(5 * BEAT, 5 * BEAT, 2, 4 * BEAT, 5 * BEAT)
    # inside a bar: no marker, and no shift past the next bar line (three beats away)
    inside = whole + [OFF + 62, ON + 64, shift(BEAT)]
    ok = allowed(grid, inside)
    assert BAR not in ok and shift(3 * BEAT) in ok and shift(3 * BEAT + 1) not in ok
    # on the bar line: note-offs and the marker, then the next bar may start
    on_line = inside + [shift(3 * BEAT)]
    ok = allowed(grid, on_line)
    assert {BAR, OFF + 64} <= ok and ON + 67 not in ok and shift(1) not in ok
    assert {ON + 67, shift(1)} <= allowed(grid, on_line + [OFF + 64, BAR])


def test_grid_keeps_a_primer_metre_from_the_start() -> None:
    grid = BarGrid(CODEC, start=3, metre=3 * BEAT)
    prime = [SEP, PROGRAM, BAR]
    assert BAR not in allowed(grid, prime)  # the primer closed its bar: no empty bar
    assert shift(3 * BEAT) in allowed(grid, prime) and shift(3 * BEAT + 1) not in allowed(grid, prime)


def drawn_through(grid: BarGrid, seed: int) -> list[int]:
    """300 events drawn from random logits through ``grid``: short shifts and frequent
    markers, so that many markers come where they may not."""
    rng, generator = np.random.default_rng(seed), np.random.default_rng([seed, 0])
    vocabulary = [BAR, ON + 60, OFF + 60] + [shift(ticks) for ticks in range(1, BEAT + 1)]
    events = [BAR]
    for _ in range(300):
        logits = np.full((1, V), -np.inf)
        logits[0, vocabulary] = rng.normal(0, 1, len(vocabulary))
        logits[0, BAR] += 1.5
        events.append(int(draw(grid(np.asarray([events]), logits), [generator])[0]))
    return events


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_drawn_streams_keep_one_bar_length(seed: int) -> None:
    """Draw from random logits through the grid: after the first bar every bar has the
    second bar's length, and the decoder states one metre."""
    events = drawn_through(BarGrid(CODEC), seed)
    lines = [0]
    for position in _positions(events):
        if position.line != lines[-1]:
            lines.append(position.line)
    lengths = np.diff(lines)
    assert len(lengths) >= 3 and len(set(lengths[1:].tolist())) == 1
    assert lengths[0] % (BEAT // 2) == 0 and lengths[0] <= lengths[1]  # a pickup, or a whole bar


def _positions(events):
    position = Position()
    for token in events:
        position = advance(position, token, CODEC)
        yield position


# --- pickups ---------------------------------------------------------------------------


def test_pickup_padding() -> None:
    assert pickup_padding([0, 12, 60, 108]) == 36
    assert pickup_padding([0, 48, 96, 144]) == 0
    assert pickup_padding([0, 60, 108]) == 0  # a long first bar is no pickup
    assert pickup_padding([0, 12]) == 0


def test_a_generated_pickup_is_padded_not_made_the_metre() -> None:
    """The default piece of the issue: a three-beat first bar, then 4/4 bars.  It was
    labelled 3/4 and its MIDI switched to 4/4 after the first bar."""
    events = [BAR, ON + 60, shift(3 * BEAT), OFF + 60, BAR]
    for pitch in (62, 64):
        events += [ON + pitch, shift(4 * BEAT), OFF + pitch, BAR]
    piece = DOMAIN.decode(events)
    assert piece.time_signatures == ((0, 4, 4),)
    assert piece.notes[0].start == BEAT  # one beat of rest before the upbeat
    assert piece.bar_lines() == [0, 48, 96, 144]
    assert "4/4" in Rendered(piece, 120).text
    odd = DOMAIN.decode([ON + 60, shift(4), OFF + 60, BAR, ON + 62, shift(48), BAR])  # a triplet upbeat
    assert odd.time_signatures == ((0, 4, 4),) and odd.notes[0].start == 44


def test_a_midi_pickup_stated_as_its_own_metre_is_read_as_a_padded_bar(tmp_path: Path) -> None:
    """Notation programs write an upbeat bar as, e.g., 1/4 before the 4/4."""
    track = mido.MidiTrack([mido.MetaMessage("time_signature", numerator=1, denominator=4)])
    track.append(mido.Message("note_on", note=67, velocity=80))
    track.append(mido.Message("note_off", note=67, velocity=0, time=480))
    track.append(mido.MetaMessage("time_signature", numerator=4, denominator=4))
    track.append(mido.Message("note_on", note=72, velocity=80))
    track.append(mido.Message("note_off", note=72, velocity=0, time=4 * 480))
    midi = mido.MidiFile(ticks_per_beat=480)
    midi.tracks.append(track)
    midi.save(str(tmp_path / "upbeat.mid"))
    piece = read_midi(tmp_path / "upbeat.mid")
    assert piece.time_signatures == ((0, 4, 4),)
    assert [(n.start, n.pitch) for n in piece.notes] == [(36, 67), (48, 72)]
    again = read_midi(Rendered(piece, 100).save(tmp_path / "again.mid"))
    assert again.time_signatures == ((0, 4, 4),) and again.notes == piece.notes


def test_a_corpus_chorale_with_a_pickup_keeps_its_metre(tmp_path: Path) -> None:
    source = ROOT / "corpora" / "songs" / "bach" / "bwv290.mid"
    piece = read_midi(source)
    assert min(n.start for n in piece.notes) == 3 * BEAT  # its one-beat upbeat, padded
    assert without_pickup(piece) == piece
    rendered = DOMAIN.render([SEP, *DOMAIN.encode(piece)], SampleSettings())
    assert rendered.piece.time_signatures == ((0, 4, 4),) and ", 4/4," in rendered.text
    written = mido.MidiFile(str(rendered.save(tmp_path / "bwv290.mid")))
    metres = [(m.numerator, m.denominator) for m in written.tracks[0] if m.type == "time_signature"]
    assert metres == [(4, 4)]


def test_the_label_names_the_metre_that_holds_longest() -> None:
    piece = Piece((Note(0, 60, 300),), time_signatures=((0, 5, 4), (60, 4, 4)), length=300)
    assert Rendered(piece, 120).metre == (4, 4)
    assert Rendered(Piece((Note(0, 60, 72),), time_signatures=((0, 3, 4),)), 120).metre == (3, 4)


def test_before_the_metre_a_bar_is_at_most_the_longest() -> None:
    """A model that never writes a bar marker would never complete the bars asked for."""
    grid = BarGrid(CODEC)
    longest = 8 * BEAT
    events = [BAR, ON + 60, shift(4 * BEAT), shift(3 * BEAT)]
    ok = allowed(grid, events)
    assert shift(BEAT) in ok and shift(BEAT + 1) not in ok
    ok = allowed(grid, events + [shift(BEAT)])
    assert BAR in ok and OFF + 60 in ok and shift(1) not in ok and ON + 62 not in ok
    assert grid.position(np.asarray(events + [shift(BEAT), BAR])).line == longest


def test_the_first_whole_bar_ends_only_at_one_of_the_corpus_metres() -> None:
    """The chorale model drifted into 9/8 and 6/4 (1 sample in 10 at seeds 1..40); with
    the corpus's metres (3/4 and 4/4) recorded, the second bar line may fall only at
    three or four beats, and the bar line is forced at the longest."""
    grid = BarGrid(CODEC, metres=(3 * BEAT, 4 * BEAT))
    pickup = [BAR, ON + 60, shift(BEAT), OFF + 60, BAR]
    assert BAR not in allowed(grid, pickup + [shift(2 * BEAT)])  # 2/4: not the corpus's
    assert BAR in allowed(grid, pickup + [shift(3 * BEAT)])
    assert BAR not in allowed(grid, pickup + [shift(3 * BEAT), shift(BEAT // 2)])  # 7/8
    ok = allowed(grid, pickup + [shift(3 * BEAT)])
    assert shift(BEAT) in ok and shift(BEAT + 1) not in ok  # no bar longer than 4/4
    on_line = pickup + [shift(4 * BEAT)]
    assert BAR in allowed(grid, on_line) and shift(1) not in allowed(grid, on_line)
    assert grid.position(np.asarray(on_line + [BAR])).metre == 4 * BEAT
    # the pickup itself may be any whole eighths, up to the longest metre
    assert BAR in allowed(grid, [BAR, shift(BEAT // 2)])
    ok = allowed(grid, [BAR, shift(BEAT)])
    assert shift(3 * BEAT) in ok and shift(3 * BEAT + 1) not in ok
    # a primer's metre is kept even when the corpus never used it
    primed = BarGrid(CODEC, start=1, metre=5 * BEAT, metres=(4 * BEAT,))
    assert BAR in allowed(primed, [BAR, shift(4 * BEAT), shift(BEAT)])
    with pytest.raises(ValueError, match="metres"):
        BarGrid(CODEC, metres=())


def test_a_pickup_is_never_longer_than_the_first_whole_bar() -> None:
    """The 2x512 chorale model's Compose piece (seed 3) opened with a bar of four beats
    and went on in three: written as 4/4 changing to 3/4.  The bar after the first
    may not be shorter than it; equal is a piece with no pickup."""
    for metres in (None, (3 * BEAT, 4 * BEAT)):
        grid = BarGrid(CODEC, metres=metres)
        four = [BAR, ON + 60, shift(4 * BEAT), OFF + 60, BAR]
        assert BAR not in allowed(grid, four + [shift(3 * BEAT)])
        assert BAR not in allowed(grid, four + [shift(3 * BEAT), shift(BEAT // 2)])
        assert BAR in allowed(grid, four + [shift(4 * BEAT)])
        assert grid.position(np.asarray(four + [shift(4 * BEAT), BAR])).metre == 4 * BEAT
        three = [BAR, ON + 60, shift(3 * BEAT), OFF + 60, BAR]  # a three-beat upbeat may lead into 3/4 or 4/4
        assert BAR in allowed(grid, three + [shift(3 * BEAT)]) and BAR in allowed(grid, three + [shift(4 * BEAT)])


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_drawn_streams_take_a_corpus_metre(seed: int) -> None:
    metres = (3 * BEAT, 9 * BEAT // 2)  # 3/4 and 9/8
    grid = BarGrid(CODEC, metres=metres)
    metre = grid.position(np.asarray(drawn_through(grid, seed))).metre
    assert metre in metres


def test_the_domain_measures_the_corpus_metres_and_keeps_them_in_the_card() -> None:
    def piece(numerator: int, bars: int, denominator: int = 4) -> Document:
        bar = numerator * BEAT * 4 // denominator
        notes = tuple(Note(i * bar, 60 + i % 5, i * bar + BEAT) for i in range(bars))
        return Document("p", Piece(notes, time_signatures=((0, numerator, denominator),), length=bars * bar))

    # 150 pieces in 4/4, 30 in 6/8 and 10 in 3/4 (the same bar), one in 5/4 (under 1%:
    # an outlier)
    documents = [piece(4, 6)] * 150 + [piece(6, 6, 8)] * 30 + [piece(3, 6)] * 10 + [piece(5, 6)]
    domain = MusicDomain.from_documents(documents)
    assert domain.usual_metres == (3 * BEAT, 4 * BEAT)
    assert domain.usual_signatures == ((6, 8), (4, 4))  # the bar of three beats is written 6/8
    again = MusicDomain.from_config(json.loads(json.dumps(domain.to_config())))
    assert again.usual_metres == (3 * BEAT, 4 * BEAT) and again.usual_signatures == ((6, 8), (4, 4))
    [grid] = [rule for rule in again.constraints(SampleSettings(model="m")) if isinstance(rule, BarGrid)]
    assert grid.metres == (3 * BEAT, 4 * BEAT)
    assert MusicDomain.from_config({**domain.to_config(), "usual_metres": None}).usual_metres is None  # older cards
    for damage in ({"usual_metres": [0, 48]}, {"usual_signatures": [[6, 0]]}, {"usual_signatures": [[6]]}):
        with pytest.raises(StudioError, match="damaged music domain config"):
            MusicDomain.from_config({**domain.to_config(), **damage})


def test_samples_are_named_in_the_corpus_metre_or_the_primer_s(tmp_path: Path) -> None:
    """The decoder writes a bar of three beats as 3/4; O'Neill's jigs are 6/8."""
    domain = MusicDomain(usual_metres=(3 * BEAT,), usual_signatures=((6, 8),))
    events = [BAR, ON + 60, shift(3 * BEAT), OFF + 60, BAR, ON + 62, shift(3 * BEAT), OFF + 62, BAR]
    assert domain.decode(events).time_signatures == ((0, 3, 4),)
    rendered = domain.render(events)
    assert rendered.piece.time_signatures == ((0, 6, 8),) and rendered.metre == (6, 8)
    assert rendered.piece.bar_lines() == domain.decode(events).bar_lines()  # bars do not move
    written = mido.MidiFile(str(rendered.save(tmp_path / "jig.mid")))
    assert [(m.numerator, m.denominator) for m in written.tracks[0] if m.type == "time_signature"] == [(6, 8)]
    assert MusicDomain().render(events).metre == (3, 4)  # cards without the names: as before
    primer = tmp_path / "waltz.mid"
    write_midi(
        Piece((Note(0, 60, 3 * BEAT), Note(3 * BEAT, 62, 6 * BEAT)), time_signatures=((0, 3, 4),), length=6 * BEAT),
        primer,
        120,
    )
    settings = SampleSettings(model="m", prime_file=str(primer))
    assert domain.render(domain.prime_ids(settings)[1:] + events[1:], settings).metre == (3, 4)


FOLK = ROOT / "export" / "folk"


@pytest.mark.skipif(not (FOLK / "card.json").is_file(), reason="needs export/folk")
def test_folk_tunes_keep_to_the_corpus_metres_named_as_its_scores_name_them(tmp_path: Path) -> None:
    """The folk model before wrote 7/8, 5/8, 5/4, 8/4 or 3/8 in 23 of 40 tunes, and named
    its jigs 3/4."""
    from studio.api import sample

    usual = {(2, 4), (6, 8), (2, 2), (9, 8)}
    for seed in range(1, 9):
        [tune] = sample(str(FOLK), seed=seed, bars=4)
        written = mido.MidiFile(str(tune.output.save(tmp_path / f"{seed}.mid")))
        stated = [(m.numerator, m.denominator) for m in written.tracks[0] if m.type == "time_signature"]
        assert stated[-1] in usual and f", {stated[-1][0]}/{stated[-1][1]}," in tune.text, (seed, tune.text)
