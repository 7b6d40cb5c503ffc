"""``serve_1_tok_s`` and ``serve_20_tok_s``: aggregate tokens per second through the
server's batching path (:class:`studio.serve.Batcher`, in process), with 1 and with 20
concurrent streams of ``SERVE_TOKENS`` tokens each, every stream its own seed."""

from __future__ import annotations

import statistics
import threading
import time
from pathlib import Path

from ..heads import Token
from ..sampling.settings import SampleSettings
from ..serve import Batcher

SERVE_TOKENS = 300
SERVE_STREAMS = (1, 20)
REPEATS = 9  # a one-stream run is about 30 ms: a median of 3 moved by a third between runs


def serve_rates(model: Path, precision: str, prime: str) -> tuple[dict[int, float], float]:
    """(tokens streamed per second of wall time for each count in ``SERVE_STREAMS``, from
    the moment that many requests are released together until the last one ends: the
    median of ``REPEATS`` runs; the median over the turns of 20 streams' rate ÷ one
    stream's).  The counts take turns, so that drifting load from other jobs weighs on
    each alike, and each turn's own ratio holds even when the rates drift between turns."""
    batcher = Batcher()
    try:
        warm = SampleSettings(model=str(model), precision=precision, prime=prime, length=20)
        batcher.sample(warm)
        rates: dict[int, list[float]] = {streams: [] for streams in SERVE_STREAMS}
        for run in range(REPEATS):
            for streams in SERVE_STREAMS:
                rates[streams].append(_one_run(batcher, model, precision, prime, streams, run))
        many, one = max(SERVE_STREAMS), min(SERVE_STREAMS)
        paired = statistics.median(a / b for a, b in zip(rates[many], rates[one]))
        return {streams: statistics.median(values) for streams, values in rates.items()}, paired
    finally:
        batcher.close()


def _one_run(batcher: Batcher, model: Path, precision: str, prime: str, streams: int, run: int) -> float:
    settings = [
        SampleSettings(model=str(model), precision=precision, prime=prime, length=SERVE_TOKENS, seed=run * 100 + i)
        for i in range(streams)
    ]
    counts = [0] * streams
    gate = threading.Barrier(streams + 1)

    def stream(index: int) -> None:
        gate.wait()
        counts[index] = sum(isinstance(event, Token) for event in batcher.sample_iter(settings[index]))

    threads = [threading.Thread(target=stream, args=(i,)) for i in range(streams)]
    for thread in threads:
        thread.start()
    gate.wait()
    start = time.perf_counter()
    for thread in threads:
        thread.join()
    return sum(counts) / (time.perf_counter() - start)


def serve_figures(model: Path, precision: str, prime: str) -> dict:
    rates, paired = serve_rates(model, precision, prime)
    figures = {f"serve_{streams}_tok_s": round(rate, 1) for streams, rate in rates.items()}
    figures["serve_20_vs_1"] = round(paired, 2)
    figures["serve_precision"] = precision
    return figures
