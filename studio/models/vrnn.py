"""The ``vrnn`` head, torch side: a variational RNN for unconditional pen strokes.

Chosen with ``studio train STROKES.npz --domain strokes --model vrnn``; the model is
:class:`studio.handwriting.vrnn.VariationalRNN`.  Batches are the mixture head's
(:class:`studio.models.mixture.StrokeBatches`: independent padded sequences, a pure
function of the step), plus the KL weight of the step: with ``--kl-warmup N`` it rises
linearly from 0 to 1 over the first N steps (KL annealing, Bowman et al. 2016), then
stays 1.  The loss is the negative evidence lower bound per real point, ``-log p(x | z) +
weight * KL(q || p)``, in normalised offset units like the mixture head's, so the two
are comparable (the bound is never below the model's exact negative log-likelihood).
Validation always uses weight 1 and noise from a fixed seed, so the figure is the bound
itself and the same on every evaluation of the same weights.

The step graph takes ``points``, ``target`` ``(batch, 3)``, ``posterior (batch,)`` and
``noise (batch, latent)`` plus the state ``h``, ``c`` ``(layers, batch, hidden)`` and ``z
(batch, latent)``; it returns the mixture head (the MDN head's outputs, so
:mod:`studio.handwriting.mdn` draws from it), ``kl`` and ``log_ratio`` ``(batch,)``, and
each state's next value.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch

from ..config import check_size
from ..errors import require
from ..handwriting import data as stroke_data
from ..handwriting.mdn import HEAD_NAMES
from ..handwriting.vrnn import VariationalRNN
from .base import Batch, Carry, TrainData, max_difference
from .mixture import PARITY_POINTS, MixtureTrainable, StrokeBatches, _stroke_file

DEFAULT_LATENT = 16
DEFAULT_FEATURES = 128
VALIDATION_NOISE_SEED = 4242  # validation noise: the same draw at every evaluation


class LatentStrokeBatches(StrokeBatches):
    """Stroke batches carrying the step's KL weight; validation scores the bound."""

    def batch(self, step: int, device: torch.device) -> Batch:
        batch = super().batch(step, device)
        warmup = self.config.kl_warmup
        batch["kl_weight"] = torch.tensor(1.0 if warmup <= 0 else min(1.0, step / warmup), device=device)
        return batch

    @torch.no_grad()
    def validation_nats(self, model: torch.nn.Module, device: torch.device, dist: Any) -> float:
        was_training = model.training
        model.eval()
        generator = torch.Generator().manual_seed(VALIDATION_NOISE_SEED + dist.rank)
        total, points = 0.0, 0.0
        mine = self.validation[dist.rank :: dist.world_size]
        for start in range(0, len(mine), 64):
            batch = self.tensors(mine[start : start + 64], device)
            shape = (*batch["inputs"].shape[:2], model.latent_size)
            batch["noise"] = torch.randn(shape, generator=generator).to(device)
            count = float(batch["mask"].sum())
            total += float(negative_bound(model, batch, 1.0)) * count
            points += count
        model.train(was_training)
        return dist.sum(total) / max(1.0, dist.sum(points))


def negative_bound(model: torch.nn.Module, batch: Batch, kl_weight: torch.Tensor | float) -> torch.Tensor:
    """Mean ``-log p(x | z) + kl_weight * KL`` per real point (nats); ``batch["noise"]``
    if given, else fresh noise from torch's generator (saved in every checkpoint)."""
    log_likelihood, kl = model(batch["inputs"], batch["targets"], batch.get("noise"))
    mask = batch["mask"]
    return ((kl_weight * kl - log_likelihood) * mask).sum() / mask.sum()


class VrnnStep(torch.nn.Module):
    """Flat-argument wrapper around ``model.step`` for tracing."""

    def __init__(self, model: VariationalRNN):
        super().__init__()
        self.model = model

    def forward(self, points, target, posterior, noise, h, c, z):
        head, kl, log_ratio, state = self.model.step(points, target, posterior, noise, {"h": h, "c": c, "z": z})
        return (*[head[n] for n in HEAD_NAMES], kl, log_ratio, state["h"], state["c"], state["z"])


class VrnnTrainable(MixtureTrainable):
    """Corpus, batches and stored styles as the mixture head; its own model, loss, graph."""

    name: ClassVar[str] = "vrnn"
    unit: ClassVar[str] = "point"

    def model_config(self, domain: Any, options: dict) -> dict:
        require(
            not domain.conditional,
            "the variational RNN (--model vrnn) is unconditional: train it on a stroke .npz "
            "(e.g. corpora/handwriting/omniglot_strokes.npz), not on a handwriting folder",
        )
        require(options.get("cell", "lstm") == "lstm", "stroke models are LSTMs: drop --cell")
        config = {
            "type": "vrnn",
            "hidden_size": int(options.get("hidden_size", 256)),
            "layers": int(options.get("layers", 1)),
            "mixtures": int(options.get("mixtures") or 20),
            "latent_size": int(options.get("latent_size") or DEFAULT_LATENT),
            "feature_size": int(options.get("feature_size") or DEFAULT_FEATURES),
        }
        for option, value in config.items():
            if option != "type":
                check_size(option, value)
        return config

    def build_model(self, config: dict) -> torch.nn.Module:
        return VariationalRNN(**{k: v for k, v in config.items() if k != "type"})

    def train_data(self, domain: Any, payload: Any, config: Any, rank: int, world_size: int) -> TrainData:
        return LatentStrokeBatches(domain, config, rank, world_size)

    def loss(self, model: torch.nn.Module, batch: Batch, carry: Carry) -> tuple[torch.Tensor, Carry]:
        return negative_bound(model, batch, batch["kl_weight"]), None

    # --- export -------------------------------------------------------------------------
    def io_spec(self, config: dict) -> dict:
        spec = super().io_spec({**config, "type": "mdn"})
        latent = config["latent_size"]
        spec["inputs"].update(
            target={"dtype": "float32", "shape": ["batch", 3]},
            posterior={"dtype": "float32", "shape": ["batch"]},
            noise={"dtype": "float32", "shape": ["batch", latent]},
        )
        spec["state"]["z"] = {"dtype": "float32", "shape": ["batch", latent]}
        spec["outputs"].update(
            kl={"dtype": "float32", "shape": ["batch"]}, log_ratio={"dtype": "float32", "shape": ["batch"]}
        )
        return spec

    def step_module(self, model: torch.nn.Module) -> torch.nn.Module:
        return VrnnStep(model)

    def example_inputs(self, model: torch.nn.Module, io: dict) -> dict[str, torch.Tensor]:
        example = {
            "points": torch.zeros(2, 3),
            "target": torch.zeros(2, 3),
            "posterior": torch.tensor([1.0, 0.0]),
            "noise": torch.zeros(2, model.latent_size),
        }
        example.update(model.init_state(2))
        return example

    def parity(self, model: torch.nn.Module, session: Any, domain: Any, io: dict) -> tuple[float, dict]:
        """Teacher-forced held-out strokes with seeded noise; batch 1 samples from the
        prior, batch 3 encodes rows 0 and 2 and samples row 1."""
        sequences = [domain.normalise(s) for s in stroke_data.load_omniglot("valid", _stroke_file(domain))[:3]]
        worst = max(
            latent_parity(model, session, io, sequences, np.asarray(flags, np.float32))
            for flags in ([0.0], [1.0, 0.0, 1.0])
        )
        return worst, {"steps": PARITY_POINTS, "batches": [1, 3], "posterior_rows": [[0], [1, 0, 1]]}

    def card_extras(self, domain: Any) -> dict:
        return {**super().card_extras(domain), "bound": "elbo"}


def latent_parity(
    model: VariationalRNN,
    session: Any,
    io: dict,
    sequences: list[np.ndarray],
    posterior: np.ndarray,
    length: int = PARITY_POINTS,
) -> float:
    """Step torch and onnxruntime ``length`` times on the same points and noise; max |diff|
    over every output and state."""
    batch = len(posterior)
    rows = [sequences[i % len(sequences)] for i in range(batch)]
    inputs, targets, _ = stroke_data.pad_batch(rows)
    pad = np.zeros((batch, max(0, length - inputs.shape[1]), 3), np.float32)
    inputs, targets = np.concatenate([inputs, pad], 1), np.concatenate([targets, pad], 1)
    noise = np.random.default_rng(0).standard_normal((length, batch, model.latent_size)).astype(np.float32)
    torch_state = model.init_state(batch)
    ort_state = {k: v.numpy() for k, v in torch_state.items()}
    state_names, output_names = list(io["state"]), list(io["outputs"])
    worst = 0.0
    with torch.no_grad():
        for t in range(length):
            feed = {
                "points": np.ascontiguousarray(inputs[:, t]),
                "target": np.ascontiguousarray(targets[:, t]),
                "posterior": posterior,
                "noise": noise[t],
            }
            head, kl, log_ratio, torch_state = model.step(
                *(torch.from_numpy(feed[n]) for n in ("points", "target", "posterior", "noise")), torch_state
            )
            expected = [head[n] for n in HEAD_NAMES] + [kl, log_ratio] + [torch_state[n] for n in state_names]
            values = session.run(output_names + [f"{n}_out" for n in state_names], {**feed, **ort_state})
            ort_state = dict(zip(state_names, values[len(output_names) :]))
            worst = max(worst, max_difference(values, expected))
    return worst
