"""Held-out likelihood of a stroke bundle through onnxruntime (torch-free).

``evaluate_strokes(bundle)`` teacher-forces held-out sequences through the exported
step graph and reports the mean negative log-likelihood per point in nats, in the
normalised offset units the model was trained in (the same figure as the training
loss; subtract ``log(std_x * std_y)`` per point for raw units).  Held-out data: the
Omniglot *test* split for unconditional models, Hershey lines from a seed range that
training and validation never touch for text-conditioned ones.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from . import data as stroke_data
from . import mdn

TEST_SEED = 2_100_000_000


def held_out(domain, count: int, corpus: str | Path | None = None) -> list[tuple[str, np.ndarray]]:
    """``count`` held-out ``(text, strokes)`` pairs for ``domain`` (raw units)."""
    if domain.conditional:
        config = stroke_data.HersheyCorpusConfig(alphabet=domain.alphabet)
        return stroke_data.hershey_examples(config, range(TEST_SEED, TEST_SEED + count))
    return [("", s) for s in stroke_data.load_omniglot("test", None if corpus is None else Path(corpus))[:count]]


def evaluate_strokes(
    runtime, domain, corpus: str | Path | None = None, *, count: int = 256, batch_size: int = 64
) -> dict:
    """Nats per point of the bundle behind ``runtime`` (a :class:`studio.runtime.Runtime`)
    on ``count`` held-out sequences.  Returns ``{"nats_per_point", "points",
    "sequences", "raw_nats_per_point"}``."""
    items = held_out(domain, count, corpus)
    total, points = 0.0, 0.0
    for start in range(0, len(items), batch_size):
        chunk = items[start : start + batch_size]
        sequences = [domain.normalise(s) for _, s in chunk]
        inputs, targets, mask = stroke_data.pad_batch(sequences)
        feed = {}
        if domain.conditional:
            feed["text"] = domain.encode_text([t for t, _ in chunk])
        state = runtime.init_state(len(chunk))
        for t in range(inputs.shape[1]):
            outputs, state = runtime.run({"points": np.ascontiguousarray(inputs[:, t]), **feed}, state)
            log_likelihood = mdn.log_likelihood({k: outputs[k] for k in mdn.HEAD_NAMES}, targets[:, t])
            total -= float((log_likelihood * mask[:, t]).sum())
        points += float(mask.sum())
    nats = total / points
    raw = nats + math.log(domain.std[0] * domain.std[1])
    return {
        "nats_per_point": round(nats, 5),
        "raw_nats_per_point": round(raw, 5),
        "points": int(points),
        "sequences": len(items),
    }
