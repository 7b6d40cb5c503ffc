"""Event codec: round-trip properties on generated note lists and MIDI files."""

from __future__ import annotations

import tempfile
from pathlib import Path

import mido
from hypothesis import given, settings
from hypothesis import strategies as st

from studio.music.events import (
    EventCodec,
    Note,
    Piece,
    bar_length,
    bin_velocity,
    normalize_notes,
    time_signature_of,
    velocity_bin,
    without_pickup,
)
from studio.music.files import read_midi, write_midi

CODEC = EventCodec()
SIGNATURES = st.sampled_from([(4, 4), (3, 4), (2, 4), (6, 8), (5, 8), (7, 16), (2, 2)])


def binned(note: Note) -> Note:
    return Note(note.start, note.pitch, note.end, bin_velocity(velocity_bin(note.velocity)))


@st.composite
def pieces(draw) -> Piece:
    """Polyphonic pieces whose same-pitch notes never overlap (what MIDI can hold)."""
    raw = draw(
        st.lists(
            st.tuples(st.integers(0, 127), st.integers(0, 60), st.integers(1, 100), st.integers(1, 127)),
            min_size=1,
            max_size=60,
        )
    )
    free_at: dict[int, int] = {}
    notes = []
    for pitch, gap, duration, velocity in raw:
        start = free_at.get(pitch, draw(st.integers(0, 200))) + gap
        notes.append(Note(start, pitch, start + duration, velocity))
        free_at[pitch] = start + duration
    signatures = [(0, *draw(SIGNATURES))]
    if draw(st.booleans()):  # a change of metre, on a bar line
        signatures.append((draw(st.integers(1, 8)) * bar_length(*signatures[0][1:]), *draw(SIGNATURES)))
    key = draw(st.none() | st.tuples(st.integers(0, 11), st.sampled_from(["major", "minor"])))
    return Piece(
        notes=tuple(sorted(notes)), time_signatures=tuple(signatures), program=draw(st.integers(0, 127)), key=key
    )


@settings(max_examples=150, deadline=None)
@given(pieces())
def test_round_trip_keeps_every_note(piece: Piece) -> None:
    """Every note comes back; a first bar shorter than the next (a pickup) comes back
    padded to a full bar, as :func:`without_pickup` pads it."""
    assert normalize_notes(piece.notes) == piece.notes  # nothing to repair in these
    decoded = CODEC.decode(CODEC.encode(piece))
    assert decoded.notes == tuple(binned(note) for note in without_pickup(piece).notes)
    assert (decoded.program, decoded.key) == (piece.program, piece.key)


@settings(max_examples=100, deadline=None)
@given(pieces())
def test_encoding_is_canonical_and_bars_sit_on_bar_lines(piece: Piece) -> None:
    ids = CODEC.encode(piece)
    padded = without_pickup(piece)
    assert CODEC.encode(CODEC.decode(ids)) == CODEC.encode(
        Piece(tuple(binned(n) for n in padded.notes), padded.time_signatures, piece.program, key=piece.key)
    )
    time, bars = 0, []
    for token in ids:
        if token == CODEC.bar_id:
            bars.append(time)
        elif CODEC.shift_offset <= token < CODEC.program_offset:
            time += token - CODEC.shift_offset + 1
    assert bars == piece.bar_lines()
    assert bars[-1] >= max(note.end for note in piece.notes)  # a closing bar line


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 127), st.integers(0, 300), st.integers(0, 50), st.integers(1, 127)),
        min_size=1,
        max_size=40,
    )
)
def test_normalize_removes_same_pitch_overlaps(raw) -> None:
    notes = normalize_notes(Note(s, p, s + d, v) for p, s, d, v in raw)
    assert normalize_notes(notes) == notes
    for a, b in zip(notes, notes[1:]):
        assert (a.start, a.pitch) < (b.start, b.pitch)
    by_pitch: dict[int, list[Note]] = {}
    for note in notes:
        assert note.end > note.start
        by_pitch.setdefault(note.pitch, []).append(note)
    for group in by_pitch.values():
        assert all(a.end <= b.start for a, b in zip(group, group[1:]))


def test_velocity_bins_and_time_signatures() -> None:
    assert [velocity_bin(v) for v in (1, 16, 17, 127)] == [0, 0, 1, 7]
    assert all(velocity_bin(bin_velocity(b)) == b for b in range(8))
    assert time_signature_of(48) == (4, 4) and time_signature_of(36) == (3, 4)
    assert time_signature_of(30) == (5, 8) and time_signature_of(21) == (7, 16)
    assert CODEC.token_text(CODEC.shift_offset + 2) == "SHIFT 1/4"  # 3 ticks: a sixteenth
    assert CODEC.token_text(CODEC.shift_offset + 3) == "SHIFT 1/3"  # an eighth triplet
    assert CODEC.token_text(CODEC.note_on_offset + 60) == "NOTE_ON 60"
    assert CODEC.token_text(CODEC.bar_id) == "BAR"


@st.composite
def midi_notes(draw):
    """(ticks per beat, [(pitch, start tick, end tick, velocity)]) anywhere, off the grid."""
    resolution = draw(st.sampled_from([96, 120, 384, 480, 1000]))
    raw = draw(
        st.lists(
            st.tuples(
                st.integers(21, 108),
                st.integers(0, 8 * resolution),
                st.integers(1, 4 * resolution),
                st.integers(1, 127),
            ),
            min_size=1,
            max_size=30,
        )
    )
    return resolution, [(p, s, s + d, v) for p, s, d, v in raw]


def _grid(tick: int, resolution: int) -> int:
    return (2 * tick * 12 + resolution) // (2 * resolution)


@settings(max_examples=40, deadline=None)
@given(midi_notes())
def test_midi_to_events_to_midi_keeps_notes_on_the_grid(case) -> None:
    resolution, raw = case
    # same pitch never sounding twice at once, even after rounding to the grid
    raw = sorted(raw, key=lambda n: (n[0], n[1]))
    kept, free_at = [], {}
    for pitch, start, end, velocity in raw:
        if _grid(start, resolution) >= free_at.get(pitch, 0) and _grid(end, resolution) > _grid(start, resolution):
            kept.append((pitch, start, end, velocity))
            free_at[pitch] = _grid(end, resolution)
    if not kept:
        return
    events = []
    for pitch, start, end, velocity in kept:
        events.append((start, 1, mido.Message("note_on", note=pitch, velocity=velocity)))
        events.append((end, 0, mido.Message("note_off", note=pitch, velocity=0)))
    events.sort(key=lambda e: (e[0], e[1]))
    track, now = mido.MidiTrack(), 0
    for tick, _, message in events:
        track.append(message.copy(time=tick - now))
        now = tick
    source = mido.MidiFile(ticks_per_beat=resolution)
    source.tracks.append(track)
    expected = tuple(sorted(Note(_grid(s, resolution), p, _grid(e, resolution), v) for p, s, e, v in kept))
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "in.mid"
        source.save(str(path))
        piece = read_midi(path)
        assert piece.notes == expected
        decoded = CODEC.decode(CODEC.encode(piece))
        write_midi(decoded, Path(folder) / "out.mid", tempo=100)
        again = read_midi(Path(folder) / "out.mid")
    assert again.notes == tuple(binned(n) for n in expected)
    assert again.tempo == 100
