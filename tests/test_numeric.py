"""The shared numeric kernels against naive versions of themselves."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from studio.numeric import inverse_cdf, log_softmax, logsumexp, softmax_weights, teacher_forced_log_probs

finite = st.floats(-80, 80, allow_nan=False, allow_infinity=False)


def naive_log_softmax(row: list[float]) -> list[float]:
    total = sum(math.exp(x) for x in row)
    return [x - math.log(total) for x in row]


@settings(max_examples=60, deadline=None)
@given(arrays(np.float64, st.tuples(st.integers(1, 4), st.integers(1, 30)), elements=finite))
def test_log_softmax_and_logsumexp_match_the_formula(logits):
    got = log_softmax(logits)
    for row, expected in zip(got, map(naive_log_softmax, logits.tolist())):
        np.testing.assert_allclose(row, expected, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(
        logsumexp(logits), [math.log(sum(math.exp(x) for x in row)) for row in logits.tolist()], rtol=1e-12, atol=1e-12
    )
    weights, normaliser = softmax_weights(logits)
    np.testing.assert_allclose(weights / weights.sum(-1, keepdims=True), np.exp(got), atol=1e-12)
    np.testing.assert_allclose(normaliser, logsumexp(logits), rtol=0, atol=0)


def test_large_logits_banned_tokens_and_all_banned_rows():
    logits = np.array([[1000.0, 999.0, -np.inf], [-np.inf, -np.inf, -np.inf]], dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an all-banned row is nan by design, not a warning
        out = log_softmax(logits)
        _, normaliser = softmax_weights(logits)
    assert out.dtype == np.float64
    np.testing.assert_allclose(out[0, :2], naive_log_softmax([1.0, 0.0]), rtol=1e-12)
    assert out[0, 2] == -np.inf and np.isnan(out[1]).all()
    assert normaliser[0] == pytest.approx(1000 + math.log(1 + math.exp(-1))) and normaliser[1] == -np.inf


def test_log_softmax_over_another_axis():
    logits = np.random.default_rng(0).normal(size=(3, 5))
    np.testing.assert_allclose(log_softmax(logits, axis=0), log_softmax(logits.T).T, atol=1e-15)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 5), st.integers(1, 12), st.integers(0, 2**32 - 1))
def test_inverse_cdf_matches_searchsorted_row_by_row(rows, vocab, seed):
    rng = np.random.default_rng(seed)
    weights = rng.random((rows, vocab)) * (rng.random((rows, vocab)) < 0.7)
    weights[:, rng.integers(vocab)] += 0.1  # at least one allowed token per row
    uniforms = rng.random(rows)
    got = inverse_cdf(weights, uniforms)
    for row in range(rows):
        cumulative = np.cumsum(weights[row])
        expected = int(np.searchsorted(cumulative, uniforms[row] * cumulative[-1], side="right"))
        assert got[row] == expected and weights[row, got[row]] > 0
        assert inverse_cdf(weights[row : row + 1], uniforms[row : row + 1])[0] == expected  # batch-free


def test_inverse_cdf_edges_and_frequencies():
    weights = np.array([[0.0, 1.0, 3.0, 0.0]])
    assert inverse_cdf(weights, [0.0])[0] == 1 and inverse_cdf(weights, [0.25])[0] == 2
    # a uniform that rounds onto the total would land on the banned last token
    assert inverse_cdf(weights, [1.0])[0] == 2 and inverse_cdf(np.vstack([weights] * 2), [1.0, 0.1]).tolist() == [2, 1]
    rng = np.random.default_rng(3)
    draws = inverse_cdf(np.tile([[1.0, 2.0, 7.0]], (20_000, 1)), rng.random(20_000))
    np.testing.assert_allclose(np.bincount(draws, minlength=3) / 20_000, [0.1, 0.2, 0.7], atol=0.01)


def test_teacher_forced_log_probs_with_a_toy_bigram_step():
    """A step function whose logits depend on the current token only: each score is
    that row's log-softmax at the next token, whatever the window."""
    table = np.random.default_rng(5).normal(size=(4, 4))
    calls = []

    def step(tokens, state):
        calls.append(tokens.shape[1])
        return table[tokens], state

    ids = [0, 3, 1, 1, 2, 0, 3]
    expected = [naive_log_softmax(table[a].tolist())[b] for a, b in zip(ids, ids[1:])]
    np.testing.assert_allclose(teacher_forced_log_probs(step, None, ids), expected, rtol=1e-12)
    assert calls == [6]
    np.testing.assert_allclose(teacher_forced_log_probs(step, None, ids, window=4), expected, rtol=1e-12)
    assert calls[1:] == [4, 2] and teacher_forced_log_probs(step, None, ids[:1]).shape == (0,)
