"""Beam search that knows nothing about models (after magenta's ``beam_search``).

The caller supplies ``step(tokens, state) -> (log_probs, state)`` where ``tokens`` is
(n,) the last id of each live hypothesis and ``log_probs`` is (n, vocab) (logits will
do: the search normalises them); ``state`` is
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

Stopping: a hypothesis finishes when ``is_final`` (or the track) says so or at
``max_length`` tokens.  Deterministic search stops once ``num_beams`` hypotheses have
finished and no live one can still beat the worst of them.  With ``length_penalty > 0``
a live hypothesis could still gain by growing longer, so the bound divides its rank by
the longest length it can still reach: the track's ``remaining`` bound when it has one
(music with ``--bars``: the ticks left times the events one instant can hold), else
``max_length`` (Hugging Face's ``early_stopping="never"``).  The result therefore does
not depend on when the search happened to stop.  Gumbel-top-k stops when all
``num_beams`` best keys belong to finished sequences (keys never grow along a path);
magenta's when no beam is live.

Cost: every step is O(beams * vocab) whatever the length.  Tokens live in a tree of
:class:`Node` (a child is one node, not a copy of its parent's list); the caller's
bookkeeping (rule states, a bar counter, the tail of the text for stop strings) is a
``trace`` per hypothesis folded one token at a time (:class:`Track`); duplicates are
found by a digest of the token path.

Streaming: each :class:`BeamProgress` carries ``fresh``, the tokens newly added to the
prefix shared by every live hypothesis and by the best finished one; since each step
only extends or retires hypotheses, that prefix only ever grows and the final result
starts with it.  Each hypothesis carries its ancestor just past the prefix, so the
tokens are walked only on a step where all of them agree on the next token.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from ..errors import StudioError, require
from ..numeric import inverse_cdf, log_softmax
from .rng import CounterRNG

StepFn = Callable[[np.ndarray, Any], tuple[np.ndarray, Any]]
ReorderFn = Callable[[Any, np.ndarray], Any]
RulesFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


class Node:
    """One token of a hypothesis, linked to its parent: extending a hypothesis is O(1)
    and hypotheses share their common past (a tree, not one list per hypothesis)."""

    __slots__ = ("token", "parent", "depth", "digest")

    def __init__(self, token: int, parent: Node | None):
        self.token, self.parent = token, parent
        self.depth = 1 if parent is None else parent.depth + 1
        self.digest = hash((0 if parent is None else parent.digest, token))

    def tokens(self) -> list[int]:
        out, node = [], self
        while node is not None:
            out.append(node.token)
            node = node.parent
        return out[::-1]


def _ancestor(node: Node | None, depth: int) -> Node | None:
    """The ancestor of ``node`` (itself included) at ``depth`` (None for depth 0)."""
    while node is not None and node.depth > depth:
        node = node.parent
    return node


class Track(Protocol):
    """What the search carries per hypothesis besides its tokens: a ``trace`` folded one
    token at a time (rule states, a bar counter, the tail of the text for stop
    strings), so that each step's bookkeeping is O(1) in the length."""

    def start(self) -> Any:
        """The trace before the first generated token."""

    def advance(self, trace: Any, token: int) -> Any:
        """The trace after one more token (never edits ``trace``)."""

    def is_final(self, trace: Any) -> bool:
        """Whether the hypothesis that ``trace`` belongs to is finished."""

    def shape(self, traces: list, hypotheses: list[Hypothesis], log_probs: np.ndarray) -> np.ndarray:
        """(n, V) next-token log-probabilities under the rules (not yet renormalised)."""

    def remaining(self, trace: Any) -> int | None:
        """An upper bound on the tokens the hypothesis can still add before it finishes,
        or None when only the length cap bounds it."""


class Hypothesis:
    """A generated sequence: its last :class:`Node`, ``score`` (the model's
    log-probability of its tokens), ``rank`` (the same under the rules, used for
    ranking), ``key`` (Gumbel key, stochastic beam search), the caller's ``trace`` and
    ``reach`` (the longest length it can still grow to)."""

    __slots__ = ("node", "score", "rank", "key", "trace", "reach", "branch")

    def __init__(
        self,
        tokens: Sequence[int] = (),
        score: float = 0.0,
        rank: float = 0.0,
        key: float = 0.0,
        *,
        node: Node | None = None,
        trace: Any = None,
        reach: int | None = None,
    ):
        if node is None:
            for token in tokens:
                node = Node(int(token), node)
        self.node, self.score, self.rank, self.key, self.trace = node, score, rank, key, trace
        self.reach = reach
        self.branch: Node | None = None  # ancestor just after the committed prefix (see beam_search)

    @classmethod
    def child(
        cls, parent: Hypothesis, token: int, score_step: float, rank_step: float, key: float, trace: Any, reach: int
    ) -> Hypothesis:
        """``parent`` extended by ``token`` (the search's hot path: no argument parsing)."""
        h = cls.__new__(cls)
        h.node = Node(token, parent.node)
        h.score, h.rank, h.key = parent.score + score_step, parent.rank + rank_step, key
        h.trace, h.reach, h.branch = trace, reach, parent.branch
        return h

    @property
    def length(self) -> int:
        return 0 if self.node is None else self.node.depth

    @property
    def tokens(self) -> list[int]:
        """The tokens (built on demand: O(length))."""
        return [] if self.node is None else self.node.tokens()

    def normalised(self, length_penalty: float) -> float:
        return self.rank / max(1, self.length) ** length_penalty

    def __repr__(self) -> str:
        return f"Hypothesis({self.tokens}, score={self.score:.4f}, rank={self.rank:.4f}, key={self.key:.4f})"


@dataclass
class BeamProgress:
    """After each step: the prefix every hypothesis that can still win shares (safe to
    stream; ``fresh`` holds the part of it committed at this step), the best hypothesis
    so far, and, on the last item, the finished results best first."""

    fresh: list[int]
    best: Hypothesis
    results: list[Hypothesis]
    finished: bool = False
    _prefix: list[int] = field(default_factory=list, repr=False)
    _length: int = 0

    @property
    def committed(self) -> list[int]:
        """The whole committed prefix (a copy: O(length))."""
        return self._prefix[: self._length]


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

    @property
    def live_cap(self) -> int | None:
        """Stop taking candidates in a step once this many are live (None: take them all)."""

    def ordering(self, hypothesis: Hypothesis) -> float:
        """Sort key of results and of the best hypothesis, larger first."""

    def survivors(
        self, live: list[Hypothesis], rows: list[int], done: list[Hypothesis], position: int, max_length: int
    ) -> tuple[list[Hypothesis], list[int], list[Hypothesis], bool]:
        """After a step: the live hypotheses kept (with their parent rows), the finished
        ones kept (best first), and whether the search is over."""

    def best(self, live: list[Hypothesis], done: list[Hypothesis]) -> Hypothesis:
        """The best of ``live`` (not empty) and the best finished one, ``done[0]``, by
        :meth:`ordering` (the first of equals, live before finished)."""


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
        every = scores.reshape(-1)
        flat = _best_first(every, 2 * self.num_beams)
        keys = every[flat]
        finite = np.isfinite(keys)
        if not finite.all():
            flat, keys = flat[finite], keys[finite]
        parents, tokens = np.divmod(flat, scores.shape[1])
        return parents, tokens, keys

    def counts_finished(self, order):
        # Hugging Face: a candidate that ends outside the best num_beams is dropped, so
        # unlikely endings neither crowd the results nor block streaming
        return order < self.num_beams

    @property
    def live_cap(self):
        return self.num_beams

    def best(self, live, done):
        # children come best first by rank (deterministic; all live ones are equally
        # long, so by the length-normalised rank too) or by key (Gumbel): the first live
        # one is the best live one
        if done and self.ordering(done[0]) > self.ordering(live[0]):
            return done[0]
        return live[0]


@dataclass(frozen=True)
class Deterministic(_BestCandidates):
    """The ``num_beams`` best continuations by ``rank / length ** length_penalty``."""

    length_penalty: float = 1.0
    sampled = False

    def ordering(self, hypothesis):
        return hypothesis.normalised(self.length_penalty)

    def best_possible(self, hypothesis: Hypothesis, max_length: int) -> float:
        # rank only falls as tokens are added; dividing by a longer length can still
        # raise it when length_penalty > 0, at most up to the longest length the
        # hypothesis can still reach (``reach``: the track's bound, else the cap)
        if self.length_penalty <= 0:
            return hypothesis.rank / (hypothesis.length + 1) ** self.length_penalty
        reach = max_length if hypothesis.reach is None else min(max_length, hypothesis.reach)
        return hypothesis.rank / max(1, reach) ** self.length_penalty

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

    live_cap = None

    def best(self, live, done):
        return max(live + done[:1], key=self.ordering)

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


class HistoryTrack:
    """The plain :class:`Track` over whole sequences: ``is_final(sequence)`` and
    ``rules(history, log_probs)`` see ``start`` plus the generated tokens, rebuilt at
    every step (O(length) per step: for tests and small searches; the sampler uses
    incremental tracks)."""

    def __init__(self, start: Sequence[int], is_final: Callable[[list[int]], bool] | None, rules: RulesFn | None):
        self.prefix = list(start)
        self.final = is_final
        self.rules = rules

    def start(self):
        return None

    def advance(self, trace, token):
        return None

    def is_final_sequence(self, hypothesis: Hypothesis) -> bool:
        return self.final is not None and self.final(self.prefix + hypothesis.tokens)

    def is_final(self, trace):
        return False

    def shape(self, traces, hypotheses, log_probs):
        if self.rules is None:
            return log_probs
        history = np.array([self.prefix + h.tokens for h in hypotheses], dtype=np.int64)
        return self.rules(history, log_probs)

    def remaining(self, trace):
        return None


def beam_search(
    step: StepFn,
    reorder: ReorderFn,
    state: Any,
    start: Sequence[int],
    first_log_probs: np.ndarray,
    selection: Selection,
    *,
    max_length: int,
    is_final: Callable[[list[int]], bool] | None = None,
    rules: RulesFn | None = None,
    seed: int = 0,
    track: Track | None = None,
    rng: Any = None,
) -> Iterator[BeamProgress]:
    """Search continuations of ``start`` (ids already fed; ``state`` is the one-row state
    after them and ``first_log_probs`` (vocab,) the next-token distribution there).

    Either ``track`` (incremental per-hypothesis bookkeeping, see :class:`Track`) or
    ``is_final(sequence)`` and ``rules(history, log_probs) -> log_probs`` (history:
    (n, len(start) + t) ids), which a :class:`HistoryTrack` rebuilds at every step.
    ``seed`` seeds the sampled selections (or ``rng``, a generator with numpy's
    ``random``/``gumbel`` methods).  Yields a :class:`BeamProgress` after every step;
    the last one has ``finished=True`` and up to ``num_beams`` results.

    Per step the search does O(beams * vocab) work whatever the length: tokens live
    in a tree of :class:`Node`, the committed prefix grows from the previous one (see
    :meth:`_Committed.grow`), and every other test reads the hypothesis's trace."""
    require(max_length >= 1, f"length must be at least 1 (got {max_length})")
    if rng is None:
        rng = new_rng(seed)
    history_track = track is None
    if track is None:
        track = HistoryTrack(start, is_final, rules)
    first = track.start()
    advance = track.advance
    cap = selection.live_cap
    beams = [Hypothesis(trace=first, reach=_reach(track, first, 0, max_length))]
    log_probs = log_softmax(np.asarray(first_log_probs, dtype=np.float64)[None, :])
    done: list[Hypothesis] = []
    committed = _Committed()
    for position in range(max_length):
        shaped = track.shape([b.trace for b in beams], beams, log_probs)
        if shaped is not log_probs:  # no rule changed them: the model's are normalised already
            shaped = log_softmax(shaped)
        parents, tokens, keys = selection.children(beams, shaped, position, max_length, rng)
        # the step's scores for every candidate in two numpy calls, not two per candidate
        score_steps = log_probs[parents, tokens].tolist()
        rank_steps = score_steps if shaped is log_probs else shaped[parents, tokens].tolist()
        live, rows, next_tokens = [], [], []
        last = position == max_length - 1
        for order, (parent, token, key) in enumerate(zip(parents.tolist(), tokens.tolist(), keys.tolist())):
            b = beams[parent]
            trace = advance(b.trace, token)
            reach = _reach(track, trace, position + 1, max_length)
            h = Hypothesis.child(b, token, score_steps[order], rank_steps[order], key, trace, reach)
            if last or track.is_final(trace) or (history_track and track.is_final_sequence(h)):
                if selection.counts_finished(order):
                    done.append(h)
            else:
                live.append(h)
                rows.append(parent)
                next_tokens.append(token)
            if len(live) == cap:
                break
        kept, rows, done, stop = selection.survivors(live, rows, done, position, max_length)
        if not kept and not done:
            raise StudioError(
                "the sampling rules ban every token (e.g. --no-repeat-ngram too small for --length): relax them"
            )
        if stop:
            best = done[0]
            fresh = best.tokens[committed.length :]
            committed.tokens.extend(fresh)
            yield BeamProgress(fresh, best, done, True, committed.tokens, len(committed.tokens))
            return
        if kept is not live:  # the selection dropped some: their tokens go too
            next_tokens = [h.node.token for h in kept]
        beams = kept
        state = reorder(state, np.array(rows))
        log_probs, state = step(np.array(next_tokens), state)
        log_probs = log_softmax(np.asarray(log_probs, dtype=np.float64))  # normalised once, here
        fresh = committed.grow(beams + done[:1])
        yield BeamProgress(fresh, selection.best(beams, done), [], False, committed.tokens, len(committed.tokens))


def _best_first(scores: np.ndarray, count: int) -> np.ndarray:
    """Indices of the ``count`` largest of ``scores`` (1-D), largest first, ties by index:
    ``np.argsort(-scores, kind="stable")[:count]``, without sorting all of them (a
    partition finds the count-th largest; only the entries at least that large, ties
    included, are sorted)."""
    if count >= scores.size:
        return np.argsort(-scores, kind="stable")
    negated = -scores
    bound = np.partition(negated, count - 1)[count - 1]
    if bound != bound:  # nan sorts last: leave such rows to the full sort
        return negated.argsort(kind="stable")[:count]
    pool = (negated <= bound).nonzero()[0]
    return pool[negated[pool].argsort(kind="stable")][:count]


def new_rng(seed: int):
    """The search's random generator (the one place it is made)."""
    return CounterRNG(seed)


def _reach(track: Track, trace: Any, length: int, max_length: int) -> int:
    remaining = track.remaining(trace)
    return max_length if remaining is None else min(max_length, length + remaining)


class _Committed:
    """The prefix shared by every hypothesis that can still win.  Each hypothesis
    carries ``branch``, its ancestor just after the prefix (inherited from its parent,
    so O(1) per child); only when every kept hypothesis has the same branch can the
    prefix grow, and only then are the tokens after it walked, once."""

    def __init__(self):
        self.tokens: list[int] = []
        self.node: Node | None = None

    @property
    def length(self) -> int:
        return len(self.tokens)

    def _branch(self, h: Hypothesis) -> Node | None:
        depth = self.length + 1
        if h.length < depth:
            return None
        if h.branch is None or h.branch.depth != depth:
            h.branch = _ancestor(h.node, depth)
        return h.branch

    def grow(self, hypotheses: Sequence[Hypothesis]) -> list[int]:
        """Tokens newly committed now that ``hypotheses`` are the ones kept."""
        first = self._branch(hypotheses[0])
        if first is None:
            return []
        for h in hypotheses[1:]:
            branch = self._branch(h)
            if branch is None or branch.token != first.token:
                return []
        # every hypothesis goes on with the same token: walk up from the shortest
        # length to the deepest depth where all tokens agree (copies of a beam may hold
        # equal tokens in different nodes, so tokens are compared, not nodes)
        nodes = [h.node for h in hypotheses]
        depth = min(n.depth for n in nodes)
        nodes = [_ancestor(n, depth) for n in nodes]
        top = nodes[0]
        while nodes[0] is not None and any(n is not nodes[0] for n in nodes[1:]):
            if any(n.token != nodes[0].token for n in nodes[1:]):
                top = nodes[0].parent
            nodes = [n.parent for n in nodes]
        common = top
        fresh = []
        node = common
        while node is not None and node.depth > self.length:
            fresh.append(node.token)
            node = node.parent
        fresh.reverse()
        self.tokens.extend(fresh)
        self.node = common
        for h in hypotheses:
            self._branch(h)
        return fresh


def _distinct(hypotheses: Sequence[Hypothesis], order) -> list[int]:
    """Indices in ``order``, skipping hypotheses whose tokens repeat an earlier one's
    (compared by a digest of the token path; tokens only when digests collide)."""
    seen: dict[tuple[int, int], list[int]] = {}
    keep = []
    for i in order:
        node = hypotheses[i].node
        key = (0, 0) if node is None else (node.depth, node.digest)
        same = seen.setdefault(key, [])
        if any(_same_tokens(hypotheses[j].node, node) for j in same):
            continue
        same.append(int(i))
        keep.append(int(i))
    return keep


def _same_tokens(a: Node | None, b: Node | None) -> bool:
    while a is not None and b is not None:
        if a is b:
            return True
        if a.token != b.token:
            return False
        a, b = a.parent, b.parent
    return a is None and b is None


def _best_distinct(done: list[Hypothesis], ordering: Callable[[Hypothesis], float], count: int) -> list[Hypothesis]:
    """The ``count`` best of ``done`` by ``ordering`` (stable), duplicates left out."""
    done.sort(key=ordering, reverse=True)
    return [done[i] for i in _distinct(done, range(len(done)))][:count]
