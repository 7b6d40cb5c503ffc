"""The categorical head, torch side: a :class:`RecurrentLM` over a domain's token ids.

Training data are the corpus's ids cut into parallel streams for truncated BPTT (the
state a row ends a window with starts its next window, see :mod:`studio.data`); the loss
is cross-entropy in nats per token.  The ids may be a memory map (the token cache): only
the windows a step or a validation reads are copied, as int64.  The step graph takes ``tokens (batch, time)`` and
``h``/``c`` ``[layers, batch, hidden]`` and returns ``logits (batch, time, vocab)`` and
``h_out``/``c_out``; batch and time are dynamic, so one graph steps, primes and scores.
"""

from __future__ import annotations

import copy
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from ..config import ModelConfig
from ..data import StreamBatches, eval_streams, split_ids
from ..formats import HELD_OUT_TOKENS, PARITY_TOLERANCE, float64_parity_limit
from ..numeric import teacher_forced_nats
from .base import Batch, Carry, Trainable, TrainData
from .recurrent_lm import MaskedStepGraph, RecurrentLM, StepGraph, dropout_masks

PARITY_TOKENS = 200
VALIDATION_WINDOW = 256


def to_device(array: np.ndarray, device: torch.device) -> torch.Tensor:
    """A host array as a tensor on ``device``; to CUDA through pinned memory, so the copy
    runs asynchronously instead of through a pageable staging buffer."""
    tensor = torch.from_numpy(np.ascontiguousarray(array))
    if device.type != "cuda":
        return tensor
    return tensor.pin_memory().to(device, non_blocking=True)


class TokenStreams(TrainData):
    """``restart``: the separator when the domain's pieces each start from a fresh state
    (music), else None (the state carries across documents)."""

    def __init__(
        self,
        train_ids: np.ndarray,
        val_ids: np.ndarray,
        batch_size: int,
        seq_len: int,
        rank: int,
        world_size: int,
        restart: int | None = None,
        shift_seed: int | None = None,
    ):
        self.batches = StreamBatches(train_ids, batch_size, seq_len, rank, world_size, shift_seed)
        self.val_ids = val_ids
        self.restart = restart
        self.steps_per_epoch = self.batches.windows_per_epoch
        self.sequence_length = self.batches.seq_len
        self.tokens = len(train_ids)

    def batch(self, step: int, device: torch.device) -> Batch:
        x, y = self.batches.window(step)
        inputs, targets = (to_device(a.astype(np.int64), device) for a in (x, y))
        batch: Batch = {"inputs": inputs, "targets": targets}
        if self.restart is not None:
            batch["restart"] = self.restart
        return batch

    @torch.no_grad()
    def validation_nats(self, model: torch.nn.Module, device: torch.device, dist: Any) -> float:
        """Mean nats per token with state carried through the whole validation text (a
        fresh state at each piece with ``restart``); each rank scores every
        ``world_size``-th stream and the sums are combined."""
        was_training = model.training
        model.eval()
        streams = eval_streams(self.val_ids)[dist.rank :: dist.world_size]
        state = model.init_state(streams.shape[0], device)
        total, count = 0.0, 0
        for start in range(0, streams.shape[1] - 1 if len(streams) else 0, VALIDATION_WINDOW):
            window = to_device(streams[:, start : start + 1 + VALIDATION_WINDOW].astype(np.int64), device)
            x, y = window[:, :-1], window[:, 1:]
            logits, state = model(x, state, self.restart)
            total += F.cross_entropy(
                logits.float().reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="sum"
            ).item()
            count += y.numel()
        model.train(was_training)
        return dist.sum(total) / max(1, dist.sum(count))


class CategoricalTrainable(Trainable):
    name: ClassVar[str] = "categorical"
    unit: ClassVar[str] = "token"
    scheduled_sampling: ClassVar[bool] = True

    def model_config(self, domain: Any, options: dict) -> dict:
        return ModelConfig.from_dict({**options, "vocab_size": domain.vocab_size}).to_dict()

    def build_model(self, config: dict) -> torch.nn.Module:
        return RecurrentLM(ModelConfig.from_dict(config))

    def corpus_payload(self, domain: Any, documents: list) -> tuple[np.ndarray, int]:
        ids = domain.corpus_ids(documents)
        return ids.astype(np.int32), len(ids)

    def train_data(self, domain: Any, payload: Any, config: Any, rank: int, world_size: int) -> TrainData:
        """``payload``: the ids, in memory or a token cache's memory map (never copied whole)."""
        train_ids, val_ids = split_ids(np.asarray(payload), config.val_fraction)
        if config.transpose:
            train_ids = domain.augment(train_ids, config.transpose)
        restart = domain.restart_id
        shift_seed = config.seed if config.shift_windows else None
        return TokenStreams(
            train_ids, val_ids, config.batch_size, config.seq_len, rank, world_size, restart, shift_seed
        )

    def init_carry(self, model: torch.nn.Module, batch_size: int, device: torch.device) -> Carry:
        return model.init_state(batch_size, device)

    def loss(self, model: torch.nn.Module, batch: Batch, carry: Carry) -> tuple[torch.Tensor, Carry]:
        """Cross-entropy of the window; with ``batch["sampling_probability"]`` p > 0, each
        input after the first is, with probability p, replaced by a token drawn from the
        model's own prediction for it (a teacher-forced pass without gradients first: the
        parallel form of scheduled sampling, Duckworth et al. 2019).  With
        ``batch["restart"]``, each piece starts from a fresh state (see :class:`TokenStreams`)."""
        inputs = batch["inputs"]
        restart = batch.get("restart")
        probability = batch.get("sampling_probability", 0.0)
        if probability > 0:
            inputs = scheduled_inputs(model, inputs, carry, probability, restart)
        logits, carry = model(inputs, carry, restart)  # (B, T, V)
        targets = batch["targets"]
        return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1)), carry

    # --- export -------------------------------------------------------------------------
    def io_spec(self, config: dict) -> dict:
        model_config = ModelConfig.from_dict(config)
        time = 1 if model_config.steps_one_token else "time"
        return {
            "inputs": {"tokens": {"dtype": "int64", "shape": ["batch", time]}},
            "state": {
                name: {"dtype": "float32", "shape": [model_config.layers, "batch", model_config.state_width(name)]}
                for name in model_config.state_names
            },
            "outputs": {"logits": {"dtype": "float32", "shape": ["batch", time, model_config.vocab_size]}},
        }

    def step_module(self, model: torch.nn.Module) -> torch.nn.Module:
        return StepGraph(model)

    def example_inputs(self, model: torch.nn.Module, io: dict) -> dict[str, torch.Tensor]:
        time = io["inputs"]["tokens"]["shape"][1]
        tokens = torch.zeros(2, 3 if time == "time" else time, dtype=torch.long)
        return {"tokens": tokens, **dict(zip(io["state"], model.init_state(2)))}

    def parity(self, model: torch.nn.Module, session: Any, domain: Any, io: dict) -> tuple[float, dict]:
        """Max |onnxruntime - torch| over 200 random tokens at batch 1 and 3.  Random text
        can drive a trained recurrence where it amplifies rounding, so that fp32 itself
        (torch's or onnxruntime's) strays from exact arithmetic by more than the 1e-4
        tolerance.  Then both are measured against the same weights in float64, and the
        check becomes: onnxruntime is no further from float64 than twice torch's own fp32
        (``limit`` and ``against`` say which check applied)."""
        generator = np.random.default_rng(0)
        vocab = model.config.vocab_size
        checks = [generator.integers(0, vocab, (batch, PARITY_TOKENS)) for batch in (1, 3)]
        worst = max(token_parity(model, session, io, tokens) for tokens in checks)
        checked = {"steps": PARITY_TOKENS, "batches": [1, 3]}
        if worst < PARITY_TOLERANCE:
            return worst, checked
        exact = copy.deepcopy(model).double()
        torch_error = ort_error = 0.0
        for tokens in checks:
            with torch.no_grad():
                reference, _ = exact(torch.from_numpy(tokens), tuple(s.double() for s in exact.init_state(len(tokens))))
                ours, _ = model(torch.from_numpy(tokens), model.init_state(len(tokens)))
            reference = reference.numpy()
            torch_error = max(torch_error, float(np.abs(ours.double().numpy() - reference).max()))
            full, _ = _ort_run(session, list(io["state"]), tokens)
            ort_error = max(ort_error, float(np.abs(full - reference).max()))
        checked.update(
            against="float64",
            onnxruntime_vs_torch_fp32=worst,
            torch_fp32_vs_float64=torch_error,
            limit=float64_parity_limit(torch_error, PARITY_TOLERANCE),
        )
        return ort_error, checked

    def metrics(self, model: torch.nn.Module, session: Any, domain: Any, payload: Any, train: dict) -> dict:
        _, val_ids = split_ids(np.asarray(payload), train["val_fraction"])
        nats, predictions = held_out_nats(session, io_state_names(session), val_ids, restart=domain.restart_id)
        return {
            "held_out_nats": nats,
            "predictions": predictions,
            "held_out_tokens": int(min(len(val_ids) - 1, HELD_OUT_TOKENS)),
        }

    def quantizable(self) -> bool:
        return True

    def mc_dropout(self, model: torch.nn.Module) -> tuple[torch.nn.Module, dict, dict] | None:
        config = model.config
        sites = dropout_masks(config)
        if not sites:
            return None
        io = self.io_spec(config.to_dict())
        time = io["inputs"]["tokens"]["shape"][1]
        masks = {}
        for name, (per, width) in sites.items():
            shape = ["batch", time, width] if per == "time" else ["batch", width]
            io["inputs"][name] = {"dtype": "float32", "shape": shape}
            keep = 1.0 - (config.dropout if per == "time" else config.recurrent_dropout)
            masks[name] = {"per": per, "width": width, "keep": keep}
        return MaskedStepGraph(model), io, masks


@torch.no_grad()
def scheduled_inputs(
    model: torch.nn.Module, inputs: torch.Tensor, carry: Carry, probability: float, restart: int | None = None
) -> torch.Tensor:
    """inputs (B, T) with positions 1.. replaced, each with ``probability``, by a draw from
    the model's teacher-forced prediction of that position."""
    logits, _ = model(inputs, carry, restart)  # (B, T, V): position t predicts input t + 1
    drawn = torch.multinomial(torch.softmax(logits[:, :-1].float().reshape(-1, logits.shape[-1]), -1), 1)
    drawn = drawn.reshape(inputs.shape[0], -1)
    replace = torch.rand(drawn.shape, device=inputs.device) < probability
    return torch.cat([inputs[:, :1], torch.where(replace, drawn, inputs[:, 1:])], 1)


def io_state_names(session: Any) -> list[str]:
    return [i.name for i in session.get_inputs() if i.name != "tokens"]


def _ort_run(session: Any, state_names: list[str], tokens: np.ndarray, state: dict | None = None):
    """logits (batch, T, vocab), next state; a graph of one time step is stepped T times."""
    shapes = {i.name: i.shape for i in session.get_inputs()}
    if state is None:
        state = {n: np.zeros((shapes[n][0], tokens.shape[0], shapes[n][2]), np.float32) for n in state_names}
    if shapes["tokens"][1] == 1 and tokens.shape[1] != 1:
        steps = []
        for t in range(tokens.shape[1]):
            logits, state = _ort_run(session, state_names, tokens[:, t : t + 1], state)
            steps.append(logits)
        return np.concatenate(steps, 1), state
    outputs = session.run(None, {"tokens": tokens.astype(np.int64), **state})
    return outputs[0], dict(zip(state_names, outputs[1:]))


def token_parity(model: RecurrentLM, session: Any, io: dict, tokens: np.ndarray) -> float:
    """Max |logit difference| between torch and onnxruntime for ``tokens`` (batch, T),
    through the whole-sequence call and through T single-token steps."""
    names = list(io["state"])
    with torch.no_grad():
        expected, _ = model(torch.from_numpy(tokens), model.init_state(tokens.shape[0]))
    expected = expected.numpy()
    full, _ = _ort_run(session, names, tokens)
    worst = float(np.abs(full - expected).max())
    state = None
    for t in range(tokens.shape[1]):
        logits, state = _ort_run(session, names, tokens[:, t : t + 1], state)
        worst = max(worst, float(np.abs(logits[:, 0] - expected[:, t]).max()))
    return worst


def held_out_nats(
    session: Any, state_names: list[str], ids: np.ndarray, limit: int = HELD_OUT_TOKENS, restart: int | None = None
):
    """(mean nats/token, argmax per position) over the first ``limit`` held-out tokens,
    in one call (the window spans them all; with ``restart``, one call per piece)."""
    ids = ids[: limit + 1]

    def step(tokens, state):
        return _ort_run(session, state_names, tokens, state)

    nats, _, predictions = teacher_forced_nats(step, None, ids, window=len(ids), restart=restart)
    return nats, predictions
