"""Beam search that knows nothing about models (after magenta's ``beam_search``).

The caller supplies ``step(tokens, state) -> (log_probs, state)`` where ``tokens`` is
(n,) the last id of each live hypothesis and ``log_probs`` is (n, vocab); ``state`` is
any object that ``reorder(state, rows)`` can index by hypothesis; and
``is_final(sequence)`` to retire finished hypotheses.  All live hypotheses go through
``step`` as one batch.  Three flavours share one loop:

* deterministic beam search (``sample=False``): each step keeps the ``num_beams`` best
  live continuations (Hugging Face's scheme: the best ``2 * num_beams`` candidates are
  looked at so finished ones do not starve the beam, and a candidate that finishes
  counts only when it ranks among the best ``num_beams``);
* stochastic beam search (``sample=True``; Kool, van Hoof & Welling 2019, Gumbel-top-k):
  every hypothesis carries a Gumbel key, children's keys are conditioned on their
  parent's, and the ``num_beams`` largest keys stay, finished or not.  The result is
  ``num_beams`` distinct sequences drawn without replacement from the (rule-shaped)
  model, best key first, reproducible from ``seed``;
* magenta's sampled beams (``branch_factor > 1`` or ``steps_per_iteration > 1``): a
  first iteration samples ``num_beams`` independent continuations; every later
  iteration copies each beam ``branch_factor`` times, extends every copy by
  ``steps_per_iteration`` sampled steps, and keeps the ``num_beams`` most likely.
  As in magenta the first iteration is shortened so the last ends at ``max_length``.

A hypothesis carries ``score`` (the model's log-probability of its tokens) and
``rank`` (the same under the optional ``rules``, which may mask, penalise or, for the
sampled flavours, change the temperature).  Finished hypotheses are ranked by
``rank / length ** length_penalty`` (Hugging Face's convention, length counting
generated tokens; the stochastic flavour ranks by key instead).

Stopping: a hypothesis finishes when ``is_final`` says so or at ``max_length`` tokens.
Deterministic search stops once ``num_beams`` hypotheses have finished and no live one
can still beat the worst of them (the bound uses ``max_length`` when
``length_penalty > 0``, Hugging Face's ``early_stopping="never"``), so the result does
not depend on when the search happened to stop.  The stochastic flavour stops when all
``num_beams`` best keys belong to finished sequences (keys never grow along a path);
magenta's when no beam is live.

Streaming: each :class:`BeamProgress` carries ``committed``, the prefix shared by every
live hypothesis and by the best finished one; since each step only extends or retires
hypotheses, it only ever grows, and the final result starts with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from ..errors import StudioError, require

StepFn = Callable[[np.ndarray, Any], tuple[np.ndarray, Any]]
ReorderFn = Callable[[Any, np.ndarray], Any]


@dataclass
class Hypothesis:
    tokens: list[int]
    score: float = 0.0  # model log-probability of ``tokens``
    rank: float = 0.0  # log-probability under the rules, used for ranking
    key: float = 0.0  # Gumbel key (stochastic beam search)

    def normalised(self, length_penalty: float) -> float:
        return self.rank / max(1, len(self.tokens)) ** length_penalty


@dataclass
class BeamProgress:
    """After each step: the prefix every hypothesis that can still win shares (safe to
    stream), the best hypothesis so far, and, on the last item, the finished results
    best first."""

    committed: list[int]
    best: Hypothesis
    results: list[Hypothesis]
    finished: bool = False


def log1mexp(a: np.ndarray) -> np.ndarray:
    """log(1 - exp(a)) for a <= 0, accurate near 0 and for very negative a
    (Mächler 2012)."""
    a = np.asarray(a, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(a > -np.log(2.0), np.log(-np.expm1(a)), np.log1p(-np.exp(a)))


def gumbel_truncated(phi: np.ndarray, parent_key: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Gumbel keys for children, conditioned so that their maximum equals the parent's
    key (Kool et al. 2019, appendix B, numerically stable form).

    phi: (n, V) cumulative log-probabilities of the children (-inf: impossible);
    parent_key: (n,).  Returns (n, V) keys, -inf where ``phi`` is -inf; the row-wise
    maximum equals ``parent_key`` and no child exceeds it."""
    finite = np.isfinite(phi)
    g = np.where(finite, phi + rng.gumbel(size=phi.shape), -np.inf)  # G_phi_i ~ Gumbel(phi_i)
    z = np.max(g, axis=-1, keepdims=True)
    t = np.asarray(parent_key, dtype=np.float64)[:, None]
    with np.errstate(invalid="ignore", over="ignore"):
        v = t - g + log1mexp(np.minimum(g - z, 0.0))  # -inf at the argmax, so its key is t
        keys = t - np.maximum(v, 0.0) - np.log1p(np.exp(-np.abs(v)))
    return np.where(finite, keys, -np.inf)


def _normalise(log_probs: np.ndarray) -> np.ndarray:
    top = np.max(log_probs, -1, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return log_probs - top - np.log(np.sum(np.exp(log_probs - top), -1, keepdims=True))


def _sample_rows(log_probs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One id per row of (n, V) normalised log-probabilities, by inverse CDF."""
    cumulative = np.cumsum(np.exp(log_probs), -1)
    u = rng.random(len(log_probs)) * cumulative[:, -1]
    tokens = np.array([int(np.searchsorted(c, x, side="right")) for c, x in zip(cumulative, u)],
                      dtype=np.int64)
    return np.minimum(tokens, log_probs.shape[-1] - 1)


def beam_search(step: StepFn, reorder: ReorderFn, state: Any, start: Sequence[int],
                first_log_probs: np.ndarray, *, num_beams: int, max_length: int,
                is_final: Callable[[list[int]], bool], length_penalty: float = 1.0,
                sample: bool = False, seed: int = 0, branch_factor: int = 1,
                steps_per_iteration: int = 1,
                rules: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
                ) -> Iterator[BeamProgress]:
    """Search continuations of ``start`` (ids already fed; ``state`` is the one-row state
    after them and ``first_log_probs`` (vocab,) the next-token distribution there).

    ``rules(history, log_probs) -> log_probs`` reshapes each step's distribution
    (history: (n, len(start) + t) ids).  Yields a :class:`BeamProgress` after every
    step; the last one has ``finished=True`` and up to ``num_beams`` results."""
    require(num_beams >= 1, f"beams must be at least 1 (got {num_beams})")
    require(max_length >= 1, f"length must be at least 1 (got {max_length})")
    require(branch_factor >= 1, f"branch factor must be at least 1 (got {branch_factor})")
    require(steps_per_iteration >= 1,
            f"steps per iteration must be at least 1 (got {steps_per_iteration})")
    magenta = branch_factor > 1 or steps_per_iteration > 1
    require(not (magenta and sample),
            "--sample (stochastic beam search) and --branch-factor/--steps-per-iteration "
            "(magenta's sampled beams) are alternatives: choose one")
    rng = np.random.default_rng(seed)
    start = list(start)
    first_iteration = (max_length - 1) % steps_per_iteration + 1  # magenta: later ones are full
    beams = [Hypothesis([])]
    log_probs = np.asarray(first_log_probs, dtype=np.float64)[None, :]
    done: list[Hypothesis] = []

    def ordering(h: Hypothesis) -> float:
        return h.key if sample else h.normalised(length_penalty)

    def best_possible(h: Hypothesis) -> float:
        # rank only falls as tokens are added; dividing by a longer length can still
        # raise it when length_penalty > 0, at most up to max_length tokens
        length = max_length if length_penalty > 0 else len(h.tokens) + 1
        return h.rank / length ** length_penalty

    for position in range(max_length):
        if rules is not None:
            history = np.array([start + b.tokens for b in beams], dtype=np.int64)
            shaped = _normalise(rules(history, log_probs))
        else:
            shaped = _normalise(log_probs)
        if magenta:
            if position == 0:
                parents = np.zeros(num_beams, dtype=np.int64)
            elif position >= first_iteration and (position - first_iteration) % steps_per_iteration == 0:
                parents = np.repeat(np.arange(len(beams)), branch_factor)
            else:
                parents = np.arange(len(beams))
            ok = np.isfinite(shaped[parents]).any(-1)
            parents = parents[ok]
            tokens = _sample_rows(shaped[parents], rng)
            keys = np.zeros(len(parents))
        else:
            candidates = np.array([b.rank for b in beams])[:, None] + shaped  # (n, V)
            scores = gumbel_truncated(candidates, np.array([b.key for b in beams]), rng) \
                if sample else candidates
            flat = np.argsort(-scores, axis=None, kind="stable")[: 2 * num_beams]
            flat = flat[np.isfinite(scores.reshape(-1)[flat])]
            parents, tokens = np.divmod(flat, scores.shape[1])
            keys = scores.reshape(-1)[flat]
        live, rows = [], []
        last = position == max_length - 1
        for order, (parent, token, key) in enumerate(zip(parents.tolist(), tokens.tolist(),
                                                           keys.tolist())):
            b = beams[parent]
            h = Hypothesis(b.tokens + [token], b.score + float(log_probs[parent, token]),
                           b.rank + float(shaped[parent, token]), key)
            if last or is_final(start + h.tokens):
                # Hugging Face: a candidate that ends outside the best num_beams is
                # dropped, so unlikely endings neither crowd the results nor block streaming
                if magenta or order < num_beams:
                    done.append(h)
            else:
                live.append(h)
                rows.append(parent)
            if not magenta and len(live) >= num_beams:
                break
        if magenta and position >= first_iteration - 1 \
                and (position - first_iteration + 1) % steps_per_iteration == 0:
            # magenta keeps duplicates; copies that sampled the same tokens waste beams
            keep = _distinct(live, np.argsort([-h.rank for h in live], kind="stable"))[:num_beams]
            live, rows = [live[i] for i in keep], [rows[i] for i in keep]
        done.sort(key=ordering, reverse=True)
        if sample:  # Kool et al.: the beam is the num_beams largest keys, finished or not
            threshold = sorted([h.key for h in done + live], reverse=True)[:num_beams][-1] \
                if done or live else -np.inf
            done = [h for h in done if h.key >= threshold][:num_beams]
            kept = [i for i, h in enumerate(live) if h.key >= threshold]
            live, rows = [live[i] for i in kept], [rows[i] for i in kept]
            stop = not live
        else:
            done = [done[i] for i in _distinct(done, range(len(done)))][:num_beams]
            stop = not live or (len(done) >= num_beams and not magenta and max(
                best_possible(h) for h in live) <= ordering(done[-1]))
        if not live and not done:
            raise StudioError("the sampling rules ban every token (e.g. --no-repeat-ngram too "
                              "small for --length): relax them")
        if stop:
            yield BeamProgress(list(done[0].tokens), done[0], done, finished=True)
            return
        beams = live
        state = reorder(state, np.array(rows))
        log_probs, state = step(np.array([b.tokens[-1] for b in beams]), state)
        log_probs = np.asarray(log_probs, dtype=np.float64)
        best = max(beams + done[:1], key=ordering)
        yield BeamProgress(_common_prefix(beams + done[:1]), best, [])


def _distinct(hypotheses: Sequence[Hypothesis], order) -> list[int]:
    """Indices in ``order``, skipping hypotheses whose tokens repeat an earlier one's."""
    seen, keep = set(), []
    for i in order:
        tokens = tuple(hypotheses[i].tokens)
        if tokens not in seen:
            seen.add(tokens)
            keep.append(int(i))
    return keep


def _common_prefix(hypotheses: Sequence[Hypothesis]) -> list[int]:
    prefix = hypotheses[0].tokens
    for h in hypotheses[1:]:
        n = 0
        while n < min(len(prefix), len(h.tokens)) and prefix[n] == h.tokens[n]:
            n += 1
        prefix = prefix[:n]
    return list(prefix)
