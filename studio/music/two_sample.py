"""A classifier two-sample test: can a simple classifier tell generated pieces from real ones?

Averages such as the MusPy metrics (:mod:`studio.music.metrics`) can match while every
single piece still gives itself away.  The test asks a sharper question: cut both sets
to the same length, describe each piece by the per-piece features below, and train an
L2-regularised logistic regression (Newton's method, numpy only) to tell the two sets
apart under stratified k-fold cross-validation.  Its held-out accuracy reads:

* about **0.5**: the classifier does no better than a coin, the sets look alike on every
  feature (and every linear mix of them);
* **1.0**: every piece is recognised; the features that separate the sets most
  (:attr:`TwoSampleResult.features`, ranked by standardised mean difference) say why.

The features of one piece, over its first ``beats`` beats (a beat is a quarter note;
notes are cut at the window's end; rates are per beat, so a piece shorter than the
window is measured over its own length):

rhythm and metre
    ``onsets_on_beat`` fraction of onset times on a beat; ``onsets_on_bar`` on a bar line;
    ``onsets_off_eighth`` off the eighth-note grid; ``onsets_per_beat`` onset times per
    beat; ``syncopation`` fraction of notes that start off the beat and sound across the
    next one; ``bar_groove`` 1 minus the mean Hamming distance between the onset patterns
    of neighbouring bars (per tick of a bar).
duration
    ``duration_mean`` and ``duration_sd`` (beats); ``durations_off_eighth`` fraction of
    notes whose length is not a whole number of eighths; ``duration_entropy`` (bits) of
    the note lengths.
texture
    ``notes_per_beat``; ``polyphony`` mean sounding pitches where any sound;
    ``empty_beats`` fraction of beats with no sounding note; ``length_used`` the piece's
    length inside the window over the window's.
pitch
    ``pitch_mean``, ``pitch_sd``, ``pitch_range`` (semitones); ``pitch_class_entropy``
    (bits); ``scale_consistency`` largest fraction of notes in one major or minor scale.
interval (the top line: the highest pitch sounding at each onset time; the bass line:
    the lowest)
    ``melody_interval`` mean absolute step (semitones); ``melody_steps`` fraction of moves
    of at most 2 semitones; ``melody_leaps`` fraction larger than a fifth;
    ``bass_interval`` mean absolute step of the bass.
harmony (the pitches sounding at each onset time)
    ``dissonance`` fraction of the pitch pairs a second, tritone or seventh apart (mod
    12); ``triads`` fraction of onset times with three or more pitch classes that spell a
    major or minor triad; ``voices_at_onsets`` mean sounding pitches at onset times.
voice-leading (the outer voices, between neighbouring onset times where both move)
    ``contrary_motion`` fraction that move in opposite directions; ``parallel_perfect``
    fraction that move in the same direction from one fifth or octave (mod 12) to another.

A feature undefined for a piece (no notes, a single voice) counts as the feature's
median over both sets, so it separates nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from studio.music.events import Piece

FEATURES = (
    "onsets_on_beat",
    "onsets_on_bar",
    "onsets_off_eighth",
    "onsets_per_beat",
    "syncopation",
    "bar_groove",
    "duration_mean",
    "duration_sd",
    "durations_off_eighth",
    "duration_entropy",
    "notes_per_beat",
    "polyphony",
    "empty_beats",
    "length_used",
    "pitch_mean",
    "pitch_sd",
    "pitch_range",
    "pitch_class_entropy",
    "scale_consistency",
    "melody_interval",
    "melody_steps",
    "melody_leaps",
    "bass_interval",
    "dissonance",
    "triads",
    "voices_at_onsets",
    "contrary_motion",
    "parallel_perfect",
)
DEFAULT_BEATS = 48  # the measure: 12 bars of 4/4, 16 of 3/4 or 6/8
DEFAULT_FOLDS = 5
DEFAULT_REPEATS = 4  # cross-validation reshuffled this many times: a steadier mean
DEFAULT_L2 = 1.0
TOP_FEATURES = 6
NEWTON_STEPS = 25
_DISSONANT = np.array([0, 1, 1, 0, 0, 0, 1, 0, 0, 0, 1, 1], dtype=bool)  # 2nds, tritone, 7ths
_MAJOR = np.array([1, 0, 1, 0, 1, 1, 0, 1, 0, 1, 0, 1], dtype=bool)
_MINOR = np.array([1, 0, 1, 1, 0, 1, 0, 1, 1, 0, 1, 0], dtype=bool)
_TRIADS = frozenset(
    frozenset(((root + a) % 12, (root + b) % 12, (root + 7) % 12)) for root in range(12) for a, b in ((0, 4), (0, 3))
)


def _fraction(flags: np.ndarray) -> float:
    return float(np.mean(flags)) if flags.size else np.nan


def piece_features(piece: Piece, beats: int = DEFAULT_BEATS) -> np.ndarray:
    """float64 [len(FEATURES)]: the features of ``piece`` over its first ``beats`` beats
    (see the module docstring); NaN where one is undefined."""
    tpb = piece.ticks_per_beat
    eighth = max(1, tpb // 2)
    window = beats * tpb
    notes = [n for n in piece.notes if n.start < window]
    values = dict.fromkeys(FEATURES, np.nan)
    span = max(1, min(window, piece.end))  # the window, or the piece when it is shorter
    values["length_used"] = span / window
    if not notes:
        values.update(notes_per_beat=0.0, onsets_per_beat=0.0, empty_beats=1.0)
        return np.array([values[name] for name in FEATURES])
    starts = np.array([n.start for n in notes], dtype=np.int64)
    ends = np.minimum(np.array([n.end for n in notes], dtype=np.int64), window)
    pitches = np.array([n.pitch for n in notes], dtype=np.int64)
    lengths = ends - starts
    span_beats = span / tpb
    bars = np.array([line for line in piece.bar_lines() if line < window], dtype=np.int64)

    # rhythm and metre
    onsets = np.unique(starts)
    values["onsets_on_beat"] = _fraction(onsets % tpb == 0)
    values["onsets_on_bar"] = _fraction(np.isin(onsets, bars))
    values["onsets_off_eighth"] = _fraction(onsets % eighth != 0)
    values["onsets_per_beat"] = onsets.size / span_beats
    next_beat = (starts // tpb + 1) * tpb
    values["syncopation"] = _fraction((starts % tpb != 0) & (ends > next_beat))
    if bars.size >= 3:
        bar_ticks = int(np.median(np.diff(bars)))
        count = min(bars.size, span // bar_ticks)
        if count >= 2:
            grooves = np.zeros((count, bar_ticks), dtype=bool)
            inside = starts < count * bar_ticks
            grooves[starts[inside] // bar_ticks, starts[inside] % bar_ticks] = True
            values["bar_groove"] = 1 - np.count_nonzero(grooves[1:] != grooves[:-1]) / (bar_ticks * (count - 1))

    # duration
    values["duration_mean"] = float(lengths.mean() / tpb)
    values["duration_sd"] = float(lengths.std() / tpb)
    values["durations_off_eighth"] = _fraction(lengths % eighth != 0)
    _, counts = np.unique(lengths, return_counts=True)
    shares = counts / counts.sum()
    values["duration_entropy"] = float(-(shares * np.log2(shares)).sum())

    # texture: sounding[t, i] is note i sounding at onset time t
    values["notes_per_beat"] = len(notes) / span_beats
    roll = np.zeros(span, dtype=np.int64)
    for start, end in zip(starts, ends):
        roll[start:end] += 1
    values["polyphony"] = float(roll[roll > 0].mean()) if (roll > 0).any() else np.nan
    beat_count = int(np.ceil(span / tpb))
    covered = np.zeros(beat_count, dtype=bool)
    for start, end in zip(starts, ends):
        covered[start // tpb : (end - 1) // tpb + 1] = True
    values["empty_beats"] = float(1 - covered.mean())

    # pitch
    values["pitch_mean"] = float(pitches.mean())
    values["pitch_sd"] = float(pitches.std())
    values["pitch_range"] = float(pitches.max() - pitches.min())
    class_counts = np.bincount(pitches % 12, minlength=12).astype(np.float64)
    shares = class_counts[class_counts > 0] / class_counts.sum()
    values["pitch_class_entropy"] = float(-(shares * np.log2(shares)).sum())
    values["scale_consistency"] = float(
        max(class_counts[np.roll(scale, root)].sum() for scale in (_MAJOR, _MINOR) for root in range(12)) / pitches.size
    )

    # lines and verticals at onset times
    sounding = (starts[None, :] <= onsets[:, None]) & (ends[None, :] > onsets[:, None])
    masked = np.where(sounding, pitches[None, :], -1)
    top = masked.max(axis=1)
    bass = np.where(sounding, pitches[None, :], 999).min(axis=1)
    if onsets.size >= 2:
        moves = np.abs(np.diff(top))
        values["melody_interval"] = float(moves.mean())
        values["melody_steps"] = _fraction(moves <= 2)
        values["melody_leaps"] = _fraction(moves > 7)
        values["bass_interval"] = float(np.abs(np.diff(bass)).mean())
    voices = sounding.sum(axis=1)
    values["voices_at_onsets"] = float(voices.mean())
    pairs = dissonant = triads = chords = 0
    for row in range(onsets.size):
        chord = pitches[sounding[row]]
        if chord.size >= 2:
            differences = np.abs(chord[:, None] - chord[None, :])[np.triu_indices(chord.size, 1)] % 12
            pairs += differences.size
            dissonant += int(_DISSONANT[differences].sum())
        classes = frozenset((chord % 12).tolist())
        if len(classes) >= 3:
            chords += 1
            triads += classes in _TRIADS
    values["dissonance"] = dissonant / pairs if pairs else np.nan
    values["triads"] = triads / chords if chords else np.nan

    # voice-leading of the outer voices
    both = (voices[:-1] >= 2) & (voices[1:] >= 2)
    top_move, bass_move = np.diff(top)[both], np.diff(bass)[both]
    moving = (top_move != 0) & (bass_move != 0)
    if moving.any():
        values["contrary_motion"] = _fraction(np.sign(top_move[moving]) != np.sign(bass_move[moving]))
        perfect = np.isin((top - bass) % 12, (0, 7))
        was, now = perfect[:-1][both][moving], perfect[1:][both][moving]
        similar = np.sign(top_move[moving]) == np.sign(bass_move[moving])
        values["parallel_perfect"] = _fraction(similar & was & now)
    return np.array([values[name] for name in FEATURES])


def feature_matrix(pieces: Sequence[Piece], beats: int = DEFAULT_BEATS) -> np.ndarray:
    """float64 [len(pieces), len(FEATURES)]."""
    return np.array([piece_features(piece, beats) for piece in pieces]).reshape(len(pieces), len(FEATURES))


def fit_logistic(features: np.ndarray, labels: np.ndarray, l2: float = DEFAULT_L2) -> np.ndarray:
    """Weights [d + 1] (bias last) of an L2-regularised logistic regression, fitted by
    Newton's method; ``features`` [n, d] standardised, ``labels`` [n] in {0, 1}.  The bias
    is not penalised."""
    design = np.hstack([features, np.ones((features.shape[0], 1))])
    penalty = np.full(design.shape[1], l2)
    penalty[-1] = 0.0
    weights = np.zeros(design.shape[1])
    for _ in range(NEWTON_STEPS):
        probabilities = 1 / (1 + np.exp(-np.clip(design @ weights, -30, 30)))
        gradient = design.T @ (probabilities - labels) + penalty * weights
        curvature = (design * (probabilities * (1 - probabilities))[:, None]).T @ design + np.diag(penalty)
        step = np.linalg.solve(curvature + 1e-9 * np.eye(design.shape[1]), gradient)
        weights -= step
        if np.abs(step).max() < 1e-8:
            break
    return weights


def predict_logistic(weights: np.ndarray, features: np.ndarray) -> np.ndarray:
    """Bool [n]: the class-1 prediction for each row."""
    return features @ weights[:-1] + weights[-1] > 0


def _standardise(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean, spread = train.mean(axis=0), train.std(axis=0)
    spread = np.where(spread > 1e-12, spread, 1.0)  # a constant feature stays 0
    return (train - mean) / spread, (test - mean) / spread


def _folds(labels: np.ndarray, folds: int, rng: np.random.Generator) -> np.ndarray:
    """Fold index per row, each class dealt round the folds in a shuffled order."""
    assignment = np.empty(labels.size, dtype=np.int64)
    for label in (0, 1):
        rows = rng.permutation(np.flatnonzero(labels == label))
        assignment[rows] = np.arange(rows.size) % folds
    return assignment


@dataclass(frozen=True)
class TwoSampleResult:
    """``accuracy`` mean held-out accuracy over every fold of every repeat, ``std`` its
    standard deviation over those folds; ``features`` the most separating features, as
    dicts with ``name``, ``generated`` and ``corpus`` (means) and ``effect`` (difference of
    means in pooled standard deviations, generated minus corpus); ``pieces`` per set."""

    accuracy: float
    std: float
    features: list[dict]
    pieces: int

    def to_json(self) -> dict:
        return {
            "two_sample_accuracy": round(self.accuracy, 4),
            "two_sample_std": round(self.std, 4),
            "two_sample_pieces": self.pieces,
            "two_sample_features": self.features,
        }


def two_sample_test(
    generated: np.ndarray,
    corpus: np.ndarray,
    *,
    folds: int = DEFAULT_FOLDS,
    repeats: int = DEFAULT_REPEATS,
    l2: float = DEFAULT_L2,
    seed: int = 0,
    top: int = TOP_FEATURES,
    names: Sequence[str] = FEATURES,
) -> TwoSampleResult:
    """Cross-validated accuracy of a logistic regression telling the rows of
    ``generated`` [n, d] from those of ``corpus`` [m, d] (features, NaN where undefined).
    The larger set is subsampled (seeded) to the smaller one's size, so 0.5 is chance."""
    generated, corpus = np.asarray(generated, dtype=np.float64), np.asarray(corpus, dtype=np.float64)
    rng = np.random.default_rng(seed)
    count = min(len(generated), len(corpus))
    if count < folds:
        raise ValueError(f"the two-sample test needs at least {folds} pieces per set (got {count})")
    generated = generated[np.sort(rng.permutation(len(generated))[:count])]
    corpus = corpus[np.sort(rng.permutation(len(corpus))[:count])]
    features = np.vstack([generated, corpus])
    medians = np.nanmedian(np.where(np.isnan(features).all(axis=0), 0.0, features), axis=0)
    features = np.where(np.isnan(features), medians, features)
    labels = np.repeat([1, 0], count)
    scores = []
    for _ in range(repeats):
        assignment = _folds(labels, folds, rng)
        for fold in range(folds):
            test = assignment == fold
            train_x, test_x = _standardise(features[~test], features[test])
            weights = fit_logistic(train_x, labels[~test], l2)
            scores.append(float(np.mean(predict_logistic(weights, test_x) == labels[test])))
    separating = separating_features(features[:count], features[count:], names, top)
    return TwoSampleResult(float(np.mean(scores)), float(np.std(scores)), separating, count)


def separating_features(ours: np.ndarray, theirs: np.ndarray, names: Sequence[str], top: int) -> list[dict]:
    """The ``top`` features whose means differ most between the rows of ``ours`` and
    ``theirs`` (no NaN), in pooled standard deviations (``effect``, ours minus theirs)."""
    pooled = np.sqrt((ours.var(axis=0) + theirs.var(axis=0)) / 2)
    effect = (ours.mean(axis=0) - theirs.mean(axis=0)) / np.where(pooled > 1e-12, pooled, np.inf)
    ranked = np.argsort(-np.abs(effect), kind="stable")[:top]
    return [
        {
            "name": names[i],
            "generated": round(float(ours[:, i].mean()), 4),
            "corpus": round(float(theirs[:, i].mean()), 4),
            "effect": round(float(effect[i]), 3),
        }
        for i in ranked
    ]


def compare_pieces(
    generated: Sequence[Piece],
    corpus: Sequence[Piece],
    *,
    beats: int = DEFAULT_BEATS,
    seed: int = 0,
    folds: int = DEFAULT_FOLDS,
) -> TwoSampleResult:
    """:func:`two_sample_test` on the features of two sets of pieces cut to ``beats`` beats."""
    return two_sample_test(feature_matrix(generated, beats), feature_matrix(corpus, beats), folds=folds, seed=seed)


@dataclass(frozen=True)
class RepeatedResult:
    """The test run on several independently generated sets (one seed each) against the
    same corpus: ``accuracies`` one per run, ``std`` their mean fold spread, ``features``
    ranked over every run's pieces together, ``pieces`` per set and run.  One run's
    accuracy moves from seed to seed by more than its fold spread says (the generated set
    changes, not only the folds): the mean over runs, with its standard error, is the
    figure to compare."""

    accuracies: tuple[float, ...]
    std: float
    features: list[dict]
    pieces: int

    @property
    def accuracy(self) -> float:
        return float(np.mean(self.accuracies))

    @property
    def standard_error(self) -> float:
        runs = len(self.accuracies)
        return float(np.std(self.accuracies, ddof=1) / np.sqrt(runs)) if runs > 1 else float("nan")

    def to_json(self) -> dict:
        report = {
            "two_sample_accuracy": round(self.accuracy, 4),
            "two_sample_std": round(self.std, 4),
            "two_sample_pieces": self.pieces,
            "two_sample_features": self.features,
            "two_sample_runs": len(self.accuracies),
        }
        if len(self.accuracies) > 1:
            report["two_sample_standard_error"] = round(self.standard_error, 4)
            report["two_sample_run_accuracies"] = [round(a, 4) for a in self.accuracies]
        return report


def compare_runs(
    runs: Sequence[tuple[Sequence[Piece], Sequence[Piece]]],
    *,
    beats: int = DEFAULT_BEATS,
    seed: int = 0,
    folds: int = DEFAULT_FOLDS,
    top: int = TOP_FEATURES,
) -> RepeatedResult:
    """:func:`compare_pieces` on each ``(generated, corpus)`` pair of ``runs`` (run ``r``
    seeded ``seed + r``), combined (:class:`RepeatedResult`)."""
    if not runs:
        raise ValueError("the two-sample test needs at least one run")
    measured: dict[int, np.ndarray] = {}  # each piece's features once: the corpus side recurs in every run

    def features_of(pieces: Sequence[Piece]) -> np.ndarray:
        for piece in pieces:
            if id(piece) not in measured:
                measured[id(piece)] = feature_matrix([piece], beats)[0]
        return np.array([measured[id(piece)] for piece in pieces]).reshape(len(pieces), len(FEATURES))

    ours, theirs, results = [], [], []
    for index, (generated, corpus) in enumerate(runs):
        ours.append(features_of(generated))
        theirs.append(features_of(corpus))
        results.append(two_sample_test(ours[-1], theirs[-1], folds=folds, seed=seed + index))
    ours_all, theirs_all = np.vstack(ours), np.vstack(theirs)
    both = np.vstack([ours_all, theirs_all])
    medians = np.nanmedian(np.where(np.isnan(both).all(axis=0), 0.0, both), axis=0)
    ours_all, theirs_all = (np.where(np.isnan(x), medians, x) for x in (ours_all, theirs_all))
    return RepeatedResult(
        tuple(result.accuracy for result in results),
        float(np.mean([result.std for result in results])),
        separating_features(ours_all, theirs_all, FEATURES, top),
        results[0].pieces,
    )
