"""The mixture head, numpy side: pen strokes drawn point by point, nats per point."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

from ..errors import require
from ..generate import Sample
from ..handwriting.evaluate import evaluate_strokes
from ..handwriting.sample import generate as draw_strokes
from ..sampling.settings import SampleSettings, require_pitched
from .base import Event, Finished, Head, Score, Started


class MixtureHead(Head):
    name: ClassVar[str] = "mixture"
    unit: ClassVar[str] = "point"

    def generate(self, runtime: Any, domain: Any, settings: SampleSettings) -> Iterator[Event]:
        require(settings.best_of == 1, "--best-of chooses among token samples (text, music); leave it out here")
        require_pitched(settings, domain)
        yield Started("")
        output = draw_strokes(domain, runtime, settings)
        yield Finished([Sample(output.text, [], float(output.logprob), settings, output)])

    def score(
        self, runtime: Any, domain: Any, corpus: Path, split: str, val_fraction: float, held_out: str = "tail"
    ) -> Score:
        """Held-out sequences: the Omniglot-layout test split of a stroke npz, or Hershey
        lines that training and validation never touch (``split`` does not apply)."""
        corpus = Path(corpus)
        source = corpus if (not domain.conditional and corpus.suffix == ".npz") else None
        result = evaluate_strokes(runtime, domain, source)
        return Score(result["nats_per_point"], result["points"], self.unit)

    def explain(self, nats: float, unit_name: str) -> tuple[str, str]:
        """Nats per point, which may be negative: a density, not a probability."""
        return (
            f"{nats:.2f} nats per {unit_name}",
            "How unlikely the model finds each next pen movement of held-out strokes; pen movements "
            "are continuous, so this is a density and can go below zero: lower (more negative) is "
            "better.",
        )
