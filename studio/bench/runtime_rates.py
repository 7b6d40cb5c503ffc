"""onnxruntime figures for ``studio bench``: the product's sampling loop
(:class:`studio.generate.Generation`) and the bare step graph, per precision."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator

import numpy as np

from ..generate import Generation
from ..runtime import Runtime
from ..sampling.settings import SampleSettings
from .timing import chunk_length, paired_rates, probe, rate

BATCHES = (8, 64)  # --num figures besides batch 1
# the bare graph at the widths of issue 19's batch targets (a beam of 8, 20 streams,
# --num 64): the most any loop around it could give
GRAPH_BATCHES = (8, 20, 64)


class _Endless:
    """A domain whose samples never end early (for timing a fixed number of tokens)."""

    separator_id = -1

    def __init__(self, domain):
        self._domain = domain

    def __getattr__(self, name):
        return getattr(self._domain, name)

    def is_finished(self, generated, settings) -> bool:
        return False


def _generation_work(
    runtime: Runtime, domain, settings: SampleSettings, seconds: float, per_step: Callable[[SampleSettings], int]
) -> Callable[[], int]:
    """A chunk of the sampling loop with ``settings`` (``domain``: the bundle's), sized so
    that 7 chunks take about ``seconds``; it returns its units (tokens: ``settings.num``
    a step; beam steps: 1)."""
    endless = _Endless(domain)
    prime = settings.prime

    def run(length: int) -> int:
        generation = Generation(runtime, endless, settings.with_(length=length, prime=prime))
        for _ in generation:
            pass
        return length * per_step(settings)

    run(20)  # a warm-up, so the chunk size is not set by first calls (allocations, caches)
    start = time.perf_counter()
    run(20)
    length = chunk_length((time.perf_counter() - start) / 20, seconds)
    return lambda: run(length)


def generation_rate(
    runtime: Runtime, domain, settings: SampleSettings, seconds: float, per_step: Callable[[SampleSettings], int]
) -> float:
    """Units per second of the sampling loop with ``settings`` (``domain``: the bundle's);
    each step counts ``per_step(settings)`` units (tokens: ``settings.num``; beam steps: 1)."""
    return rate(_generation_work(runtime, domain, settings, seconds, per_step), seconds)


def _graph_work(runtime: Runtime, seconds: float, batch: int = 1) -> Callable[[], int]:
    """A chunk of bare step-graph calls at ``batch`` rows (state fed back, always the same
    token, no sampling): the ceiling the sampling loop approaches as its own work shrinks.
    It returns tokens (steps times rows).  Called as the sampling loop calls the graph
    (:attr:`Runtime.call`), so the ratio of the two is the loop's own work."""
    feeds = {"tokens": np.zeros((batch, 1), dtype=np.int64), **runtime.init_state(batch)}
    fetch, call = runtime._fetch, runtime.call
    names = runtime.state_names

    def steps(count: int) -> int:
        for _ in range(count):
            values = call(fetch, feeds)
            for i, name in enumerate(names):
                feeds[name] = values[i + 1]
        return count * batch

    length = chunk_length(probe(lambda: steps(1)), seconds)
    return lambda: steps(length)


def graph_rate(runtime: Runtime, seconds: float, batch: int = 1) -> float:
    """Tokens per second of the bare step graph at ``batch`` rows (see :func:`_graph_work`)."""
    return rate(_graph_work(runtime, seconds, batch), seconds)


def loop_and_graph_rates(
    runtime: Runtime, domain, settings: SampleSettings, seconds: float
) -> tuple[float, float, float]:
    """(the sampling loop's tokens/s at batch 1, the bare graph's, the median over
    alternating chunk pairs of loop ÷ graph), timed so that the ratio holds on a busy
    machine (:func:`~studio.bench.timing.paired_rates`)."""
    loop = _generation_work(runtime, domain, settings, seconds, lambda s: s.num)
    return paired_rates(loop, _graph_work(runtime, seconds), seconds)


def rate_against_single(
    runtime: Runtime,
    domain,
    settings: SampleSettings,
    single: Runtime,
    base: SampleSettings,
    seconds: float,
    per_step: Callable[[SampleSettings], int],
) -> tuple[float, float]:
    """(units/s of the sampling loop with ``settings`` on ``runtime``, the median over
    alternating chunk pairs of that rate ÷ the batch-1 loop's with ``base`` on
    ``single``): a batch or beam target's ratio, timed so that it holds on a busy
    machine (:func:`~studio.bench.timing.paired_rates`)."""
    work = _generation_work(runtime, domain, settings, seconds, per_step)
    alone = _generation_work(single, domain, base, seconds, lambda s: s.num)
    units, _, paired = paired_rates(work, alone, seconds)
    return units, paired


def prefill_ms(runtime: Runtime, prime_ids: np.ndarray, seconds: float) -> float:
    """Milliseconds to prime with ``prime_ids`` through one full-sequence call."""
    ids = prime_ids[None, :]
    return round(1000 / rate(lambda: (runtime.logits(ids, runtime.init_state(1)), 1)[1], seconds), 2)


def prefill_step_ms(runtime: Runtime, prime_ids: np.ndarray, seconds: float) -> float:
    """Milliseconds to prime with ``prime_ids`` through one step call per token."""

    def stepwise() -> int:
        state = runtime.init_state(1)
        for t in range(len(prime_ids)):
            _, state = runtime.logits(prime_ids[None, t : t + 1], state)
        return 1

    return round(1000 / rate(stepwise, seconds, chunks=3), 2)


@contextlib.contextmanager
def _io_binding(runtime: Runtime) -> Iterator[None]:
    runtime.use_binding = True
    try:
        yield
    finally:
        del runtime.use_binding  # back to the class's default


@contextlib.contextmanager
def _one_call_batches(runtime: Runtime) -> Iterator[None]:
    runtime.row_by_row = False
    try:
        yield
    finally:
        runtime.row_by_row = True


def precision_figures(
    precision: str,
    runtime: Runtime,
    domain,
    base: SampleSettings,
    prime_ids: np.ndarray,
    seconds: float,
    say: Callable[[str], None],
) -> dict:
    """Every ``ort_{precision}_*`` figure and ``prefill_1000_{precision}_ms``."""

    def tokens_per_second(settings: SampleSettings) -> float:
        return round(generation_rate(runtime, domain, settings, seconds, lambda s: s.num), 1)

    figures = {}
    say(f"onnxruntime {precision}, batch 1, and the step graph alone (alternating)")
    loop, graph, paired = loop_and_graph_rates(runtime, domain, base, seconds)
    figures[f"ort_{precision}_tok_s"] = round(loop, 1)
    figures[f"ort_{precision}_graph_only_tok_s"] = round(graph, 1)
    figures[f"loop_vs_graph_{precision}"] = round(paired, 3)
    if precision == "fp32":  # the IOBinding path, to re-check the default
        with _io_binding(runtime):
            figures["ort_fp32_iobinding_tok_s"] = tokens_per_second(base)
    for batch in BATCHES:
        say(f"onnxruntime {precision}, batch {batch}")
        if precision == "int8" and batch == 64:  # a target's ratio: alternating with batch 1
            rate_64, paired = rate_against_single(
                runtime, domain, base.with_(num=64), runtime, base, seconds, lambda s: s.num
            )
            figures["ort_int8_b64_tok_s"], figures["int8_b64_vs_b1"] = round(rate_64, 1), round(paired, 2)
        else:
            figures[f"ort_{precision}_b{batch}_tok_s"] = tokens_per_second(base.with_(num=batch))
    if not runtime.row_by_row:  # the graph alone at the batch widths the targets compare
        for batch in GRAPH_BATCHES:
            say(f"onnxruntime {precision}, step graph alone at batch {batch}")
            figures[f"ort_{precision}_b{batch}_graph_only_tok_s"] = round(graph_rate(runtime, seconds / 2, batch), 1)
    if runtime.row_by_row:  # dynamic int8: what one call per batch would give (rows not exact)
        say(f"onnxruntime {precision}, batch 64 as one call")
        with _one_call_batches(runtime):
            figures[f"ort_{precision}_b64_one_call_tok_s"] = tokens_per_second(base.with_(num=64))
    say(f"onnxruntime {precision}, prefill")
    figures[f"prefill_1000_{precision}_ms"] = prefill_ms(runtime, prime_ids, seconds / 3)
    return figures
