"""A variational RNN for pen strokes (Chung et al. 2015; torch, training and export only).

One latent variable ``z_t`` per point.  With ``h_{t-1}`` the recurrent state after the
points and latents before ``t`` (every LSTM layer's ``h``, concatenated):

* prior    ``p(z_t | h_{t-1}) = N(mu_p, sigma_p)``, an MLP of ``h_{t-1}``;
* encoder  ``q(z_t | x_t, h_{t-1}) = N(mu_q, sigma_q)``, an MLP of ``phi_x(x_t)`` and ``h_{t-1}``;
* decoder  ``p(x_t | z_t, h_{t-1})``, an MLP of ``phi_z(z_t)`` and ``h_{t-1}`` giving the
  Graves mixture density and pen-up logit of the MDN head
  (:func:`studio.handwriting.model.split_head`);
* recurrence ``h_t = LSTM([phi_x(x_t), phi_z(z_t)], h_{t-1})``, stacked with skip inputs.

Training maximises the evidence lower bound per point,
``log p(x_t | z_t, h_{t-1}) - KL(q || p)``, with ``z_t`` drawn from ``q`` by
reparameterisation.  The recurrence at step ``t`` reads the previous point and latent,
so the model's state is ``h``, ``c`` ``(layers, B, H)`` and ``z`` ``(B, Z)``, the latent
drawn at the previous step.

:meth:`VariationalRNN.step` is what the exporter traces.  It takes the previous point,
the point to encode (``target``), a ``posterior`` flag per row (1: draw ``z`` from the
encoder, to score or prime; 0: from the prior, to sample) and the standard normal
``noise`` that becomes ``z = mu + sigma * noise``, so a sampler that draws the noise from
a seeded generator stays seeded and torch-free.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from .model import mixture_log_likelihood, split_head

LOG_SCALE_MIN, LOG_SCALE_MAX = -7.0, 4.0  # latent log standard deviations are clamped here
HALF_LOG_TWO_PI = 0.5 * math.log(2 * math.pi)


def gaussian_kl(mean_q, log_scale_q, mean_p, log_scale_p) -> torch.Tensor:
    """KL(N(mean_q, exp(log_scale_q)) || N(mean_p, exp(log_scale_p))) of diagonal
    Gaussians, summed over the last axis."""
    variance_ratio = torch.exp(2 * (log_scale_q - log_scale_p))
    mean_term = (mean_q - mean_p) ** 2 * torch.exp(-2 * log_scale_p)
    return (log_scale_p - log_scale_q + 0.5 * (variance_ratio + mean_term) - 0.5).sum(-1)


def gaussian_log_density(z, mean, log_scale) -> torch.Tensor:
    """log N(z; mean, exp(log_scale)) summed over the last axis."""
    return (-0.5 * ((z - mean) * torch.exp(-log_scale)) ** 2 - log_scale - HALF_LOG_TWO_PI).sum(-1)


class GaussianLayer(nn.Module):
    """``(..., features) -> (mean, log_scale)``, each ``(..., latent)``, clamped scales."""

    def __init__(self, features: int, latent: int):
        super().__init__()
        self.linear = nn.Linear(features, 2 * latent)

    def forward(self, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_scale = self.linear(hidden).chunk(2, dim=-1)
        return mean, log_scale.clamp(LOG_SCALE_MIN, LOG_SCALE_MAX)


class VariationalRNN(nn.Module):
    """VRNN over stroke-3 points; ``forward`` scores whole padded batches (training),
    ``step`` runs one point (export)."""

    def __init__(
        self,
        hidden_size: int = 256,
        layers: int = 1,
        mixtures: int = 20,
        latent_size: int = 16,
        feature_size: int = 128,
    ):
        super().__init__()
        self.config = {
            "type": "vrnn",
            "hidden_size": hidden_size,
            "layers": layers,
            "mixtures": mixtures,
            "latent_size": latent_size,
            "feature_size": feature_size,
        }
        self.hidden_size, self.layers, self.mixtures = hidden_size, layers, mixtures
        self.latent_size, self.feature_size = latent_size, feature_size
        condition = layers * hidden_size  # h_{t-1}: every layer's h
        self.point_features = nn.Sequential(
            nn.Linear(3, feature_size), nn.ReLU(), nn.Linear(feature_size, feature_size)
        )
        self.latent_features = nn.Sequential(nn.Linear(latent_size, feature_size), nn.ReLU())
        # the point's share of every gate and of the encoder is one product over a whole window
        self.point_gates = nn.ModuleList(nn.Linear(feature_size, 4 * hidden_size) for _ in range(layers))
        self.step_gates = nn.ModuleList(
            nn.Linear(feature_size + hidden_size * (2 if k else 1), 4 * hidden_size, bias=False) for k in range(layers)
        )
        with torch.no_grad():
            for gates in self.point_gates:
                gates.bias[hidden_size : 2 * hidden_size].fill_(1.0)  # forget-gate bias 1
        self.prior = nn.Sequential(nn.Linear(condition, hidden_size), nn.ReLU())
        self.prior_gaussian = GaussianLayer(hidden_size, latent_size)
        self.encoder_point = nn.Linear(feature_size, hidden_size)
        self.encoder_state = nn.Linear(condition, hidden_size, bias=False)
        self.encoder_gaussian = GaussianLayer(hidden_size, latent_size)
        self.decoder_latent = nn.Linear(feature_size, hidden_size)
        self.decoder_state = nn.Linear(condition, hidden_size, bias=False)
        self.output = nn.Linear(hidden_size, 1 + 6 * mixtures)

    def init_state(self, batch: int, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
        zeros = torch.zeros(self.layers, batch, self.hidden_size, device=device)
        return {"h": zeros, "c": zeros.clone(), "z": torch.zeros(batch, self.latent_size, device=device)}

    def _recur(self, point_gates: list[torch.Tensor], latent_features, hs: list, cs: list):
        """One step of the stacked LSTM: ``point_gates[k] (B, 4H)`` precomputed, the
        previous latent's features ``(B, F)``; returns the new ``hs``, ``cs``."""
        new_h, new_c, below = [], [], None
        for k in range(self.layers):
            extra = [latent_features, hs[k]] if below is None else [latent_features, hs[k], below]
            gates = point_gates[k] + self.step_gates[k](torch.cat(extra, -1))
            i, f, g, o = gates.chunk(4, dim=-1)
            c = torch.sigmoid(f) * cs[k] + torch.sigmoid(i) * torch.tanh(g)
            below = torch.sigmoid(o) * torch.tanh(c)
            new_h.append(below)
            new_c.append(c)
        return new_h, new_c

    def _decode(self, latent_features, condition) -> torch.Tensor:
        return self.output(F.relu(self.decoder_latent(latent_features) + self.decoder_state(condition)))

    def forward(self, inputs: torch.Tensor, targets: torch.Tensor, noise: torch.Tensor | None = None):
        """Teacher-forced pass with ``z`` drawn from the encoder.

        ``inputs``, ``targets`` ``(B, T, 3)`` (targets are the inputs shifted by one),
        ``noise (B, T, Z)`` standard normal (None: drawn from torch's generator).  Returns
        the reconstruction log-density ``log p(x_t | z_t, h_{t-1})`` and ``KL(q || p)``,
        each ``(B, T)`` nats.
        """
        batch, length, _ = inputs.shape
        if noise is None:
            noise = torch.randn(batch, length, self.latent_size, device=inputs.device)
        input_features = self.point_features(inputs)  # (B, T, F)
        encoder_points = self.encoder_point(self.point_features(targets)).unbind(1)  # T x (B, H)
        gates = [layer(input_features).unbind(1) for layer in self.point_gates]  # layers x T x (B, 4H)
        state = self.init_state(batch, inputs.device)
        hs, cs = list(state["h"].unbind(0)), list(state["c"].unbind(0))
        latent_features = self.latent_features(state["z"])
        noise = noise.unbind(1)
        conditions, posteriors, features = [], [], []
        for t in range(length):
            hs, cs = self._recur([g[t] for g in gates], latent_features, hs, cs)
            condition = torch.cat(hs, -1)  # h_{t-1} of the docstring: (B, L*H)
            mean, log_scale = self.encoder_gaussian(F.relu(encoder_points[t] + self.encoder_state(condition)))
            latent_features = self.latent_features(mean + torch.exp(log_scale) * noise[t])
            conditions.append(condition)
            posteriors.append((mean, log_scale))
            features.append(latent_features)
        condition = torch.stack(conditions, 1)  # (B, T, L*H)
        prior_mean, prior_log_scale = self.prior_gaussian(self.prior(condition))
        posterior_mean = torch.stack([m for m, _ in posteriors], 1)
        posterior_log_scale = torch.stack([s for _, s in posteriors], 1)
        raw = self._decode(torch.stack(features, 1), condition)  # (B, T, 1 + 6M)
        log_likelihood = mixture_log_likelihood(split_head(raw, self.mixtures), targets)
        kl = gaussian_kl(posterior_mean, posterior_log_scale, prior_mean, prior_log_scale)
        return log_likelihood, kl

    def step(self, points, target, posterior, noise, state: dict[str, torch.Tensor]):
        """One point: ``points (B, 3)`` the previous point, ``target (B, 3)`` the point
        to encode (read only where ``posterior (B,)`` is 1), ``noise (B, Z)``.

        Returns (the mixture head of the next point, ``kl (B,)`` = KL(q || p) and
        ``log_ratio (B,)`` = log p(z) - log q(z) at the drawn ``z`` (both meaningful where
        ``posterior`` is 1), the next state)."""
        hs, cs = self._recur(
            [layer(self.point_features(points)) for layer in self.point_gates],
            self.latent_features(state["z"]),
            list(state["h"].unbind(0)),
            list(state["c"].unbind(0)),
        )
        condition = torch.cat(hs, -1)
        prior_mean, prior_log_scale = self.prior_gaussian(self.prior(condition))
        encoder_hidden = F.relu(self.encoder_point(self.point_features(target)) + self.encoder_state(condition))
        posterior_mean, posterior_log_scale = self.encoder_gaussian(encoder_hidden)
        use_posterior = posterior[:, None] > 0.5
        mean = torch.where(use_posterior, posterior_mean, prior_mean)
        log_scale = torch.where(use_posterior, posterior_log_scale, prior_log_scale)
        z = mean + torch.exp(log_scale) * noise
        raw = self._decode(self.latent_features(z), condition)
        kl = gaussian_kl(posterior_mean, posterior_log_scale, prior_mean, prior_log_scale)
        log_ratio = gaussian_log_density(z, prior_mean, prior_log_scale) - gaussian_log_density(
            z, posterior_mean, posterior_log_scale
        )
        next_state = {"h": torch.stack(hs), "c": torch.stack(cs), "z": z}
        return split_head(raw, self.mixtures), kl, log_ratio, next_state
