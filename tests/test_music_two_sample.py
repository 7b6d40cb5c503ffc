"""The classifier two-sample test (studio.music.two_sample): chance between two halves of
the corpus, near-certain against a generator of random notes, a logistic regression that
reaches its optimum, features checked by hand, and the keys `studio eval` reports."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from studio.domains.base import Document
from studio.domains.music import MusicDomain
from studio.music import two_sample
from studio.music.events import Note, Piece
from studio.music.files import read_pieces

ROOT = Path(__file__).resolve().parent.parent
CHORALES = sorted((ROOT / "corpora" / "songs" / "bach").glob("*.mid"))[:160]

needs_chorales = pytest.mark.skipif(len(CHORALES) < 160, reason="needs corpora/songs/bach")


@pytest.fixture(scope="module")
def chorale_features() -> np.ndarray:
    return two_sample.feature_matrix([read_pieces(path)[0] for path in CHORALES])


def random_piece(rng: np.random.Generator, beats: int = 48) -> Piece:
    """A broken generator: four voices of random pitches at random times and lengths."""
    notes = []
    for _ in range(4):
        time = 0
        while time < beats * 12:
            length = int(rng.integers(1, 30))
            notes.append(Note(time, int(rng.integers(40, 80)), time + length))
            time += length + int(rng.integers(0, 6))
    return Piece(tuple(sorted(notes)), length=beats * 12)


@needs_chorales
def test_two_halves_of_the_corpus_are_indistinguishable(chorale_features) -> None:
    order = np.random.default_rng(7).permutation(len(chorale_features))
    half = len(order) // 2
    for seed in range(3):
        result = two_sample.two_sample_test(chorale_features[order[:half]], chorale_features[order[half:]], seed=seed)
        assert result.pieces == half
        assert 0.35 <= result.accuracy <= 0.65, (seed, result)


@needs_chorales
def test_random_notes_are_told_apart(chorale_features) -> None:
    rng = np.random.default_rng(0)
    broken = two_sample.feature_matrix([random_piece(rng) for _ in range(80)])
    result = two_sample.two_sample_test(broken, chorale_features, seed=1)
    assert result.accuracy >= 0.95 and result.pieces == 80
    top = result.features[0]
    assert abs(top["effect"]) > 2 and top["name"] in two_sample.FEATURES
    column = two_sample.FEATURES.index(top["name"])
    assert top["generated"] == pytest.approx(broken[:, column].mean(), abs=1e-3)


def test_shifted_features_are_separated_and_named() -> None:
    """Two Gaussian clouds that differ only in one column: the classifier finds it and
    the report names that column first."""
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(60, 5)), rng.normal(size=(90, 5))
    a[:, 2] += 3.0
    names = ("v", "w", "x", "y", "z")
    result = two_sample.two_sample_test(a, b, names=names, top=2)
    assert result.accuracy > 0.9 and result.pieces == 60
    assert result.features[0]["name"] == "x" and result.features[0]["effect"] > 2
    same = two_sample.two_sample_test(rng.normal(size=(60, 5)), rng.normal(size=(60, 5)), names=names)
    assert 0.3 <= same.accuracy <= 0.7


def test_logistic_regression_reaches_its_optimum() -> None:
    """Newton's answer zeroes the regularised gradient, computed here the naive way."""
    rng = np.random.default_rng(5)
    features = rng.normal(size=(80, 4))
    labels = (features[:, 0] + 0.5 * rng.normal(size=80) > 0).astype(float)
    weights = two_sample.fit_logistic(features, labels, l2=1.0)
    gradient = np.zeros(5)
    for row, label in zip(features, labels):
        x = np.append(row, 1.0)
        gradient += (1 / (1 + np.exp(-x @ weights)) - label) * x
    gradient[:4] += weights[:4]
    assert np.abs(gradient).max() < 1e-6
    assert np.mean(two_sample.predict_logistic(weights, features) == labels) > 0.8


def test_too_few_pieces_is_an_error() -> None:
    with pytest.raises(ValueError, match="at least 5 pieces"):
        two_sample.two_sample_test(np.zeros((3, 2)), np.zeros((10, 2)), names=("a", "b"))


def test_features_of_a_hand_made_piece() -> None:
    """One bar of 4/4 (12 ticks a beat): C-E-G crotchets under a melody, then a rest."""
    notes = (
        Note(0, 48, 36),  # bass C, three beats
        Note(0, 64, 12),  # E, G: a C major triad on the downbeat
        Note(0, 67, 12),
        Note(12, 65, 18),  # F, an eighth
        Note(18, 67, 24),  # G, an eighth
        Note(24, 72, 36),  # C, a beat
    )
    piece = Piece(notes, length=48)
    values = dict(zip(two_sample.FEATURES, two_sample.piece_features(piece, beats=4)))
    assert values["onsets_on_beat"] == pytest.approx(3 / 4)  # onsets at 0, 12, 18, 24
    assert values["onsets_on_bar"] == pytest.approx(1 / 4)
    assert values["onsets_off_eighth"] == 0
    assert values["empty_beats"] == pytest.approx(1 / 4)  # the fourth beat is silent
    assert values["pitch_range"] == 24
    assert values["melody_interval"] == pytest.approx((2 + 2 + 5) / 3)  # G F G C
    assert values["triads"] == 1.0
    assert values["voices_at_onsets"] == pytest.approx((3 + 2 + 2 + 2) / 4)
    assert values["duration_mean"] == pytest.approx((3 + 1 + 1 + 0.5 + 0.5 + 1) / 6)
    assert values["length_used"] == 1.0
    empty = dict(zip(two_sample.FEATURES, two_sample.piece_features(Piece((), length=48), beats=4)))
    assert empty["notes_per_beat"] == 0 and empty["empty_beats"] == 1.0 and np.isnan(empty["pitch_mean"])


def test_music_domain_reports_the_issue_keys() -> None:
    rng = np.random.default_rng(2)
    outputs = [SimpleNamespace(piece=random_piece(rng, 8)) for _ in range(12)]
    documents = [Document(f"d{i}", random_piece(rng, 8)) for i in range(15)]
    report = MusicDomain().two_sample_report(outputs, documents, length=8, seed=0)
    assert {"two_sample_accuracy", "two_sample_std", "two_sample_features"} <= set(report)
    assert 0 <= report["two_sample_accuracy"] <= 1 and report["two_sample_std"] >= 0
    assert report["two_sample_pieces"] == 12 and report["two_sample_beats"] == 8
    assert {"name", "generated", "corpus", "effect"} == set(report["two_sample_features"][0])


def test_repeated_runs_average_and_rank_over_all_runs() -> None:
    """Each run is its own test (seed + r); the accuracy is their mean, with a standard
    error from their spread; the features are ranked over every run's pieces."""
    rng = np.random.default_rng(5)
    corpus = [bars_piece(4, 12) for _ in range(20)]
    broken = [[random_piece(rng, 48) for _ in range(20)] for _ in range(3)]
    runs = [(generated, corpus) for generated in broken]
    combined = two_sample.compare_runs(runs, beats=48, seed=4)
    alone = [two_sample.compare_pieces(g, c, beats=48, seed=4 + r) for r, (g, c) in enumerate(runs)]
    assert combined.accuracies == tuple(result.accuracy for result in alone)
    assert combined.accuracy == pytest.approx(np.mean([result.accuracy for result in alone]))
    assert combined.standard_error == pytest.approx(np.std(combined.accuracies, ddof=1) / np.sqrt(3))
    assert combined.std == pytest.approx(np.mean([result.std for result in alone]))
    report = combined.to_json()
    assert report["two_sample_runs"] == 3 and len(report["two_sample_run_accuracies"]) == 3
    assert report["two_sample_accuracy"] > 0.9  # random notes against a steady crotchet line
    assert "two_sample_standard_error" not in two_sample.compare_runs(runs[:1], beats=48).to_json()
    with pytest.raises(ValueError):
        two_sample.compare_runs([], beats=48)


@needs_chorales
def test_reference_accuracy_is_chance_for_pieces_alike_and_high_for_pieces_apart() -> None:
    """``reference``: the training pieces against the held-out ones.  Chorales against
    other chorales are chance; random notes as the 'training pieces' are told apart."""
    rng = np.random.default_rng(3)
    pieces = [read_pieces(path)[0] for path in CHORALES[:120]]
    held_out = [Document(str(i), piece) for i, piece in enumerate(pieces[:40])]
    trained_on = [Document(str(i), piece) for i, piece in enumerate(pieces[40:])]
    outputs = [SimpleNamespace(piece=random_piece(rng)) for _ in range(40)]
    report = MusicDomain().two_sample_report(
        outputs, held_out, length=48, seed=0, more_runs=[(outputs, held_out)], reference=trained_on
    )
    assert report["two_sample_accuracy"] > 0.9 and report["two_sample_runs"] == 2
    assert 0.3 <= report["two_sample_reference_accuracy"] <= 0.7
    broken = [Document(str(i), random_piece(rng)) for i in range(40)]
    apart = MusicDomain().two_sample_report(outputs, held_out, length=48, seed=0, reference=broken)
    assert apart["two_sample_reference_accuracy"] > 0.9
    assert "two_sample_reference_accuracy" not in MusicDomain().two_sample_report(outputs, held_out, length=48)


def test_length_seeds_differ_between_runs_and_lengths() -> None:
    """Run 0's 9-bar batch and run 1's 8-bar batch must not share their draws."""
    from studio.evaluation import length_seed

    seeds = {length_seed(seed, length) for seed in range(20) for length in range(1, 20)}
    assert len(seeds) == 20 * 19 and length_seed(0, 9) == length_seed(0, 9)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--two-sample"], "--two-sample compares generated music with a corpus; tiny is a chars model"),
        (["--two-sample", "--n", "3"], "--two-sample needs at least 10 pieces: give --n 10 or more"),
        (["--match-lengths"], "--match-lengths goes with --two-sample: add --two-sample"),
        (["--two-sample-runs", "3"], "--two-sample-runs goes with --two-sample: add --two-sample"),
        (["--two-sample", "--two-sample-runs", "0"], "--two-sample-runs must be 1 to 100 (got 0)"),
    ],
)
def test_two_sample_bad_input_is_one_line(tiny_bundle, tiny_corpus, studio_env, args, message) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "studio", "eval", "tiny", str(tiny_corpus), *args],
        env=studio_env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 1 and message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def bars_piece(numerator: int, bars: int) -> Piece:
    bar = numerator * 12
    notes = tuple(Note(i * bar, 60, i * bar + 12) for i in range(bars))
    return Piece(notes, time_signatures=((0, numerator, 4),), length=bars * bar)


def test_matched_lengths_are_the_bars_within_the_window() -> None:
    documents = [Document(str(i), bars_piece(n, b)) for i, (n, b) in enumerate([(4, 9), (4, 20), (3, 20), (3, 2)])]
    assert MusicDomain().matched_lengths(documents, 48) == [9, 12, 16, 2]
    assert MusicDomain().matched_lengths(documents, 6) == [2, 2, 2, 2]


SONGS = ROOT / "export" / "songs"


@pytest.mark.skipif(not (SONGS / "card.json").is_file() or not CHORALES, reason="needs export/songs and the chorales")
def test_matched_samples_are_as_long_as_their_corpus_pieces() -> None:
    """A third of the chorales end before 48 beats; a sample asked for 16 bars never does."""
    from studio.api import load
    from studio.evaluation import comparison_samples

    loaded = load(str(SONGS), "cpu", "fp32")
    documents = [Document(str(path), read_pieces(path)[0]) for path in CHORALES[:40]]
    outputs, chosen = comparison_samples(
        loaded.runtime, loaded.domain, documents, samples=12, bars=16, seed=0, match_lengths=True, window=48
    )
    wanted = loaded.domain.matched_lengths(chosen, 48)
    assert len(outputs) == len(chosen) == 12 and len(set(wanted)) > 1  # several lengths, a batch each
    assert {d.path for d in chosen} <= {d.path for d in documents}
    assert [output.bars for output in outputs] == wanted
    again, _ = comparison_samples(
        loaded.runtime, loaded.domain, documents, samples=12, bars=16, seed=0, match_lengths=True, window=48
    )
    assert [o.piece for o in again] == [o.piece for o in outputs]  # seeded
    plain, all_documents = comparison_samples(loaded.runtime, loaded.domain, documents, samples=5, bars=3, seed=0)
    assert all_documents is documents and [output.bars for output in plain] == [3] * 5


@pytest.mark.skipif(not (SONGS / "card.json").is_file() or not CHORALES, reason="needs export/songs and the chorales")
def test_bars_zero_lets_the_model_end_each_piece() -> None:
    """`--bars 0`: no bar count is imposed; each piece ends where the model writes the
    separator, so the lengths vary as the corpus's do, and the report says so."""
    from studio.api import evaluate, load
    from studio.evaluation import MODEL_ENDS_CAP_BARS, comparison_samples

    loaded = load(str(SONGS), "cpu", "int8")
    documents = [Document(str(path), read_pieces(path)[0]) for path in CHORALES[:20]]
    outputs, _ = comparison_samples(loaded.runtime, loaded.domain, documents, samples=12, bars=0, seed=0)
    lengths = [output.bars for output in outputs]
    assert len(set(lengths)) > 3 and max(lengths) < MODEL_ENDS_CAP_BARS, lengths
    report = evaluate(str(SONGS), str(CHORALES[0].parent), split="val", samples=10, bars=0, two_sample=True)
    assert report["bars"] == "model" and 0 <= report["two_sample_accuracy"] <= 1


def test_negative_bars_is_one_line(tiny_bundle, tiny_corpus, studio_env) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "studio", "eval", "tiny", str(tiny_corpus), "--bars", "-1"],
        env=studio_env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 1 and "--bars must be 0 (the model ends each piece) or more" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
