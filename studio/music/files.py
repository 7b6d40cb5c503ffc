"""Reading pieces from MIDI (mido) and scores (music21), and writing MIDI.

Times are converted to musical time (beats) and rounded to the grid, so tempo changes in
a source file do not bend the grid.  Drum-channel notes (channel 10) are left out: pitch
means something else there.  Same-pitch overlaps are resolved by
:func:`~studio.music.events.normalize_notes`.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import mido

from studio.music.events import (
    DEFAULT_PROGRAM,
    DEFAULT_TIME_SIGNATURE,
    DEFAULT_VELOCITY,
    TICKS_PER_BEAT,
    Note,
    Piece,
    bar_length,
    normalize_notes,
    time_signature_of,
    without_pickup,
)
from studio.music.scales import major_or_minor, midi_key_name, parse_key

MIDI_SUFFIXES = (".mid", ".midi")
SCORE_SUFFIXES = (".musicxml", ".mxl", ".xml", ".abc", ".krn")
DRUM_CHANNEL = 9
OUTPUT_TICKS_PER_BEAT = 480  # a multiple of 12: grid ticks land on whole MIDI ticks
MIDI_HEADER = b"MThd"


class UnreadableMusic(ValueError):
    """A file that holds no readable music.  The message names the file by its own name
    and says what to do; it is meant for the person who gave the file."""


def read_pieces(path: Path, ticks_per_beat: int = TICKS_PER_BEAT) -> list[Piece]:
    """Every piece in one file (an ABC book holds many); raises UnreadableMusic on
    unreadable files (and may raise other errors on scores music21 chokes on)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in MIDI_SUFFIXES:
        return [read_midi(path, ticks_per_beat)]
    if suffix in SCORE_SUFFIXES:
        return read_score(path, ticks_per_beat)
    raise UnreadableMusic(
        f"cannot read {path.name}: it is not a music file; give a MIDI file "
        f"({', '.join(MIDI_SUFFIXES)}) or a score ({', '.join(SCORE_SUFFIXES)})"
    )


def _open_midi(path: Path) -> mido.MidiFile:
    """mido's reading of ``path``, its failures told as what is wrong with the file."""
    with open(path, "rb") as file:
        header = file.read(len(MIDI_HEADER))
    if not header:
        raise UnreadableMusic(f"cannot read {path.name}: it is empty (0 bytes); give a MIDI file with notes in it")
    if header != MIDI_HEADER:
        raise UnreadableMusic(
            f"cannot read {path.name}: it is not a MIDI file (it does not start "
            "as one); export the music from your notation program or DAW as a "
            "standard MIDI file (.mid) and try again"
        )
    try:
        return mido.MidiFile(str(path))
    except Exception:  # mido raises EOFError, OSError, ValueError, KeyError ... on damage
        raise UnreadableMusic(
            f"cannot read {path.name}: it is a damaged MIDI file (it breaks off "
            "or holds invalid data); export it again as a standard MIDI file "
            "(.mid)"
        ) from None


def _to_grid(tick: int, source_ticks_per_beat: int, ticks_per_beat: int) -> int:
    # exact integer round-half-up, so a file always quantizes the same way
    return (2 * tick * ticks_per_beat + source_ticks_per_beat) // (2 * source_ticks_per_beat)


def read_midi(path: Path, ticks_per_beat: int = TICKS_PER_BEAT) -> Piece:
    """One MIDI file as a piece on the grid (all tracks and channels merged); a pickup
    stated as a short bar of its own metre is padded to a full bar (:func:`without_pickup`)."""
    midi = _open_midi(path)
    source = midi.ticks_per_beat
    if source <= 0:
        raise UnreadableMusic(
            f"cannot read {path.name}: it counts time in SMPTE frames, not "
            "beats; export it again with beat-based timing (the usual MIDI "
            "setting)"
        )
    notes: list[Note] = []
    signatures: dict[int, tuple[int, int]] = {}
    tempo = None
    program = None
    key = None
    end = 0
    for track in midi.tracks:
        tick = 0
        sounding: dict[tuple[int, int], list[tuple[int, int]]] = {}
        for message in track:
            tick += message.time
            grid = _to_grid(tick, source, ticks_per_beat)
            end = max(end, grid)
            if message.type == "time_signature":
                signatures[grid] = (message.numerator, message.denominator)
            elif message.type == "key_signature" and key is None:
                key = major_or_minor(*parse_key(message.key))
            elif message.type == "set_tempo" and tempo is None:
                tempo = round(mido.tempo2bpm(message.tempo), 3)
            elif message.type == "program_change" and message.channel != DRUM_CHANNEL:
                program = message.program if program is None else program
            elif message.type in ("note_on", "note_off") and message.channel != DRUM_CHANNEL:
                voice = (message.channel, message.note)
                if message.type == "note_on" and message.velocity > 0:
                    sounding.setdefault(voice, []).append((grid, message.velocity))
                elif sounding.get(voice):
                    start, velocity = sounding[voice].pop(0)
                    notes.append(Note(start, message.note, grid, velocity))
        for (_, pitch), starts in sounding.items():  # never released: end with the track
            notes.extend(Note(start, pitch, max(grid, start + 1), vel) for start, vel in starts)
    if not notes:
        raise UnreadableMusic(
            f"cannot read {path.name}: it has no notes (drum-channel notes do "
            "not count); give a MIDI file with notes in it"
        )
    return without_pickup(
        Piece(
            notes=normalize_notes(notes),
            time_signatures=_signature_list(signatures),
            program=DEFAULT_PROGRAM if program is None else program,
            tempo=tempo,
            key=key,
            length=end,
            ticks_per_beat=ticks_per_beat,
        )
    )


def _signature_list(signatures: dict[int, tuple[int, int]]) -> tuple[tuple[int, int, int], ...]:
    """Sorted changes, starting at tick 0; metres MIDI cannot state (a denominator that is
    not a power of two, as some ABC tunes have) become the MIDI metre of the same bar
    length."""
    listed = []
    for tick, (numerator, denominator) in sorted(signatures.items()):
        if numerator < 1 or denominator < 1 or denominator & (denominator - 1):
            length = bar_length(max(1, numerator), max(1, denominator))
            numerator, denominator = time_signature_of(length) or DEFAULT_TIME_SIGNATURE
        listed.append((tick, numerator, denominator))
    if not listed or listed[0][0] != 0:
        listed.insert(0, (0, 4, 4))
    return tuple(listed)


def read_score(path: Path, ticks_per_beat: int = TICKS_PER_BEAT) -> list[Piece]:
    """MusicXML / ABC / Humdrum through music21; an opus gives one piece per score."""
    from music21 import converter, stream

    try:
        parsed = converter.parse(str(path))
    except Exception:  # music21 raises many types on files it cannot parse
        raise UnreadableMusic(
            f"cannot read {path.name} as a score; check that it opens in a "
            "notation program (e.g. MuseScore), or export it as MIDI (.mid)"
        ) from None
    scores = list(parsed.scores) if isinstance(parsed, stream.Opus) else [parsed]
    pieces = [score_to_piece(score, ticks_per_beat) for score in scores]
    pieces = [piece for piece in pieces if piece.notes]
    if not pieces:
        raise UnreadableMusic(f"cannot read {path.name}: it has no notes; give a score with notes in it")
    return pieces


def score_to_piece(score, ticks_per_beat: int = TICKS_PER_BEAT, program: int | None = None) -> Piece:
    """A music21 score as a piece.  A pickup bar is padded at the front so that bar lines
    fall where the score has them; ties between equal pitches are merged (music21's
    ``stripTies`` also merges ties between different pitches, which ABC sources have);
    unpitched notes are left out."""
    from music21 import meter

    offset = 0.0
    first_measure = next(iter(score.recurse().getElementsByClass("Measure")), None)
    if first_measure is not None and first_measure.paddingLeft:
        offset = float(first_measure.paddingLeft)
    parts = list(getattr(score, "parts", ())) or [score]
    notes: list[Note] = []
    for part in parts:
        pending: dict[int, int] = {}  # pitch -> index in notes of a note tied onwards
        for element in part.flatten().notes:
            start = float(element.offset) + offset
            on = round(start * ticks_per_beat)
            off = round((start + float(element.quarterLength)) * ticks_per_beat)
            velocity = element.volume.velocity or DEFAULT_VELOCITY
            members = element.notes if element.isChord else [element]
            for member in members:
                pitch = getattr(member.pitch, "midi", None)
                if pitch is None or not 0 <= pitch < 128 or off < on:
                    continue
                tie = member.tie.type if member.tie is not None else None
                index = pending.pop(pitch, None)
                if index is not None and tie in ("stop", "continue") and notes[index].end == on:
                    notes[index] = replace(notes[index], end=off)
                else:
                    index = len(notes)
                    notes.append(Note(on, int(pitch), off, int(velocity)))
                if tie in ("start", "continue"):
                    pending[pitch] = index
    signatures: dict[int, tuple[int, int]] = {}
    for signature in score.recurse().getElementsByClass(meter.TimeSignature):
        at = float(signature.getOffsetInHierarchy(score))
        tick = round((at + offset) * ticks_per_beat) if at else 0
        signatures.setdefault(tick, (signature.numerator, signature.denominator))
    key = None
    for found in score.recurse().getElementsByClass("KeySignature"):  # the first one
        if not hasattr(found, "tonic"):  # a bare signature: let music21 judge the mode
            analysed = score.analyze("key")
            found = analysed if analysed.sharps == found.sharps else found.asKey("major")
        key = major_or_minor(found.tonic.pitchClass, found.mode or "major")
        break
    tempo = None
    for mark in score.recurse().getElementsByClass("MetronomeMark"):  # explicit marks only
        bpm = mark.getQuarterBPM()
        tempo = round(float(bpm), 3) if bpm else None
        break
    return Piece(
        notes=normalize_notes(notes),
        time_signatures=_signature_list(signatures),
        program=DEFAULT_PROGRAM if program is None else program,
        tempo=tempo,
        key=key,
        length=round((float(score.highestTime) + offset) * ticks_per_beat),
        ticks_per_beat=ticks_per_beat,
    )


def piece_to_midi(piece: Piece, tempo: float) -> mido.MidiFile:
    """One-track MIDI file (channel 1) at ``tempo`` beats per minute."""
    scale = OUTPUT_TICKS_PER_BEAT // piece.ticks_per_beat
    timed: list[tuple[int, int, int, mido.Message]] = [
        (0, 0, 0, mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(tempo), time=0)),
        (0, 0, 1, mido.Message("program_change", program=piece.program, channel=0, time=0)),
    ]
    if piece.key:
        timed.append((0, 0, 0, mido.MetaMessage("key_signature", key=midi_key_name(*piece.key))))
    for tick, numerator, denominator in piece.time_signatures:
        meta = mido.MetaMessage("time_signature", numerator=numerator, denominator=denominator)
        timed.append((tick * scale, 0, 0, meta))
    for note in piece.notes:
        on = mido.Message("note_on", note=note.pitch, velocity=note.velocity, channel=0)
        off = mido.Message("note_off", note=note.pitch, velocity=0, channel=0)
        timed.append((note.start * scale, 2, note.pitch, on))
        timed.append((note.end * scale, 1, note.pitch, off))  # offs first at equal times
    timed.sort(key=lambda item: item[:3])
    track = mido.MidiTrack()
    now = 0
    for tick, _, _, message in timed:
        track.append(message.copy(time=tick - now))
        now = tick
    track.append(mido.MetaMessage("end_of_track", time=max(0, piece.end * scale - now)))
    midi = mido.MidiFile(type=1, ticks_per_beat=OUTPUT_TICKS_PER_BEAT)
    midi.tracks.append(track)
    return midi


def write_midi(piece: Piece, path: Path, tempo: float) -> None:
    piece_to_midi(piece, tempo).save(str(path))
