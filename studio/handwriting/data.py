"""Stroke corpora: a labelled handwriting corpus synthesised from Hershey fonts, and
real human pen strokes from Omniglot.

Every sequence is in *stroke-3* form, a float32 array ``(T, 3)`` of rows
``(dx, dy, pen_lift)`` with y pointing up and ``pen_lift = 1`` on the last point
before the pen leaves the paper (the Omniglot convention).  Offsets are in the
corpus's own units; :func:`offset_statistics` gives the mean and standard deviation
that the model normalises them with (Graves 2013: mean 0, std 1 over training).

The Hershey corpus is a pure function of its :class:`HersheyCorpusConfig` and a seed:
``hershey_example(config, seed)`` always returns the same text and strokes, so training
draws fresh examples forever, resumes exactly, and nothing bulky is committed.
"""

from __future__ import annotations

import hashlib
import json
import string
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from studio.errors import StudioError

CORPUS_FOLDER = Path(__file__).resolve().parents[2] / "corpora" / "handwriting"
OMNIGLOT_FILE = CORPUS_FOLDER / "omniglot_strokes.npz"
WORDS_FILE = CORPUS_FOLDER / "words.txt"

#: Characters the shipped synthesis model writes (space included).
DEFAULT_ALPHABET = string.ascii_letters + string.digits + " .,'!?-"

#: Hershey coordinates are y-down with the baseline at y = 9 (cap line -12).
HERSHEY_BASELINE = 9.0


@dataclass(frozen=True)
class HersheyCorpusConfig:
    """How synthetic handwriting lines are drawn; every range is sampled per line.

    ``fonts`` maps Hershey font names to their probability.  Lengths are in Hershey
    units (capital letters are 21 units tall).
    """

    alphabet: str = DEFAULT_ALPHABET
    fonts: dict = field(default_factory=lambda: {"cursive": 0.4, "scripts": 0.3, "futural": 0.3})
    min_words: int = 1
    max_words: int = 2
    max_characters: int = 16
    random_string_probability: float = 0.15  # lines of random characters, for coverage
    slant: tuple = (-0.1, 0.35)  # x += slant * y
    scale: tuple = (0.85, 1.15)
    letter_spacing: tuple = (-1.0, 2.0)  # extra units after each character
    baseline_drift: tuple = (-0.04, 0.04)  # slope of the baseline
    jitter: float = 0.25  # standard deviation of per-point noise
    wobble: float = 0.6  # amplitude of slow per-stroke displacement
    point_spacing: tuple = (4.0, 5.0)  # arc-length between resampled points
    smoothing: int = 3  # moving-average window over points

    def to_json(self) -> dict:
        return json.loads(json.dumps(asdict(self)))

    def sha256(self) -> str:
        """Fingerprint of the corpus: the generator config plus the word list."""
        payload = json.dumps(self.to_json(), sort_keys=True).encode() + load_words_bytes()
        return hashlib.sha256(payload).hexdigest()


def load_words_bytes() -> bytes:
    return WORDS_FILE.read_bytes() if WORDS_FILE.exists() else b""


@lru_cache(maxsize=1)
def load_words() -> tuple[str, ...]:
    """The word list that synthetic lines draw from (one word a line)."""
    if not WORDS_FILE.exists():
        raise StudioError(f"Missing word list {WORDS_FILE}; restore corpora/handwriting from git.")
    return tuple(w for w in WORDS_FILE.read_text(encoding="utf-8").split() if w)


@lru_cache(maxsize=8)
def _font(name: str):
    from HersheyFonts import HersheyFonts

    font = HersheyFonts()
    font.load_default_font(name)
    return font


@lru_cache(maxsize=4096)
def _glyph_strokes(font_name: str, character: str) -> tuple[tuple[np.ndarray, ...], float]:
    """Polylines of one character (y up, origin at its left baseline) and its advance."""
    font = _font(font_name)
    strokes = [np.asarray(s, dtype=np.float64) for s in font.strokes_for_text(character)]
    pair = [np.asarray(s, dtype=np.float64) for s in font.strokes_for_text(character + "|")]
    bar_x = min(s[:, 0].min() for s in pair[len(strokes) :]) if len(pair) > len(strokes) else 0.0
    bar_strokes = [np.asarray(s, dtype=np.float64) for s in font.strokes_for_text("|")]
    bar_offset = min(s[:, 0].min() for s in bar_strokes)
    advance = float(bar_x - bar_offset)
    flipped = []
    for stroke in strokes:
        stroke = stroke.copy()
        stroke[:, 1] = HERSHEY_BASELINE - stroke[:, 1]
        flipped.append(stroke)
    return tuple(flipped), advance


def sample_text(config: HersheyCorpusConfig, rng: np.random.Generator) -> str:
    """A short line: a few words from the word list, or random alphabet characters."""
    if rng.random() < config.random_string_probability:
        symbols = [c for c in config.alphabet if c != " "]
        length = int(rng.integers(2, 8))
        text = "".join(symbols[int(i)] for i in rng.integers(0, len(symbols), size=length))
    else:
        words = load_words()
        count = int(rng.integers(config.min_words, config.max_words + 1))
        text = " ".join(words[int(i)] for i in rng.integers(0, len(words), size=count))
        if rng.random() < 0.15:
            text = text.capitalize()
        if rng.random() < 0.2:
            text += ".,!?"[int(rng.integers(0, 4))]
    text = "".join(c for c in text if c in config.alphabet)[: config.max_characters].strip()
    return text or "a"


def _resample(polyline: np.ndarray, spacing: float) -> np.ndarray:
    """Points every ``spacing`` units of arc length along ``polyline`` (ends kept)."""
    segment = np.linalg.norm(np.diff(polyline, axis=0), axis=1)
    arc = np.concatenate([[0.0], np.cumsum(segment)])
    if arc[-1] < 1e-6:
        return polyline[:1]
    count = max(2, int(round(arc[-1] / spacing)) + 1)
    targets = np.linspace(0.0, arc[-1], count)
    return np.stack([np.interp(targets, arc, polyline[:, 0]), np.interp(targets, arc, polyline[:, 1])], 1)


def _smooth(points: np.ndarray, window: int) -> np.ndarray:
    if window <= 1 or len(points) <= 2:
        return points
    padded = np.concatenate([np.repeat(points[:1], window // 2, 0), points, np.repeat(points[-1:], window // 2, 0)])
    kernel = np.ones(window) / window
    smoothed = np.stack([np.convolve(padded[:, d], kernel, mode="valid") for d in range(2)], 1)
    smoothed[0], smoothed[-1] = points[0], points[-1]
    return smoothed[: len(points)]


def render_hershey(
    text: str, font_name: str, rng: np.random.Generator | None, config: HersheyCorpusConfig
) -> np.ndarray:
    """Draw ``text`` in one Hershey font as stroke-3 ``(T, 3)``; ``rng=None`` draws the
    plain font (no variation) with the middle of every range."""
    mid = lambda r: 0.5 * (r[0] + r[1])  # noqa: E731
    pick = (lambda r: float(rng.uniform(*r))) if rng is not None else mid
    slant, scale, spacing = pick(config.slant), pick(config.scale), pick(config.letter_spacing)
    drift, step = pick(config.baseline_drift), pick(config.point_spacing)
    polylines: list[np.ndarray] = []
    cursor = 0.0
    for character in text:
        strokes, advance = _glyph_strokes(font_name, character)
        for stroke in strokes:
            polylines.append(stroke + np.array([cursor, 0.0]))
        cursor += advance + spacing
    if not polylines:
        return np.zeros((1, 3), dtype=np.float32)
    # Consecutive glyph strokes that touch are one pen movement (joined script).
    merged: list[np.ndarray] = [polylines[0]]
    for stroke in polylines[1:]:
        if np.linalg.norm(merged[-1][-1] - stroke[0]) < 0.75:
            merged[-1] = np.concatenate([merged[-1], stroke[1:]])
        else:
            merged.append(stroke)
    rows = []
    for stroke in merged:
        points = _resample(stroke, step / scale)
        if rng is not None and config.wobble > 0:
            phase = rng.uniform(0, 2 * np.pi, size=2)
            t = np.linspace(0, 1, len(points))[:, None]
            points = points + config.wobble * np.sin(2 * np.pi * t * rng.uniform(0.5, 1.5) + phase)
        points = _smooth(points, config.smoothing)
        points = points.copy()
        points[:, 0] += slant * points[:, 1]
        points[:, 1] += drift * points[:, 0]
        points *= scale
        if rng is not None and config.jitter > 0:
            points = points + rng.normal(0.0, config.jitter, size=points.shape)
        pen = np.zeros((len(points), 1))
        pen[-1] = 1.0
        rows.append(np.concatenate([points, pen], 1))
    absolute = np.concatenate(rows, 0)
    offsets = absolute.copy()
    offsets[1:, :2] = absolute[1:, :2] - absolute[:-1, :2]
    return offsets.astype(np.float32)


def hershey_example(config: HersheyCorpusConfig, seed: int) -> tuple[str, np.ndarray]:
    """The synthetic line number ``seed``: ``(text, strokes (T, 3))``."""
    rng = np.random.default_rng(seed)
    text = sample_text(config, rng)
    names = list(config.fonts)
    weights = np.asarray([config.fonts[n] for n in names], dtype=np.float64)
    font_name = names[int(rng.choice(len(names), p=weights / weights.sum()))]
    return text, render_hershey(text, font_name, rng, config)


def hershey_examples(config: HersheyCorpusConfig, seeds) -> list[tuple[str, np.ndarray]]:
    return [hershey_example(config, int(seed)) for seed in seeds]


def load_omniglot(split: str, path: Path | None = None) -> list[np.ndarray]:
    """Omniglot characters of one split (``train``/``valid``/``test``) as stroke-3
    float32 arrays with y up."""
    path = Path(path) if path is not None else OMNIGLOT_FILE
    if not path.exists():
        raise StudioError(f"Missing Omniglot strokes {path}; restore corpora/handwriting from git.")
    with np.load(path, allow_pickle=False) as archive:
        if f"{split}_points" not in archive:
            raise StudioError(f"{path} has no split {split!r}; use train, valid or test.")
        points = archive[f"{split}_points"].astype(np.float32)
        offsets = archive[f"{split}_offsets"]
    points[:, 1] *= -1.0
    return [points[offsets[i] : offsets[i + 1]] for i in range(len(offsets) - 1) if offsets[i + 1] - offsets[i] > 1]


def omniglot_sha256(path: Path | None = None) -> str:
    path = Path(path) if path is not None else OMNIGLOT_FILE
    return hashlib.sha256(path.read_bytes()).hexdigest()


def offset_statistics(sequences: list[np.ndarray]) -> tuple[list[float], list[float]]:
    """Mean and standard deviation of ``(dx, dy)`` over all points of ``sequences``."""
    offsets = np.concatenate([s[:, :2] for s in sequences], 0).astype(np.float64)
    return offsets.mean(0).tolist(), np.maximum(offsets.std(0), 1e-6).tolist()


def normalise(strokes: np.ndarray, mean, std) -> np.ndarray:
    out = np.asarray(strokes, dtype=np.float32).copy()
    out[:, :2] = (out[:, :2] - np.asarray(mean, dtype=np.float32)) / np.asarray(std, dtype=np.float32)
    return out


def denormalise(strokes: np.ndarray, mean, std) -> np.ndarray:
    out = np.asarray(strokes, dtype=np.float32).copy()
    out[:, :2] = out[:, :2] * np.asarray(std, dtype=np.float32) + np.asarray(mean, dtype=np.float32)
    return out


def pad_batch(sequences: list[np.ndarray], max_length: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Teacher-forcing batch from stroke-3 sequences.

    Returns ``inputs (B, T, 3)`` (a start row ``(0, 0, 1)`` then every point but the
    last), ``targets (B, T, 3)`` and ``mask (B, T)`` (1 on real points).
    """
    if max_length is not None:
        sequences = [s[:max_length] for s in sequences]
    length = max(len(s) for s in sequences)
    inputs = np.zeros((len(sequences), length, 3), dtype=np.float32)
    targets = np.zeros_like(inputs)
    mask = np.zeros((len(sequences), length), dtype=np.float32)
    for row, sequence in enumerate(sequences):
        n = len(sequence)
        targets[row, :n] = sequence
        inputs[row, 0, 2] = 1.0
        inputs[row, 1:n] = sequence[: n - 1]
        mask[row, :n] = 1.0
    return inputs, targets, mask


def encode_texts(texts: list[str], alphabet: str) -> np.ndarray:
    """Texts -> int64 ``(B, U)`` of 1-based alphabet ids, 0 padding."""
    index = {c: i + 1 for i, c in enumerate(alphabet)}
    length = max(1, max(len(t) for t in texts))
    ids = np.zeros((len(texts), length), dtype=np.int64)
    for row, text in enumerate(texts):
        missing = sorted({c for c in text if c not in index})
        if missing:
            raise StudioError(
                "This model cannot write " + ", ".join(repr(c) for c in missing) + f"; it knows: {alphabet!r}."
            )
        ids[row, : len(text)] = [index[c] for c in text]
    return ids
