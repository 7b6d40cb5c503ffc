"""Beam search that knows nothing about models (after magenta's ``beam_search``).

The caller supplies ``step(tokens, state) -> (log_probs, state)`` where ``tokens`` is
(n,) the last id of each live hypothesis and ``log_probs`` is (n, vocab); ``state`` is
any object that ``reorder(state, rows)`` can index by hypothesis; and
``is_final(sequence)`` to retire finished hypotheses.  All live hypotheses go through
``step`` as one batch.  :func:`beam_search` is one loop; a :class:`Selection` decides
which children each step proposes and which hypotheses survive it.  Three ship:

* :class:`Deterministic` beam search: each step keeps the ``num_beams`` best live
  continuations (Hugging Face's scheme: the best ``2 * num_beams`` candidates are
  looked at so finished ones do not starve the beam, and a candidate that finishes
  counts only when it ranks among the best ``num_beams``);
* :class:`GumbelTopK`, stochastic beam search (Kool, van Hoof & Welling 2019): every
  hypothesis carries a Gumbel key, children's keys are conditioned on their parent's,
  and the ``num_beams`` largest keys stay, finished or not.  The result is
  ``num_beams`` distinct sequences drawn without replacement from the (rule-shaped)
  model, best key first, reproducible from ``seed``;
* :class:`BranchFactor`, magenta's sampled beams: a first iteration samples
  ``num_beams`` independent continuations; every later iteration copies each beam
  ``branch_factor`` times, extends every copy by ``steps_per_iteration`` sampled steps,
  and keeps the ``num_beams`` most likely.  As in magenta the first iteration is
  shortened so the last ends at ``max_length``.

:func:`selection_for` picks one from the command line's flags.

A hypothesis carries ``score`` (the model's log-probability of its tokens) and
``rank`` (the same under the optional ``rules``, which may mask, penalise or, for the
sampled selections, change the temperature).  Finished hypotheses are ranked by
``rank / length ** length_penalty`` (Hugging Face's convention, length counting
generated tokens; Gumbel-top-k ranks by key instead).

Stopping: a hypothesis finishes when ``is_final`` says so or at ``max_length`` tokens.
Deterministic search stops once ``num_beams`` hypotheses have finished and no live one
can still beat the worst of them (the bound uses ``max_length`` when
``length_penalty > 0``, Hugging Face's ``early_stopping="never"``), so the result does
not depend on when the search happened to stop.  Gumbel-top-k stops when all
``num_beams`` best keys belong to finished sequences (keys never grow along a path);
magenta's when no beam is live.

Streaming: each :class:`BeamProgress` carries ``committed``, the prefix shared by every
live hypothesis and by the best finished one; since each step only extends or retires
hypotheses, it only ever grows (so each step compares only the tokens after it), and
the final result starts with it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from ..errors import StudioError, require
from ..numeric import inverse_cdf, log_softmax
from .rng import CounterRNG

StepFn = Callable[[np.ndarray, Any], tuple[np.ndarray, Any]]
ReorderFn = Callable[[Any, np.ndarray], Any]
RulesFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


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


# --- selections ------------------------------------------------------------------------------


class Selection(Protocol):
    """How one step of :func:`beam_search` chooses.  ``shaped`` is (n, V): the live
    hypotheses' next-token log-probabilities under the rules, normalised; ``position``
    counts generated tokens before this step (0 to ``max_length - 1``)."""

    num_beams: int
    sampled: bool  # True: the distribution-shaping rules (temperature, top-k, top-p) apply

    def children(
        self, beams: list[Hypothesis], shaped: np.ndarray, position: int, max_length: int, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Candidate children, best first, as three equal-length arrays: parent row,
        token and key."""

    def counts_finished(self, order: int) -> bool:
        """Whether the ``order``-th candidate (0-based) joins the results when it finishes."""

    def beam_full(self, live: list[Hypothesis]) -> bool:
        """Whether to stop taking candidates this step (the beam has enough live ones)."""

    def ordering(self, hypothesis: Hypothesis) -> float:
        """Sort key of results and of the best hypothesis, larger first."""

    def survivors(
        self, live: list[Hypothesis], rows: list[int], done: list[Hypothesis], position: int, max_length: int
    ) -> tuple[list[Hypothesis], list[int], list[Hypothesis], bool]:
        """After a step: the live hypotheses kept (with their parent rows), the finished
        ones kept (best first), and whether the search is over."""


@dataclass(frozen=True)
class _BestCandidates:
    """Shared by the two selections that rank every child of every live hypothesis and
    look at the best ``2 * num_beams`` (Hugging Face's scheme)."""

    num_beams: int

    def __post_init__(self) -> None:
        require(self.num_beams >= 1, f"beams must be at least 1 (got {self.num_beams})")

    def candidate_scores(self, beams: list[Hypothesis], candidates: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """(n, V) scores that order the children, from their cumulative ranks ``candidates``."""
        return candidates

    def children(self, beams, shaped, position, max_length, rng):
        candidates = np.array([b.rank for b in beams])[:, None] + shaped  # (n, V)
        scores = self.candidate_scores(beams, candidates, rng)
        flat = np.argsort(-scores, axis=None, kind="stable")[: 2 * self.num_beams]
        flat = flat[np.isfinite(scores.reshape(-1)[flat])]
        parents, tokens = np.divmod(flat, scores.shape[1])
        return parents, tokens, scores.reshape(-1)[flat]

    def counts_finished(self, order):
        # Hugging Face: a candidate that ends outside the best num_beams is dropped, so
        # unlikely endings neither crowd the results nor block streaming
        return order < self.num_beams

    def beam_full(self, live):
        return len(live) >= self.num_beams


@dataclass(frozen=True)
class Deterministic(_BestCandidates):
    """The ``num_beams`` best continuations by ``rank / length ** length_penalty``."""

    length_penalty: float = 1.0
    sampled = False

    def ordering(self, hypothesis):
        return hypothesis.normalised(self.length_penalty)

    def best_possible(self, hypothesis: Hypothesis, max_length: int) -> float:
        # rank only falls as tokens are added; dividing by a longer length can still
        # raise it when length_penalty > 0, at most up to max_length tokens
        length = max_length if self.length_penalty > 0 else len(hypothesis.tokens) + 1
        return hypothesis.rank / length**self.length_penalty

    def survivors(self, live, rows, done, position, max_length):
        done = _best_distinct(done, self.ordering, self.num_beams)
        stop = not live or (
            len(done) >= self.num_beams
            and max(self.best_possible(h, max_length) for h in live) <= self.ordering(done[-1])
        )
        return live, rows, done, stop


@dataclass(frozen=True)
class GumbelTopK(_BestCandidates):
    """Stochastic beam search: the ``num_beams`` largest Gumbel keys, finished or not
    (the key orders the results too, so there is no length penalty)."""

    sampled = True

    def candidate_scores(self, beams, candidates, rng):
        return gumbel_truncated(candidates, np.array([b.key for b in beams]), rng)

    def ordering(self, hypothesis):
        return hypothesis.key

    def survivors(self, live, rows, done, position, max_length):
        done.sort(key=self.ordering, reverse=True)
        keys = sorted([h.key for h in done + live], reverse=True)
        threshold = keys[: self.num_beams][-1] if keys else -np.inf
        done = [h for h in done if h.key >= threshold][: self.num_beams]
        kept = [i for i, h in enumerate(live) if h.key >= threshold]
        return [live[i] for i in kept], [rows[i] for i in kept], done, not kept


@dataclass(frozen=True)
class BranchFactor:
    """magenta's sampled beams: iterations of ``steps_per_iteration`` sampled steps, each
    beam copied ``branch_factor`` times at an iteration's start and the ``num_beams``
    most likely kept at its end."""

    num_beams: int
    branch_factor: int = 1
    steps_per_iteration: int = 1
    length_penalty: float = 1.0
    sampled = True

    def __post_init__(self) -> None:
        require(self.num_beams >= 1, f"beams must be at least 1 (got {self.num_beams})")
        require(self.branch_factor >= 1, f"branch factor must be at least 1 (got {self.branch_factor})")
        require(
            self.steps_per_iteration >= 1, f"steps per iteration must be at least 1 (got {self.steps_per_iteration})"
        )

    def _first_iteration(self, max_length: int) -> int:
        """Steps in the first iteration, shortened so that the later ones are full."""
        return (max_length - 1) % self.steps_per_iteration + 1

    def children(self, beams, shaped, position, max_length, rng):
        first = self._first_iteration(max_length)
        if position == 0:
            parents = np.zeros(self.num_beams, dtype=np.int64)
        elif position >= first and (position - first) % self.steps_per_iteration == 0:
            parents = np.repeat(np.arange(len(beams)), self.branch_factor)
        else:
            parents = np.arange(len(beams))
        parents = parents[np.isfinite(shaped[parents]).any(-1)]
        tokens = inverse_cdf(np.exp(shaped[parents]), rng.random(len(parents)))
        return parents, tokens, np.zeros(len(parents))

    def counts_finished(self, order):
        return True

    def beam_full(self, live):
        return False

    def ordering(self, hypothesis):
        return hypothesis.normalised(self.length_penalty)

    def survivors(self, live, rows, done, position, max_length):
        first = self._first_iteration(max_length)
        if position >= first - 1 and (position - first + 1) % self.steps_per_iteration == 0:
            # magenta keeps duplicates; copies that sampled the same tokens waste beams
            keep = _distinct(live, np.argsort([-h.rank for h in live], kind="stable"))[: self.num_beams]
            live, rows = [live[i] for i in keep], [rows[i] for i in keep]
        return live, rows, _best_distinct(done, self.ordering, self.num_beams), not live


def selection_for(
    num_beams: int,
    *,
    length_penalty: float = 1.0,
    sample: bool = False,
    branch_factor: int = 1,
    steps_per_iteration: int = 1,
) -> Selection:
    """The selection the command line's flags ask for: ``--sample`` is Gumbel-top-k,
    ``--branch-factor``/``--steps-per-iteration`` above 1 magenta's, else deterministic."""
    magenta = branch_factor > 1 or steps_per_iteration > 1
    require(
        not (magenta and sample),
        "--sample (stochastic beam search) and --branch-factor/--steps-per-iteration "
        "(magenta's sampled beams) are alternatives: choose one",
    )
    if magenta:
        return BranchFactor(num_beams, branch_factor, steps_per_iteration, length_penalty)
    if sample:
        return GumbelTopK(num_beams)
    return Deterministic(num_beams, length_penalty)


# --- the loop ----------------------------------------------------------------------------------


def beam_search(
    step: StepFn,
    reorder: ReorderFn,
    state: Any,
    start: Sequence[int],
    first_log_probs: np.ndarray,
    selection: Selection,
    *,
    max_length: int,
    is_final: Callable[[list[int]], bool],
    rules: RulesFn | None = None,
    seed: int = 0,
) -> Iterator[BeamProgress]:
    """Search continuations of ``start`` (ids already fed; ``state`` is the one-row state
    after them and ``first_log_probs`` (vocab,) the next-token distribution there).

    ``rules(history, log_probs) -> log_probs`` reshapes each step's distribution
    (history: (n, len(start) + t) ids); ``seed`` seeds the sampled selections.  Yields a
    :class:`BeamProgress` after every step; the last one has ``finished=True`` and up to
    ``num_beams`` results."""
    require(max_length >= 1, f"length must be at least 1 (got {max_length})")
    rng = CounterRNG(seed)
    start = list(start)
    beams = [Hypothesis([])]
    log_probs = np.asarray(first_log_probs, dtype=np.float64)[None, :]
    done: list[Hypothesis] = []
    committed: list[int] = []
    for position in range(max_length):
        shaped = _shaped(rules, start, beams, log_probs)
        candidates = selection.children(beams, shaped, position, max_length, rng)
        live, rows = [], []
        last = position == max_length - 1
        for order, (parent, token, key) in enumerate(zip(*(c.tolist() for c in candidates))):
            b = beams[parent]
            h = Hypothesis(
                b.tokens + [token],
                b.score + float(log_probs[parent, token]),
                b.rank + float(shaped[parent, token]),
                key,
            )
            if last or is_final(start + h.tokens):
                if selection.counts_finished(order):
                    done.append(h)
            else:
                live.append(h)
                rows.append(parent)
            if selection.beam_full(live):
                break
        live, rows, done, stop = selection.survivors(live, rows, done, position, max_length)
        if not live and not done:
            raise StudioError(
                "the sampling rules ban every token (e.g. --no-repeat-ngram too small for --length): relax them"
            )
        if stop:
            yield BeamProgress(list(done[0].tokens), done[0], done, finished=True)
            return
        beams = live
        state = reorder(state, np.array(rows))
        log_probs, state = step(np.array([b.tokens[-1] for b in beams]), state)
        log_probs = np.asarray(log_probs, dtype=np.float64)
        committed = _grow_common_prefix(committed, beams + done[:1])
        yield BeamProgress(list(committed), max(beams + done[:1], key=selection.ordering), [])


def _shaped(rules: RulesFn | None, start: list[int], beams: list[Hypothesis], log_probs: np.ndarray) -> np.ndarray:
    """The live hypotheses' next-token log-probabilities under ``rules``, renormalised."""
    if rules is None:
        return log_softmax(log_probs)
    history = np.array([start + b.tokens for b in beams], dtype=np.int64)
    return log_softmax(rules(history, log_probs))


def _distinct(hypotheses: Sequence[Hypothesis], order) -> list[int]:
    """Indices in ``order``, skipping hypotheses whose tokens repeat an earlier one's."""
    seen, keep = set(), []
    for i in order:
        tokens = tuple(hypotheses[i].tokens)
        if tokens not in seen:
            seen.add(tokens)
            keep.append(int(i))
    return keep


def _best_distinct(done: list[Hypothesis], ordering: Callable[[Hypothesis], float], count: int) -> list[Hypothesis]:
    """The ``count`` best of ``done`` by ``ordering`` (stable), duplicates left out."""
    done.sort(key=ordering, reverse=True)
    return [done[i] for i in _distinct(done, range(len(done)))][:count]


def _grow_common_prefix(prefix: list[int], hypotheses: Sequence[Hypothesis]) -> list[int]:
    """The common prefix of ``hypotheses``' tokens, given that all of them start with
    ``prefix`` (last step's; see "Streaming" above): only the tokens after it are
    compared, so a whole search costs time linear in its length."""
    first = hypotheses[0].tokens
    shortest = min(len(h.tokens) for h in hypotheses)
    n = len(prefix)
    while n < shortest and all(h.tokens[n] == first[n] for h in hypotheses[1:]):
        n += 1
    return prefix + first[len(prefix) : n]
