"""The torch side of an output head: what the one trainer and the one exporter call.

A head (``categorical``, ``mixture``, ...) is one :class:`Trainable` registered in
:data:`studio.models.TRAINABLES` under the name a domain declares as ``Domain.head`` and
the card records.  It brings the model builder, the training data and loss, and the
step graph's io spec, example inputs and parity check; :mod:`studio.train` and
:mod:`studio.export` are written once against this contract.  Its numpy side (sampler,
scorer) is the entry of the same name in :data:`studio.heads.HEADS`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np
import torch

Batch = dict[str, torch.Tensor]
Carry = tuple[torch.Tensor, ...] | None  # state carried between truncated-BPTT windows


class TrainData(ABC):
    """One rank's view of a head's training and validation data."""

    steps_per_epoch: int  # optimiser steps in one pass over the training data
    sequence_length: int  # units per row of a batch (window or longest sequence)

    @abstractmethod
    def batch(self, step: int, device: torch.device) -> Batch:
        """The batch for optimiser step ``step``: a pure function of the step, so a
        resumed run sees exactly what an uninterrupted one would."""

    @abstractmethod
    def validation_nats(self, model: torch.nn.Module, device: torch.device, dist: Any) -> float:
        """Mean nats per unit (token, point) on the validation data, the same on every
        rank; ``dist`` (a :class:`studio.train.Distributed`) may split the work."""


class Trainable(ABC):
    """The torch side of one head; see the module docstring."""

    name: ClassVar[str]
    unit: ClassVar[str]  # what a loss is per: "token" or "point"
    # whether loss() reads batch["sampling_probability"] (scheduled sampling, --scheduled-sampling)
    scheduled_sampling: ClassVar[bool] = False

    # --- model ----------------------------------------------------------------------
    @abstractmethod
    def model_config(self, domain: Any, options: dict) -> dict:
        """The JSON-able model config for ``domain`` from the user's ``options`` (layers,
        hidden size, ...); StudioError when an option is out of range."""

    @abstractmethod
    def build_model(self, config: dict) -> torch.nn.Module:
        """A fresh model from its config alone (the checkpoint and card store it)."""

    # --- training ---------------------------------------------------------------------
    @abstractmethod
    def corpus_payload(self, domain: Any, documents: list) -> tuple[Any, int]:
        """What training reads of a corpus read whole, and its size in units: the token
        ids (kept in the checkpoint, so a resume never rereads the corpus); nothing for a
        generated corpus.  A streamed corpus (``Domain.streams_corpus``) skips this: its
        payload is the token cache's memory-mapped ids (:mod:`studio.token_cache`), and
        the checkpoint keeps a reference to the cache instead."""

    @abstractmethod
    def train_data(self, domain: Any, payload: Any, config: Any, rank: int, world_size: int) -> TrainData:
        """This rank's :class:`TrainData` for a :class:`~studio.config.TrainConfig`."""

    def init_carry(self, model: torch.nn.Module, batch_size: int, device: torch.device) -> Carry:
        """State carried across steps (truncated BPTT), or None when batches are
        independent sequences."""
        return None

    @abstractmethod
    def loss(self, model: torch.nn.Module, batch: Batch, carry: Carry) -> tuple[torch.Tensor, Carry]:
        """Mean nats per unit of ``batch`` and the carry for the next step."""

    def augment(self, domain: Any, payload: Any, amount: int) -> Any:
        """The training part of the payload after the domain's data augmentation."""
        return payload

    # --- export -------------------------------------------------------------------------
    @abstractmethod
    def io_spec(self, config: dict) -> dict:
        """The card's ``io``: ``inputs``, ``state`` and ``outputs``, each name mapped to
        ``{"dtype", "shape"}`` with symbolic dims ("batch", "time", ...); the step graph
        returns every output, then each state as ``NAME_out``."""

    @abstractmethod
    def step_module(self, model: torch.nn.Module) -> torch.nn.Module:
        """A module taking the io spec's inputs then states, flat, in that order."""

    @abstractmethod
    def example_inputs(self, model: torch.nn.Module, io: dict) -> dict[str, torch.Tensor]:
        """Inputs to trace the step module with (batch 2), keyed by io name."""

    @abstractmethod
    def parity(self, model: torch.nn.Module, session: Any, domain: Any, io: dict) -> tuple[float, dict]:
        """Max |torch - onnxruntime| over every output at batch 1 and 3, and what was
        run (for the card)."""

    @abstractmethod
    def metrics(self, model: torch.nn.Module, session: Any, domain: Any, payload: Any, train: dict) -> dict:
        """Held-out figures measured through onnxruntime for the card."""

    def mc_dropout(self, model: torch.nn.Module) -> tuple[torch.nn.Module, dict, dict] | None:
        """For MC-dropout: (a step module taking the io's inputs, states, then dropout
        masks; its io spec with the masks among the inputs; the masks' card record
        ``{name: {"per", "width", "keep"}}``), or None when the head or model has none."""
        return None

    def card_extras(self, domain: Any) -> dict:
        """Further card fields the head's sampler reads (stored styles, ...)."""
        return {}

    def quantizable(self) -> bool:
        """Whether an int8 graph keeps this head's outputs usable."""
        return False


def max_difference(ours: list[np.ndarray], theirs: list[torch.Tensor]) -> float:
    """Largest |a - b| over paired onnxruntime and torch outputs."""
    return max(float(np.abs(a - b.detach().numpy()).max()) for a, b in zip(ours, theirs))
