"""The variational RNN's sampler and scorer through onnxruntime (numpy only, no torch).

The step graph (see :mod:`studio.models.vrnn`) takes the standard normal ``noise`` that
becomes the latent ``z = mu + sigma * noise``; here it is drawn from the one seeded
generator that also draws the points, so a seed fixes a sample.

* :func:`generate`: ``settings.num`` doodles in a row, each about ``mdn.DOODLE_POINTS``
  points ending on a pen lift, ``z`` from the prior and the point from the decoder's
  mixture (with Graves's ``settings.bias``).  ``settings.style`` primes with a stored
  sequence, encoded by the posterior at its mean (noise 0).
* :func:`evaluate_bound`: the negative evidence lower bound per point on held-out
  strokes, ``-log p(x | z) + KL(q || p)`` with ``z`` drawn from the encoder (seeded
  noise); an upper bound on the exact negative log-likelihood.
* :func:`importance_bound`: the tighter importance-weighted bound (Burda et al. 2016)
  with ``samples`` draws of the whole latent sequence per stroke sequence.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..errors import StudioError
from ..sampling.rng import CounterRNG
from . import data as stroke_data
from . import mdn
from .render import Rendered, doodle_page

EVALUATION_SEED = 0  # the encoder's noise when scoring: the same bound every time


def _start_point(batch: int) -> np.ndarray:
    points = np.zeros((batch, 3), dtype=np.float32)
    points[:, 2] = 1.0
    return points


def _feed(points: np.ndarray, target: np.ndarray, posterior: float, noise: np.ndarray) -> dict[str, np.ndarray]:
    return {
        "points": np.ascontiguousarray(points, dtype=np.float32),
        "target": np.ascontiguousarray(target, dtype=np.float32),
        "posterior": np.full(len(points), posterior, dtype=np.float32),
        "noise": np.ascontiguousarray(noise, dtype=np.float32),
    }


def latent_size(runtime) -> int:
    return int(runtime.bundle.card["io"]["inputs"]["noise"]["shape"][1])


def _style(runtime, style: int | None) -> np.ndarray | None:
    if style is None:
        return None
    styles = runtime.bundle.card.get("styles", [])
    if not 0 <= style < len(styles):
        raise StudioError(f"Style {style} does not exist: this model has styles 0 to {len(styles) - 1}.")
    return np.asarray(styles[style]["strokes"], dtype=np.float32)


def draw_doodle(domain, runtime, bias: float, rng: CounterRNG, style: np.ndarray | None = None):
    """One sequence from the prior: ``(offsets (T, 3) raw units, logprob)``; ``logprob``
    is the decoder's log-density of the drawn points given the drawn latents (normalised
    units), not the marginal likelihood."""
    size = latent_size(runtime)
    state = runtime.init_state(1)
    points = _start_point(1)
    if style is not None:
        for row in domain.normalise(style):
            _, state = runtime.run(_feed(points, row[None], 1.0, np.zeros((1, size))), state)
            points = row[None].astype(np.float32)

    def step(last: np.ndarray) -> dict[str, np.ndarray]:
        nonlocal state
        noise = rng.standard_normal((1, size))
        outputs, state = runtime.run(_feed(last, np.zeros_like(last), 0.0, noise), state)
        return {k: outputs[k] for k in mdn.HEAD_NAMES}

    drawn, logprob = mdn.draw_doodle_points(step, points, rng, bias)
    return domain.denormalise(drawn), logprob


def generate(domain, runtime, settings) -> Rendered:
    """``settings.num`` doodles side by side; see the module docstring."""
    rng = CounterRNG(settings.seed)  # the sampling path's one random stream
    style = _style(runtime, settings.style)
    doodles, logprob = [], 0.0
    for _ in range(settings.num):
        offsets, doodle_logprob = draw_doodle(domain, runtime, settings.bias, rng, style)
        absolute = offsets.astype(np.float64)
        absolute[:, :2] = np.cumsum(absolute[:, :2], 0)
        doodles.append(absolute)
        logprob += doodle_logprob
    return doodle_page(doodles, settings, logprob, " from the variational RNN")


def held_out(corpus: str | Path | None, count: int) -> list[np.ndarray]:
    """The first ``count`` test sequences of a stroke npz (None: the shipped Omniglot)."""
    return stroke_data.load_omniglot("test", None if corpus is None else Path(corpus))[:count]


def _sequence_terms(runtime, domain, sequences: list[np.ndarray], samples: int, rng: np.random.Generator):
    """Teacher-force ``sequences`` with ``z`` from the encoder, each repeated ``samples``
    times: per row, the summed ``log p(x | z)``, ``KL`` and ``log p(z) - log q(z)``, and
    the real points of each sequence."""
    normalised = [domain.normalise(s) for s in sequences]
    inputs, targets, mask = stroke_data.pad_batch(normalised)
    inputs, targets, mask = (np.repeat(a, samples, axis=0) for a in (inputs, targets, mask))
    rows = len(inputs)
    size = latent_size(runtime)
    state = runtime.init_state(rows)
    reconstruction, kl, log_ratio = np.zeros(rows), np.zeros(rows), np.zeros(rows)
    for t in range(inputs.shape[1]):
        feed = _feed(inputs[:, t], targets[:, t], 1.0, rng.standard_normal((rows, size)))
        outputs, state = runtime.run(feed, state)
        head = {k: outputs[k] for k in mdn.HEAD_NAMES}
        reconstruction += mdn.log_likelihood(head, targets[:, t]) * mask[:, t]
        kl += outputs["kl"].astype(np.float64) * mask[:, t]
        log_ratio += outputs["log_ratio"].astype(np.float64) * mask[:, t]
    return reconstruction, kl, log_ratio, mask.sum(1)[::samples]


def evaluate_bound(runtime, domain, corpus: str | Path | None = None, *, count: int = 256, batch_size: int = 64):
    """The negative ELBO per point on ``count`` held-out sequences: ``{"nats_per_point",
    "reconstruction_nats_per_point", "kl_nats_per_point", "points", "sequences"}``."""
    sequences = held_out(corpus, count)
    if not sequences:
        raise StudioError("the stroke file holds no test sequences to score")
    rng = np.random.default_rng(EVALUATION_SEED)
    reconstruction, kl, points = 0.0, 0.0, 0.0
    for start in range(0, len(sequences), batch_size):
        log_p, divergence, _, lengths = _sequence_terms(runtime, domain, sequences[start : start + batch_size], 1, rng)
        reconstruction -= float(log_p.sum())
        kl += float(divergence.sum())
        points += float(lengths.sum())
    return {
        "nats_per_point": (reconstruction + kl) / points,
        "reconstruction_nats_per_point": reconstruction / points,
        "kl_nats_per_point": kl / points,
        "points": int(points),
        "sequences": len(sequences),
    }


def importance_bound(
    runtime, domain, corpus: str | Path | None = None, *, samples: int = 16, count: int = 256, batch_size: int = 16
) -> dict:
    """The importance-weighted bound with ``samples`` latent sequences per stroke sequence,
    per point: ``-log mean_k p(x, z_k) / q(z_k | x)``; tighter than the ELBO as
    ``samples`` grows, and still never below the exact negative log-likelihood."""
    sequences = held_out(corpus, count)
    rng = np.random.default_rng(EVALUATION_SEED)
    total, points = 0.0, 0.0
    for start in range(0, len(sequences), batch_size):
        log_p, _, log_ratio, lengths = _sequence_terms(
            runtime, domain, sequences[start : start + batch_size], samples, rng
        )
        weights = (log_p + log_ratio).reshape(-1, samples)  # (sequences, samples)
        peak = weights.max(1, keepdims=True)
        log_mean = peak[:, 0] + np.log(np.exp(weights - peak).mean(1))
        total -= float(log_mean.sum())
        points += float(lengths.sum())
    return {"nats_per_point": total / points, "samples": samples, "points": int(points), "sequences": len(sequences)}


def raw_units(nats_per_point: float, domain) -> float:
    """A per-point figure in the corpus's own units (normalised by ``std`` in training)."""
    return nats_per_point + math.log(domain.std[0] * domain.std[1])
