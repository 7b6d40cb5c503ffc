"""Does one text keep one hand?  Stroke statistics per word, and their spread per line.

Five statistics describe a written word (absolute points ``(T, 3)``, y up, model units):

* ``slant``: tan of the mean lean of the near-vertical pen-down segments (0 upright,
  positive leaning right), weighted by their height;
* ``x_height``: the 20th to 80th percentile range of the pen-down points' heights (a
  proxy for the height of the small letters that ignores a few ascenders), over the same
  range in the corpus's plain font's drawing of the same word, so that "over" and "The"
  written in one hand score alike;
* ``letter_width``: ink width over the plain font's width for the same word;
* ``pen_ups``: pen-down runs per letter, the share of pen-ups per character: the
  corpus's print font lifts the pen 1.75 times a letter (std 0.27 over lines), its
  joined-up fonts 1.43 to 1.52 (std 0.33 to 0.45);
* ``run_width``: how many letters wide a pen-down run is, weighted by its points: the
  clearer mark of joined-up writing (print 0.54, std 0.08; joined-up 0.98, std 0.30).

:func:`line_spread` compares, per statistic, the spread *between lines* (standard
deviation of the per-line means) with the spread *between words within a line* (the
mean over lines of the standard deviation of the words' values); their ratio is 1 or
less when a text keeps one hand from line to line.  :func:`consistency_figure` is the
largest of the five ratios.  ``python -m studio.handwriting.consistency_report`` prints it
(:mod:`.consistency_report`) for a text, with lines written independently (as before
issue 14) and with every line keeping the first line's hand.  Numpy only.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from studio.handwriting import data as stroke_data

PLAIN_FONT = "futural"  # sizes are measured against this font's drawing of the same word
CORE = (20, 80)  # percentiles of the ink's heights that bound a word's body
STATISTICS = ("slant", "x_height", "letter_width", "pen_ups", "run_width")
VERTICAL = 1.0  # |dy| / |dx| above which a segment counts as a down- or up-stroke


def pen_runs(points: np.ndarray) -> list[np.ndarray]:
    """Absolute ``(T, 3)`` -> pen-down runs ``(n, 2)`` (a run ends where pen_lift is 1)."""
    runs, start = [], 0
    for index in np.flatnonzero(points[:, 2] > 0.5).tolist() + [len(points) - 1]:
        if index >= start:
            runs.append(np.asarray(points[start : index + 1, :2], dtype=np.float64))
            start = index + 1
    return [r for r in runs if len(r)]


def slant_of(runs: Sequence[np.ndarray]) -> float:
    """tan of the lean of the near-vertical segments of pen-down ``runs`` (0 when none)."""
    dx_sum = dy_sum = 0.0
    for run in runs:
        steps = np.diff(np.asarray(run, dtype=np.float64)[:, :2], axis=0)
        if not len(steps):
            continue
        upright = np.abs(steps[:, 1]) > VERTICAL * np.abs(steps[:, 0])
        dx_sum += float((steps[upright, 0] * np.sign(steps[upright, 1])).sum())
        dy_sum += float(np.abs(steps[upright, 1]).sum())
    return dx_sum / dy_sum if dy_sum > 0 else 0.0


@lru_cache(maxsize=4096)
def _plain_extent(word: str) -> tuple[float, float]:
    """``(core height, width)`` of ``word`` in the corpus's plain print font, undistorted."""
    offsets = stroke_data.render_hershey(word, PLAIN_FONT, None, stroke_data.HersheyCorpusConfig())
    points = np.cumsum(offsets[:, :2].astype(np.float64), 0)
    low, high = np.percentile(points[:, 1], CORE)
    return max(float(high - low), 1.0), max(float(np.ptp(points[:, 0])), 1.0)


def word_statistics(points: np.ndarray, text: str) -> dict[str, float]:
    """The statistics of one written word (see the module docstring)."""
    runs = pen_runs(np.asarray(points))
    letters = max(1, len(text.replace(" ", "")))
    ink = np.concatenate(runs) if runs else np.zeros((1, 2))
    low, high = np.percentile(ink[:, 1], CORE)
    plain_height, plain_width = _plain_extent(text)
    letter_width = max(float(np.ptp(ink[:, 0])) / letters, 1e-6)
    sizes = np.asarray([len(run) for run in runs], dtype=np.float64)
    widths = np.asarray([np.ptp(run[:, 0]) for run in runs]) / letter_width
    return {
        "slant": slant_of(runs),
        "x_height": float(high - low) / plain_height,
        "letter_width": float(np.ptp(ink[:, 0])) / plain_width,
        "pen_ups": len(runs) / letters,
        "run_width": float((widths * sizes).sum() / sizes.sum()) if len(runs) else 0.0,
    }


def split_words(points: np.ndarray, phi: np.ndarray, line: str) -> list[tuple[np.ndarray, str]]:
    """One written line -> its words ``(points (n, 3), word)``: each pen-down run goes to
    the word whose characters the attention window ``phi (T, len(line) + 1)`` mostly
    pointed at while it was drawn.  Words that got no run are left out."""
    points = np.asarray(points)
    word_of_character, word = [], 0
    for character in line:
        if character == " ":
            word += 1
        word_of_character.append(word)
    words = line.split(" ")
    if not len(points) or not len(line) or phi.shape[0] < len(points):
        return []
    focus = np.asarray(phi)[: len(points), : len(line)].argmax(1)
    owner = np.asarray(word_of_character)[focus]
    groups: dict[int, list[np.ndarray]] = {}
    start = 0
    for end in np.flatnonzero(points[:, 2] > 0.5).tolist() + [len(points) - 1]:
        if end < start:
            continue
        votes = np.bincount(owner[start : end + 1], minlength=len(words))
        groups.setdefault(int(votes.argmax()), []).append(points[start : end + 1])
        start = end + 1
    return [(np.concatenate(groups[i]), words[i]) for i in sorted(groups) if words[i]]


def line_spread(lines: Sequence[Sequence[dict[str, float]]]) -> dict[str, dict[str, float]]:
    """Per statistic: ``between`` lines (std of line means), ``within`` lines (mean std of
    the words in a line, lines of two or more words) and ``ratio`` = between / within."""
    kept = [line for line in lines if line]
    result = {}
    for name in STATISTICS:
        means = [float(np.mean([w[name] for w in line])) for line in kept]
        spreads = [float(np.std([w[name] for w in line])) for line in kept if len(line) > 1]
        between = float(np.std(means)) if len(means) > 1 else 0.0
        within = float(np.mean(spreads)) if spreads else 0.0
        ratio = between / within if within > 0 else (0.0 if between == 0 else float("inf"))
        result[name] = {"between": between, "within": within, "ratio": ratio}
    return result


def consistency_figure(spread: dict[str, dict[str, float]]) -> float:
    """The largest between/within ratio over the statistics (1 or less: one hand)."""
    return max(entry["ratio"] for entry in spread.values())


def rendered_lines(rendered) -> list[list[dict[str, float]]]:
    """Per page line of a :class:`~studio.handwriting.render.Rendered`, its words' statistics."""
    lines: dict[int, list[dict[str, float]]] = {}
    for line_index, points, word in rendered.words:
        lines.setdefault(line_index, []).append(word_statistics(points, word))
    return [lines[i] for i in sorted(lines)]
