"""Where a beam step's time goes (8 beams, int8, the default bundle): beam steps timed in
alternating chunks with the bare batch-8 step graph and with the batch-1 sampling loop
(as ``studio bench`` pairs them), and the search's own Python per step with the model's
answer cached (the same logits every step).  One JSON line.  For the README's
"Fewer numpy calls a beam step":

    .venv/bin/python scripts/beam_step_work.py [BUNDLE]   # default: prose
"""

from __future__ import annotations

import json
import os
import sys
import time

from studio.bench.measure import bundle_domain
from studio.bench.runtime_rates import _Endless, _generation_work, _graph_work
from studio.bench.timing import paired_rates
from studio.bundle import Bundle
from studio.generate import Generation
from studio.runtime import Runtime
from studio.sampling.settings import SampleSettings

BEAMS = 8
SECONDS = 3.0
CACHED_STEPS = 3000


def python_us_per_step(runtime: Runtime, domain, settings: SampleSettings) -> float:
    """The search's own work per step: the fastest of 7 runs with every model call
    answered from a cache."""
    answers: dict[int, list] = {}
    real = runtime.call

    def cached(fetch, feeds):
        rows = feeds["tokens"].shape[0]
        if rows not in answers:
            answers[rows] = real(fetch, feeds)
        return answers[rows]

    def run(length: int) -> None:
        for _ in Generation(runtime, _Endless(domain), settings.with_(length=length)):
            pass

    runtime.call = cached
    try:
        run(50)
        times = []
        for _ in range(7):
            start = time.perf_counter()
            run(CACHED_STEPS)
            times.append((time.perf_counter() - start) / CACHED_STEPS * 1e6)
    finally:
        runtime.call = real
    return min(times)


def main() -> None:
    bundle = Bundle.load(sys.argv[1] if len(sys.argv) > 1 else "prose")
    domain = bundle_domain(bundle)
    runtime = Runtime(bundle, precision="int8")
    settings = SampleSettings(model=str(bundle.path), prime="ROMEO:", seed=0, num_beams=BEAMS)
    beam = _generation_work(runtime, domain, settings, SECONDS, lambda s: 1)
    single = _generation_work(runtime, domain, settings.with_(num_beams=1), SECONDS, lambda s: 1)
    beam_rate, graph_rate, _ = paired_rates(beam, _graph_work(runtime, SECONDS, BEAMS), SECONDS)
    _, single_rate, paired = paired_rates(beam, single, SECONDS)
    print(
        json.dumps(
            {
                "model": bundle.name,
                "beam_step_us": round(1e6 / beam_rate, 1),
                "graph_b8_step_us": round(BEAMS * 1e6 / graph_rate, 1),
                "beam_vs_single": round(paired, 3),
                "single_tok_s": round(single_rate),
                "python_us_per_step_cached": round(python_us_per_step(runtime, domain, settings), 1),
                "load_avg": round(os.getloadavg()[0], 2),
            }
        )
    )


if __name__ == "__main__":
    main()
