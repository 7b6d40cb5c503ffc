"""Beam search with toy step functions whose answers are known."""

from __future__ import annotations

import itertools
from collections import Counter

import numpy as np
import pytest

from studio.errors import StudioError
from studio.sampling.beam import (
    BranchFactor,
    Deterministic,
    GumbelTopK,
    Hypothesis,
    beam_search,
    gumbel_truncated,
    selection_for,
)
from studio.sampling.rng import CounterRNG

END = 0


class ToyModel:
    """A tabular 'language model': next-token log-probabilities are a fixed function of
    the sequence so far.  State is the list of sequences, one per row."""

    def __init__(self, table):
        self.table = table
        self.batches: list[int] = []

    def log_probs(self, sequence) -> np.ndarray:
        return np.log(np.asarray(self.table(tuple(sequence)), dtype=np.float64))

    def step(self, tokens, state):
        self.batches.append(len(tokens))
        state = [sequence + [int(t)] for sequence, t in zip(state, tokens)]
        return np.stack([self.log_probs(s) for s in state]), state

    @staticmethod
    def reorder(state, rows):
        return [list(state[r]) for r in rows]

    def search(self, **options):
        options.setdefault("is_final", lambda sequence: False)
        *_, last = self.progress(**options)
        return last.results

    def progress(self, **options):
        """The search with the command line's flags (``sample``, ``branch_factor``, ...)."""
        options.setdefault("is_final", lambda sequence: False)
        flags = {
            name: options.pop(name)
            for name in ("length_penalty", "sample", "branch_factor", "steps_per_iteration")
            if name in options
        }
        selection = selection_for(options.pop("num_beams"), **flags)
        return list(beam_search(self.step, self.reorder, [[]], [], self.log_probs(()), selection, **options))


def random_table(vocab: int, seed: int, end: bool = False):
    def table(sequence):
        rng = np.random.default_rng([seed, *[t + 1 for t in sequence], 99])
        p = rng.dirichlet(np.full(vocab, 0.5))
        return np.maximum(p, 1e-6) / np.maximum(p, 1e-6).sum()

    return table


def all_sequences(model: ToyModel, vocab: int, length: int, is_final):
    """Every sequence the search can produce (ending at the first final token or at
    ``length``), with its log-probability."""
    found = {}
    for sequence in itertools.product(range(vocab), repeat=length):
        for n in range(1, length + 1):
            if is_final(list(sequence[:n])) or n == length:
                prefix = sequence[:n]
                found[prefix] = sum(model.log_probs(prefix[:i])[prefix[i]] for i in range(n))
                break
    return found


def test_beam_finds_what_greedy_misses():
    # greedy takes 1 (0.6) then faces a flat 1/3; path 2 (0.4) then 2 (0.9) is better: 0.36 > 0.2
    def table(sequence):
        if not sequence:
            return [0.0001, 0.6, 0.3999]
        return [1 / 3] * 3 if sequence[0] == 1 else [0.05, 0.05, 0.9]

    greedy = ToyModel(table).search(num_beams=1, max_length=2)[0]
    beam = ToyModel(table).search(num_beams=2, max_length=2)[0]
    assert greedy.tokens[0] == 1
    assert beam.tokens == [2, 2]
    assert beam.score == pytest.approx(np.log(0.3999 * 0.9)) and beam.score > greedy.score


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("length_penalty", [0.0, 1.0, 2.0])
def test_wide_beam_is_exact(seed, length_penalty):
    """With as many beams as prefixes, beam search must find the best sequence under
    its own ranking (rank / length ** length_penalty), ends included."""
    vocab, length = 3, 3
    model = ToyModel(random_table(vocab, seed))
    is_final = lambda sequence: sequence[-1] == END  # noqa: E731
    candidates = all_sequences(model, vocab, length, is_final)
    best = max(candidates, key=lambda s: candidates[s] / len(s) ** length_penalty)
    results = model.search(
        num_beams=vocab ** (length - 1), max_length=length, is_final=is_final, length_penalty=length_penalty
    )
    assert tuple(results[0].tokens) == best
    assert results[0].score == pytest.approx(candidates[best])
    normalised = [h.rank / len(h.tokens) ** length_penalty for h in results]
    assert normalised == sorted(normalised, reverse=True)


def test_one_beam_is_greedy():
    model = ToyModel(random_table(5, 3))
    result = model.search(num_beams=1, max_length=6)[0]
    sequence = []
    for _ in range(6):
        sequence.append(int(np.argmax(model.log_probs(sequence))))
    assert result.tokens == sequence


def test_all_live_beams_go_through_step_as_one_batch():
    model = ToyModel(random_table(6, 1))
    model.search(num_beams=4, max_length=5)
    assert model.batches == [4, 4, 4, 4]


def test_stopping_waits_until_no_live_beam_can_win():
    # ending (token 0) is likely early; with length_penalty 0 a short finished sequence
    # wins, and the search stops as soon as every live beam has fallen below it
    def table(sequence):
        return [0.7, 0.2, 0.1]

    model = ToyModel(table)
    results = model.search(num_beams=2, max_length=50, length_penalty=0.0, is_final=lambda s: s[-1] == END)
    assert results[0].tokens == [0]
    assert len(model.batches) < 5


def test_rules_shape_the_search_and_score_stays_the_model_s():
    model = ToyModel(random_table(4, 7))

    def ban_two(history, log_probs):
        out = log_probs.copy()
        out[:, 2] = -np.inf
        return out

    results = model.search(num_beams=3, max_length=5, rules=ban_two)
    for h in results:
        assert 2 not in h.tokens
        expected = sum(model.log_probs(h.tokens[:i])[h.tokens[i]] for i in range(len(h.tokens)))
        assert h.score == pytest.approx(expected)
        assert h.rank >= h.score - 1e-9  # renormalised after the ban: never less likely


def test_rules_that_ban_everything_raise():
    model = ToyModel(random_table(3, 0))
    with pytest.raises(StudioError, match="ban every token"):
        model.search(num_beams=2, max_length=4, rules=lambda h, lp: np.full_like(lp, -np.inf))


# --- stochastic beam search (Gumbel-top-k) -------------------------------------------------


def test_truncated_gumbel_keys_peak_at_the_parent_key():
    rng = np.random.default_rng(0)
    phi = np.log(rng.dirichlet(np.ones(7), size=5)) - 3.0
    phi[0, 2] = -np.inf
    parent = rng.gumbel(size=5) - 3.0
    keys = gumbel_truncated(phi, parent, rng)
    np.testing.assert_allclose(keys.max(-1), parent, rtol=0, atol=1e-12)
    assert (keys <= parent[:, None] + 1e-12).all() and keys[0, 2] == -np.inf


def test_stochastic_beams_are_distinct_and_seeded():
    model = ToyModel(random_table(5, 2))
    options = dict(num_beams=6, max_length=4, sample=True, is_final=lambda s: s[-1] == END)
    first = model.search(seed=3, **options)
    again = ToyModel(random_table(5, 2)).search(seed=3, **options)
    other = ToyModel(random_table(5, 2)).search(seed=4, **options)
    assert len(first) == 6 and len({tuple(h.tokens) for h in first}) == 6
    assert [h.tokens for h in first] == [h.tokens for h in again]
    assert [h.tokens for h in first] != [h.tokens for h in other]
    keys = [h.key for h in first]
    assert keys == sorted(keys, reverse=True)


def test_stochastic_beams_sample_without_replacement():
    """The keys order the samples like successive draws without replacement:
    P(first = a) = p(a) and P(second = b) = sum over a of p(a) p(b) / (1 - p(a))."""

    def table(sequence):
        return [0.5, 0.3, 0.2] if not sequence else [0.2, 0.3, 0.5]

    is_final = lambda s: s[-1] == END  # noqa: E731
    model = ToyModel(table)
    p = {s: float(np.exp(lp)) for s, lp in all_sequences(model, 3, 2, is_final).items()}
    runs = 3000
    firsts, seconds = Counter(), Counter()
    for seed in range(runs):
        results = model.search(num_beams=2, max_length=2, sample=True, seed=seed, is_final=is_final)
        firsts[tuple(results[0].tokens)] += 1
        seconds[tuple(results[1].tokens)] += 1
    second_p = {b: sum(p[a] * p[b] / (1 - p[a]) for a in p if a != b) for b in p}
    tv_first = 0.5 * sum(abs(firsts[s] / runs - p[s]) for s in p)
    tv_second = 0.5 * sum(abs(seconds[s] / runs - second_p[s]) for s in p)
    assert tv_first < 0.04 and tv_second < 0.04, (tv_first, tv_second)


# --- magenta's sampled beams -----------------------------------------------------------------


def test_magenta_iterations_branch_then_prune():
    model = ToyModel(random_table(6, 5))
    results = model.search(num_beams=2, max_length=7, branch_factor=3, steps_per_iteration=3, seed=1)
    # first iteration: 1 step (7 - 1) % 3 + 1, then two of 3 steps; prune back to 2 beams
    assert model.batches == [2, 6, 6, 2, 6, 6]
    assert len(results) == 2 and len({tuple(h.tokens) for h in results}) == 2
    assert all(len(h.tokens) == 7 for h in results)
    again = ToyModel(random_table(6, 5)).search(
        num_beams=2, max_length=7, branch_factor=3, steps_per_iteration=3, seed=1
    )
    assert [h.tokens for h in results] == [h.tokens for h in again]


def test_magenta_and_stochastic_beams_are_alternatives():
    model = ToyModel(random_table(3, 0))
    with pytest.raises(StudioError, match="alternatives"):
        model.search(num_beams=2, max_length=3, sample=True, branch_factor=2)


# --- streaming ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "flavour",
    [
        dict(num_beams=3),
        dict(num_beams=3, sample=True, seed=2),
        dict(num_beams=1, branch_factor=3, steps_per_iteration=2, seed=2),
    ],
)
def test_committed_prefix_only_grows_and_starts_the_result(flavour):
    def table(sequence):  # branch 1 is near-deterministic and wins, so it commits early
        if not sequence:
            return [0.01, 0.5, 0.3, 0.19]
        return [0.01, 0.97, 0.01, 0.01] if sequence[0] == 1 else [0.25] * 4

    steps = ToyModel(table).progress(max_length=12, is_final=lambda s: s[-1] == END, **flavour)
    final = steps[-1].results[0].tokens
    committed = [p.committed for p in steps]
    for before, after in zip(committed, committed[1:]):
        assert after[: len(before)] == before
    assert all(final[: len(c)] == c for c in committed)
    if not flavour.get("sample"):  # distinct samples rarely share a prefix: nothing to stream early
        assert any(c for c in committed[:-1]), "nothing was committed before the end"


# --- each selection on its own ---------------------------------------------------------------


def test_selection_for_maps_the_flags():
    assert selection_for(3) == Deterministic(3, 1.0) and not Deterministic(3).sampled
    assert selection_for(3, length_penalty=0.5, sample=True) == GumbelTopK(3)
    assert selection_for(2, branch_factor=2) == BranchFactor(2, 2, 1)
    assert selection_for(2, steps_per_iteration=3, length_penalty=0.0) == BranchFactor(2, 1, 3, 0.0)
    assert GumbelTopK(3).sampled and BranchFactor(2).sampled
    with pytest.raises(StudioError, match="beams must be at least 1"):
        Deterministic(0)
    with pytest.raises(StudioError, match="branch factor"):
        BranchFactor(2, branch_factor=0)


def test_deterministic_proposes_the_best_two_beams_of_children_in_order():
    shaped = np.log(np.array([[0.5, 0.3, 0.2], [0.1, 0.1, 0.8]]))
    beams = [Hypothesis([1], rank=np.log(0.6)), Hypothesis([2], rank=np.log(0.4))]
    parents, tokens, keys = Deterministic(2).children(beams, shaped, 1, 5, None)
    # joint probabilities: 0.30 0.18 0.12 / 0.04 0.04 0.32
    assert list(zip(parents.tolist(), tokens.tolist())) == [(1, 2), (0, 0), (0, 1), (0, 2)]
    np.testing.assert_allclose(np.exp(keys), [0.32, 0.30, 0.18, 0.12])


def test_deterministic_search_through_a_toy_step_function():
    # a chain where the likeliest first token leads nowhere: 0.5 * 0.2 < 0.4 * 0.9
    def table(sequence):
        if not sequence:
            return [0.1, 0.5, 0.4]
        return [0.2, 0.4, 0.4] if sequence[0] == 1 else [0.9, 0.05, 0.05]

    model = ToyModel(table)
    *_, last = beam_search(
        model.step,
        model.reorder,
        [[]],
        [],
        model.log_probs(()),
        Deterministic(2),
        max_length=3,
        is_final=lambda s: s[-1] == END,
    )
    # [2, 0] ends at step 2; the two best 3-token paths (0.08 each, lower ids first) fill
    # the last step's two places, and only the first of them ranks among the results
    assert [h.tokens for h in last.results] == [[2, 0], [1, 1, 1]]
    assert [h.score for h in last.results] == pytest.approx([np.log(0.4 * 0.9), np.log(0.5 * 0.4 * 0.4)])


def test_gumbel_top_k_with_room_for_every_sequence_returns_each_once():
    """With as many beams as sequences, sampling without replacement enumerates them all:
    every sequence once, each with its model score, keys descending."""
    vocab, length = 3, 2
    model = ToyModel(random_table(vocab, 11))
    *_, last = beam_search(
        model.step,
        model.reorder,
        [[]],
        [],
        model.log_probs(()),
        GumbelTopK(vocab**length),
        max_length=length,
        is_final=lambda s: False,
        seed=4,
    )
    assert sorted(tuple(h.tokens) for h in last.results) == list(itertools.product(range(vocab), repeat=length))
    for h in last.results:
        assert h.score == pytest.approx(model.log_probs(h.tokens[:1])[h.tokens[1]] + model.log_probs(())[h.tokens[0]])
    keys = [h.key for h in last.results]
    assert keys == sorted(keys, reverse=True)


def test_branch_factor_one_beam_one_step_is_ancestral_sampling():
    """One beam, no branching: every step is one inverse-CDF draw from the step's
    distribution, with the search's seeded generator."""
    model = ToyModel(random_table(6, 8))
    *_, last = beam_search(
        model.step,
        model.reorder,
        [[]],
        [],
        model.log_probs(()),
        BranchFactor(1),
        max_length=9,
        is_final=lambda s: False,
        seed=21,
    )
    rng = CounterRNG(21)  # the search draws from the studio's counter-based stream
    expected = []
    for _ in range(9):
        cumulative = np.cumsum(np.exp(model.log_probs(expected)))
        expected.append(int(np.searchsorted(cumulative, rng.random() * cumulative[-1], side="right")))
    assert last.results[0].tokens == expected


def test_best_first_is_the_stable_sort_prefix():
    """The candidate ranking's partial sort picks what a full stable sort would, in its
    order, ties (which rounded scores make common) and -inf included."""
    from studio.sampling.beam import _best_first

    rng = np.random.default_rng(0)
    for trial in range(300):
        size = int(rng.integers(1, 80))
        scores = np.round(rng.normal(size=size), int(rng.integers(0, 3)))  # many ties
        scores[rng.random(size) < 0.2] = -np.inf
        count = int(rng.integers(1, 20))
        expected = np.argsort(-scores, kind="stable")[:count]
        assert np.array_equal(_best_first(scores, count), expected), trial
