"""Objective metrics for generated music, as defined by MusPy (Dong et al., 2020).

Our own numpy implementations, computed on our grid of 12 time steps per beat (the
resolution matters only to groove consistency, whose denominator is the measure length;
at 12 steps the Bach chorales give 0.934, as ``muspy 0.5`` did during planning):

* ``pitch_class_entropy``: Shannon entropy (bits) of the note-count histogram of the
  12 pitch classes;
* ``scale_consistency``: the largest fraction of notes inside one major or (natural)
  minor scale;
* ``polyphony``: mean number of sounding pitches over time steps where any sounds;
* ``empty_beat_rate``: fraction of beats in which no note sounds (a note covers beats
  ``start // 12`` to ``end // 12`` inclusive, as MusPy counts);
* ``groove_consistency``: 1 minus the mean Hamming distance between the onset patterns
  of neighbouring 4-beat measures, divided by the measure length (48 steps).

Each returns NaN where undefined (no notes, one measure); summaries ignore NaNs.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from studio.music.events import Piece

RESOLUTION = 12  # time steps per beat, as TICKS_PER_BEAT
MEASURE_BEATS = 4
METRICS = ("pitch_class_entropy", "scale_consistency", "polyphony", "empty_beat_rate", "groove_consistency")
_MAJOR = np.array([1, 0, 1, 0, 1, 1, 0, 1, 0, 1, 0, 1], dtype=bool)
_MINOR = np.array([1, 0, 1, 1, 0, 1, 0, 1, 1, 0, 1, 0], dtype=bool)


def _timed(piece: Piece) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(pitches, starts, ends) in MusPy time steps."""
    scale = RESOLUTION / piece.ticks_per_beat
    pitches = np.array([n.pitch for n in piece.notes], dtype=np.int64)
    starts = np.array([round(n.start * scale) for n in piece.notes], dtype=np.int64)
    ends = np.array([round(n.end * scale) for n in piece.notes], dtype=np.int64)
    return pitches, starts, ends


def pitch_class_entropy(piece: Piece) -> float:
    pitches, _, _ = _timed(piece)
    if pitches.size == 0:
        return math.nan
    counts = np.bincount(pitches % 12, minlength=12).astype(np.float64)
    probabilities = counts[counts > 0] / counts.sum()
    return float(-(probabilities * np.log2(probabilities)).sum())


def scale_consistency(piece: Piece) -> float:
    pitches, _, _ = _timed(piece)
    if pitches.size == 0:
        return math.nan
    counts = np.bincount(pitches % 12, minlength=12)
    best = max(counts[np.roll(scale, root)].sum() for scale in (_MAJOR, _MINOR) for root in range(12))
    return float(best / pitches.size)


def polyphony(piece: Piece) -> float:
    pitches, starts, ends = _timed(piece)
    if pitches.size == 0:
        return math.nan
    roll = np.zeros((int(ends.max()), 128), dtype=bool)
    for pitch, start, end in zip(pitches, starts, ends):
        roll[start:end, pitch] = True
    active = np.count_nonzero(roll.any(axis=1))
    return float(roll.sum() / active) if active else math.nan


def empty_beat_rate(piece: Piece) -> float:
    pitches, starts, ends = _timed(piece)
    if pitches.size == 0 or ends.max() < 1:
        return math.nan
    beats = int(ends.max()) // RESOLUTION + 1
    covered = np.zeros(beats, dtype=bool)
    for start, end in zip(starts // RESOLUTION, ends // RESOLUTION):
        covered[start : end + 1] = True
    return float(1 - covered.sum() / beats)


def groove_consistency(piece: Piece, measure_resolution: int = MEASURE_BEATS * RESOLUTION) -> float:
    pitches, starts, ends = _timed(piece)
    if pitches.size == 0:
        return math.nan
    measures = int(ends.max()) // measure_resolution + 1
    if measures < 2:
        return math.nan
    grooves = np.zeros((measures, measure_resolution), dtype=bool)
    grooves[starts // measure_resolution, starts % measure_resolution] = True
    distance = np.count_nonzero(grooves[:-1] != grooves[1:])
    return float(1 - distance / (measure_resolution * (measures - 1)))


def piece_metrics(piece: Piece) -> dict[str, float]:
    """Every metric of one piece."""
    return {name: globals()[name](piece) for name in METRICS}


def summarize(pieces: Iterable[Piece]) -> dict[str, dict[str, float]]:
    """Mean and standard deviation (NaNs ignored) of every metric over ``pieces``."""
    values = [piece_metrics(piece) for piece in pieces]
    summary = {}
    for name in METRICS:
        column = np.array([v[name] for v in values], dtype=np.float64)
        column = column[~np.isnan(column)]
        summary[name] = {
            "mean": float(column.mean()) if column.size else math.nan,
            "std": float(column.std()) if column.size else math.nan,
            "count": int(column.size),
        }
    return summary


def compare(generated: Sequence[Piece], reference: Sequence[Piece]) -> dict[str, Any]:
    """Metric summaries of generated pieces beside the reference corpus.

    Per metric: ``generated`` and ``corpus`` (mean, std, count) and ``within_one_std``,
    true when the generated mean lies within one corpus standard deviation of the
    corpus mean.
    """
    ours, theirs = summarize(generated), summarize(reference)
    report: dict[str, Any] = {}
    for name in METRICS:
        gap = abs(ours[name]["mean"] - theirs[name]["mean"])
        report[name] = {
            "generated": ours[name],
            "corpus": theirs[name],
            "within_one_std": bool(gap <= theirs[name]["std"]),
        }
    report["pieces"] = {"generated": len(generated), "corpus": len(reference)}
    return report
