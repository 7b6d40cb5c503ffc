"""Tokens per second of the one-row sampling loop at temperatures 1.0 and 0.8, fp32 and
int8: ``Generation`` timed directly on a bundle (3,000 tokens from "ROMEO:", median of 5
seeds).  One JSON line.  For the README's figures of the draw inside the step graph:

    .venv/bin/python scripts/loop_rates_by_temperature.py [BUNDLE]   # default: prose
"""

from __future__ import annotations

import json
import statistics
import sys
import time

from studio.api import load
from studio.generate import Generation
from studio.sampling.settings import SampleSettings


def main() -> None:
    model = sys.argv[1] if len(sys.argv) > 1 else "prose"
    report = {"model": model}
    for precision in ("fp32", "int8"):
        loaded = load(model, "cpu", precision)
        for temperature in (1.0, 0.8):
            rates = []
            for seed in range(5):
                settings = SampleSettings(model=model, prime="ROMEO:", seed=seed, length=3000, temperature=temperature)
                generation = Generation(loaded.runtime, loaded.domain, settings)
                start = time.perf_counter()
                tokens = sum(1 for _ in generation)
                rates.append(tokens / (time.perf_counter() - start))
            report[f"{precision}_temp{temperature}_tok_s"] = round(statistics.median(rates))
    print(json.dumps(report))


if __name__ == "__main__":
    main()
