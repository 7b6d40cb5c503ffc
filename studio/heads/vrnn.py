"""The ``vrnn`` head, numpy side: doodles from the variational RNN, and its bound per point."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

from ..errors import require
from ..generate import Sample
from ..handwriting import latent
from ..sampling.settings import SampleSettings, require_pitched
from .base import Event, Finished, Head, Score, Started


class VrnnHead(Head):
    name: ClassVar[str] = "vrnn"
    unit: ClassVar[str] = "point"

    def generate(self, runtime: Any, domain: Any, settings: SampleSettings) -> Iterator[Event]:
        require(settings.best_of == 1, "--best-of chooses among token samples (text, music); leave it out here")
        require_pitched(settings, domain)
        yield Started("")
        output = latent.generate(domain, runtime, settings)
        yield Finished([Sample(output.text, [], float(output.logprob), settings, output)])

    def score(
        self, runtime: Any, domain: Any, corpus: Path, split: str, val_fraction: float, held_out: str = "tail"
    ) -> Score:
        """The negative ELBO per point on the test split of a stroke npz (the shipped
        Omniglot strokes when ``corpus`` is not an npz; ``split`` does not apply)."""
        corpus = Path(corpus)
        result = latent.evaluate_bound(runtime, domain, corpus if corpus.suffix == ".npz" else None)
        return Score(result["nats_per_point"], result["points"], self.unit, bound="elbo")

    def explain(self, nats: float, unit_name: str) -> tuple[str, str]:
        return (
            f"at most {nats:.2f} nats per {unit_name}",
            "An upper bound (the evidence lower bound) on how unlikely the model finds each next pen "
            "movement of held-out strokes; the exact figure is lower still. Pen movements are "
            "continuous, so this is a density and can go below zero: lower is better.",
        )
