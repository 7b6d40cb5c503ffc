"""Beat markers (``studio train --beats``): a ``BEAT`` event at every quarter-note line
inside a bar, written by the codec, forced and confined by the bar rule when sampling,
kept in the card, and left alone by the decoder, the key reader and transposition."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from studio.domains.base import Document
from studio.domains.music import MusicDomain
from studio.music.bars import BarGrid, Position, advance
from studio.music.events import EventCodec, Note, Piece
from studio.music.files import read_midi
from studio.music.grammar import InstantOrder
from studio.sampling.rules import draw

ROOT = Path(__file__).resolve().parent.parent
CODEC = EventCodec(beats=True)
PLAIN = EventCodec()
BEAT_ID, BAR, SEP = CODEC.beat_id, CODEC.bar_id, CODEC.separator_id
ON, OFF, SHIFT1 = CODEC.note_on_offset, CODEC.note_off_offset, CODEC.shift_offset
TPB = CODEC.ticks_per_beat
V = CODEC.vocab_size
CHORALES = sorted((ROOT / "corpora" / "songs" / "bach").glob("*.mid"))


def shift(ticks: int) -> int:
    return SHIFT1 + ticks - 1


def shift_ticks(token: int) -> int | None:
    return token - SHIFT1 + 1 if SHIFT1 <= token < CODEC.program_offset else None


def allowed(rule, events: list[int]) -> set[int]:
    logits = np.zeros((1, V))
    return set(np.flatnonzero(np.isfinite(rule(np.asarray([events], dtype=np.int64), logits)[0])).tolist())


def test_the_codebook_gains_one_marker_at_its_end_and_keeps_every_other_id() -> None:
    assert CODEC.vocab_size == PLAIN.vocab_size + 1 and BEAT_ID == V - 1
    assert CODEC.tokens[:-1] == PLAIN.tokens and CODEC.token_text(BEAT_ID) == "BEAT"
    assert PLAIN.beat_id is None and "BEAT" not in PLAIN.tokens
    without_keys = EventCodec(beats=True, keys=False)
    assert without_keys.beat_id == without_keys.key_offset == without_keys.vocab_size - 1


def test_a_bar_of_four_quarters_gets_three_markers_and_no_shift_crosses_one() -> None:
    # a bar of 4/4, then one of 3/4: a whole note, then a dotted half
    piece = Piece(
        (Note(0, 60, 48), Note(48, 62, 84)),
        time_signatures=((0, 4, 4), (48, 3, 4)),
        length=84,
    )
    ids = CODEC.encode(piece)
    expected = (
        "PROGRAM 0|BAR|VELOCITY 4|NOTE_ON 60|SHIFT 1|BEAT|SHIFT 1|BEAT|SHIFT 1|BEAT|SHIFT 1|NOTE_OFF 60|BAR|"
        "NOTE_ON 62|SHIFT 1|BEAT|SHIFT 1|BEAT|SHIFT 1|NOTE_OFF 62|BAR"
    )
    assert "|".join(CODEC.token_text(i) for i in ids) == expected
    assert CODEC.decode(ids) == PLAIN.decode(PLAIN.encode(piece))


def marks_and_shifts(ids: list[int]) -> tuple[list[int], list[int], list[tuple[int, int]]]:
    """(times of the bar markers, of the beat markers, (start, end) of each shift)."""
    time, bars, beats, shifts = 0, [], [], []
    for token in ids:
        ticks = shift_ticks(token)
        if ticks:
            shifts.append((time, time + ticks))
            time += ticks
        elif token == BAR:
            bars.append(time)
        elif token == BEAT_ID:
            beats.append(time)
    return bars, beats, shifts


def test_a_bar_that_is_not_whole_quarters_gets_markers_at_its_quarters_only() -> None:
    """9/8 (four and a half quarters): markers 1, 2, 3 and 4 quarters after each bar line."""
    bar = 9 * TPB // 2
    piece = Piece((Note(0, 67, 2 * bar),), time_signatures=((0, 9, 8),), length=2 * bar)
    bars, beats, _ = marks_and_shifts(CODEC.encode(piece))
    assert bars == [0, bar, 2 * bar]
    assert beats == [12, 24, 36, 48, bar + 12, bar + 24, bar + 36, bar + 48]


@pytest.mark.parametrize("path", CHORALES[::35], ids=lambda p: p.name)
def test_corpus_pieces_mark_every_quarter_and_decode_as_without_markers(path: Path) -> None:
    piece = read_midi(path)
    ids = CODEC.encode(piece)
    assert CODEC.decode(ids) == PLAIN.decode(PLAIN.encode(piece))
    bars, beats, shifts = marks_and_shifts(ids)
    assert bars == piece.bar_lines() and beats == CODEC.beat_lines(bars)
    lines = set(bars) | set(beats)
    assert not [(a, b) for a, b in shifts if any(a < line < b for line in lines)]  # no shift crosses a marker
    # besides the markers and the split shifts, the very same events
    assert [i for i in ids if i != BEAT_ID and shift_ticks(i) is None] == [
        i for i in PLAIN.encode(piece) if shift_ticks(i) is None
    ]


def test_the_card_keeps_the_option_and_older_cards_have_no_marker() -> None:
    domain = MusicDomain(CODEC)
    again = MusicDomain.from_config(json.loads(json.dumps(domain.to_config())))
    assert again.codec == CODEC and again.codec.beat_id == BEAT_ID
    assert "beats" not in MusicDomain().to_config()  # an older card reads as before
    assert MusicDomain.from_config(MusicDomain().to_config()).codec.beat_id is None
    assert MusicDomain.corpus_options({"beats": True}) != MusicDomain.corpus_options({})  # its own token cache


def test_the_key_reader_and_transposition_leave_the_marker_alone() -> None:
    domain = MusicDomain(CODEC)
    piece = Piece((Note(0, 62, 48),), key=(2, "minor"), length=48)
    ids = np.asarray([SEP, *CODEC.encode(piece), SEP])
    assert CODEC.decode(ids.tolist()).key == (2, "minor")
    assert CODEC.decode([BEAT_ID, *CODEC.encode(piece)]).key == (2, "minor")  # a marker is not a key
    copies = domain.augment(ids, 2)
    assert np.count_nonzero(copies == BEAT_ID) == 5 * np.count_nonzero(ids == BEAT_ID) == 15
    keys = copies[(copies >= CODEC.key_offset) & (copies < CODEC.key_end)]
    assert sorted((keys - CODEC.key_offset).tolist()) == [12, 13, 14, 15, 16]  # C to E minor


def test_the_bar_rule_forces_the_marker_on_each_quarter_and_bans_it_elsewhere() -> None:
    grid = BarGrid(CODEC, metre=4 * TPB)
    start = [BAR, ON + 60, shift(TPB // 2)]
    ok = allowed(grid, start)
    assert BEAT_ID not in ok and shift(TPB // 2) in ok and shift(TPB // 2 + 1) not in ok  # not across the line
    on_line = start + [shift(TPB // 2)]
    ok = allowed(grid, on_line)
    assert {BEAT_ID, OFF + 60} <= ok and BAR not in ok and shift(1) not in ok and ON + 62 not in ok
    after = on_line + [BEAT_ID]
    ok = allowed(grid, after)
    assert BEAT_ID not in ok and {ON + 62, shift(TPB)} <= ok and shift(TPB + 1) not in ok
    on_bar_line = after + [shift(TPB), BEAT_ID, shift(TPB), BEAT_ID, shift(TPB)]
    ok = allowed(grid, on_bar_line)
    assert BAR in ok and BEAT_ID not in ok and shift(1) not in ok  # the bar line takes BAR, not BEAT
    assert grid.position(np.asarray(on_bar_line + [BAR])) == Position(4 * TPB, 4 * TPB, 1, 4 * TPB, 4 * TPB)


def test_before_the_metre_is_known_a_quarter_line_takes_either_marker() -> None:
    grid = BarGrid(CODEC, metres=(3 * TPB, 4 * TPB))
    pickup = [BAR, ON + 60, shift(TPB)]
    ok = allowed(grid, pickup)
    assert {BAR, BEAT_ID} <= ok and shift(1) not in ok  # a one-beat upbeat, or its first beat
    assert advance(Position(), BEAT_ID, CODEC) == Position()  # a marker at the opening moves nothing


def drawn(seed: int, rules: list) -> list[int]:
    """400 events from random logits through ``rules``, the markers favoured everywhere."""
    rng, generator = np.random.default_rng(seed), np.random.default_rng([seed, 0])
    vocabulary = [BAR, BEAT_ID, ON + 60, OFF + 60, ON + 64, OFF + 64] + [shift(t) for t in range(1, 2 * TPB + 1)]
    events = [SEP]
    for _ in range(400):
        logits = np.full((1, V), -np.inf)
        logits[0, vocabulary] = rng.normal(0, 1, len(vocabulary))
        logits[0, [BAR, BEAT_ID]] += 1.5
        for rule in rules:
            logits = rule(np.asarray([events]), logits)
        events.append(int(draw(logits, [generator])[0]))
    return events


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_drawn_streams_mark_exactly_the_quarters_of_their_bars(seed: int) -> None:
    """Whatever the model favours, the markers fall on every quarter line inside every
    bar and nowhere else, and no shift crosses one: what the codec writes for the corpus."""
    events = drawn(seed, [InstantOrder(CODEC), BarGrid(CODEC, start=1, metres=(3 * TPB, 4 * TPB))])[1:]
    bars, beats, shifts = marks_and_shifts(events)
    lines = sorted(set(bars) | {0})
    end = shifts[-1][1] if shifts else 0
    open_bar = [lines[-1], lines[-1] + 8 * TPB]  # the bar still being written
    expected = [t for t in CODEC.beat_lines(lines) + CODEC.beat_lines(open_bar) if t < end]
    assert [t for t in beats if t < end] == expected  # (the stream may stop on a line, its marker unwritten)
    assert not [(a, b) for a, b in shifts if any(a < line < b for line in set(lines) | set(beats))]
    assert len(lines) >= 3 and len(set(np.diff(lines)[1:].tolist())) <= 1  # and one metre, as before


def test_every_corpus_event_is_allowed_by_the_bar_and_instant_rules() -> None:
    """The rules forbid nothing the corpus does: each event of 40 chorales, encoded with
    markers, passes the bar rule (with the corpus's metres) and the instant order."""
    documents = [Document(str(path), read_midi(path)) for path in CHORALES[:40]]
    domain = MusicDomain.from_documents(documents, beats=True)
    assert domain.codec.beats
    for document in documents:
        rules = [InstantOrder(domain.codec), BarGrid(domain.codec, start=1, metres=domain.usual_metres)]
        states = [rule.initial(np.asarray([SEP])) for rule in rules]
        for index, token in enumerate(domain.encode(document.content)):
            logits = np.zeros((1, V))
            for rule, state in zip(rules, states):
                logits = rule.apply([state], logits)
            assert np.isfinite(logits[0, token]), (document.path, index, CODEC.token_text(token))
            states = [rule.advance(state, token) for rule, state in zip(rules, states)]


def test_train_with_beats_samples_a_marked_piece(tmp_path: Path) -> None:
    """`studio train --beats` records the option in the card, and the bundle samples a
    MIDI file of the bars asked for through the CLI, plain and with beams."""
    songs = tmp_path / "songs"
    songs.mkdir()
    for index, path in enumerate(CHORALES[:4]):
        (songs / f"c{index}.mid").write_bytes(path.read_bytes())
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MPLBACKEND": "Agg"}

    def studio(*args: str) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [sys.executable, "-m", "studio", *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
        )
        assert result.returncode == 0, result.stderr[-2000:]
        return result

    bundle = tmp_path / "bundle"
    studio(
        "train", "songs", "--domain", "music", "--beats", "--max-steps", "4", "--hidden-size", "32", "--layers", "1",
        "--embedding-size", "16", "--batch-size", "4", "--seq-len", "32", "--eval-every", "4", "--warmup-steps", "1",
        "--runs-dir", "runs", "--out", str(bundle), "--no-cache",
    )  # fmt: skip
    domain_config = json.loads((bundle / "card.json").read_text())["domain"]
    assert domain_config["beats"] is True and domain_config["tokens"][-1] == "BEAT"
    for extra in ([], ["--beam", "2"]):
        out = tmp_path / f"piece{len(extra)}.mid"
        studio("sample", "--model", str(bundle), "--bars", "3", "--seed", "2", "--out", str(out), *extra)
        piece = read_midi(out)
        assert piece.notes and all(note.end > note.start for note in piece.notes)
        assert len(piece.bar_lines()) >= 4  # three bars and their closing line, at least


def test_beats_on_a_text_corpus_is_one_line_and_leaves_no_run(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("a short text corpus\n" * 20)
    result = subprocess.run(
        [sys.executable, "-m", "studio", "train", "notes.txt", "--beats", "--runs-dir", "runs", "--no-export"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        "error: --beats marks the beats of music; notes.txt is read as chars: leave out --beats"
    ]
    assert not (tmp_path / "runs").exists()
