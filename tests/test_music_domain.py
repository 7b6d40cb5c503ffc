"""Music domain: corpus reading, priming, key mask, bar stopping, augmentation, rendering."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import wave
from pathlib import Path

import mido
import numpy as np
import pytest

from studio.domains.base import Document
from studio.domains.music import MusicDomain
from studio.errors import StudioError
from studio.music import render as render_module
from studio.music.events import Note, Piece
from studio.music.files import read_midi
from studio.sampling.settings import SampleSettings

ROOT = Path(__file__).resolve().parent.parent
DOMAIN = MusicDomain()
ON, OFF = DOMAIN.codec.note_on_offset, DOMAIN.codec.note_off_offset
SHIFT1, BAR = DOMAIN.codec.shift_offset, DOMAIN.codec.bar_id


def write_song(path: Path, *, pitches=(60, 64, 67), numerator=3, program=40, tempo=90) -> Path:
    """A small real MIDI file: 3/4, two tracks, a chord, triplets, drums to ignore."""
    resolution = 480
    meta = mido.MidiTrack(
        [
            mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(tempo)),
            mido.MetaMessage("time_signature", numerator=numerator, denominator=4),
            mido.MetaMessage("key_signature", key="Em"),
        ]
    )
    music = mido.MidiTrack([mido.Message("program_change", program=program, channel=0)])
    for pitch in pitches:  # a chord on beat 1, one beat long
        music.append(mido.Message("note_on", note=pitch, velocity=100, time=0))
    for index, pitch in enumerate(pitches):
        music.append(mido.Message("note_off", note=pitch, velocity=0, time=resolution if index == 0 else 0))
    for pitch in (72, 74, 76):  # eighth-note triplets on beat 2
        music.append(mido.Message("note_on", note=pitch, velocity=50, time=0))
        music.append(mido.Message("note_off", note=pitch, velocity=0, time=resolution // 3))
    music.append(mido.Message("note_on", note=36, velocity=100, channel=9, time=0))  # drum
    music.append(mido.Message("note_off", note=36, velocity=0, channel=9, time=resolution))
    midi = mido.MidiFile(ticks_per_beat=resolution)
    midi.tracks += [meta, music]
    path.parent.mkdir(parents=True, exist_ok=True)
    midi.save(str(path))
    return path


def test_real_file_round_trip(tmp_path: Path) -> None:
    piece = read_midi(write_song(tmp_path / "song.mid"))
    assert piece.notes == (
        Note(0, 60, 12, 100),
        Note(0, 64, 12, 100),
        Note(0, 67, 12, 100),
        Note(12, 72, 16, 50),
        Note(16, 74, 20, 50),
        Note(20, 76, 24, 50),
    )
    assert (piece.time_signatures, piece.program, piece.tempo, piece.key) == (((0, 3, 4),), 40, 90.0, (4, "minor"))
    ids = DOMAIN.encode(piece)
    assert [DOMAIN.token_text(i) for i in ids[:5]] == ["KEY E minor", "PROGRAM 40", "BAR", "VELOCITY 6", "NOTE_ON 60"]
    rendered = DOMAIN.render([DOMAIN.separator_id, *ids], SampleSettings(tempo=75))
    out = rendered.save(tmp_path / "out.mid")
    again = read_midi(out)
    assert [(n.start, n.pitch, n.end) for n in again.notes] == [(n.start, n.pitch, n.end) for n in piece.notes]
    assert (again.time_signatures, again.program, again.tempo, again.key) == (((0, 3, 4),), 40, 75.0, (4, "minor"))
    assert rendered.text.startswith("1 bars, 6 notes, 75 bpm, 3/4")


def test_corrupt_files_are_skipped_with_one_warning(tmp_path: Path, capsys) -> None:
    write_song(tmp_path / "a" / "good.mid")
    (tmp_path / "a" / "bad.mid").write_bytes(b"MThd\x00\x00garbage" + bytes(range(256)))
    (tmp_path / "b.midi").write_bytes(b"\x00\x01not midi at all")
    (tmp_path / "notes.txt").write_text("not music")
    documents = MusicDomain.read_corpus(tmp_path)
    assert [Path(d.path).name for d in documents] == ["good.mid"]
    err = capsys.readouterr().err
    assert err.count("warning") == 1 and "bad.mid" in err and "b.midi" in err


def test_only_corrupt_or_empty_folders_raise(tmp_path: Path) -> None:
    (tmp_path / "bad.mid").write_bytes(b"garbage")
    with pytest.raises(StudioError, match="no usable music"):
        MusicDomain.read_corpus(tmp_path)
    with pytest.raises(StudioError, match="no usable music"):
        MusicDomain.read_corpus(tmp_path / "bad.mid")
    (tmp_path / "empty").mkdir()
    with pytest.raises(StudioError):
        MusicDomain.read_corpus(tmp_path / "empty")
    with pytest.raises(StudioError, match="not found"):
        MusicDomain.read_corpus(tmp_path / "missing")


def test_priming_begins_with_the_primer(tmp_path: Path) -> None:
    primer = write_song(tmp_path / "primer.mid")
    settings = SampleSettings(prime_file=str(primer), bars=1)
    prime = DOMAIN.prime_ids(settings)
    assert prime == [DOMAIN.separator_id] + DOMAIN.encode(read_midi(primer))
    assert DOMAIN.prime_ids(SampleSettings()) == [DOMAIN.separator_id]
    assert [DOMAIN.token_text(i) for i in DOMAIN.prime_ids(SampleSettings(key="D dorian"))] == ["SEP", "KEY C major"]
    assert DOMAIN.prime_ids(SampleSettings(key="D dorian", prime_file=str(primer))) == prime
    continuation = [ON + 79, SHIFT1 + 11, OFF + 79, SHIFT1 + 23, BAR]
    assert DOMAIN.is_finished(continuation, settings)
    rendered = DOMAIN.render(prime + continuation, settings)
    shape = lambda notes: [(n.start, n.pitch, n.end) for n in notes]  # noqa: E731
    assert shape(rendered.piece.notes[:6]) == shape(read_midi(primer).notes)
    assert rendered.piece.notes[6] == Note(36, 79, 48, rendered.piece.notes[6].velocity)
    assert rendered.tempo == 90.0  # the primer's tempo when --tempo is not given
    assert DOMAIN.render(continuation, settings).piece == rendered.piece  # continuation alone
    (tmp_path / "broken.mid").write_bytes(b"garbage")
    with pytest.raises(StudioError, match="broken.mid"):
        DOMAIN.prime_ids(SampleSettings(prime_file=str(tmp_path / "broken.mid")))
    with pytest.raises(StudioError, match="not found"):
        DOMAIN.prime_ids(SampleSettings(prime_file=str(tmp_path / "nope.mid")))


def test_key_mask() -> None:
    assert DOMAIN.logits_mask(SampleSettings()) is None
    mask = DOMAIN.logits_mask(SampleSettings(key="C major"))
    assert mask.shape == (DOMAIN.vocab_size,) and mask.dtype == bool
    assert [bool(mask[ON + p]) for p in range(60, 72)] == [1, 0, 1, 0, 1, 1, 0, 1, 0, 1, 0, 1]
    assert mask[OFF + 61] and mask[BAR] and mask[SHIFT1] and mask[DOMAIN.separator_id]
    dorian = DOMAIN.logits_mask(SampleSettings(key="D dorian"))
    assert np.array_equal(dorian, mask)  # same pitch classes as C major
    f_sharp_minor = DOMAIN.logits_mask(SampleSettings(key="F#m"))
    assert f_sharp_minor[ON + 66] and f_sharp_minor[ON + 68] and not f_sharp_minor[ON + 65]
    assert DOMAIN.logits_mask(SampleSettings(key="Bb minor pentatonic"))[ON + 70]
    with pytest.raises(StudioError, match="dorian"):
        DOMAIN.logits_mask(SampleSettings(key="H major"))


def test_bar_stopping() -> None:
    two = SampleSettings(bars=2)
    program = DOMAIN.codec.program_offset
    fresh = [program, BAR, ON + 60, SHIFT1 + 47, OFF + 60, BAR, SHIFT1 + 47]
    assert not DOMAIN.is_finished(fresh, two)  # the opening bar marker completes nothing
    assert DOMAIN.is_finished(fresh + [BAR], two)
    assert not DOMAIN.is_finished(fresh + [BAR], SampleSettings())
    assert DOMAIN.is_finished([ON + 60, DOMAIN.separator_id], SampleSettings())
    rendered = DOMAIN.render([DOMAIN.separator_id] + fresh + [BAR], two)
    assert rendered.bars == 2 and rendered.seconds == pytest.approx(4.0)  # 8 beats at 120


def test_augment_transposes_every_piece_within_range() -> None:
    low = Piece((Note(0, 2, 12), Note(12, 5, 24)), key=(10, "minor"))
    high = Piece((Note(0, 60, 12, 100),))
    ids = DOMAIN.corpus_ids([Document("low", low), Document("high", high)])
    augmented = DOMAIN.augment(ids, 5)
    parts = np.split(augmented, np.flatnonzero(augmented == 0)[:-1] + 1)
    pieces = [DOMAIN.decode(p) for p in parts if p.size > 1]  # [SEP] alone opens the stream
    assert len(pieces) == 8 + 11  # the low piece cannot go down more than 2
    assert sorted(p.notes[0].pitch for p in pieces if len(p.notes) == 2) == list(range(8))
    assert all(p.key == ((p.notes[0].pitch + 8) % 12, "minor") for p in pieces if len(p.notes) == 2)
    assert sorted(p.notes[0].pitch for p in pieces if len(p.notes) == 1) == list(range(55, 66))
    assert np.array_equal(DOMAIN.augment(ids, 5), augmented)  # fixed order
    cut = DOMAIN.augment(ids[:-3], 1)  # the trainer's split may cut the last piece short
    # the cut piece is kept (and ended), at every shift; the opening separator is not copied
    assert cut.size == 3 * (ids.size - 3) + 1 and cut[0] == DOMAIN.separator_id
    assert np.array_equal(DOMAIN.corpus_ids([Document("low", low), Document("high", high)], transpose=5), augmented)


def test_config_round_trip_and_damage() -> None:
    config = json.loads(json.dumps(DOMAIN.to_config()))
    assert config["name"] == "music"
    again = MusicDomain.from_config(config)
    assert again.codec == DOMAIN.codec and again.vocab_size == DOMAIN.vocab_size
    small = MusicDomain.from_documents([], vocab_size=10_000, programs=False, velocity_bins=4)
    assert small.vocab_size == DOMAIN.vocab_size - 128 - 4
    assert MusicDomain.from_documents([], keys=False).vocab_size == DOMAIN.vocab_size - 24
    with pytest.raises(StudioError, match="damaged"):
        MusicDomain.from_config({**config, "tokens": config["tokens"][:-1]})


def test_render_mid_png_wav(tmp_path: Path, monkeypatch) -> None:
    piece = read_midi(write_song(tmp_path / "song.mid"))
    rendered = DOMAIN.render([0, *DOMAIN.encode(piece)], SampleSettings(tempo=100))
    for suffix in ("mid", "png", "wav"):
        rendered.save(tmp_path / f"x.{suffix}")
    assert mido.MidiFile(str(tmp_path / "x.mid")).tracks[0][0].tempo == mido.bpm2tempo(100)
    assert (tmp_path / "x.png").read_bytes()[:4] == b"\x89PNG"
    with wave.open(str(tmp_path / "x.wav")) as audio:
        assert audio.getnframes() / audio.getframerate() >= rendered.seconds
    monkeypatch.setattr(render_module.shutil, "which", lambda name: None)  # no fluidsynth
    rendered.save(tmp_path / "fallback.wav")
    rendered.save(tmp_path / "fallback2.wav")
    assert (tmp_path / "fallback.wav").read_bytes() == (tmp_path / "fallback2.wav").read_bytes()
    with wave.open(str(tmp_path / "fallback.wav")) as audio:
        assert audio.getframerate() == render_module.FALLBACK_SAMPLE_RATE and audio.getnframes() > 0
    with pytest.raises(StudioError, match="mid"):
        rendered.save(tmp_path / "x.mp3")


def test_sampling_path_imports_without_torch_or_music21() -> None:
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import studio.domains.music, studio.music.render, studio.music.metrics\n"
        "assert 'music21' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_score_files_keep_pickups_keys_and_distinct_tied_pitches(tmp_path: Path) -> None:
    (tmp_path / "tune.abc").write_text("X:1\nT:Test\nM:2/4\nL:1/8\nK:Gm\nd | G2 A-B | c4 |]\n")
    [document] = MusicDomain.read_corpus(tmp_path)
    piece = document.content
    assert [(n.start, n.pitch, n.end) for n in piece.notes] == [
        (18, 74, 24),
        (24, 67, 36),
        (36, 69, 42),
        (42, 70, 48),
        (48, 72, 72),
    ]
    assert piece.key == (7, "minor") and piece.time_signatures == ((0, 2, 4),)
    assert piece.bar_lines() == [0, 24, 48, 72]


@pytest.mark.parametrize(
    "content, says",
    [
        (b"", "it is empty (0 bytes)"),
        (b"Dear Ada,\nthis is a letter, not a song.\n", "it is not a MIDI file"),
        (b"MThd\x00\x00\x00\x06\x00\x01\x00\x01\x01\xe0MTrk\x00\x00\x00\x40\x00\x90", "it is a damaged MIDI file"),
    ],
)
def test_unreadable_midi_is_told_by_its_own_name(tmp_path: Path, content: bytes, says: str) -> None:
    """A 0-byte .mid gave "(EOFError: )"; a text file renamed .mid gave mido's "MThd not
    found", the temp path, and advice to give MusicXML, ABC or Humdrum instead."""
    folder = tmp_path / "uploads" / "8706a1"
    folder.mkdir(parents=True)
    path = folder / "my theme.mid"
    path.write_bytes(content)
    with pytest.raises(StudioError) as caught:
        DOMAIN.prime_ids(SampleSettings(prime_file=str(path)))
    message = str(caught.value)
    assert message.startswith(f"cannot read my theme.mid: {says}") and str(folder) not in message
    assert "Error" not in message and "()" not in message and "MThd" not in message
    assert not any(other in message for other in ("MusicXML", "ABC", "Humdrum"))
    assert "give" in message or "export" in message  # what to do


def test_unreadable_midi_on_the_command_line(tmp_path: Path) -> None:
    (tmp_path / "empty.mid").write_bytes(b"")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "studio",
            "sample",
            "--model",
            str(ROOT / "export" / "songs"),
            "--prime-midi",
            "empty.mid",
            "--bars",
            "1",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr == ("error: cannot read empty.mid: it is empty (0 bytes); give a MIDI file with notes in it\n")


def test_piano_roll_caption_stays_clear_of_a_viewer_toolbar(tmp_path: Path) -> None:
    """The title sat at the top, under the web image box's label and toolbar."""
    from PIL import Image

    piece = read_midi(write_song(tmp_path / "song.mid"))
    rendered = DOMAIN.render([0, *DOMAIN.encode(piece)], SampleSettings(tempo=100))
    figure = render_module.piano_roll_figure(rendered.piece, rendered.tempo)
    figure.canvas.draw()
    [caption] = figure.texts
    assert caption.get_text() == rendered.text
    caption_box = caption.get_window_extent()
    axes_box = figure.axes[0].get_tightbbox()  # the axes with their tick and axis labels
    assert caption_box.y1 <= axes_box.y0  # below the beat axis, clear of the plot
    image = np.asarray(Image.open(rendered.save(tmp_path / "roll.png")).convert("L"))
    top = image[: int(image.shape[0] * render_module.CLEAR_TOP)]
    assert (top == 255).all()  # nothing under a viewer's label and toolbar
    bottom = image[int(image.shape[0] * 0.92) :]
    assert (bottom < 128).any()  # the caption's ink


def test_a_piece_short_of_its_bars_says_why() -> None:
    program = DOMAIN.codec.program_offset
    ids = [DOMAIN.separator_id, program, BAR, ON + 60, SHIFT1 + 47, OFF + 60, BAR]
    rendered = DOMAIN.render(ids, SampleSettings(bars=4, length=7))
    assert rendered.text.endswith("(stopped by the 7-event length cap after 1 of 4 bars)")
    assert "stopped" not in DOMAIN.render(ids, SampleSettings(bars=1, length=7)).text
