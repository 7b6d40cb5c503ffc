"""The sampling loop's own work per step at ``--num 64`` (int8, one call per step): the
loop and the bare batch-64 step graph timed in alternating chunks in one process (as
``studio bench`` pairs them), so the machine's drifts weigh on both alike.  One JSON line.
For the README's "Less work around batch and beam calls":

    .venv/bin/python scripts/batch_loop_work.py [BUNDLE]   # default: prose
"""

from __future__ import annotations

import json
import sys

from studio.bench.measure import bundle_domain
from studio.bench.runtime_rates import _generation_work, _graph_work
from studio.bench.timing import paired_rates
from studio.bundle import Bundle
from studio.runtime import Runtime
from studio.sampling.settings import SampleSettings

ROWS = 64
SECONDS = 4.0


def main() -> None:
    bundle = Bundle.load(sys.argv[1] if len(sys.argv) > 1 else "prose")
    domain = bundle_domain(bundle)
    runtime = Runtime(bundle, precision="int8")
    runtime.row_by_row = False  # static int8 is row-exact; a dynamic bundle is measured as one call too
    settings = SampleSettings(model=str(bundle.path), prime="ROMEO:", seed=0, num=ROWS)
    loop = _generation_work(runtime, domain, settings, SECONDS, lambda s: s.num)
    graph = _graph_work(runtime, SECONDS, ROWS)
    loop_rate, graph_rate, paired = paired_rates(loop, graph, SECONDS)
    print(
        json.dumps(
            {
                "model": bundle.name,
                "loop_b64_tok_s": round(loop_rate),
                "graph_b64_tok_s": round(graph_rate),
                "loop_vs_graph": round(paired, 3),
                "loop_work_us_per_step": round(ROWS / loop_rate * 1e6 - ROWS / graph_rate * 1e6),
            }
        )
    )


if __name__ == "__main__":
    main()
