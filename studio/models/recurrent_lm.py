"""The recurrent language model shared by every categorical domain (chars, words, music).

Embedding -> dropout -> stacked LSTM/GRU/RNN, or an explicit cell of
:mod:`studio.models.cells` (dropout between layers) -> dropout -> linear head.  State is
explicit: ``init_state(batch)`` and ``forward(tokens, state)`` return the next state, a
tuple of tensors named by ``config.state_names``.
"""

from __future__ import annotations

import torch
from torch import nn

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

    def forward(self, tokens: torch.Tensor, state: tuple[torch.Tensor, ...]):
        """tokens (B, T) int64 -> logits (B, T, V), next state."""
        x = self.input_dropout(self.embedding(tokens))  # (B, T, E)
        rnn_state = state if self.config.cell in ("lstm", *EXPLICIT_CELLS) else state[0]
        y, next_state = self.rnn(x, rnn_state)  # (B, T, H)
        y = self.output_dropout(y)
        if self.projection is not None:
            y = self.projection(y)
        logits = self.head(y)
        next_state = next_state if isinstance(next_state, tuple) else (next_state,)
        return logits, next_state


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
