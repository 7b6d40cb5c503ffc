"""The mixture head, torch side: Graves (2013) mixture-density LSTMs for pen strokes.

A conditional strokes domain trains the text-conditioned :class:`SynthesisNetwork` on the
generated Hershey corpus; an unconditional one trains the :class:`PredictionNetwork` on a
stroke npz.  Batches are independent padded sequences and a pure function of
``(seed, step, rank)``: Hershey line numbers or a per-epoch permutation, so a resumed run
continues exactly.  The loss is the mean negative log-likelihood per real point (nats, in
normalised offset units).

The step graph takes ``points (batch, 3)`` (the previous pen offset, normalised) and, for
synthesis, ``text (batch, chars)`` (1-based alphabet ids, 0 = padding), plus the whole
recurrent state: ``h``, ``c`` ``(layers, batch, hidden)`` and, for synthesis, ``kappa
(batch, K)`` and ``w (batch, alphabet)``.  It returns the mixture head (``pen_logit``,
``mixture_logits``, ``means``, ``log_scales``, ``correlations``), for synthesis the window
weights ``phi (batch, chars + 1)``, and each state's next value as ``NAME_out``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from ..config import check_size
from ..errors import require
from ..handwriting import data as stroke_data
from ..handwriting.mdn import HEAD_NAMES
from ..handwriting.model import build_model, mixture_log_likelihood, split_head
from .base import Batch, Carry, Trainable, TrainData, max_difference

VALIDATION_SEED = 2_000_000_000  # Hershey lines from here on are never trained on
PARITY_POINTS = 200
STYLE_COUNT = 5
STYLE_TEXTS = ("the quick", "brown fox", "jumps over", "a lazy dog", "sphinx of", "black quartz")
DEFAULT_MIXTURES = 20
DEFAULT_WINDOW_GAUSSIANS = 10


def _stroke_file(domain: Any) -> Path | None:
    """The npz an unconditional domain was trained on (None: the shipped Omniglot file)."""
    return None if domain.source in ("", "omniglot") else Path(domain.source)


class StrokeBatches(TrainData):
    """Padded stroke sequences; step ``s`` on rank ``r`` reads global batch ``s * world + r``."""

    def __init__(self, domain: Any, config: Any, rank: int, world_size: int):
        self.domain, self.config = domain, config
        self.rank, self.world_size = rank, world_size
        self.sequence_length = config.max_points
        self.hershey = stroke_data.HersheyCorpusConfig(alphabet=domain.alphabet) if domain.conditional else None
        if domain.conditional:
            self.train = None
            self.validation = stroke_data.hershey_examples(
                self.hershey, range(VALIDATION_SEED, VALIDATION_SEED + config.val_sequences)
            )
            self.steps_per_epoch = 10**9  # a generated corpus never repeats
        else:
            path = _stroke_file(domain)
            self.train = stroke_data.load_omniglot("train", path)
            self.validation = [("", s) for s in stroke_data.load_omniglot("valid", path)][: config.val_sequences]
            self.steps_per_epoch = max(1, len(self.train) // (config.batch_size * world_size))
        require(len(self.validation) > 0, "the stroke corpus has no validation sequences")

    def items(self, step: int) -> list[tuple[str, np.ndarray]]:
        size, index = self.config.batch_size, step * self.world_size + self.rank
        if self.domain.conditional:
            # lines longer than max_points are skipped (truncating would cut their text)
            seed = self.config.seed * 100_000_000 + index * size * 2
            items = []
            while len(items) < size:
                text, strokes = stroke_data.hershey_example(self.hershey, seed)
                seed += 1
                if len(strokes) <= self.config.max_points:
                    items.append((text, strokes))
            return items
        count = len(self.train)
        epoch, start = divmod(index * size, count)
        order = np.random.default_rng([self.config.seed, epoch]).permutation(count)
        return [("", self.train[order[(start + i) % count]]) for i in range(size)]

    def tensors(self, items: list[tuple[str, np.ndarray]], device: torch.device) -> Batch:
        sequences = [self.domain.normalise(s) for _, s in items]
        inputs, targets, mask = stroke_data.pad_batch(sequences, self.config.max_points)
        batch = {
            "inputs": torch.from_numpy(inputs).to(device),
            "targets": torch.from_numpy(targets).to(device),
            "mask": torch.from_numpy(mask).to(device),
        }
        if self.domain.conditional:
            batch["text"] = torch.from_numpy(self.domain.encode_text([t for t, _ in items])).to(device)
        return batch

    def batch(self, step: int, device: torch.device) -> Batch:
        return self.tensors(self.items(step), device)

    @torch.no_grad()
    def validation_nats(self, model: torch.nn.Module, device: torch.device, dist: Any) -> float:
        was_training = model.training
        model.eval()
        total, points = 0.0, 0.0
        mine = self.validation[dist.rank :: dist.world_size]
        for start in range(0, len(mine), 64):
            batch = self.tensors(mine[start : start + 64], device)
            count = float(batch["mask"].sum())
            total += float(sequence_nats(model, batch)) * count
            points += count
        model.train(was_training)
        return dist.sum(total) / max(1.0, dist.sum(points))


def sequence_nats(model: torch.nn.Module, batch: Batch) -> torch.Tensor:
    """Mean negative log-likelihood per real point (nats)."""
    if "text" in batch:
        raw, _ = model(batch["inputs"], batch["text"])
    else:
        raw = model(batch["inputs"])
    mixtures = (raw.shape[-1] - 1) // 6
    log_likelihood = mixture_log_likelihood(split_head(raw, mixtures), batch["targets"])
    return -(log_likelihood * batch["mask"]).sum() / batch["mask"].sum()


class StrokeStep(torch.nn.Module):
    """Flat-argument wrapper around ``model.step`` for tracing."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model
        self.conditional = model.config["type"] == "synthesis"

    def forward(self, points, *rest):
        if self.conditional:
            text, h, c, kappa, w = rest
            head, state, phi = self.model.step(points, {"h": h, "c": c, "kappa": kappa, "w": w}, text)
            return (*[head[n] for n in HEAD_NAMES], phi, state["h"], state["c"], state["kappa"], state["w"])
        h, c = rest
        head, state = self.model.step(points, {"h": h, "c": c})
        return (*[head[n] for n in HEAD_NAMES], state["h"], state["c"])


class MixtureTrainable(Trainable):
    name: ClassVar[str] = "mixture"
    unit: ClassVar[str] = "point"

    def model_config(self, domain: Any, options: dict) -> dict:
        require(options.get("cell", "lstm") == "lstm", "stroke models are LSTMs: drop --cell")
        hidden_size, layers = int(options.get("hidden_size", 256)), int(options.get("layers", 2))
        mixtures = int(options.get("mixtures") or DEFAULT_MIXTURES)
        for option, value in (("hidden_size", hidden_size), ("layers", layers), ("mixtures", mixtures)):
            check_size(option, value)
        config = {"type": "mdn", "hidden_size": hidden_size, "layers": layers, "mixtures": mixtures}
        if domain.conditional:
            window = int(options.get("window_gaussians") or DEFAULT_WINDOW_GAUSSIANS)
            check_size("window_gaussians", window)
            config.update(
                type="synthesis",
                window_gaussians=window,
                alphabet_size=len(domain.alphabet),
                characters_per_point=domain.characters_per_point or 0.08,
            )
        return config

    def build_model(self, config: dict) -> torch.nn.Module:
        return build_model(config)

    def corpus_payload(self, domain: Any, documents: list) -> tuple[Any, int]:
        return None, 0 if domain.conditional else sum(len(d.content[1]) for d in documents)

    def train_data(self, domain: Any, payload: Any, config: Any, rank: int, world_size: int) -> TrainData:
        return StrokeBatches(domain, config, rank, world_size)

    def loss(self, model: torch.nn.Module, batch: Batch, carry: Carry) -> tuple[torch.Tensor, Carry]:
        return sequence_nats(model, batch), None

    # --- export -------------------------------------------------------------------------
    def io_spec(self, config: dict) -> dict:
        layers, hidden, mixtures = config["layers"], config["hidden_size"], config["mixtures"]
        inputs = {"points": {"dtype": "float32", "shape": ["batch", 3]}}
        state = {
            "h": {"dtype": "float32", "shape": [layers, "batch", hidden]},
            "c": {"dtype": "float32", "shape": [layers, "batch", hidden]},
        }
        outputs = {
            "pen_logit": {"dtype": "float32", "shape": ["batch"]},
            "mixture_logits": {"dtype": "float32", "shape": ["batch", mixtures]},
            "means": {"dtype": "float32", "shape": ["batch", mixtures, 2]},
            "log_scales": {"dtype": "float32", "shape": ["batch", mixtures, 2]},
            "correlations": {"dtype": "float32", "shape": ["batch", mixtures]},
        }
        if config["type"] == "synthesis":
            inputs["text"] = {"dtype": "int64", "shape": ["batch", "chars"]}
            state["kappa"] = {"dtype": "float32", "shape": ["batch", config["window_gaussians"]]}
            state["w"] = {"dtype": "float32", "shape": ["batch", config["alphabet_size"]]}
            outputs["phi"] = {"dtype": "float32", "shape": ["batch", "chars_plus_one"]}
        return {"inputs": inputs, "state": state, "outputs": outputs}

    def step_module(self, model: torch.nn.Module) -> torch.nn.Module:
        return StrokeStep(model)

    def example_inputs(self, model: torch.nn.Module, io: dict) -> dict[str, torch.Tensor]:
        example = {"points": torch.zeros(2, 3)}
        if "text" in io["inputs"]:
            example["text"] = torch.ones(2, 5, dtype=torch.int64)
        example.update(model.init_state(2))
        return example

    def parity(self, model: torch.nn.Module, session: Any, domain: Any, io: dict) -> tuple[float, dict]:
        if domain.conditional:
            items = stroke_data.hershey_examples(
                stroke_data.HersheyCorpusConfig(alphabet=domain.alphabet), range(VALIDATION_SEED, VALIDATION_SEED + 3)
            )
            texts = domain.encode_text([t for t, _ in items])
        else:
            items = [("", s) for s in stroke_data.load_omniglot("valid", _stroke_file(domain))[:3]]
            texts = None
        sequences = [domain.normalise(s) for _, s in items]
        worst = max(stroke_parity(model, session, io, sequences, texts, batch) for batch in (1, 3))
        return worst, {"steps": PARITY_POINTS, "batches": [1, 3]}

    def metrics(self, model: torch.nn.Module, session: Any, domain: Any, payload: Any, train: dict) -> dict:
        return {}

    def card_extras(self, domain: Any) -> dict:
        return {"styles": stored_styles(domain)}


def stroke_parity(
    model: torch.nn.Module,
    session: Any,
    io: dict,
    sequences: list[np.ndarray],
    texts: np.ndarray | None,
    batch: int,
    length: int = PARITY_POINTS,
) -> float:
    """Teacher-force ``length`` steps through torch and onnxruntime; max |diff| over every
    output and state."""
    rows = [sequences[i % len(sequences)] for i in range(batch)]
    inputs, _, _ = stroke_data.pad_batch(rows)
    inputs = np.concatenate([inputs, np.zeros((batch, max(0, length - inputs.shape[1]), 3), np.float32)], 1)
    torch_state = model.init_state(batch)
    ort_state = {k: v.numpy() for k, v in torch_state.items()}
    state_names, output_names = list(io["state"]), list(io["outputs"])
    text = None if texts is None else np.ascontiguousarray(texts[[i % len(texts) for i in range(batch)]])
    worst = 0.0
    with torch.no_grad():
        for t in range(length):
            points = torch.from_numpy(inputs[:, t])
            if text is None:
                head, torch_state = model.step(points, torch_state)
                expected = [head[n] for n in HEAD_NAMES]
                feed = {"points": points.numpy()}
            else:
                head, torch_state, phi = model.step(points, torch_state, torch.from_numpy(text))
                expected = [head[n] for n in HEAD_NAMES] + [phi]
                feed = {"points": points.numpy(), "text": text}
            values = session.run(output_names + [f"{n}_out" for n in state_names], {**feed, **ort_state})
            ort_state = dict(zip(state_names, values[len(output_names) :]))
            expected += [torch_state[n] for n in state_names]
            worst = max(worst, max_difference(values, expected))
    return worst


def stored_styles(domain: Any) -> list[dict]:
    """A few real sequences (raw units) to prime with: Hershey lines or Omniglot characters."""
    styles = []
    if domain.conditional:
        hershey = stroke_data.HersheyCorpusConfig(alphabet=domain.alphabet)
        for index, font in enumerate(list(hershey.fonts) * 2):
            rng = np.random.default_rng(7000 + index)
            text = STYLE_TEXTS[index % len(STYLE_TEXTS)]
            strokes = stroke_data.render_hershey(text, font, rng, hershey)
            styles.append({"text": text, "font": font, "strokes": np.round(strokes, 2).tolist()})
    else:
        for strokes in stroke_data.load_omniglot("test", _stroke_file(domain))[:STYLE_COUNT]:
            styles.append({"text": "", "strokes": np.round(strokes, 2).tolist()})
    return styles[: STYLE_COUNT + 1]
