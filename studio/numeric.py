"""The numeric kernels every layer shares, numpy only and defined once here:
log-softmax, log-sum-exp, the inverse-CDF draw and the teacher-forced token scores.

All work in float64 over one axis (the last by default).  Logits may be ``-inf``
(a banned token); a row whose largest logit is not finite gives nan log-probabilities
rather than a warning, so callers test for it where it matters.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np


def _shifted(logits: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray, bool]:
    """(logits - max, max, every max finite) in float64, with the max taken as 0 in rows
    that have no finite logit.  (Method calls rather than ``np.max`` etc.: this runs for
    every token.)"""
    logits = np.asarray(logits, dtype=np.float64)
    top = logits.max(axis, keepdims=True)
    # one row is the common case, and a float test costs far less than two numpy calls
    # (the sum is finite only when every max is; one that overflows asks the full test)
    finite = math.isfinite(top.item() if top.size == 1 else top.sum()) or bool(np.isfinite(top).all())
    if not finite:
        top[~np.isfinite(top)] = 0.0
    return logits - top, top, finite


_AS_IS = contextlib.nullcontext()  # reusable: entering it does nothing


def _quiet(finite: bool):
    """Silence log(0) and inf - inf where a row has no finite logit (its result is nan or
    -inf by design); rows with a finite max cannot raise them, so they skip the cost."""
    return _AS_IS if finite else np.errstate(divide="ignore", invalid="ignore")


def log_softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    """float64 log-probabilities ``x - log(sum(exp(x)))`` along ``axis``, same shape as
    ``logits``; rows with no finite logit give nan."""
    shifted, _, finite = _shifted(logits, axis)
    with _quiet(finite):
        return shifted - np.log(np.exp(shifted).sum(axis, keepdims=True))


def softmax_weights(logits: np.ndarray, axis: int = -1) -> tuple[np.ndarray, np.ndarray]:
    """``(exp(x - max), log(sum(exp(x))))``: unnormalised probabilities, ready for
    :func:`inverse_cdf`, and the log normaliser (``logits``' shape without ``axis``), so
    that ``log p(i) = x[i] - normaliser`` scores a token without a second pass."""
    shifted, top, finite = _shifted(logits, axis)
    weights = np.exp(shifted)
    with _quiet(finite):
        return weights, top.squeeze(axis) + np.log(weights.sum(axis))


def logsumexp(values: np.ndarray, axis: int = -1) -> np.ndarray:
    """``log(sum(exp(values)))`` along ``axis``, computed stably (``axis`` removed)."""
    return softmax_weights(values, axis)[1]


def inverse_cdf(weights: np.ndarray, uniforms: Sequence[float]) -> np.ndarray:
    """One index per row of ``weights`` (n, V), non-negative and unnormalised, row i
    chosen by ``uniforms[i]`` in [0, 1): the first index whose cumulative weight exceeds
    ``uniforms[i]`` times the row's total.  Returns (n,) int64.

    Depends only on the uniforms, not on the batch size or the BLAS, so a seeded generator
    per row reproduces each row exactly.  A zero-weight index (float round-off at the
    top end of the cumulative sum) is never returned: the nearest allowed one is."""
    if len(weights) == 1:  # the common case, done with scalars: a few numpy calls fewer
        row = weights[0]
        cumulative = row.cumsum()
        index = min(int(cumulative.searchsorted(uniforms[0] * cumulative[-1], "right")), len(row) - 1)
        return np.array([index if row[index] else _nearest_allowed(row, index)])
    cumulative = weights.cumsum(-1)
    rows = len(weights)
    targets = np.asarray(uniforms, dtype=np.float64) * cumulative[:, -1]
    # counting entries <= target is searchsorted(side="right") for every row at once
    index = np.minimum((cumulative <= targets[:, None]).sum(-1), weights.shape[-1] - 1)
    chosen = weights[np.arange(rows), index]
    for row in np.flatnonzero(chosen == 0):
        index[row] = _nearest_allowed(weights[row], index[row])
    return index


def _nearest_allowed(weights: np.ndarray, index: int) -> int:
    allowed = np.flatnonzero(weights > 0)
    return int(allowed[np.argmin(np.abs(allowed - index))])


def _scored_windows(
    step: Callable[[np.ndarray, Any], tuple[np.ndarray, Any]],
    state: Any,
    ids: Sequence[int],
    window: int,
    restart: int | None = None,
):
    """Per window of ``ids`` fed through ``step``: (log p of each next token, the argmax
    prediction at each position).  With ``restart`` (a domain's separator), every input
    equal to it starts a new window from the initial ``state``: each piece is scored as
    the sampler writes one, from a fresh state."""
    inputs = np.asarray(ids[:-1], dtype=np.int64)
    targets = np.asarray(ids[1:], dtype=np.int64)
    starts = set(range(0, len(inputs), window))
    fresh = set(np.flatnonzero(inputs == restart).tolist()) if restart is not None else set()
    bounds = sorted(starts | fresh) + [len(inputs)]
    initial = state
    for start, stop in zip(bounds, bounds[1:]):
        chunk = inputs[start:stop]
        logits, state = step(chunk[None, :], initial if start in fresh else state)
        log_probs = log_softmax(logits[0])
        yield log_probs[np.arange(len(chunk)), targets[start:stop]], log_probs.argmax(-1)


def teacher_forced_log_probs(
    step: Callable[[np.ndarray, Any], tuple[np.ndarray, Any]],
    state: Any,
    ids: Sequence[int],
    window: int = 4096,
    restart: int | None = None,
) -> np.ndarray:
    """(len(ids) - 1,) float64: log p(ids[t + 1] | ids[:t + 1]) for every t, with ``ids``
    fed through ``step(tokens (1, T), state) -> (logits (1, T, vocab), state)`` in windows
    of ``window`` tokens, the state carried across them (so the window changes nothing
    but memory); with ``restart``, each piece from the initial state (see :func:`_scored_windows`)."""
    scored = _scored_windows(step, state, ids, window, restart)
    return np.concatenate([np.zeros(0)] + [scores for scores, _ in scored])


def teacher_forced_nats(
    step: Callable[[np.ndarray, Any], tuple[np.ndarray, Any]],
    state: Any,
    ids: Sequence[int],
    window: int = 4096,
    restart: int | None = None,
) -> tuple[float, int, np.ndarray]:
    """The same scores summed: (mean nats per token, tokens scored, the argmax prediction
    at every position), as ``studio eval`` and the exporter's held-out check report them."""
    total, count, predictions = 0.0, 0, [np.zeros(0, np.int64)]
    for scores, argmax in _scored_windows(step, state, ids, window, restart):
        total -= float(scores.sum())
        count += len(scores)
        predictions.append(argmax)
    return total / max(1, count), count, np.concatenate(predictions)
