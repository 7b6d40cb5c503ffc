"""The numpy side of an output head: what the one sampling entry point and the one
scorer call.  Torch-free.

A head is one :class:`Head` registered in :data:`studio.heads.HEADS` under the name the
card records (``card["head"]``, the domain's ``head``).  It brings the sampling step (a
generator of typed :data:`Event`\\ s) and the scorer (mean nats per unit on held-out
data); its torch side (model, loss, step graph) is the entry of the same name in
:data:`studio.models.TRAINABLES`.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Union

from ..engine import Job
from ..generate import Sample
from ..sampling.settings import SampleSettings


@dataclass(frozen=True)
class Started:
    """First event of every generation: the part of the prime a reader sees ("" when the
    domain does not stream text)."""

    shown_prime: str


@dataclass(frozen=True)
class Token:
    """One committed token of sample ``row`` (streaming)."""

    row: int
    token_id: int
    text: str


@dataclass(frozen=True)
class Finished:
    """Last event: every finished sample, in row order."""

    samples: list[Sample]


Event = Union[Started, Token, Finished]


@dataclass(frozen=True)
class Score:
    """Mean negative log-likelihood per ``unit`` over ``count`` units; ``bound`` names
    the bound it is when the head cannot give the exact figure (``"elbo"``: the negative
    evidence lower bound, never below the exact value)."""

    nats: float
    count: int
    unit: str
    bound: str | None = None

    def to_json(self) -> dict:
        report: dict = {
            f"nats_per_{self.unit}": round(self.nats, 5),
            f"bits_per_{self.unit}": round(self.nats / math.log(2), 5),
            f"{self.unit}s": self.count,
        }
        if self.bound is not None:
            report["bound"] = self.bound
        return report


class Head(ABC):
    """The numpy side of one head; see the module docstring."""

    name: ClassVar[str]
    unit: ClassVar[str]  # "token" or "point"

    @abstractmethod
    def generate(self, runtime: Any, domain: Any, settings: SampleSettings) -> Iterator[Event]:
        """Sample what ``settings`` asks for: ``Started``, any number of ``Token``, then
        ``Finished``."""

    def job(self, runtime: Any, domain: Any, settings: SampleSettings) -> Job | None:
        """The same generation as :meth:`generate` as a :class:`~studio.engine.Job` that
        a server's :class:`~studio.engine.Engine` can step beside other requests, its
        ``drain()`` giving the same events; None when ``settings`` ask for something
        that does not batch (beam search keeps its own loop)."""
        return None

    @abstractmethod
    def score(
        self, runtime: Any, domain: Any, corpus: Path, split: str, val_fraction: float, held_out: str = "tail"
    ) -> Score:
        """Teacher-forced mean nats per unit of ``corpus`` (``split="val"``: its held-out
        part, in the file order ``held_out`` that the card's ``train.held_out`` records)
        through onnxruntime."""

    @abstractmethod
    def explain(self, nats: float, unit_name: str) -> tuple[str, str]:
        """(the figure as a reader should see it, one sentence saying what it means) for a
        held-out score of ``nats`` per ``unit_name`` ("character", "point", ...)."""
