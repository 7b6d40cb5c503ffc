"""Sampling rules: small pure objects ``rule(history, logits) -> logits`` on numpy arrays.

``history`` is (batch, t) int64 ids seen so far (prime included); ``logits`` is
(batch, vocab) float.  Each rule validates its settings when built and returns a new
array, never editing its input.  :func:`build_rules` applies them in this order, the
only order used anywhere in the project:

1. domain constraints: the allowed-token mask (e.g. a musical scale), then the domain's
   own rules (e.g. music's note grammar, :mod:`studio.music.grammar`)
2. repetition penalty (CTRL, Keskar et al. 2019)
3. no-repeat n-gram ban
4. temperature
5. top-k
6. top-p (nucleus)

Ties: top-k and top-p rank tokens by a stable sort on descending logit, so among
equal logits the lower id wins; top-k keeps exactly ``k`` tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from ..errors import StudioError, require
from ..numeric import inverse_cdf, softmax_weights
from .rng import CounterRNG

NEG_INF = -np.inf


class Rule(Protocol):
    def __call__(self, history: np.ndarray, logits: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class AllowedTokens:
    """Sets logits of tokens outside ``mask`` (bool, [vocab]) to -inf."""

    stateless = True  # reads no history (beam search applies it without one)

    mask: np.ndarray

    def __post_init__(self) -> None:
        require(bool(np.any(self.mask)), "the constraint leaves no token allowed")

    def __call__(self, history, logits):
        return np.where(self.mask, logits, NEG_INF)


@dataclass(frozen=True)
class RepetitionPenalty:
    """Divides positive (multiplies negative) logits of already-seen tokens by ``penalty``."""

    penalty: float

    def __post_init__(self) -> None:
        require(self.penalty > 0, f"repetition penalty must be positive (got {self.penalty})")

    def __call__(self, history, logits):
        out = logits.copy()
        for row in range(out.shape[0]):
            seen = np.unique(history[row])
            values = out[row, seen]
            out[row, seen] = np.where(values > 0, values / self.penalty, values * self.penalty)
        return out


@dataclass(frozen=True)
class NoRepeatNGram:
    """Bans any token that would repeat an n-gram already present in the history."""

    size: int

    def __post_init__(self) -> None:
        require(self.size >= 1, f"no-repeat n-gram size must be at least 1 (got {self.size})")

    def __call__(self, history, logits):
        out = logits.copy()
        n = self.size
        if history.shape[1] < n - 1:
            return out
        for row in range(out.shape[0]):
            seq = history[row].tolist()
            prefix = tuple(seq[len(seq) - (n - 1) :]) if n > 1 else ()
            banned = {seq[i + n - 1] for i in range(len(seq) - n + 1) if tuple(seq[i : i + n - 1]) == prefix}
            if banned:
                out[row, list(banned)] = NEG_INF
        return out


@dataclass(frozen=True)
class Temperature:
    """Divides logits by ``temperature`` (> 0; use greedy decoding for 0)."""

    stateless = True  # reads no history (beam search applies it without one)

    temperature: float

    def __post_init__(self) -> None:
        require(self.temperature > 0, f"temperature must be positive (got {self.temperature})")

    def __call__(self, history, logits):
        return logits / self.temperature


def _descending(logits: np.ndarray) -> np.ndarray:
    return np.argsort(-logits, axis=-1, kind="stable")


@dataclass(frozen=True)
class TopK:
    """Keeps exactly the ``k`` highest logits per row (ties: lower id first)."""

    stateless = True  # reads no history (beam search applies it without one)

    k: int

    def __post_init__(self) -> None:
        require(self.k >= 1, f"top-k must be at least 1 (got {self.k})")

    def __call__(self, history, logits):
        if self.k >= logits.shape[-1]:
            return logits.copy()
        order = _descending(logits)[:, : self.k]
        out = np.full_like(logits, NEG_INF)
        np.put_along_axis(out, order, np.take_along_axis(logits, order, -1), -1)
        return out


@dataclass(frozen=True)
class TopP:
    """Keeps the smallest set of highest-probability tokens whose mass is >= ``p``."""

    stateless = True  # reads no history (beam search applies it without one)

    p: float

    def __post_init__(self) -> None:
        require(0 < self.p <= 1, f"top-p must be in (0, 1] (got {self.p})")

    def __call__(self, history, logits):
        if self.p >= 1:
            return logits.copy()
        order = _descending(logits)
        sorted_logits = np.take_along_axis(logits, order, -1).astype(np.float64)
        probs = np.exp(sorted_logits - sorted_logits[:, :1])
        probs /= probs.sum(-1, keepdims=True)
        mass_before = np.cumsum(probs, -1) - probs
        keep_sorted = mass_before < self.p  # the first token is always kept
        keep = np.zeros_like(keep_sorted)
        np.put_along_axis(keep, order, keep_sorted, -1)
        return np.where(keep, logits, NEG_INF)


def build_rules(
    settings, mask: np.ndarray | None = None, constraints: Sequence[Rule] = (), shape: bool = True
) -> list[Rule]:
    """The rule chain for ``settings`` (a SampleSettings), in the documented order;
    ``mask`` and ``constraints`` come from the domain.  ``shape=False`` leaves out
    temperature, top-k and top-p (deterministic beam search ranks by the model's scores)."""
    rules: list[Rule] = []
    if mask is not None:
        rules.append(AllowedTokens(mask))
    rules.extend(constraints)
    if settings.repetition_penalty != 1.0:
        rules.append(RepetitionPenalty(settings.repetition_penalty))
    if settings.no_repeat_ngram_size:
        rules.append(NoRepeatNGram(settings.no_repeat_ngram_size))
    if shape and not settings.is_greedy:
        if settings.temperature != 1.0:
            rules.append(Temperature(settings.temperature))
        if settings.top_k:
            rules.append(TopK(settings.top_k))
        if settings.top_p < 1.0:
            rules.append(TopP(settings.top_p))
    return rules


def apply_rules(rules: Sequence[Rule], history: np.ndarray, logits: np.ndarray) -> np.ndarray:
    for rule in rules:
        logits = rule(history, logits)
    return logits


def row_generator(seed: int, row: int) -> CounterRNG:
    """The random generator of sample ``row`` of a run seeded ``seed``: the one place
    sampling generators are made, so row ``row`` draws the same numbers whatever the
    batch it runs in (``--num``, a server's other users)."""
    return CounterRNG(seed, row)


def draw(logits: np.ndarray, generators: Sequence[np.random.Generator]) -> np.ndarray:
    """One token per row from softmax(logits), row i using ``generators[i]`` (inverse CDF,
    so results depend only on the seed, not on the BLAS or the batch size)."""
    logits = np.asarray(logits, dtype=np.float64)
    top = logits.max(-1, keepdims=True)
    if not np.isfinite(top).all():  # a row with every token banned
        raise StudioError(
            "the sampling rules ban every token (e.g. --no-repeat-ngram too small "
            "for --length, or --top-p/--top-k with an all-masked row): relax them"
        )
    return draw_weights(np.exp(logits - top), generators)


def draw_weights(weights: np.ndarray, generators: Sequence[np.random.Generator]) -> np.ndarray:
    """:func:`draw` from unnormalised probabilities (rows of ``exp(logits - max)``): one
    uniform from each row's generator, then :func:`~studio.numeric.inverse_cdf`."""
    return inverse_cdf(weights, [generator.random() for generator in generators[: len(weights)]])


# --- the plain draw: a row without rules, from the model's own distribution -------------
NOISE_BLOCK = 64  # tokens of Gumbels made at once per row (the stream is the same for any block)
# The Gumbel-max draw needs a Gumbel per vocabulary entry and token; measured here (AMD
# EPYC, AVX-512), making them costs 0.9 us a token at 66 entries, 14 us at 466 and 145 us at
# 10,000, against about 7 us for the numpy draw it saves.  Larger vocabularies (words)
# keep the inverse-CDF draw, one uniform a token.
GUMBEL_MAX_VOCAB = 256


class GumbelNoise:
    """A plain row's Gumbels: ``vocab`` standard Gumbels per token from the row's
    generator (``CounterRNG.gumbel``, words ``t * vocab`` to ``(t + 1) * vocab - 1`` for
    its ``t``-th draw, whichever path draws it), times the row's ``temperature`` (in
    float64) and rounded to float32, made :data:`NOISE_BLOCK` tokens at a time."""

    def __init__(self, generator: CounterRNG, temperature: float = 1.0):
        self.generator, self.temperature = generator, float(temperature)
        self._block: np.ndarray | None = None
        self._used = NOISE_BLOCK

    def _refill(self, vocab: int) -> None:
        if self._used == NOISE_BLOCK:
            self._fill(np.empty((NOISE_BLOCK, vocab), dtype=np.float32))

    def _fill(self, block: np.ndarray) -> None:
        """Make ``block`` (NOISE_BLOCK, vocab), float32, the next block: written in place,
        so that a caller can hand in one row of an array of several rows' blocks."""
        gumbels = self.generator.gumbel(block.shape)
        if self.temperature != 1.0:
            gumbels *= self.temperature
        block[...] = gumbels  # rounded to float32 as astype would
        self._block = block.reshape(NOISE_BLOCK, 1, 1, block.shape[1])
        self._used = 0

    def rest(self, vocab: int) -> np.ndarray:
        """The Gumbels of the current block not yet used (a fresh block if none is
        left), (k, 1, 1, vocab), all marked used: a loop that takes them in order draws
        what :meth:`next` would give it."""
        self._refill(vocab)
        rest = self._block[self._used :]
        self._used = NOISE_BLOCK
        return rest

    def next(self, vocab: int) -> np.ndarray:
        """The next token's Gumbels, float32 of shape (1, 1, vocab): a step graph's
        ``noise`` input for one row (:mod:`studio.step_draw`)."""
        self._refill(vocab)
        noise = self._block[self._used]
        self._used += 1
        return noise


def next_noise(noises: Sequence[GumbelNoise], vocab: int) -> np.ndarray:
    """The next token's Gumbels of each row in ``noises``, float32 (rows, vocab)."""
    if len(noises) == 1:
        return noises[0].next(vocab)[0]
    return np.concatenate([noise.next(vocab)[0] for noise in noises])


def next_noise_together(
    noises: Sequence[GumbelNoise], vocab: int, stack: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`next_noise` for rows that always draw together (one job's rows, so every
    row is at the same place in its blocks), and the array to pass back next time:
    ``stack`` (rows, NOISE_BLOCK, vocab) holds every row's block, each row's own block a
    view of its slice, so a token costs one view and a counter per row instead of a
    call per row.  None (or a block used up) makes it anew; a caller that drops rows
    drops the same rows of ``stack``."""
    lead = noises[0]
    if lead._used == NOISE_BLOCK:
        stack = np.empty((len(noises), NOISE_BLOCK, vocab), dtype=np.float32)
        for row, noise in enumerate(noises):
            noise._fill(stack[row])
    elif stack is None:
        stack = np.stack([noise._block.reshape(NOISE_BLOCK, vocab) for noise in noises])
    used = lead._used
    for noise in noises:
        noise._used = used + 1
    return stack[:, used], stack


def gumbel_max(logits: np.ndarray, noise: np.ndarray) -> np.ndarray:
    """One token per row of float32 ``logits`` (n, vocab): the first index of the largest
    ``logits + noise``, where ``noise`` (n, vocab) holds a row's float32 Gumbels times its
    temperature ``T`` (:class:`GumbelNoise`).  That is the largest ``logits / T + g``:
    token ``i`` with probability ``softmax(logits / T)_i``.  The very numbers a step
    graph's own draw gives (:mod:`studio.step_draw`: one float32 addition, then the first
    maximum)."""
    return np.add(logits, noise, dtype=np.float32).argmax(-1)


def draws_by_gumbel(rules: Sequence[Rule], vocab: int | None) -> bool:
    """Whether a row with ``rules`` over ``vocab`` tokens draws by :func:`gumbel_max`
    (inside the step graph when it runs alone): its rules shape the distribution by a
    temperature alone (or not at all), and the vocabulary is at most
    :data:`GUMBEL_MAX_VOCAB`."""
    return vocab is not None and vocab <= GUMBEL_MAX_VOCAB and all(isinstance(rule, Temperature) for rule in rules)


def plain_scores(logits: np.ndarray, tokens: np.ndarray, check: bool = True) -> list[float]:
    """``log p(token)`` under the model for each row of float64 ``logits`` (n, vocab)
    (:func:`~studio.numeric.softmax_weights`' normaliser, the same numpy calls on every
    path, so a row's score does not depend on the batch it is in).  A row without a
    finite normaliser means the model is broken (nan or inf logits): an error, or
    (``check=False``) a score that is not finite."""
    _, total = softmax_weights(logits)
    if check and not np.isfinite(total).all():
        raise StudioError("the model gave no finite logit (nan or inf): its file is damaged; re-export it")
    return (logits[np.arange(len(logits)), tokens] - total).tolist()
