"""The batched engine and the server's batcher: every row is exactly what it is alone.

Jobs with different seeds, settings, rules, stop strings and lengths join one
:class:`~studio.engine.Engine` at different steps and leave it as they end; each must
give the same samples (tokens, text, log-probability) as its generation run alone.  The
:class:`~studio.serve.Batcher` must give 20 concurrent requests the events
:func:`studio.api.sample_iter` gives each alone, in fewer runtime calls than rows.  A
huge ``--length`` streams without an allocation of that size.
"""

from __future__ import annotations

import threading
import tracemalloc

import pytest

from studio.api import load, sample, sample_iter, settings_from
from studio.bench.runtime_rates import _Endless
from studio.engine import Engine
from studio.errors import StudioError
from studio.generate import Generation, TokenRows
from studio.heads import Finished
from studio.serve import Batcher

RECIPES = [
    dict(prime="W", length=40, seed=1),
    dict(prime="Th", length=25, seed=2, temperature=0.7, num=3),
    dict(prime="a", length=60, seed=3, top_k=5, top_p=0.9),
    dict(prime="W", length=30, seed=4, stop=("e",), num=2),
    dict(prime="the ", length=35, seed=5, repetition_penalty=1.3, no_repeat_ngram_size=2),
    dict(prime="W", length=20, seed=6, greedy=True),
    dict(length=1, seed=7),
    dict(prime="Th", length=50, seed=8),  # with the first: one-row jobs without rules draw together
]


def _settings(bundle, precision: str, recipe: dict):
    return settings_from(str(bundle), precision=precision, **recipe)


def _as_tuples(samples):
    return [(s.text, s.tokens, s.logprob) for s in samples]


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_rows_joining_and_leaving_equal_each_row_alone(tiny_bundle, precision):
    loaded = load(str(tiny_bundle), precision=precision)
    alone = [_as_tuples(sample(settings=_settings(tiny_bundle, precision, r))) for r in RECIPES]
    engine = Engine(loaded.runtime)
    jobs = [TokenRows(Generation(loaded.runtime, loaded.domain, _settings(tiny_bundle, precision, r))) for r in RECIPES]
    streamed = [[] for _ in jobs]
    pending = list(enumerate(jobs))
    step = 0
    sizes = set()
    while pending or engine.jobs:
        if pending and step % 3 == 0:  # a new job joins every third step, mid-run of the others
            index, job = pending.pop(0)
            engine.add(job)
            streamed[index] += job.drain()
        sizes.add(engine.rows)
        engine.step()
        for index, job in enumerate(jobs):
            streamed[index] += job.drain()
        step += 1
    assert max(sizes) > 3, "several jobs should have shared a step"
    for index, (job, expected) in enumerate(zip(jobs, alone)):
        assert job.error is None
        assert _as_tuples(job.samples()) == expected, RECIPES[index]
        for row, samp in enumerate(job.samples()):
            assert [token for r, token in streamed[index] if r == row] == [
                t for t in samp.tokens if t != loaded.domain.separator_id
            ]


def test_a_cancelled_job_leaves_and_the_others_go_on(tiny_bundle):
    loaded = load(str(tiny_bundle), precision="fp32")
    engine = Engine(loaded.runtime)
    keep = TokenRows(Generation(loaded.runtime, loaded.domain, _settings(tiny_bundle, "fp32", RECIPES[2])))
    drop = TokenRows(Generation(loaded.runtime, loaded.domain, _settings(tiny_bundle, "fp32", RECIPES[1])))
    engine.add(drop)
    engine.add(keep)
    for _ in range(5):
        engine.step()
    drop.cancel()
    engine.run()
    assert engine.rows == 0 and len(drop.generated[0]) <= 7
    assert _as_tuples(keep.samples()) == _as_tuples(sample(settings=_settings(tiny_bundle, "fp32", RECIPES[2])))


class _FailsAtStep(TokenRows):
    """A job whose rules fail at its fifth step (as a rule that bans every token does)."""

    def advance(self, outputs):
        if self.drawn == 5:
            raise StudioError("the sampling rules ban every token")
        return super().advance(outputs)


def test_a_failing_job_fails_alone(tiny_bundle):
    loaded = load(str(tiny_bundle), precision="fp32")
    engine = Engine(loaded.runtime)
    good = _settings(tiny_bundle, "fp32", RECIPES[1])
    failing = _FailsAtStep(Generation(loaded.runtime, loaded.domain, _settings(tiny_bundle, "fp32", RECIPES[0])))
    fine = TokenRows(Generation(loaded.runtime, loaded.domain, good))
    engine.add(failing)
    engine.add(fine)
    engine.run()
    assert isinstance(failing.error, StudioError) and failing.live == 0
    assert _as_tuples(fine.samples()) == _as_tuples(sample(settings=good))


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_twenty_concurrent_requests_share_steps_and_equal_their_recipes(tiny_bundle, precision):
    recipes = [dict(RECIPES[i % 6], seed=i) for i in range(20)]
    settings = [_settings(tiny_bundle, precision, r) for r in recipes]
    expected = [list(sample_iter(settings=s)) for s in settings]
    batcher = Batcher()
    got: list = [None] * 20
    gate = threading.Barrier(20)

    def request(index):
        gate.wait()
        got[index] = list(batcher.sample_iter(settings[index]))

    threads = [threading.Thread(target=request, args=(i,)) for i in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    batcher.close()
    for index in range(20):
        events = got[index]
        assert events is not None and isinstance(events[-1], Finished)
        assert events[:-1] == expected[index][:-1]  # Started, then every Token in order
        assert _as_tuples(events[-1].samples) == _as_tuples(expected[index][-1].samples)
    rows = sum(min(r["length"], 60) * r.get("num", 1) for r in recipes)
    assert batcher.steps < rows / 2, "the requests should have shared runtime calls"


def test_a_closed_request_leaves_the_batch(tiny_bundle):
    batcher = Batcher()
    settings = _settings(tiny_bundle, "fp32", dict(prime="W", length=10_000, seed=1))
    events = batcher.sample_iter(settings)
    for _ in range(20):
        next(events)
    events.close()  # the user pressed Stop
    [alone] = batcher.sample(_settings(tiny_bundle, "fp32", RECIPES[0]))
    batcher.close()
    assert _as_tuples([alone]) == _as_tuples(sample(settings=_settings(tiny_bundle, "fp32", RECIPES[0])))


@pytest.mark.parametrize("rules", [{}, {"top_k": 5, "repetition_penalty": 1.2}])
def test_a_huge_length_streams_without_a_big_allocation(tiny_bundle, rules):
    loaded = load(str(tiny_bundle), precision="fp32")
    settings = _settings(tiny_bundle, "fp32", dict(prime="W", length=100_000_000_000, seed=1, **rules))
    tracemalloc.start()
    try:
        generation = Generation(loaded.runtime, _Endless(loaded.domain), settings)
        tokens = 0
        for _ in generation:
            tokens += 1
            if tokens == 3000:
                break
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert tokens == 3000
    assert peak < 8_000_000, f"{peak:,} bytes at the peak"


def test_every_numeric_option_is_bounded_before_any_work(tiny_bundle):
    for options, words in [
        (dict(num=10**9), "num must be at most 4,096"),
        (dict(num_beams=10**9), "beams must be at most 1,024"),
        (dict(temperature=float("inf")), "finite"),
        (dict(top_p=float("nan")), "finite"),
        (dict(seed=2**70), "seed must be 0 to"),
        (dict(bias=float("inf")), "finite"),
    ]:
        with pytest.raises(StudioError, match=words):
            settings_from(str(tiny_bundle), **options)


def test_the_prefix_cache_gives_the_bytes_of_a_fresh_prefill(tiny_bundle, monkeypatch):
    """Requests with one prime prime once (a server's users mostly share the default
    prime); every caller gets its own copy of exactly what a fresh call computes, and
    the cache keeps at most ``PREFILL_CACHE`` primes."""
    import numpy as np

    from studio import runtime as runtime_module
    from studio.runtime import Runtime

    bundle = load(str(tiny_bundle), precision="fp32").runtime.bundle
    cached, fresh = Runtime(bundle, precision="fp32"), Runtime(bundle, precision="fp32")
    prime = [3, 1, 4, 1, 5]
    calls = []
    original = cached.logits
    monkeypatch.setattr(cached, "logits", lambda *a: calls.append(1) or original(*a))
    first_state, first_last = cached.prefill(prime)
    for value in (*first_state.values(), first_last):
        value += 1.0  # a caller's changes stay its own
    state, last = cached.prefill(prime)
    expected_state, expected_last = fresh.prefill(prime)
    assert len(calls) == 1
    assert np.array_equal(last, expected_last) and last.dtype == np.float64 and last.shape[0] == 1
    assert all(np.array_equal(state[name], expected_state[name]) for name in expected_state)
    other_state, other_last = cached.prefill([3, 1, 4])  # another prime is its own entry
    assert len(calls) == 2 and not np.array_equal(other_last, last)
    monkeypatch.setattr(runtime_module, "PREFILL_CACHE", 2)
    for start in range(5):
        cached.prefill([start, 2])
    assert len(cached._prefills) == 2
