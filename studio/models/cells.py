"""Explicit recurrent cells: layer-normalised LSTM, SRU, QRNN and RWA.

Each cell is one layer with the same contract:

* ``project(x, state) -> (B, T, K)``: every matrix product that reads only the input,
  for the whole window in one call (the part that runs in parallel over time);
* ``recur(projected, state, mask) -> (outputs (B, T, H), next state)``: the element-wise
  (and, for LN-LSTM and RWA, hidden-to-hidden) recurrence, one step per time index.

``state`` is a list of ``(B, width)`` tensors in the order of ``STATE_NAMES[cell]``
(:mod:`studio.config`); ``mask`` is the variational recurrent-dropout mask ``(B, H)``
(Gal and Ghahramani 2016), already scaled by ``1 / (1 - p)``, or None.  It multiplies the
state the recurrence reads back (``h`` for LN-LSTM and RWA, ``c`` for SRU and QRNN) and
is the same at every step of a window.

:class:`ExplicitStack` stacks cells with dropout between layers, like ``nn.LSTM``, with
state tensors ``[layers, batch, width]``.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from ..config import STATE_NAMES, ModelConfig

State = list[torch.Tensor]


class ExplicitCell(nn.Module):
    """One recurrent layer: (B, T, input_size) -> (B, T, hidden_size), explicit state."""

    cell: ClassVar[str]

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__()
        self.input_size, self.hidden_size = input_size, hidden_size

    def project(self, x: torch.Tensor, state: State) -> torch.Tensor:
        raise NotImplementedError

    def recur(self, projected: torch.Tensor, state: State, mask: torch.Tensor | None):
        raise NotImplementedError

    def forward(self, x: torch.Tensor, state: State, mask: torch.Tensor | None = None):
        """x (B, T, I) -> outputs (B, T, H), next state."""
        return self.recur(self.project(x, state), state, mask)


def _masked(value: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    return value if mask is None else value * mask


class LayerNormLSTM(ExplicitCell):
    """LSTM with layer normalisation of the input and recurrent gate pre-activations and of
    the cell before its tanh (Ba, Kiros and Hinton 2016).  State: h, c."""

    cell = "lnlstm"

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__(input_size, hidden_size)
        gates = 4 * hidden_size
        self.input_weights = nn.Linear(input_size, gates, bias=False)
        self.recurrent_weights = nn.Linear(hidden_size, gates, bias=False)
        self.input_norm = nn.LayerNorm(gates)
        self.recurrent_norm = nn.LayerNorm(gates, bias=False)  # one bias per gate is enough
        self.cell_norm = nn.LayerNorm(hidden_size)
        with torch.no_grad():  # forget-gate bias 1 (Jozefowicz et al. 2015), gate order i, f, g, o
            self.input_norm.bias[hidden_size : 2 * hidden_size].fill_(1.0)

    def project(self, x, state):
        return self.input_norm(self.input_weights(x))  # (B, T, 4H)

    def recur(self, projected, state, mask):
        h, c = state
        outputs = []
        for t in range(projected.shape[1]):
            gates = projected[:, t] + self.recurrent_norm(self.recurrent_weights(_masked(h, mask)))
            i, f, g, o = gates.chunk(4, dim=-1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(self.cell_norm(c))
            outputs.append(h)
        return torch.stack(outputs, 1), [h, c]


class SRU(ExplicitCell):
    """Simple Recurrent Unit (Lei et al. 2017): f, r and the candidate are products of the
    input only; the recurrence ``c = f c + (1 - f) x~`` is element-wise.  The highway term
    reads the input, projected when its width differs from ``hidden_size``.  State: c."""

    cell = "sru"

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__(input_size, hidden_size)
        self.highway_projected = input_size != hidden_size
        self.weights = nn.Linear(input_size, (4 if self.highway_projected else 3) * hidden_size)

    def project(self, x, state):
        projected = self.weights(x)
        return projected if self.highway_projected else torch.cat([projected, x], -1)  # (B, T, 4H)

    def recur(self, projected, state, mask):
        candidate, forget, reset, highway = projected.chunk(4, dim=-1)
        forget, reset = torch.sigmoid(forget), torch.sigmoid(reset)
        (c,) = state
        cells = []
        for t in range(projected.shape[1]):
            c = forget[:, t] * _masked(c, mask) + (1 - forget[:, t]) * candidate[:, t]
            cells.append(c)
        cells_all = torch.stack(cells, 1)
        return reset * torch.tanh(cells_all) + (1 - reset) * highway, [c]


class QRNN(ExplicitCell):
    """Quasi-recurrent network (Bradbury et al. 2016): a width-2 causal convolution gives
    z, f, o for the whole window; fo-pooling ``c = f c + (1 - f) z``, ``h = o c``.

    State: c, and ``last_input``: the convolution's tap on the previous input (its
    product with the second kernel column, (B, 3H)), so a one-token step needs nothing
    else and every layer's state has the same width."""

    cell = "qrnn"

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__(input_size, hidden_size)
        self.current_tap = nn.Linear(input_size, 3 * hidden_size)
        self.previous_tap = nn.Linear(input_size, 3 * hidden_size, bias=False)

    def project(self, x, state):
        previous = self.previous_tap(x)  # (B, T, 3H)
        shifted = torch.cat([state[1][:, None], previous[:, :-1]], 1)
        return torch.cat([self.current_tap(x) + shifted, previous], -1)  # (B, T, 6H)

    def recur(self, projected, state, mask):
        hidden = self.hidden_size
        z, f, o, previous = projected.split([hidden, hidden, hidden, 3 * hidden], -1)
        z, f, o = torch.tanh(z), torch.sigmoid(f), torch.sigmoid(o)
        c = state[0]
        cells = []
        for t in range(projected.shape[1]):
            c = f[:, t] * _masked(c, mask) + (1 - f[:, t]) * z[:, t]
            cells.append(c)
        return o * torch.stack(cells, 1), [c, previous[:, -1]]


class RWA(ExplicitCell):
    """Recurrent weighted average (Ostmeyer and Cowell 2017): h is tanh of a running
    average of ``u tanh(g)`` weighted by ``exp(a)``, with g and a read from the input and
    the previous h.  The average is kept as a numerator and denominator rescaled by the
    running maximum of a, so exp never overflows.  State: h, numerator, denominator,
    max_score (zeros start it: the maximum only stabilises, it does not change the ratio)."""

    cell = "rwa"
    SMALLEST_DENOMINATOR = 1e-30  # a zero state has denominator 0 before the first step

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__(input_size, hidden_size)
        self.input_weights = nn.Linear(input_size, 3 * hidden_size)  # u, g, a
        self.recurrent_weights = nn.Linear(hidden_size, 2 * hidden_size, bias=False)  # g, a

    def project(self, x, state):
        return self.input_weights(x)  # (B, T, 3H)

    def recur(self, projected, state, mask):
        h, numerator, denominator, max_score = state
        value, gate_input, score_input = projected.chunk(3, dim=-1)
        outputs = []
        for t in range(projected.shape[1]):
            gate_recurrent, score_recurrent = self.recurrent_weights(_masked(h, mask)).chunk(2, dim=-1)
            score = score_input[:, t] + score_recurrent
            new_max = torch.maximum(max_score, score)
            rescale, weight = torch.exp(max_score - new_max), torch.exp(score - new_max)
            numerator = numerator * rescale + value[:, t] * torch.tanh(gate_input[:, t] + gate_recurrent) * weight
            denominator = denominator * rescale + weight
            max_score = new_max
            h = torch.tanh(numerator / denominator.clamp_min(self.SMALLEST_DENOMINATOR))
            outputs.append(h)
        return torch.stack(outputs, 1), [h, numerator, denominator, max_score]


EXPLICIT_CELL_CLASSES = {cls.cell: cls for cls in (LayerNormLSTM, SRU, QRNN, RWA)}


class ExplicitStack(nn.Module):
    """``layers`` explicit cells with dropout between layers: (B, T, E) -> (B, T, H);
    state is a tuple of ``[layers, B, width]`` tensors in ``config.state_names`` order."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        cell = EXPLICIT_CELL_CLASSES[config.cell]
        self.cells = nn.ModuleList(
            cell(config.embedding_size if k == 0 else config.hidden_size, config.hidden_size)
            for k in range(config.layers)
        )
        self.between_layers = nn.Dropout(config.dropout)
        self.recurrent_dropout = config.recurrent_dropout
        self.state_count = len(STATE_NAMES[config.cell])

    def recurrent_masks(self, batch: int, device) -> list[torch.Tensor | None]:
        """One variational mask per layer and row, reused at every step of this window."""
        if not (self.training and self.recurrent_dropout > 0):
            return [None] * len(self.cells)
        keep = 1.0 - self.recurrent_dropout
        hidden = self.cells[0].hidden_size
        return [torch.bernoulli(torch.full((batch, hidden), keep, device=device)) / keep for _ in self.cells]

    def forward(self, x: torch.Tensor, state: tuple[torch.Tensor, ...]):
        masks = self.recurrent_masks(x.shape[0], x.device)
        next_layers = []
        for k, cell in enumerate(self.cells):
            if k > 0:
                x = self.between_layers(x)
            x, layer_state = cell(x, [tensor[k] for tensor in state], masks[k])
            next_layers.append(layer_state)
        next_state = tuple(torch.stack([layer[i] for layer in next_layers]) for i in range(self.state_count))
        return x, next_state
