"""Mixture-density maths on numpy arrays (the sampling side; no torch).

A *head* is the dict a stroke step graph returns for a batch of ``B`` points:

* ``pen_logit (B,)``: logit of the pen leaving the paper after the next point;
* ``mixture_logits (B, M)``; ``means (B, M, 2)``; ``log_scales (B, M, 2)``;
* ``correlations (B, M)`` in (-1, 1).

:func:`apply_bias` is Graves (2013) eq. 61-62: ``bias`` b >= 0 sharpens the mixture
weights (logits times ``1 + b``) and shrinks the standard deviations (``log sigma - b``),
so samples get tidier as ``b`` grows and collapse onto the most likely mean as
``b -> inf``.  :func:`draw` takes one point per row; :func:`log_likelihood` scores
given points (used by evaluation and checked against torch in the tests).
"""

from __future__ import annotations

import math

import numpy as np

from ..numeric import inverse_cdf, log_softmax, logsumexp

HEAD_NAMES = ("pen_logit", "mixture_logits", "means", "log_scales", "correlations")  # the step graph's mixture outputs


def apply_bias(head: dict[str, np.ndarray], bias: float) -> dict[str, np.ndarray]:
    """A new head with Graves's sampling bias applied (the input is not modified)."""
    if bias < 0:
        raise ValueError(f"bias must be 0 or more (got {bias})")
    biased = dict(head)
    biased["mixture_logits"] = head["mixture_logits"] * (1.0 + bias)
    biased["log_scales"] = head["log_scales"] - bias
    return biased


def log_likelihood(head: dict[str, np.ndarray], targets: np.ndarray) -> np.ndarray:
    """Log-density of ``targets (B, 3)`` = (dx, dy, pen_lift) under ``head``: ``(B,)``."""
    head = {k: np.asarray(v, dtype=np.float64) for k, v in head.items()}
    targets = np.asarray(targets, dtype=np.float64)
    normalised = (targets[:, None, :2] - head["means"]) * np.exp(-head["log_scales"])  # (B, M, 2)
    rho = np.clip(head["correlations"], -1 + 1e-6, 1 - 1e-6)
    one_minus_rho2 = np.maximum(1 - rho * rho, 1e-6)
    z = normalised[..., 0] ** 2 + normalised[..., 1] ** 2 - 2 * rho * normalised[..., 0] * normalised[..., 1]
    log_gaussian = (
        -math.log(2 * math.pi) - head["log_scales"].sum(-1) - 0.5 * np.log(one_minus_rho2) - z / (2 * one_minus_rho2)
    )
    joint = log_softmax(head["mixture_logits"]) + log_gaussian  # (B, M)
    offset_ll = logsumexp(joint)
    logit = head["pen_logit"]
    pen = targets[:, 2]
    # log sigmoid(x) = -softplus(-x), written stably.
    pen_ll = -(np.logaddexp(0.0, -logit) * pen + np.logaddexp(0.0, logit) * (1 - pen))
    return offset_ll + pen_ll


def draw(head: dict[str, np.ndarray], rng: np.random.Generator, bias: float = 0.0) -> np.ndarray:
    """One point per row from the (biased) mixture: ``(B, 3)`` float32.

    Randomness is consumed in a fixed order (component, Gaussian, pen) so a seed always
    gives the same strokes.
    """
    head = apply_bias(head, bias)
    batch = head["mixture_logits"].shape[0]
    weights = np.exp(log_softmax(head["mixture_logits"].astype(np.float64)))
    component = inverse_cdf(weights, rng.random(batch))  # (B,)
    rows = np.arange(batch)
    mean = head["means"][rows, component].astype(np.float64)  # (B, 2)
    scale = np.exp(head["log_scales"][rows, component].astype(np.float64))  # (B, 2)
    rho = head["correlations"][rows, component].astype(np.float64)  # (B,)
    normal = rng.standard_normal((batch, 2))
    dx = mean[:, 0] + scale[:, 0] * normal[:, 0]
    dy = mean[:, 1] + scale[:, 1] * (rho * normal[:, 0] + np.sqrt(np.maximum(1 - rho * rho, 0.0)) * normal[:, 1])
    pen_probability = 1.0 / (1.0 + np.exp(-head["pen_logit"].astype(np.float64)))
    pen = (rng.random(batch) < pen_probability).astype(np.float64)
    return np.stack([dx, dy, pen], 1).astype(np.float32)


DOODLE_POINTS = 45  # points a doodle aims for: an Omniglot character has ~31 on average


def draw_doodle_points(step, points: np.ndarray, rng, bias: float) -> tuple[np.ndarray, float]:
    """Points drawn one at a time until the first pen lift after ``DOODLE_POINTS`` (at
    most three times that), the last one lifted: ``(points (T, 3) normalised, the
    mixture's log-density of them)``.  ``step(points (1, 3))`` feeds the model its last
    point (and whatever else it takes) and returns the mixture outputs of the next."""
    drawn, logprob = [], 0.0
    for index in range(3 * DOODLE_POINTS):
        head = step(points)
        points = draw(head, rng, bias)
        logprob += float(log_likelihood(head, points)[0])
        drawn.append(points[0].copy())
        if index + 1 >= DOODLE_POINTS and points[0, 2] > 0.5:
            break
    drawn[-1][2] = 1.0
    return np.asarray(drawn), logprob


def spread(head: dict[str, np.ndarray], bias: float) -> float:
    """Largest standard deviation of the biased mixture's offset (a scalar), the
    quantity that shrinks to 0 as ``bias`` grows."""
    biased = apply_bias(head, bias)
    weights = np.exp(log_softmax(biased["mixture_logits"].astype(np.float64)))[..., None]
    scales = np.exp(biased["log_scales"].astype(np.float64))
    means = biased["means"].astype(np.float64)
    mean = (weights * means).sum(-2, keepdims=True)
    variance = (weights * (scales**2 + (means - mean) ** 2)).sum(-2)
    return float(np.sqrt(variance).max())
