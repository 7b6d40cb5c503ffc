"""Print the line-consistency figure of :mod:`.consistency` before and after issue 14.

``python -m studio.handwriting.consistency_report [--model handwriting] [--seeds 10]``
writes one long text with each seed four times: each piece in its own hand
(``one_hand=False``) or every piece in the first one's hand, with one model line a page
line (``page_width=0``, the layout before issue 14) or on a ``--page-width`` page (more
words a line, so the within-line spread is measured over more words), and prints
the mean and median figure (largest between-lines / within-line spread ratio over the
five statistics) and the mean ratio per statistic.  Torch-free (onnxruntime).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence

import numpy as np

from ..bundle import Bundle
from ..domains import domain_from_config
from ..runtime import Runtime
from ..sampling.settings import SampleSettings
from .consistency import STATISTICS, consistency_figure, line_spread, rendered_lines
from .sample import generate

DEFAULT_TEXT = "The quick brown fox jumps over the lazy dog while seven sleepy cats watch from the old stone wall"


def measure(
    model: str,
    text: str,
    seeds: Sequence[int],
    bias: float,
    one_hand: bool,
    style: int | None = None,
    page_width: int = SampleSettings.page_width,
) -> dict:
    """Mean per-statistic spread and the figure over ``seeds``; ``one_hand=False`` writes
    every line on its own (the behaviour before issue 14); ``page_width=0`` puts one
    model line on each page line."""
    bundle = Bundle.load(model)
    runtime = Runtime(bundle, threads=1)
    domain = domain_from_config(bundle.card["domain"])
    figures, lines, ratios = [], [], {name: [] for name in STATISTICS}
    for seed in seeds:
        settings = SampleSettings(
            model=str(model), text=text, bias=bias, seed=int(seed), style=style, page_width=page_width
        )
        rendered = generate(domain, runtime, settings, one_hand=one_hand)
        per_line = rendered_lines(rendered)
        lines.append(len(per_line))
        spread = line_spread(per_line)
        figures.append(consistency_figure(spread))
        for name in STATISTICS:
            ratios[name].append(spread[name]["ratio"])
    return {
        "figure_mean": round(float(np.mean(figures)), 3),
        "figure_median": round(float(np.median(figures)), 3),
        "ratio_mean": {name: round(float(np.mean(v)), 3) for name, v in ratios.items()},
        "lines_mean": round(float(np.mean(lines)), 2),
        "seeds": len(figures),
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="handwriting")
    parser.add_argument("--text", default=DEFAULT_TEXT)
    parser.add_argument("--seeds", type=int, default=10, help="seeds 1..N")
    parser.add_argument("--bias", type=float, default=1.5)
    parser.add_argument("--style", type=int, default=None)
    parser.add_argument("--page-width", type=int, default=SampleSettings.page_width)
    arguments = parser.parse_args(argv)
    seeds = range(1, arguments.seeds + 1)
    report = {
        "text": arguments.text,
        "bias": arguments.bias,
        "before: every line its own hand, one model line a page line": measure(
            arguments.model, arguments.text, seeds, arguments.bias, False, arguments.style, page_width=0
        ),
        "one hand, one model line a page line": measure(
            arguments.model, arguments.text, seeds, arguments.bias, True, arguments.style, page_width=0
        ),
        f"every line its own hand, on a {arguments.page_width}-pixel page": measure(
            arguments.model, arguments.text, seeds, arguments.bias, False, arguments.style, arguments.page_width
        ),
        f"after: one hand, on a {arguments.page_width}-pixel page": measure(
            arguments.model, arguments.text, seeds, arguments.bias, True, arguments.style, arguments.page_width
        ),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
