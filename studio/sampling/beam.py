"""Beam search that knows nothing about models (after magenta's ``beam_search``).

The caller supplies ``step(tokens, state) -> (log_probs, state)`` where ``tokens`` is
(n,) the last id of each live hypothesis and ``log_probs`` is (n, vocab); ``state`` is
any object that ``reorder(state, rows)`` can index by hypothesis; and
``is_final(sequence)`` to retire finished hypotheses.  Three flavours share one loop:

* deterministic beam search: the ``num_beams`` best continuations each step;
* stochastic beam search (Kool, van Hoof & Welling 2019, Gumbel-top-k), ``sample=True``:
  ``num_beams`` distinct sequences drawn without replacement;
* magenta's sampled beams: each iteration, ``branch_factor`` copies of every beam are
  extended by ``steps_per_iteration`` sampled steps, then the best ``num_beams`` stay.

A hypothesis carries ``score`` (the model's log-probability of its tokens) and
``rank`` (the same under the optional ``rules``, which may mask or penalise).
Finished hypotheses are ranked by ``rank / length ** length_penalty`` (Hugging Face's
convention); the search stops once ``num_beams`` hypotheses have finished.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from ..errors import require

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
    """After each step: the prefix all live beams share (safe to stream), the best
    hypothesis so far, and, on the last item, the finished results best first."""

    committed: list[int]
    best: Hypothesis
    results: list[Hypothesis]
    finished: bool = False


def gumbel_truncated(phi: np.ndarray, parent_key: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Gumbel keys for children whose maximum is conditioned to equal the parent's key
    (Kool et al. 2019, appendix B, stable form).  phi: (n, V) child log-probabilities
    (cumulative), parent_key: (n,)."""
    with np.errstate(invalid="ignore", over="ignore"):
        g = phi + rng.gumbel(size=phi.shape)
        g = np.where(np.isfinite(phi), g, -np.inf)
        z = np.max(g, axis=-1, keepdims=True)
        t = parent_key[:, None]
        v = t - g + np.log1p(-np.exp(g - z))
        keys = t - np.maximum(v, 0) - np.log1p(np.exp(-np.abs(v)))
    return np.where(np.isfinite(phi), keys, -np.inf)


def _normalise(log_probs: np.ndarray) -> np.ndarray:
    top = np.max(log_probs, -1, keepdims=True)
    return log_probs - top - np.log(np.sum(np.exp(log_probs - top), -1, keepdims=True))


def beam_search(step: StepFn, reorder: ReorderFn, state: Any, start: Sequence[int],
                first_log_probs: np.ndarray, *, num_beams: int, max_length: int,
                is_final: Callable[[list[int]], bool], length_penalty: float = 1.0,
                sample: bool = False, seed: int = 0, branch_factor: int = 1,
                steps_per_iteration: int = 1,
                rules: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
                ) -> Iterator[BeamProgress]:
    """Search continuations of ``start`` (ids already fed; ``state`` is the one-row state
    after them and ``first_log_probs`` (vocab,) the next-token distribution there)."""
    require(num_beams >= 1, f"beams must be at least 1 (got {num_beams})")
    require(max_length >= 1, "length must be at least 1")
    rng = np.random.default_rng(seed)
    start = list(start)
    magenta = branch_factor > 1 or steps_per_iteration > 1
    beams = [Hypothesis([])]
    log_probs = np.asarray(first_log_probs, dtype=np.float64)[None, :]
    done: list[Hypothesis] = []

    def ordering(h: Hypothesis) -> float:
        return h.key if sample else h.normalised(length_penalty)

    for position in range(max_length):
        history = np.array([start + b.tokens for b in beams], dtype=np.int64)
        shaped = _normalise(rules(history, log_probs) if rules else log_probs)
        if magenta:
            if position % steps_per_iteration == 0:  # branch: copy every beam
                parents = np.repeat(np.arange(len(beams)), branch_factor)
            else:
                parents = np.arange(len(beams))
            cumulative = np.cumsum(np.exp(shaped[parents]), -1)
            tokens = np.array([min(int(np.searchsorted(c, rng.random() * c[-1], side="right")),
                                   len(c) - 1) for c in cumulative])
            keys = np.zeros(len(parents))
        else:
            candidates = np.array([b.rank for b in beams])[:, None] + shaped  # (n, V)
            scores = gumbel_truncated(candidates, np.array([b.key for b in beams]), rng) \
                if sample else candidates
            flat = np.argsort(-scores, axis=None, kind="stable")
            flat = flat[np.isfinite(scores.reshape(-1)[flat])][: 2 * num_beams]
            parents, tokens = np.divmod(flat, scores.shape[1])
            keys = scores.reshape(-1)[flat]
        live, rows = [], []
        for parent, token, key in zip(parents.tolist(), tokens.tolist(), keys.tolist()):
            b = beams[parent]
            h = Hypothesis(b.tokens + [token], b.score + float(log_probs[parent, token]),
                           b.rank + float(shaped[parent, token]), key)
            if is_final(start + h.tokens) or position == max_length - 1:
                done.append(h)
            else:
                live.append(h)
                rows.append(parent)
            if not magenta and len(live) >= num_beams:
                break
        if magenta and position % steps_per_iteration == steps_per_iteration - 1:
            keep = np.argsort([-h.score for h in live], kind="stable")[:num_beams]
            live, rows = [live[i] for i in keep], [rows[i] for i in keep]
        done.sort(key=ordering, reverse=True)
        if not live or len(done) >= num_beams:
            results = sorted(done, key=ordering, reverse=True)[:num_beams]
            yield BeamProgress(results[0].tokens, results[0], results, finished=True)
            return
        beams = live
        state = reorder(state, np.array(rows))
        log_probs, state = step(np.array([b.tokens[-1] for b in beams]), state)
        log_probs = np.asarray(log_probs, dtype=np.float64)
        best = max(beams + done, key=ordering)
        yield BeamProgress(_common_prefix(beams), best, [])


def _common_prefix(hypotheses: Sequence[Hypothesis]) -> list[int]:
    prefix = hypotheses[0].tokens
    for h in hypotheses[1:]:
        n = 0
        while n < min(len(prefix), len(h.tokens)) and prefix[n] == h.tokens[n]:
            n += 1
        prefix = prefix[:n]
    return list(prefix)
