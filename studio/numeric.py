"""Numeric kernels every layer shares (numpy only): defined once, here."""

from __future__ import annotations

import numpy as np


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """float64 log-probabilities over the last axis; rows with no finite logit give nan.
    (Method calls rather than ``np.max`` etc.: this runs twice per sampled token.)"""
    logits = logits.astype(np.float64)
    top = logits.max(-1, keepdims=True)
    if not np.isfinite(top).all():
        top[~np.isfinite(top)] = 0.0
    shifted = logits - top
    return shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))


def teacher_forced_nats(step, state, ids: np.ndarray, window: int = 4096) -> tuple[float, int, np.ndarray]:
    """The one token scorer: mean nats per token of ``ids`` fed through ``step(tokens (1,
    T), state) -> (logits (1, T, vocab), state)`` in windows of ``window`` tokens, state
    carried across them.  Returns (mean nats, tokens scored, the argmax prediction at
    every position)."""
    ids = np.asarray(ids, dtype=np.int64)
    total, count, predictions = 0.0, 0, []
    for start in range(0, len(ids) - 1, window):
        chunk = ids[start:start + window + 1]
        logits, state = step(chunk[None, :-1], state)
        log_probs = log_softmax(logits[0])
        total -= float(log_probs[np.arange(len(chunk) - 1), chunk[1:]].sum())
        count += len(chunk) - 1
        predictions.append(log_probs.argmax(-1))
    return total / max(1, count), count, np.concatenate(predictions) if predictions else np.zeros(0, np.int64)
