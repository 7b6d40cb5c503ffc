"""Music end to end through the CLI: train on three tiny MIDI files, export, sample a MIDI
that mido and music21 both read, byte-identical for a fixed seed; then `studio eval`."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import mido
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent


def studio(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MPLBACKEND": "Agg"}
    result = subprocess.run(
        [sys.executable, "-m", "studio", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result


def write_tune(path: Path, root: int) -> None:
    """Eight bars of a four-voice chord progression with a moving melody."""
    track = mido.MidiTrack([mido.MetaMessage("time_signature", numerator=4, denominator=4)])
    for bar in range(8):
        chord = [root + (0, 5, 7, 0)[bar % 4] + step for step in (0, 4, 7)]
        for pitch in chord:
            track.append(mido.Message("note_on", note=pitch, velocity=70, time=0))
        for beat in range(4):
            melody = root + 12 + (0, 2, 4, 5, 7, 5, 4, 2)[(bar + beat) % 8]
            track.append(mido.Message("note_on", note=melody, velocity=90, time=0))
            track.append(mido.Message("note_off", note=melody, velocity=0, time=480))
        for pitch in chord:
            track.append(mido.Message("note_off", note=pitch, velocity=0, time=0))
    midi = mido.MidiFile(ticks_per_beat=480)
    midi.tracks.append(track)
    midi.save(str(path))


def test_train_sample_eval(tmp_path: Path) -> None:
    songs = tmp_path / "songs"
    songs.mkdir()
    for index, root in enumerate((48, 50, 53)):
        write_tune(songs / f"tune{index}.mid", root)
    bundle = tmp_path / "export" / "tunes"
    studio(
        "train",
        "songs",
        "--domain",
        "music",
        "--max-steps",
        "5",
        "--hidden-size",
        "32",
        "--layers",
        "1",
        "--embedding-size",
        "16",
        "--batch-size",
        "4",
        "--seq-len",
        "32",
        "--eval-every",
        "5",
        "--lr",
        "1e-2",
        "--warmup-steps",
        "1",
        "--transpose",
        "2",
        "--runs-dir",
        "runs",
        "--out",
        str(bundle),
        "--quiet",
        cwd=tmp_path,
    )
    card = json.loads((bundle / "card.json").read_text())
    assert card["domain"]["name"] == "music"

    sample = [
        "sample",
        "--model",
        str(bundle),
        "--bars",
        "2",
        "--length",
        "300",
        "--seed",
        "3",
        "--tempo",
        "100",
        "--key",
        "C major",
    ]
    studio(*sample, "--out", "a.mid", "--piano-roll", cwd=tmp_path)
    studio(*sample, "--out", "b.mid", cwd=tmp_path)
    assert (tmp_path / "a.mid").read_bytes() == (tmp_path / "b.mid").read_bytes()
    with Image.open(tmp_path / "a.png") as roll:  # two bars of 4/4: the narrowest figure
        assert roll.format == "PNG" and roll.size == (600, 400)
    midi = mido.MidiFile(str(tmp_path / "a.mid"))
    assert midi.tracks[0][0].tempo == mido.bpm2tempo(100)
    from music21 import converter

    score = converter.parse(str(tmp_path / "a.mid"))
    assert score.metronomeMarkBoundaries()[0][2].number == 100
    in_scale = {0, 2, 4, 5, 7, 9, 11}
    assert all(pitch.pitchClass in in_scale for pitch in score.pitches)

    # a model trained for 5 steps rarely moves time on, and its pieces may not end before
    # their bars: a few short ones keep this smoke test quick
    report = json.loads(
        studio("eval", str(bundle), "songs", "--json", "--samples", "10", "--bars", "4", cwd=tmp_path).stdout
    )
    assert report["pieces"] == 3
    # five steps at lr 1e-2 already beat a uniform guess over the event vocabulary
    assert 0 < report["nats_per_token"] < math.log(card["model"]["vocab_size"]) - 0.3
    assert abs(report["bits_per_token"] - report["nats_per_token"] / math.log(2)) < 1e-4
    assert {"polyphony", "corpus_polyphony", "groove_consistency_within_one_std"} <= set(report)
