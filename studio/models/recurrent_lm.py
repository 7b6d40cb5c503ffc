"""The recurrent language model shared by every categorical domain (chars, words, music).

Embedding -> dropout -> stacked LSTM/GRU/RNN, or an explicit cell of
:mod:`studio.models.cells` (dropout between layers) -> dropout -> linear head.  State is
explicit: ``init_state(batch)`` and ``forward(tokens, state)`` return the next state, a
tuple of tensors named by ``config.state_names``.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.func import functional_call

from ..config import EXPLICIT_CELLS, ModelConfig
from .cells import ExplicitStack

RECURRENT = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}


class RecurrentLM(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.embedding = nn.Embedding(config.vocab_size, config.embedding_size)
        self.input_dropout = nn.Dropout(config.dropout)
        if config.cell in EXPLICIT_CELLS:
            self.rnn = ExplicitStack(config)
        else:
            self.rnn = RECURRENT[config.cell](
                config.embedding_size,
                config.hidden_size,
                config.layers,
                batch_first=True,
                dropout=config.dropout if config.layers > 1 else 0.0,
            )
        self.output_dropout = nn.Dropout(config.dropout)
        self.projection = None
        if config.tie_weights and config.hidden_size != config.embedding_size:
            # tying needs the head's input width to equal the embedding width
            self.projection = nn.Linear(config.hidden_size, config.embedding_size, bias=False)
        head_in = config.embedding_size if config.tie_weights else config.hidden_size
        self.head = nn.Linear(head_in, config.vocab_size)
        if config.tie_weights:
            self.head.weight = self.embedding.weight
        self._init_forget_bias()

    def _init_forget_bias(self) -> None:
        """LSTM forget-gate bias 1 (Jozefowicz et al. 2015): remember by default."""
        if self.config.cell != "lstm":
            return
        hidden = self.config.hidden_size
        with torch.no_grad():
            for name, bias in self.rnn.named_parameters():
                if name.startswith("bias_ih"):
                    bias[hidden : 2 * hidden].fill_(1.0)
                elif name.startswith("bias_hh"):
                    bias[hidden : 2 * hidden].fill_(0.0)

    def init_state(self, batch: int, device: torch.device | str = "cpu") -> tuple[torch.Tensor, ...]:
        """Zeros, one [layers, batch, state_width(name)] tensor per state name."""
        config = self.config
        return tuple(
            torch.zeros((config.layers, batch, config.state_width(name)), device=device) for name in config.state_names
        )

    def forward(self, tokens: torch.Tensor, state: tuple[torch.Tensor, ...], restart: int | None = None):
        """tokens (B, T) int64 -> logits (B, T, V), next state.  With ``restart`` (a
        domain's separator), a row's state is reset to zeros (the fresh state) where its
        input is that token, so each piece starts as the sampler starts it."""
        x = self.input_dropout(self.embedding(tokens))  # (B, T, E)
        rnn_state = state if self.config.cell in ("lstm", *EXPLICIT_CELLS) else state[0]
        if restart is None:
            y, next_state = self._recurrent(x, rnn_state)  # (B, T, H)
        else:
            y, next_state = self._pieces(x, rnn_state, tokens == restart)
        y = self.output_dropout(y)
        if self.projection is not None:
            y = self.projection(y)
        logits = self.head(y)
        next_state = next_state if isinstance(next_state, tuple) else (next_state,)
        return logits, next_state

    def _pieces(self, x: torch.Tensor, state, fresh: torch.Tensor):
        """:meth:`_recurrent` over ``x`` cut at the columns where some row starts afresh
        (``fresh`` (B, T) bool): there the rows that start take zeros for their state and
        the others keep theirs.  One call when no row starts in the window."""
        columns = set(torch.nonzero(fresh.any(0)).flatten().tolist())
        if not columns:
            return self._recurrent(x, state)
        bounds = sorted(columns | {0}) + [x.shape[1]]
        outputs = []
        for start, stop in zip(bounds, bounds[1:]):
            if start in columns:
                reset = fresh[:, start].view(1, -1, 1)
                if isinstance(state, tuple):
                    state = tuple(s.masked_fill(reset, 0.0) for s in state)
                else:
                    state = state.masked_fill(reset, 0.0)
            y, state = self._recurrent(x[:, start:stop], state)
            outputs.append(y)
        return torch.cat(outputs, 1), state

    def _recurrent(self, x: torch.Tensor, state):
        """The stacked cells; in training with ``weight_drop``, a fused cell runs with
        DropConnect on its hidden-to-hidden matrices (Wan et al. 2013, as AWD-LSTM: one
        mask per call, shared by every row and time step, scaled by ``1 / (1 - p)``), so the
        fused kernel stays and evaluation and export use the weights as they are."""
        p = self.config.weight_drop
        if not (self.training and p > 0):
            return self.rnn(x, state)
        dropped = {
            name: nn.functional.dropout(weight, p, training=True)
            for name, weight in self.rnn.named_parameters()
            if name.startswith("weight_hh")
        }
        return functional_call(self.rnn, dropped, (x, state), strict=False)


class StepGraph(nn.Module):
    """Flat-argument wrapper used for ONNX export: (tokens, *state) -> (logits, *next_state)."""

    def __init__(self, model: RecurrentLM):
        super().__init__()
        self.model = model

    def forward(self, tokens, *state):
        logits, next_state = self.model(tokens, tuple(state))
        return (logits, *next_state)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def dropout_masks(config) -> dict[str, tuple[str, int]]:
    """The dropout sites of a :class:`RecurrentLM` as mask inputs of its MC-dropout graph,
    in argument order: name -> (``"time"`` for a mask per token, ``"row"`` for one per
    row and call, width).  Input, between layers and output masks are per token (as
    ``nn.Dropout`` draws them in training); explicit cells trained with recurrent dropout
    add one variational mask per layer.  Empty when the model has no dropout."""
    sites: dict[str, tuple[str, int]] = {}
    if config.dropout > 0:
        sites["mask_input"] = ("time", config.embedding_size)
        sites.update({f"mask_layer{k}": ("time", config.hidden_size) for k in range(1, config.layers)})
        sites["mask_output"] = ("time", config.hidden_size)
    if config.cell in EXPLICIT_CELLS and config.recurrent_dropout > 0:
        sites.update({f"mask_recurrent{k}": ("row", config.hidden_size) for k in range(config.layers)})
    return sites


class MaskedStepGraph(nn.Module):
    """:class:`StepGraph` with dropout made explicit for MC-dropout (Gal and Ghahramani
    2016): ``(tokens, *state, *masks) -> (logits, *next_state)``, each mask already
    scaled by ``1 / (1 - p)`` and multiplied in where training drops units.  All-ones
    masks give exactly the plain step graph.  A fused multi-layer LSTM/GRU/RNN is run as
    single-layer copies of its weights, so that masks can go between the layers."""

    def __init__(self, model: RecurrentLM):
        super().__init__()
        config = self.config = model.config
        self.model = model
        self.sites = dropout_masks(config)
        self.layers = model.rnn.cells if config.cell in EXPLICIT_CELLS else nn.ModuleList(_split_layers(model))

    def forward(self, tokens, *args):
        names = self.config.state_names
        state, masks = args[: len(names)], dict(zip(self.sites, args[len(names) :]))
        ones = dict.fromkeys(self.sites)
        masks = {**ones, **masks}
        x = _times(self.model.embedding(tokens), masks.get("mask_input"))
        next_layers = []
        for k, layer in enumerate(self.layers):
            if k > 0:
                x = _times(x, masks.get(f"mask_layer{k}"))
            layer_state = [tensor[k] for tensor in state]
            if self.config.cell in EXPLICIT_CELLS:
                x, layer_next = layer(x, layer_state, masks.get(f"mask_recurrent{k}"))
            else:
                fused = tuple(s[None] for s in layer_state)
                x, layer_next = layer(x, fused if self.config.cell == "lstm" else fused[0])
                layer_next = [s[0] for s in (layer_next if isinstance(layer_next, tuple) else (layer_next,))]
            next_layers.append(layer_next)
        y = _times(x, masks.get("mask_output"))
        if self.model.projection is not None:
            y = self.model.projection(y)
        next_state = [torch.stack([layer[i] for layer in next_layers]) for i in range(len(names))]
        return (self.model.head(y), *next_state)


def _times(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    return x if mask is None else x * mask


def _split_layers(model: RecurrentLM) -> list[nn.Module]:
    """One single-layer ``nn.LSTM``/``GRU``/``RNN`` per layer of the fused stack, holding
    that layer's weights (shared tensors: no copy)."""
    config, fused = model.config, model.rnn
    layers = []
    for k in range(config.layers):
        layer = RECURRENT[config.cell](
            config.embedding_size if k == 0 else config.hidden_size, config.hidden_size, 1, batch_first=True
        )
        for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            setattr(layer, f"{kind}_l0", getattr(fused, f"{kind}_l{k}"))
        layers.append(layer)
    return layers
