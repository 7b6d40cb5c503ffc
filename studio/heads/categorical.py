"""The categorical head, numpy side: token-by-token sampling and nats per token."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

from ..domains import read_documents
from ..generate import Generation, TokenRows, nats_per_token
from ..sampling.settings import SampleSettings
from .base import Event, Finished, Head, Score, Started, Token


def scored_ids(domain: Any, corpus: Path, split: str, val_fraction: float, held_out: str = "tail"):
    """The corpus's token ids as ``studio eval`` scores them: documents joined by the
    separator in the order the trainer read them (``held_out``, as the card records it);
    ``split="val"`` keeps the last ``val_fraction`` (the trainer's validation part)."""
    ids = domain.corpus_ids(read_documents(type(domain), Path(corpus), held_out))
    return ids[int(len(ids) * (1 - val_fraction)) :] if split == "val" else ids


class CategoricalHead(Head):
    name: ClassVar[str] = "categorical"
    unit: ClassVar[str] = "token"

    def generate(self, runtime: Any, domain: Any, settings: SampleSettings) -> Iterator[Event]:
        generation = Generation(runtime, domain, settings)
        yield Started(domain.decode(generation.prime[generation.hidden :]) if domain.streams_text else "")
        for row, token in generation:
            yield Token(row, token, domain.token_text(token))
        yield Finished(generation.results)

    def job(self, runtime: Any, domain: Any, settings: SampleSettings) -> TokenEvents | None:
        if settings.num_beams > 1 or settings.best_of > 1:  # their own loops, then a choice
            return None
        return TokenEvents(Generation(runtime, domain, settings))

    def score(
        self, runtime: Any, domain: Any, corpus: Path, split: str, val_fraction: float, held_out: str = "tail"
    ) -> Score:
        """Documents joined by the separator, as in training; ``split="val"`` scores the
        last ``val_fraction`` of the tokens (the trainer's validation part).  A domain of
        independent pieces has each scored from a fresh state, as the sampler writes one."""
        ids = scored_ids(domain, corpus, split, val_fraction, held_out)
        nats, count = nats_per_token(runtime, ids, restart=domain.restart_id)
        return Score(nats, count, self.unit)

    def explain(self, nats: float, unit_name: str) -> tuple[str, str]:
        """Bits per unit, and the number of equally likely choices that is as uncertain
        (the perplexity, ``2 ** bits``)."""
        bits = nats / math.log(2)
        return (
            f"{bits:.2f} bits per {unit_name}",
            f"On held-out data it never trained on, the model is as unsure of each next {unit_name} "
            f"as a pick among {2**bits:.1f} equally likely ones; lower is better.",
        )


class TokenEvents(TokenRows):
    """:class:`~studio.generate.TokenRows` whose ``drain()`` gives the events
    :meth:`CategoricalHead.generate` yields: ``Started``, ``Token``\\ s, ``Finished``."""

    def __init__(self, generation: Generation):
        super().__init__(generation)
        domain = generation.domain
        shown = domain.decode(generation.prime[generation.hidden :]) if domain.streams_text else ""
        self._opening: list[Event] = [Started(shown)]
        self._told_end = False

    def drain(self) -> list[Event]:
        text = self.generation.domain.token_text
        events, self._opening = self._opening, []
        events += [Token(row, token, text(token)) for row, token in super().drain()]
        if self.finished and self.error is None and not self._told_end:
            self._told_end = True
            events.append(Finished(self.samples()))
        return events
