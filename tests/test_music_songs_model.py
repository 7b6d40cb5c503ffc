"""The shipped ``songs`` model as a musician meets it: ``--bars N`` gives N bars (many
seeds, with and without ``--key``, and large N), a primer is continued by N new bars,
every bar keeps the piece's metre, and the written MIDI says the same."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from itertools import pairwise
from pathlib import Path

import mido
import pytest
from typer.testing import CliRunner

from studio.api import sample
from studio.cli import app
from studio.music.files import read_midi

ROOT = Path(__file__).resolve().parent.parent
SONGS = ROOT / "export" / "songs"
CHORALES = ROOT / "corpora" / "songs" / "bach"

pytestmark = pytest.mark.skipif(not (SONGS / "card.json").is_file(), reason="needs export/songs")


def bar_lengths(path: Path) -> list[int]:
    return [b - a for a, b in pairwise(read_midi(path).bar_lines())]


def metres(path: Path) -> list[tuple[int, int]]:
    return [(m.numerator, m.denominator) for m in mido.MidiFile(str(path)).tracks[0] if m.type == "time_signature"]


@pytest.mark.parametrize("key", [None, "Bb mixolydian"])
def test_bars_means_bars_for_many_seeds(key, tmp_path: Path) -> None:
    for seed in range(1, 11):
        [piece] = sample(str(SONGS), seed=seed, bars=8, key=key, tempo=120)
        assert piece.output.bars == 8, (seed, piece.text)
        assert piece.text.startswith("8 bars,") and "stopped" not in piece.text
        written = piece.output.save(tmp_path / f"{seed}.mid")
        lengths = bar_lengths(written)
        assert len(lengths) == 8
        assert len(set(lengths[1:])) == 1, (seed, lengths)  # one metre after the first bar
        metre = metres(written)[-1]
        assert f", {metre[0]}/{metre[1]}," in piece.text  # the label is the MIDI's metre


def test_the_issue_commands(tmp_path: Path) -> None:
    """`studio sample --model songs --seed 5 --bars 8 --tempo 120 --out a.mid` wrote 4
    bars; the default Compose piece (seed 3, 8 bars) was labelled 3/4."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "studio", "sample", "--model", str(SONGS), "--bars", "8"]
    result = subprocess.run(
        command + ["--seed", "5", "--tempo", "120", "--out", "a.mid"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("8 bars,") and len(bar_lengths(tmp_path / "a.mid")) == 8
    [piece] = sample(str(SONGS), seed=3, bars=8, tempo=110)
    written = piece.output.save(tmp_path / "compose.mid")
    assert metres(written) == [(4, 4)] and ", 4/4," in piece.text
    assert set(bar_lengths(written)) == {48}


def test_many_bars() -> None:
    [piece] = sample(str(SONGS), seed=3, bars=64)
    assert piece.output.bars == 64 and len(set(_lengths(piece)[1:])) == 1


def _lengths(piece) -> list[int]:
    return [b - a for a, b in pairwise(piece.output.piece.bar_lines())]


def test_the_length_cap_is_said() -> None:
    [piece] = sample(str(SONGS), seed=3, bars=8, length=100)
    assert "stopped by the 100-event length cap after" in piece.text and "of 8 bars" in piece.text


@pytest.mark.parametrize("seed", [1, 3])
def test_a_primer_is_continued_by_new_bars(seed: int, tmp_path: Path) -> None:
    """bwv290 with --bars 8 returned bwv290 itself: 9 bars, 147 notes, no new note."""
    primer_path = CHORALES / "bwv290.mid"
    primer = read_midi(primer_path)
    primer_bars = len(primer.bar_lines()) - 1
    [piece] = sample(str(SONGS), seed=seed, bars=8, prime_file=str(primer_path))
    written = read_midi(piece.output.save(tmp_path / "p.mid"))
    assert len(written.bar_lines()) - 1 == primer_bars + 8

    def shape(notes):
        return [(n.start, n.pitch, n.end) for n in notes]

    assert shape(written.notes[: len(primer.notes)]) == shape(primer.notes)  # the primer, first
    new = [note for note in written.notes if note.start >= primer.end]
    assert len(new) >= 8  # every new bar has something in it; none had before
    assert len(set(bar_lengths(tmp_path / "p.mid"))) == 1  # the primer's 4/4 goes on


def test_bars_help_says_what_counts_and_the_cap() -> None:
    result = CliRunner().invoke(app, ["sample", "--help"], env={"COLUMNS": "200", "NO_COLOR": "1"})
    text = re.sub(r"[\s│]+", " ", result.output)
    assert "with --prime-midi, new bars after the primer" in text
    assert "20,000" in text and "--length" in text
