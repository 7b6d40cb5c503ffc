"""Graves (2013) mixture-density LSTMs for pen strokes (torch; training and export only).

Two models share one output head:

* :class:`PredictionNetwork` (§4): stacked LSTM with skip connections from the input
  to every layer and from every layer to the output; unconditional strokes.
* :class:`SynthesisNetwork` (§5): the same, with a soft window of ``K`` Gaussians over
  the one-hot text between the first and the other layers, so the strokes write a
  given text.  The window position ``kappa`` only moves forward.

Both expose ``init_state(batch)`` and ``step(points, state[, text]) -> (head, state)``
on one point; the step is what :mod:`studio.handwriting.export` turns into ONNX.  The
state is a dict of named tensors: ``h``, ``c`` ``(layers, B, H)`` and, for synthesis,
``kappa`` ``(B, K)`` and ``w`` ``(B, A)``.  The head is a dict of raw mixture
parameters (see :func:`split_head`); :mod:`studio.handwriting.mdn` draws from it with
numpy.  Every model is rebuilt from ``model.config`` alone.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


def split_head(raw: torch.Tensor, mixtures: int) -> dict[str, torch.Tensor]:
    """Raw output ``(..., 1 + 6M)`` -> named mixture parameters.

    ``pen_logit (...)``: logit of the pen leaving the paper after this point;
    ``mixture_logits (..., M)``; ``means (..., M, 2)``; ``log_scales (..., M, 2)``;
    ``correlations (..., M)`` in (-1, 1).
    """
    m = mixtures
    pen_logit = raw[..., 0]
    mixture_logits = raw[..., 1 : 1 + m]
    means = raw[..., 1 + m : 1 + 3 * m].reshape(*raw.shape[:-1], m, 2)
    log_scales = raw[..., 1 + 3 * m : 1 + 5 * m].reshape(*raw.shape[:-1], m, 2)
    correlations = torch.tanh(raw[..., 1 + 5 * m : 1 + 6 * m])
    return {
        "pen_logit": pen_logit,
        "mixture_logits": mixture_logits,
        "means": means,
        "log_scales": log_scales,
        "correlations": correlations,
    }


def mixture_log_likelihood(head: dict[str, torch.Tensor], targets: torch.Tensor) -> torch.Tensor:
    """Log-density of ``targets (..., 3)`` (dx, dy, pen_lift) under ``head``: ``(...)``.

    The mixture sum is a log-sum-exp over components, so tiny densities never underflow.
    """
    offset = targets[..., None, :2] - head["means"]  # (..., M, 2)
    log_scales = head["log_scales"]
    normalised = offset * torch.exp(-log_scales)
    rho = head["correlations"].clamp(-1 + 1e-6, 1 - 1e-6)
    one_minus_rho2 = (1 - rho * rho).clamp_min(1e-6)
    z = normalised[..., 0] ** 2 + normalised[..., 1] ** 2 - 2 * rho * normalised[..., 0] * normalised[..., 1]
    log_gaussian = (
        -math.log(2 * math.pi) - log_scales.sum(-1) - 0.5 * torch.log(one_minus_rho2) - z / (2 * one_minus_rho2)
    )
    log_weights = F.log_softmax(head["mixture_logits"], dim=-1)
    offset_ll = torch.logsumexp(log_weights + log_gaussian, dim=-1)
    pen_ll = -F.binary_cross_entropy_with_logits(head["pen_logit"], targets[..., 2], reduction="none")
    return offset_ll + pen_ll


def lstm_cell(inputs, h, c, weight_ih, weight_hh, bias):
    """One LSTM step with PyTorch's gate order (i, f, g, o): ``(B, I) -> (B, H)`` twice."""
    gates = inputs @ weight_ih.t() + h @ weight_hh.t() + bias
    i, f, g, o = gates.chunk(4, dim=-1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    h = torch.sigmoid(o) * torch.tanh(c)
    return h, c


def _forget_bias_one(lstm: nn.LSTM) -> None:
    hidden = lstm.hidden_size
    for name, parameter in lstm.named_parameters():
        if name.startswith("bias_ih"):
            with torch.no_grad():
                parameter[hidden : 2 * hidden].fill_(1.0)


def _layer_step(layer: nn.LSTM, inputs, h, c):
    bias = layer.bias_ih_l0 + layer.bias_hh_l0
    return lstm_cell(inputs, h, c, layer.weight_ih_l0, layer.weight_hh_l0, bias)


class PredictionNetwork(nn.Module):
    """Unconditional stroke model; ``forward(points (B, T, 3)) -> raw (B, T, 1 + 6M)``."""

    def __init__(self, hidden_size: int = 256, layers: int = 2, mixtures: int = 20):
        super().__init__()
        self.config = {"type": "mdn", "hidden_size": hidden_size, "layers": layers, "mixtures": mixtures}
        self.hidden_size, self.layers, self.mixtures = hidden_size, layers, mixtures
        self.lstms = nn.ModuleList(
            nn.LSTM(3 + (hidden_size if k else 0), hidden_size, batch_first=True) for k in range(layers)
        )
        for lstm in self.lstms:
            _forget_bias_one(lstm)
        self.output = nn.Linear(layers * hidden_size, 1 + 6 * mixtures)

    def init_state(self, batch: int, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
        zeros = torch.zeros(self.layers, batch, self.hidden_size, device=device)
        return {"h": zeros, "c": zeros.clone()}

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        hiddens, below = [], None
        for lstm in self.lstms:
            layer_input = points if below is None else torch.cat([points, below], -1)
            below, _ = lstm(layer_input)  # (B, T, H)
            hiddens.append(below)
        return self.output(torch.cat(hiddens, -1))

    def step(self, points: torch.Tensor, state: dict[str, torch.Tensor]):
        """``points (B, 3)`` -> (head of the next point, next state)."""
        hs, cs, below = [], [], None
        for k, lstm in enumerate(self.lstms):
            layer_input = points if below is None else torch.cat([points, below], -1)
            h, c = _layer_step(lstm, layer_input, state["h"][k], state["c"][k])
            hs.append(h)
            cs.append(c)
            below = h
        raw = self.output(torch.cat(hs, -1))
        return split_head(raw, self.mixtures), {"h": torch.stack(hs), "c": torch.stack(cs)}


class SynthesisNetwork(nn.Module):
    """Text-conditioned stroke model (Graves §5).

    ``forward(points (B, T, 3), text (B, U) int64, 1-based ids, 0 = padding)`` returns
    ``raw (B, T, 1 + 6M)`` and the window weights ``phi (B, T, U + 1)`` (the last column
    is the position just past the text).
    """

    def __init__(
        self,
        alphabet_size: int,
        hidden_size: int = 256,
        layers: int = 2,
        mixtures: int = 20,
        window_gaussians: int = 10,
        characters_per_point: float = 0.08,
    ):
        super().__init__()
        self.config = {
            "type": "synthesis",
            "hidden_size": hidden_size,
            "layers": layers,
            "mixtures": mixtures,
            "window_gaussians": window_gaussians,
            "alphabet_size": alphabet_size,
            "characters_per_point": characters_per_point,
        }
        self.hidden_size, self.layers, self.mixtures = hidden_size, layers, mixtures
        self.window_gaussians, self.alphabet_size = window_gaussians, alphabet_size
        self.attention_cell = nn.LSTM(3 + alphabet_size, hidden_size, batch_first=True)
        _forget_bias_one(self.attention_cell)
        self.window = nn.Linear(hidden_size, 3 * window_gaussians)
        with torch.no_grad():
            # Start with wide-ish windows that advance at the corpus's average speed, so
            # the alignment is roughly right before the network has learnt anything.
            self.window.weight.mul_(0.1)
            self.window.bias.zero_()
            self.window.bias[2 * window_gaussians :].fill_(math.log(characters_per_point))
        self.lstms = nn.ModuleList(
            nn.LSTM(3 + hidden_size + alphabet_size, hidden_size, batch_first=True) for _ in range(layers - 1)
        )
        for lstm in self.lstms:
            _forget_bias_one(lstm)
        self.output = nn.Linear(layers * hidden_size, 1 + 6 * mixtures)

    def init_state(self, batch: int, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
        zeros = torch.zeros(self.layers, batch, self.hidden_size, device=device)
        return {
            "h": zeros,
            "c": zeros.clone(),
            "kappa": torch.zeros(batch, self.window_gaussians, device=device),
            "w": torch.zeros(batch, self.alphabet_size, device=device),
        }

    def one_hot(self, text: torch.Tensor) -> torch.Tensor:
        """``(B, U)`` ids -> ``(B, U, A)``; padding (id 0) becomes a zero row."""
        return F.one_hot(text, self.alphabet_size + 1)[..., 1:].to(torch.float32)

    def _window(self, h1, kappa, one_hot):
        """Attention from the first layer's ``h1 (B, H)``: returns ``w (B, A)``,
        ``kappa (B, K)`` and ``phi (B, U + 1)``."""
        alpha_hat, beta_hat, kappa_hat = self.window(h1).chunk(3, dim=-1)  # (B, K) each
        alpha, beta = torch.exp(alpha_hat), torch.exp(beta_hat)
        kappa = kappa + torch.exp(kappa_hat)
        positions = torch.arange(1, one_hot.shape[1] + 2, dtype=h1.dtype, device=h1.device)  # (U + 1,)
        distance = kappa.unsqueeze(-1) - positions  # (B, K, U + 1)
        phi = (alpha.unsqueeze(-1) * torch.exp(-beta.unsqueeze(-1) * distance * distance)).sum(1)
        w = torch.bmm(phi[:, None, :-1], one_hot).squeeze(1)  # (B, A)
        return w, kappa, phi

    def _attention_inputs(self):
        cell = self.attention_cell
        return cell.weight_ih_l0, cell.weight_hh_l0, cell.bias_ih_l0 + cell.bias_hh_l0

    def forward(self, points: torch.Tensor, text: torch.Tensor):
        batch, length, _ = points.shape
        one_hot = self.one_hot(text)
        weight_ih, weight_hh, bias = self._attention_inputs()
        # Precomputed for all t, and unbound once: indexing [:, t] in the loop would
        # make backward allocate a full (B, T, 4H) gradient per step.
        point_gates = (points @ weight_ih[:, :3].t() + bias).unbind(1)  # T x (B, 4H)
        recurrent_weight = torch.cat([weight_ih[:, 3:], weight_hh], 1).t()  # (A + H, 4H)
        state = self.init_state(batch, points.device)
        h, c, kappa, w = state["h"][0], state["c"][0], state["kappa"], state["w"]
        first_hiddens, windows, phis = [], [], []
        for t in range(length):
            gates = point_gates[t] + torch.cat([w, h], -1) @ recurrent_weight
            i, f, g, o = gates.chunk(4, dim=-1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
            w, kappa, phi = self._window(h, kappa, one_hot)
            first_hiddens.append(h)
            windows.append(w)
            phis.append(phi)
        below = torch.stack(first_hiddens, 1)  # (B, T, H)
        window_sequence = torch.stack(windows, 1)  # (B, T, A)
        hiddens = [below]
        for lstm in self.lstms:
            below, _ = lstm(torch.cat([points, below, window_sequence], -1))
            hiddens.append(below)
        return self.output(torch.cat(hiddens, -1)), torch.stack(phis, 1)

    def step(self, points: torch.Tensor, state: dict[str, torch.Tensor], text: torch.Tensor):
        """``points (B, 3)``, ``text (B, U)`` -> (head, next state, ``phi (B, U + 1)``)."""
        one_hot = self.one_hot(text)
        weight_ih, weight_hh, bias = self._attention_inputs()
        h, c = lstm_cell(torch.cat([points, state["w"]], -1), state["h"][0], state["c"][0], weight_ih, weight_hh, bias)
        w, kappa, phi = self._window(h, state["kappa"], one_hot)
        hs, cs, below = [h], [c], h
        for k, lstm in enumerate(self.lstms, start=1):
            below, c_k = _layer_step(lstm, torch.cat([points, below, w], -1), state["h"][k], state["c"][k])
            hs.append(below)
            cs.append(c_k)
        raw = self.output(torch.cat(hs, -1))
        next_state = {"h": torch.stack(hs), "c": torch.stack(cs), "kappa": kappa, "w": w}
        return split_head(raw, self.mixtures), next_state, phi


def build_model(config: dict) -> nn.Module:
    """Rebuild a model from its ``config`` (``type`` is ``mdn`` or ``synthesis``)."""
    options = {k: v for k, v in config.items() if k != "type"}
    if config["type"] == "mdn":  # the card's model type: one of these two networks
        return PredictionNetwork(**options)
    if config["type"] == "synthesis":
        return SynthesisNetwork(**options)
    raise ValueError(f"unknown stroke model type {config['type']!r}")
