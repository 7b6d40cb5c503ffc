"""`--metre`: every bar in the time signature asked for (after an optional pickup),
named as asked, refused with one line when the model's corpus never keeps such bars or
the primer is in another metre; `--match-lengths` asks each sample for its partner's."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from studio.api import load, sample
from studio.domains.base import Document
from studio.domains.music import MusicDomain
from studio.errors import StudioError
from studio.music.events import Note, Piece, time_signature_text
from studio.sampling.settings import SampleSettings, command_line

EXPORT = Path(__file__).resolve().parent.parent / "export"
needs = pytest.mark.skipif(
    not all((EXPORT / name / "card.json").is_file() for name in ("songs", "folk")), reason="needs export/songs and folk"
)


def test_time_signatures_are_read_strictly() -> None:
    assert time_signature_text("6/8") == (6, 8) and time_signature_text(" 12/16 ") == (12, 16)
    for bad in ("3/5", "0/4", "33/4", "3/", "/4", "three/4", "3-4", "3/4/4", "-3/4"):
        assert time_signature_text(bad) is None, bad
    with pytest.raises(StudioError, match="metre must be a time signature such as 4/4"):
        SampleSettings(metre="3/5")


@needs
@pytest.mark.parametrize("model, metre, bar", [("songs", "3/4", 36), ("folk", "6/8", 36), ("folk", "2/4", 24)])
def test_every_bar_after_the_pickup_keeps_the_metre(model, metre, bar) -> None:
    for seed in range(4):
        [piece] = sample(model, metre=metre, bars=5, seed=seed, temperature=1.2)
        lines = piece.output.piece.bar_lines()
        lengths = [b - a for a, b in zip(lines, lines[1:])]
        assert len(lengths) >= 5 and lengths[0] <= bar and set(lengths[1:]) == {bar}, (seed, lengths)
        assert piece.output.piece.time_signatures[0][1:] == time_signature_text(metre)


@needs
def test_one_bar_length_two_names() -> None:
    """3/4 and 6/8 are the same bars: the notes are the same, the file says what was asked."""
    [waltz] = sample("folk", metre="3/4", bars=4, seed=7)
    [jig] = sample("folk", metre="6/8", bars=4, seed=7)
    assert waltz.output.piece.notes == jig.output.piece.notes
    assert waltz.output.piece.time_signatures[0][1:] == (3, 4) and jig.output.piece.time_signatures[0][1:] == (6, 8)
    assert "--metre 3/4" in command_line(SampleSettings(model="folk", metre="3/4", bars=4, seed=7))


@needs
def test_metres_the_corpus_never_keeps_are_refused() -> None:
    with pytest.raises(StudioError, match=r"--metre 5/4: this model's corpus keeps to bars of 3/4, 4/4"):
        sample("songs", metre="5/4", bars=2)
    with pytest.raises(StudioError, match="a bar of it is not a whole number of grid ticks"):
        sample("folk", metre="7/32", bars=2)


@needs
def test_a_primer_keeps_its_own_metre(tmp_path) -> None:
    [piece] = sample("songs", metre="3/4", bars=3, seed=1)
    primer = tmp_path / "waltz.mid"
    piece.output.save(primer)
    [continued] = sample("songs", prime_file=str(primer), metre="3/4", bars=2, seed=2)
    lines = continued.output.piece.bar_lines()
    assert {b - a for a, b in zip(lines[1:], lines[2:])} == {36}
    with pytest.raises(StudioError, match=r"--metre 4/4 does not fit the primer, whose bars are 3 beats long"):
        sample("songs", prime_file=str(primer), metre="4/4", bars=2)


@needs
def test_bad_metre_on_the_command_line_is_one_line(tmp_path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "studio",
            "sample",
            "--model",
            "songs",
            "--metre",
            "5/4",
            "--bars",
            "2",
            "--out",
            str(tmp_path / "x.mid"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "--metre 5/4" in result.stderr
    assert not (tmp_path / "x.mid").exists()


def waltz(bars: int) -> Piece:
    notes = tuple(Note(i * 36, 60, i * 36 + 12) for i in range(bars))
    return Piece(notes, time_signatures=((0, 3, 4),), length=bars * 36)


@needs
def test_matched_samples_take_their_partners_metre() -> None:
    """`--match-lengths`: a 3/4 chorale's partner is in 3/4; a metre the model's corpus
    never keeps (5/4) is left to the model."""
    from studio.evaluation import comparison_samples, length_seed

    loaded = load(str(EXPORT / "songs"), "cpu", "int8")
    odd = Piece((Note(0, 60, 60),), time_signatures=((0, 5, 4),), length=60)
    documents = [Document("a", waltz(6)), Document("b", Piece((Note(0, 60, 48),), length=48 * 4)), Document("c", odd)]
    assert loaded.domain.matched_metres(documents) == ["3/4", "4/4", None]
    assert MusicDomain().matched_metres(documents) == ["3/4", "4/4", "5/4"]  # no corpus metres: any
    outputs, chosen = comparison_samples(
        loaded.runtime, loaded.domain, documents[:2], samples=2, bars=16, seed=0, match_lengths=True
    )
    for output, document in zip(outputs, chosen):
        lines = output.piece.bar_lines()
        wanted = document.content.bar_lines()
        assert lines[-1] - lines[-2] == wanted[-1] - wanted[-2]
    assert length_seed(0, 6, "3/4") != length_seed(0, 6, "6/8") != length_seed(0, 6)
