"""A user's own handwriting as a style: read strokes from a file, fit them to the corpus.

``read_strokes(path) -> list of (n, 2) arrays`` reads the pen-down runs of

* an SVG as :mod:`studio.handwriting.render` writes it (``<path d="M.. C..">``; the end
  point of every Bézier is a pen point) or any SVG of paths and polylines;
* a JSON list of strokes, each a list of ``[x, y]`` points (more numbers per point, such
  as a time stamp, are ignored), or ``{"strokes": [...]}``: what the web drawing pad sends;
* an InkML file (``<trace>`` elements of comma-separated ``x y ...`` points).

All three are in screen coordinates (y down).  :func:`fit_style` turns those strokes
and their transcript into a style the sampler primes with: stroke-3 offsets in the
corpus's units, scaled so the ink is as tall as the corpus's plain font draws the same
text, its slant clamped into the corpus's slant range, and resampled to the corpus's
point spacing (a mouse or pen reports points far closer together than the corpus has
them).  Every problem (no file, empty, not strokes, no ink, too little ink, huge, a
transcript that cannot match the ink) is a one-line :class:`StudioError`.  Numpy only.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from xml.etree import ElementTree

import numpy as np

from studio.errors import StudioError
from studio.handwriting import data as stroke_data
from studio.handwriting.consistency import slant_of

MAX_FILE_BYTES = 2_000_000  # a page of handwriting as SVG or InkML is far smaller
MAX_POINTS = 50_000  # raw points accepted from a file, before resampling
MIN_POINTS = 8  # pen points (after resampling) below which a sample is "too little ink"
MIN_EXTENT = 1e-6
STYLE_FONT = "futural"  # the plain font whose height the user's ink is scaled to
SLANT_RANGE = (-0.25, 0.6)  # tan of the slant: the corpus's slants (per-line shear plus the fonts' own)
# Corpus units of arc length between points: the middle of the corpus's 4-5.  (Matching
# the plain font's point count for the text instead held print less well: pen-ups per
# letter 1.58 against 1.72, run width 0.73 against 0.55, seeds 1-4.)
POINT_SPACING = 4.5
WIDTH_RATIO_RANGE = (0.35, 3.0)  # ink width / the plain font's width for the same text, at equal height
MIN_INK = 0.3  # pen travel at least this share of what the plain font needs for the same text
FLAT = 0.05  # ink less tall than this share of its width is a line, not letters
MAX_RUNS_PER_CHARACTER = 4.0  # more pen-down runs than this per character: not this text

_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
_PATH_TOKEN = re.compile(r"[MmLlCcSsQqTtHhVvZzAa]|[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
_ARGUMENTS = {"m": 2, "l": 2, "c": 6, "s": 4, "q": 4, "t": 2, "h": 1, "v": 1, "a": 7, "z": 0}


@dataclass(frozen=True)
class Style:
    """A style to prime with: its transcript and stroke-3 offsets ``(T, 3)`` in corpus units."""

    text: str
    strokes: np.ndarray


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1].lower()


def _parse_xml(text: str, name: str) -> ElementTree.Element:
    if "<!ENTITY" in text or "<!DOCTYPE" in text:
        raise StudioError(f"{name} declares a DOCTYPE or entities; save it as plain SVG or InkML without them")
    try:
        return ElementTree.fromstring(text)
    except ElementTree.ParseError as error:
        raise StudioError(f"{name} is not well-formed XML ({error}); give an SVG, InkML or JSON strokes file") from None


def _path_runs(d: str) -> list[list[tuple[float, float]]]:
    """Pen points of an SVG path: every segment's end point (Bézier control points skipped)."""
    runs: list[list[tuple[float, float]]] = []
    x = y = 0.0
    start = (0.0, 0.0)
    tokens = _PATH_TOKEN.findall(d)
    index, command = 0, ""
    while index < len(tokens):
        if tokens[index].isalpha():
            command = tokens[index]
            index += 1
            if command in "Zz":
                if runs and runs[-1]:
                    runs[-1].append(start)
                x, y = start
                continue
        if not command:
            raise StudioError("an SVG path starts without a command; give a path that starts with M")
        count = _ARGUMENTS[command.lower()]
        arguments = tokens[index : index + count]
        if len(arguments) < count or any(v.isalpha() for v in arguments):
            break
        values = [float(v) for v in arguments]
        index += count
        relative = command.islower()
        kind = command.lower()
        if kind == "h":
            x = x + values[0] if relative else values[0]
        elif kind == "v":
            y = y + values[0] if relative else values[0]
        else:
            ex, ey = values[-2], values[-1]
            x, y = (x + ex, y + ey) if relative else (ex, ey)
        if kind == "m":
            runs.append([(x, y)])
            start = (x, y)
            command = "l" if relative else "L"  # further pairs after a moveto are linetos
        else:
            if not runs:
                runs.append([])
            runs[-1].append((x, y))
    return runs


def _svg_runs(root: ElementTree.Element) -> list[np.ndarray]:
    runs = []
    for element in root.iter():
        tag = _local(element.tag)
        if tag == "path":
            runs += [np.asarray(r, dtype=np.float64) for r in _path_runs(element.get("d", "")) if r]
        elif tag in ("polyline", "polygon", "line"):
            if tag == "line":
                values = [float(element.get(k, 0)) for k in ("x1", "y1", "x2", "y2")]
            else:
                values = [float(v) for v in _NUMBER.findall(element.get("points", ""))]
            if len(values) >= 2:
                runs.append(np.asarray(values[: len(values) // 2 * 2], dtype=np.float64).reshape(-1, 2))
    return runs


def _inkml_runs(root: ElementTree.Element) -> list[np.ndarray]:
    runs = []
    for element in root.iter():
        if _local(element.tag) != "trace":
            continue
        points = []
        for point in (element.text or "").split(","):
            values = _NUMBER.findall(point)
            if len(values) >= 2:
                points.append((float(values[0]), float(values[1])))
        if points:
            runs.append(np.asarray(points, dtype=np.float64))
    return runs


def strokes_from_json(data, name: str = "the strokes") -> list[np.ndarray]:
    """``[[[x, y], ...], ...]`` or ``{"strokes": ...}`` -> pen-down runs ``(n, 2)``."""
    if isinstance(data, dict):
        data = data.get("strokes")
    if not isinstance(data, list):
        raise StudioError(f"{name} must be a JSON list of strokes, each a list of [x, y] points")
    runs = []
    for stroke in data:
        if not isinstance(stroke, list):
            raise StudioError(f"{name}: every stroke must be a list of [x, y] points")
        points = []
        for point in stroke:
            if not (isinstance(point, (list, tuple)) and len(point) >= 2):
                raise StudioError(f"{name}: every point must be [x, y] (got {str(point)[:40]})")
            try:
                x, y = float(point[0]), float(point[1])
            except (TypeError, ValueError):
                raise StudioError(f"{name}: point coordinates must be numbers (got {str(point)[:40]})") from None
            if not (np.isfinite(x) and np.isfinite(y)):
                raise StudioError(f"{name}: point coordinates must be finite numbers")
            points.append((x, y))
        if points:
            runs.append(np.asarray(points, dtype=np.float64))
    return runs


def read_strokes(path: str | Path) -> list[np.ndarray]:
    """The pen-down runs ``(n, 2)`` (screen coordinates, y down) in an SVG, JSON or InkML file."""
    path = Path(path)
    name = path.name
    if not path.is_file():
        raise StudioError(f"no style file at {path}: give an SVG, JSON or InkML file of your strokes")
    size = path.stat().st_size
    if size == 0:
        raise StudioError(f"{name} is empty: give an SVG, JSON or InkML file of your strokes")
    if size > MAX_FILE_BYTES:
        raise StudioError(
            f"{name} is {size / 1e6:.1f} MB; a style sample is at most {MAX_FILE_BYTES / 1e6:.0f} MB: "
            "write a word or two, not a page"
        )
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise StudioError(f"{name} is not text: give an SVG, JSON or InkML file of your strokes") from None
    stripped = text.lstrip()
    if not stripped:
        raise StudioError(f"{name} is empty: give an SVG, JSON or InkML file of your strokes")
    if stripped[0] in "[{":
        try:
            data = json.loads(stripped)
        except json.JSONDecodeError as error:
            raise StudioError(f"{name} is not valid JSON ({error.msg}, line {error.lineno})") from None
        runs = strokes_from_json(data, name)
    elif stripped[0] == "<":
        root = _parse_xml(stripped, name)
        kind = _local(root.tag)
        if kind == "svg":
            runs = _svg_runs(root)
        elif kind == "ink":
            runs = _inkml_runs(root)
        else:
            raise StudioError(f"{name} is <{kind}> XML, neither SVG nor InkML; give an SVG, JSON or InkML file")
    else:
        raise StudioError(f"{name} is neither SVG, InkML nor JSON: give an SVG, JSON or InkML file of your strokes")
    points = sum(len(r) for r in runs)
    if points == 0:
        raise StudioError(f"{name} holds no ink (no strokes); draw a word or two and save it again")
    if points > MAX_POINTS:
        raise StudioError(f"{name} holds {points:,} points; a style sample has at most {MAX_POINTS:,}: write less")
    return runs


def _resample_run(run: np.ndarray, spacing: float) -> np.ndarray:
    if len(run) == 1:
        return run
    segment = np.linalg.norm(np.diff(run, axis=0), axis=1)
    arc = np.concatenate([[0.0], np.cumsum(segment)])
    if arc[-1] < spacing * 0.5:
        return run[:1]
    count = max(2, int(round(arc[-1] / spacing)) + 1)
    targets = np.linspace(0.0, arc[-1], count)
    return np.stack([np.interp(targets, arc, run[:, 0]), np.interp(targets, arc, run[:, 1])], 1)


def _to_offsets(runs: list[np.ndarray]) -> np.ndarray:
    rows = []
    for run in runs:
        pen = np.zeros((len(run), 1))
        pen[-1] = 1.0
        rows.append(np.concatenate([run, pen], 1))
    absolute = np.concatenate(rows, 0)
    offsets = absolute.copy()
    offsets[1:, :2] = absolute[1:, :2] - absolute[:-1, :2]
    return offsets.astype(np.float32)


def fit_style(runs: list[np.ndarray], text: str, alphabet: str, max_characters: int) -> Style:
    """Screen-coordinate pen-down runs and their transcript -> a :class:`Style` in the
    corpus's units (see the module docstring)."""
    text = " ".join((text or "").split())
    if not text:
        raise StudioError("give --style-text: what the style sample says (the words you wrote)")
    stroke_data.encode_texts([text], alphabet)  # names characters the model cannot write
    if max_characters and len(text) > max_characters:
        raise StudioError(
            f"the style sample says {len(text)} characters; write at most {max_characters} (a word or two)"
        )
    runs = [np.asarray(r, dtype=np.float64)[:, :2] * np.array([1.0, -1.0]) for r in runs if len(r)]  # y up
    if not runs:
        raise StudioError("the style sample holds no ink; draw the words and try again")
    points = np.concatenate(runs, 0)
    extent = np.ptp(points, axis=0)
    if extent.max() < MIN_EXTENT:
        raise StudioError("the style sample is a single dot: write the words out, at least a few letters")
    reference = stroke_data.render_hershey(text, STYLE_FONT, None, stroke_data.HersheyCorpusConfig())
    reference_points = np.cumsum(reference[:, :2].astype(np.float64), 0)
    reference_extent = np.maximum(np.ptp(reference_points, axis=0), 1.0)
    if extent[1] < FLAT * extent[0]:
        raise StudioError(f"too little ink for {text!r}: the strokes are one flat line; write the letters themselves")
    scale = reference_extent[1] / extent[1]  # heights compare well across hands
    runs = [(r - points.min(0)) * scale for r in runs]
    arc = sum(float(np.linalg.norm(np.diff(r, axis=0), axis=1).sum()) for r in runs)
    reference_arc = float(np.linalg.norm(np.diff(reference_points, axis=0), axis=1)[reference[:-1, 2] < 0.5].sum())
    if arc < MIN_INK * reference_arc:
        raise StudioError(
            f"too little ink for {text!r}: {arc / reference_arc:.0%} of the pen travel those letters take; "
            "write all of them, or give --style-text exactly the words you wrote"
        )
    slant = slant_of(runs)
    clamped = float(np.clip(slant, *SLANT_RANGE))
    if clamped != slant:
        runs = [np.stack([r[:, 0] + (clamped - slant) * r[:, 1], r[:, 1]], 1) for r in runs]
    runs = [_resample_run(r, POINT_SPACING) for r in runs]
    total = sum(len(r) for r in runs)
    characters = len(text.replace(" ", ""))
    if total < max(MIN_POINTS, 2 * characters):
        raise StudioError(
            f"too little ink for {text!r}: {total} pen points once resampled, at least "
            f"{max(MIN_POINTS, 2 * characters)} needed; write the words larger or in full"
        )
    width_ratio = np.ptp(np.concatenate(runs)[:, 0]) / reference_extent[0]
    if not WIDTH_RATIO_RANGE[0] <= width_ratio <= WIDTH_RATIO_RANGE[1]:
        relation = "short" if width_ratio < 1 else "long"
        raise StudioError(
            f"the ink is too {relation} for {text!r} ({width_ratio:.2f} times the expected width): "
            "give --style-text exactly the words you wrote"
        )
    if len(runs) > MAX_RUNS_PER_CHARACTER * max(characters, 1):
        raise StudioError(
            f"{len(runs)} strokes for {characters} letters of {text!r}: give --style-text exactly the words you wrote"
        )
    shift = np.concatenate(runs).min(0) - reference_points.min(0)
    runs = [r - shift for r in runs]
    return Style(text, _to_offsets(runs))


def load_style(path: str | Path, text: str, alphabet: str, max_characters: int) -> Style:
    """:func:`read_strokes` then :func:`fit_style`."""
    return fit_style(read_strokes(path), text, alphabet, max_characters)
