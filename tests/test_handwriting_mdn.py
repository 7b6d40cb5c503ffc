"""Mixture maths: the fast log-likelihood against a naive loop, and Graves's bias."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from studio.handwriting import mdn
from studio.handwriting.model import mixture_log_likelihood, split_head

MIXTURES = 5


def random_head(rng, batch=4, mixtures=MIXTURES, scale=1.0, winner=False):
    raw = rng.normal(0, scale, size=(batch, 1 + 6 * mixtures)).astype(np.float32)
    if winner:  # one component clearly likelier than the rest
        raw[:, 1 + int(rng.integers(mixtures))] = 1.5 + raw[:, 1 : 1 + mixtures].max()
    return split_head(torch.from_numpy(raw), mixtures)


def naive_log_likelihood(head, target):
    """One row, one component at a time, straight from the formula (float64)."""
    weights = torch.softmax(head["mixture_logits"].double(), -1)
    density = 0.0
    for j in range(weights.shape[0]):
        mu1, mu2 = head["means"][j].double()
        s1, s2 = torch.exp(head["log_scales"][j].double())
        rho = head["correlations"][j].double()
        x1, x2 = target[0].double(), target[1].double()
        z = ((x1 - mu1) / s1) ** 2 + ((x2 - mu2) / s2) ** 2 - 2 * rho * (x1 - mu1) * (x2 - mu2) / (s1 * s2)
        n = torch.exp(-z / (2 * (1 - rho**2))) / (2 * math.pi * s1 * s2 * torch.sqrt(1 - rho**2))
        density = density + weights[j] * n
    e = torch.sigmoid(head["pen_logit"].double())
    pen = e if target[2] == 1 else 1 - e
    return float(torch.log(density) + torch.log(pen))


def test_log_likelihood_matches_naive_reference():
    rng = np.random.default_rng(0)
    head = random_head(rng)
    targets = torch.from_numpy(np.concatenate([rng.normal(size=(4, 2)), [[0], [1], [1], [0]]], 1).astype(np.float32))
    fast = mixture_log_likelihood(head, targets)
    for row in range(4):
        expected = naive_log_likelihood({k: v[row] for k, v in head.items()}, targets[row])
        assert fast[row].item() == pytest.approx(expected, abs=1e-4)


def test_numpy_log_likelihood_matches_torch():
    rng = np.random.default_rng(1)
    head = random_head(rng, batch=6)
    targets = np.concatenate([rng.normal(size=(6, 2)), rng.integers(0, 2, size=(6, 1))], 1).astype(np.float32)
    expected = mixture_log_likelihood(head, torch.from_numpy(targets)).numpy()
    got = mdn.log_likelihood({k: v.numpy() for k, v in head.items()}, targets)
    np.testing.assert_allclose(got, expected, atol=1e-4)


def test_log_likelihood_is_stable_far_from_every_component():
    rng = np.random.default_rng(2)
    head = random_head(rng)
    far = torch.tensor([[1e3, -1e3, 0.0]] * 4)
    value = mixture_log_likelihood(head, far)
    assert torch.isfinite(value).all() and (value < -1e4).all()


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_spread_shrinks_to_zero_as_bias_grows(seed):
    rng = np.random.default_rng(seed)
    head = {k: v.numpy() for k, v in random_head(rng, batch=1, scale=2.0, winner=True).items()}
    spreads = [mdn.spread(head, b) for b in (0.0, 3.0, 10.0, 30.0)]
    assert spreads[1] < spreads[0]
    assert spreads[2] < 0.05 * spreads[0]
    assert spreads[3] < 1e-4 * spreads[0]


def test_drawn_points_collapse_onto_the_likeliest_mean_with_bias():
    rng = np.random.default_rng(3)
    head = {k: v.numpy() for k, v in random_head(rng, batch=1, scale=2.0, winner=True).items()}
    best = head["means"][0, np.argmax(head["mixture_logits"][0])]
    near = np.stack([mdn.draw(head, np.random.default_rng(i), 5.0)[0, :2] for i in range(50)])
    assert np.median(np.abs(near - best).max(1)) < 0.2
    exact = np.stack([mdn.draw(head, np.random.default_rng(i), 40.0)[0, :2] for i in range(50)])
    assert np.abs(exact - best).max() < 1e-5
    wide = np.stack([mdn.draw(head, np.random.default_rng(i), 0.0)[0, :2] for i in range(200)])
    assert wide.std(0).max() > 0.1


def test_bias_must_not_be_negative():
    head = {k: v.numpy() for k, v in random_head(np.random.default_rng(4), batch=1).items()}
    with pytest.raises(ValueError):
        mdn.apply_bias(head, -1.0)


def test_draw_is_deterministic_for_a_seed():
    head = {k: v.numpy() for k, v in random_head(np.random.default_rng(5), batch=3).items()}
    a = mdn.draw(head, np.random.default_rng(9), 0.5)
    b = mdn.draw(head, np.random.default_rng(9), 0.5)
    np.testing.assert_array_equal(a, b)
