"""An automatic legibility check: can a word be picked out of a line-up by its shape?

For each test word the model writes it once; a nearest-template reader then compares
the drawing with clean Hershey renderings (every font of the corpus) of the intended
word and of ``distractors`` other words of the same length, and reads whichever is
closest.  The score is the fraction of words read correctly (chance is
``1 / (distractors + 1)``).  Shapes are compared as point clouds: each drawing is
densified along its strokes, shifted to start at x = 0 with its vertical centre at 0,
scaled by its height, and scored with the symmetric chamfer distance.

The same reader scored on the synthetic training lines themselves (:func:`corpus_score`)
gives the ceiling the model can reach.  Torch-free.
"""

from __future__ import annotations

import numpy as np

from ..bundle import Bundle
from ..domains import domain_from_config
from ..runtime import Runtime
from ..sampling.settings import SampleSettings
from . import data as stroke_data
from .render import catmull_rom, pen_runs
from .sample import hand_of, write_line

HAND_TEXT = "The quick"  # the first piece whose first word sets the hand for --hand-seeds

CLOUD_POINTS = 400


def point_cloud(absolute: np.ndarray) -> np.ndarray:
    """Absolute strokes ``(T, 3)`` -> normalised ``(CLOUD_POINTS, 2)`` point cloud."""
    runs = [catmull_rom(r, 4) for r in pen_runs(absolute)] or [absolute[:, :2]]
    cloud = np.concatenate(runs).astype(np.float64)
    low, high = cloud.min(0), cloud.max(0)
    height = max(high[1] - low[1], 1e-6)
    cloud = (cloud - np.array([low[0], 0.5 * (low[1] + high[1])])) / height
    pick = np.linspace(0, len(cloud) - 1, CLOUD_POINTS).round().astype(int)
    return cloud[pick]


def chamfer(a: np.ndarray, b: np.ndarray) -> float:
    distance = np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))
    return float(distance.min(1).mean() + distance.min(0).mean())


def _absolute(offsets: np.ndarray) -> np.ndarray:
    points = offsets.astype(np.float64).copy()
    points[:, :2] = np.cumsum(points[:, :2], 0)
    return points


_TEMPLATES: dict[tuple[str, str], list[np.ndarray]] = {}


def templates(word: str, config: stroke_data.HersheyCorpusConfig) -> list[np.ndarray]:
    """Clean renderings of ``word`` in every corpus font, as point clouds (cached)."""
    key = (word, config.sha256())
    if key not in _TEMPLATES:
        _TEMPLATES[key] = [
            point_cloud(_absolute(stroke_data.render_hershey(word, font, None, config))) for font in config.fonts
        ]
    return _TEMPLATES[key]


def read_word(drawing: np.ndarray, candidates: list[str], config) -> str:
    """The candidate whose templates lie closest to ``drawing`` (absolute ``(T, 3)``)."""
    cloud = point_cloud(drawing)
    scores = [min(chamfer(cloud, t) for t in templates(word, config)) for word in candidates]
    return candidates[int(np.argmin(scores))]


def test_words(count: int, seed: int = 0, min_length: int = 3, max_length: int = 8) -> list[str]:
    words = [w for w in stroke_data.load_words() if min_length <= len(w) <= max_length]
    rng = np.random.default_rng(seed)
    return [words[int(i)] for i in rng.choice(len(words), size=count, replace=False)]


def line_up(word: str, distractors: int, rng: np.random.Generator) -> list[str]:
    same_length = [w for w in stroke_data.load_words() if len(w) == len(word) and w != word]
    picks = rng.choice(len(same_length), size=min(distractors, len(same_length)), replace=False)
    return [word] + [same_length[int(i)] for i in picks]


def score(write, words: list[str], distractors: int = 19, seed: int = 0) -> dict:
    """``write(word) -> absolute strokes (T, 3)``; returns accuracy and the misreads."""
    config = stroke_data.HersheyCorpusConfig()
    rng = np.random.default_rng(seed)
    correct, misreads = 0, []
    for word in words:
        reading = read_word(write(word), line_up(word, distractors, rng), config)
        correct += reading == word
        if reading != word:
            misreads.append((word, reading))
    return {
        "accuracy": correct / len(words),
        "words": len(words),
        "chance": 1 / (distractors + 1),
        "misreads": misreads,
    }


def corpus_score(words: list[str], distractors: int = 19, seed: int = 0) -> dict:
    """The reader on synthetic training-style lines of the same words (the ceiling)."""
    config = stroke_data.HersheyCorpusConfig()
    fonts = list(config.fonts)
    counter = iter(range(10**6))

    def write(word: str) -> np.ndarray:
        index = next(counter)
        rng = np.random.default_rng(5_000_000 + index)
        return _absolute(stroke_data.render_hershey(word, fonts[index % len(fonts)], rng, config))

    return score(write, words, distractors, seed)


def model_score(
    bundle, words: list[str], bias: float = 1.0, distractors: int = 19, seed: int = 0, hand_seed: int | None = None
) -> dict:
    """The reader on what ``bundle`` writes for each word (one sample each, fixed seeds).
    With ``hand_seed``, every word is primed with the hand of the model's own "The" from
    "The quick" written with that seed, as a text's later pieces are (:mod:`.sample`)."""
    bundle = bundle if isinstance(bundle, Bundle) else Bundle.load(bundle)
    runtime = Runtime(bundle, threads=1)
    domain = domain_from_config(bundle.card["domain"])
    settings = SampleSettings(model=str(bundle.path), bias=bias, seed=seed)
    counter = iter(range(10**6))
    hand = None
    if hand_seed is not None:
        offsets, phi, _ = write_line(domain, runtime, HAND_TEXT, settings, np.random.default_rng(hand_seed))
        hand = hand_of(offsets, phi, HAND_TEXT, HAND_TEXT.split()[0])

    def write(word: str) -> np.ndarray:
        rng = np.random.default_rng([seed, next(counter)])
        offsets, _, _ = write_line(domain, runtime, word, settings, rng, hand)
        return _absolute(offsets)

    return score(write, words, distractors, seed)


def main(argv=None) -> None:
    import argparse
    import json

    parser = argparse.ArgumentParser(description="Legibility of a handwriting bundle (word line-up reader).")
    parser.add_argument("model", nargs="?", default="handwriting")
    parser.add_argument("--words", type=int, default=50)
    parser.add_argument("--bias", type=float, default=1.0)
    parser.add_argument("--distractors", type=int, default=19)
    parser.add_argument(
        "--hand-seeds", type=int, default=0, help='also score words primed with the model\'s own "The", seeds 1..N'
    )
    args = parser.parse_args(argv)
    words = test_words(args.words)
    result = {
        "model": model_score(args.model, words, args.bias, args.distractors),
        "corpus_ceiling": corpus_score(words, args.distractors),
    }
    for hand_seed in range(1, args.hand_seeds + 1):
        result[f"primed by its own 'The' (seed {hand_seed})"] = model_score(
            args.model, words, args.bias, args.distractors, hand_seed=hand_seed
        )
    for key in result:
        result[key]["misreads"] = result[key]["misreads"][:10]
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
