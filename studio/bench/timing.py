"""Timing primitives for ``studio bench``: medians over short chunks, so that a burst of
load elsewhere moves a figure less, and the cold start of a fresh process."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..errors import StudioError

COLD_START_LENGTH = 200


def rate(work: Callable[[], int], seconds: float, chunks: int = 7) -> float:
    """Median units/second of ``work()`` (which returns the units it did) over ``chunks``
    timed calls after one warm-up call; stops early once ``seconds`` are spent."""
    work()
    rates, spent = [], 0.0
    for _ in range(chunks):
        start = time.perf_counter()
        units = work()
        elapsed = time.perf_counter() - start
        rates.append(units / elapsed)
        spent += elapsed
        if spent > seconds and len(rates) >= 3:
            break
    return statistics.median(rates)


def paired_rates(
    first: Callable[[], int], second: Callable[[], int], seconds: float, chunks: int = 7
) -> tuple[float, float, float]:
    """Median units/second of two kinds of work timed in alternating chunks (one warm-up
    call each), and the median over the chunk pairs of first ÷ second: load from other
    jobs, which drifts over seconds, weighs on both chunks of a pair alike, so the ratio
    of each pair holds even when the rates themselves move by a quarter from pair to pair
    (the ratio of the two medians may take its two halves from different pairs)."""
    first()
    second()
    rates: tuple[list[float], list[float]] = ([], [])
    spent = 0.0
    for _ in range(chunks):
        for work, kept in ((first, rates[0]), (second, rates[1])):
            start = time.perf_counter()
            units = work()
            elapsed = time.perf_counter() - start
            kept.append(units / elapsed)
            spent += elapsed
        if spent > 2 * seconds and len(rates[0]) >= 3:
            break
    ratios = [a / b for a, b in zip(*rates)]
    return statistics.median(rates[0]), statistics.median(rates[1]), statistics.median(ratios)


def chunk_length(step_seconds: float, seconds: float, chunks: int = 7) -> int:
    """Steps per chunk so that ``chunks`` chunks take about ``seconds``."""
    return int(max(20, min(20_000, seconds / chunks / max(step_seconds, 1e-7))))


def probe(step: Callable[[], None], tries: int = 20) -> float:
    """Rough seconds per call of ``step`` (to size the chunks)."""
    step()
    start = time.perf_counter()
    for _ in range(tries):
        step()
    return (time.perf_counter() - start) / tries


def reference_gemv_us(repeats: int = 2000) -> float:
    """Median microseconds of a (2048 x 512) @ (512,) float32 product in numpy: one LSTM
    layer's recurrent matrix, to tell a slow or busy machine from a slow runtime."""
    matrix = np.random.default_rng(0).random((2048, 512), dtype=np.float32)
    vector = matrix[0].copy()
    times = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(repeats // 5):
            matrix @ vector
        times.append((time.perf_counter() - start) / (repeats // 5) * 1e6)
    return statistics.median(times)


def cold_start(model_path: Path, runs: int = 3) -> float:
    """Median wall time of `studio sample --length 200` in a fresh process."""
    script = Path(sys.executable).with_name("studio")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "studio"]
    command += ["sample", "--model", str(model_path), "--length", str(COLD_START_LENGTH), "--seed", "1"]
    times = []
    for attempt in range(runs + 1):
        start = time.perf_counter()
        result = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=120)
        elapsed = time.perf_counter() - start
        if result.returncode != 0:
            raise StudioError(f"cold-start run failed: {result.stderr.strip()[-200:]}")
        if attempt:  # the first run only warms the page cache
            times.append(elapsed)
    return statistics.median(times)
