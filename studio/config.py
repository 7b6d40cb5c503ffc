"""Typed, frozen configuration for models and training, each validating itself."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from .errors import require
from .formats import HELD_OUT

FUSED_CELLS = ("lstm", "gru", "rnn")  # torch's fused kernels, exported as ONNX LSTM/GRU/RNN ops
EXPLICIT_CELLS = ("lnlstm", "sru", "qrnn", "rwa")  # studio.models.cells, stepped one token per call
CELLS = FUSED_CELLS + EXPLICIT_CELLS
STATE_NAMES = {
    "lstm": ("h", "c"),
    "gru": ("h",),
    "rnn": ("h",),
    "lnlstm": ("h", "c"),
    "sru": ("c",),
    "qrnn": ("c", "last_input"),
    "rwa": ("h", "numerator", "denominator", "max_score"),
}
# widths in units of hidden_size: a QRNN carries its last input already through the
# width-2 convolution's second tap (z, f, o), so every layer's state has one width
STATE_WIDTHS = {"last_input": 3}


# The largest size each model option takes (from 1 up): far above what this studio's
# models use, and small enough that a typo (--hidden-size 100000000) is one line here
# rather than an allocation failure (400 GB of weights) or a build that never ends.
MODEL_SIZE_LIMITS = {
    "layers": 16,
    "hidden_size": 8192,
    "embedding_size": 8192,
    "mixtures": 1000,
    "window_gaussians": 1000,
    "latent_size": 4096,
    "feature_size": 8192,
}


def check_size(option: str, value: int) -> None:
    """StudioError unless ``value`` is 1 to :data:`MODEL_SIZE_LIMITS` ``[option]``."""
    top = MODEL_SIZE_LIMITS[option]
    flag = "--" + option.replace("_", "-")
    require(1 <= value <= top, f"{flag} must be 1 to {top:,} (got {value:,})")


def check_model_options(options: dict) -> None:
    """Refuse out-of-range model options (``studio train``'s --layers, --hidden-size ...)
    before any corpus work: every size any head takes, then the token model's own rules
    (cell, dropouts), which a stroke head's options meet as well."""
    for option, value in options.items():
        if option in MODEL_SIZE_LIMITS and value is not None:
            check_size(option, int(value))
    ModelConfig.from_dict({**{k: v for k, v in options.items() if v is not None}, "vocab_size": 2})


@dataclass(frozen=True)
class ModelConfig:
    """Embedding -> stacked recurrent cells -> linear head over ``vocab_size`` ids."""

    vocab_size: int
    cell: str = "lstm"
    layers: int = 2
    hidden_size: int = 512
    embedding_size: int = 64
    dropout: float = 0.25
    tie_weights: bool = False
    recurrent_dropout: float = 0.0
    weight_drop: float = 0.0  # DropConnect on the recurrent matrices of a fused cell (training only)
    type: str = "rnn_lm"

    def __post_init__(self) -> None:
        require(self.cell in CELLS, f"--cell must be one of {', '.join(CELLS)} (got {self.cell!r})")
        for option in ("layers", "hidden_size", "embedding_size"):
            check_size(option, getattr(self, option))
        require(0.0 <= self.dropout < 1.0, f"--dropout must be in [0, 1) (got {self.dropout})")
        require(
            0.0 <= self.recurrent_dropout < 1.0, f"--recurrent-dropout must be in [0, 1) (got {self.recurrent_dropout})"
        )
        require(
            self.recurrent_dropout == 0.0 or self.cell in EXPLICIT_CELLS,
            f"--recurrent-dropout needs an explicit cell ({', '.join(EXPLICIT_CELLS)}), not {self.cell}",
        )
        require(0.0 <= self.weight_drop < 1.0, f"--weight-drop must be in [0, 1) (got {self.weight_drop})")
        require(
            self.weight_drop == 0.0 or self.cell in FUSED_CELLS,
            f"--weight-drop needs a fused cell ({', '.join(FUSED_CELLS)}), not {self.cell}; "
            "explicit cells take --recurrent-dropout",
        )
        require(self.vocab_size >= 2, "the vocabulary needs at least two symbols")

    @property
    def state_names(self) -> tuple[str, ...]:
        """Names of the recurrent state tensors, each shaped [layers, batch, width]."""
        return STATE_NAMES[self.cell]

    def state_width(self, name: str) -> int:
        """The last axis of state ``name``: [layers, batch, state_width(name)]."""
        return STATE_WIDTHS.get(name, 1) * self.hidden_size

    @property
    def steps_one_token(self) -> bool:
        """Explicit cells export a graph of one time step (the runtime loops over time)."""
        return self.cell in EXPLICIT_CELLS

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ModelConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


PRECISIONS = ("auto", "fp32", "bf16")
MAX_LEARNING_RATE = 10.0  # past any optimiser's use; 1e308 overflowed inside AdamW


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation, batching and stopping rules for every head (see ``studio train --help``);
    ``seq_len`` is the truncated-BPTT window of categorical heads, ``max_points`` and
    ``val_sequences`` size the independent sequences of the mixture head."""

    batch_size: int = 64
    seq_len: int = 128
    learning_rate: float = 2e-3
    weight_decay: float = 0.01
    warmup_steps: int = 100
    min_lr_ratio: float = 0.1
    clip: float = 1.0
    max_steps: int | None = None
    max_minutes: float | None = None
    epochs: float = 10.0
    eval_every: int = 200
    patience: int = 5
    val_fraction: float = 0.1
    held_out: str = "tail"  # tail: the last files in name order are validation; random: a hashed draw of files
    seed: int = 1337
    device: str | None = "cpu"  # None (the CLI's default): cpu for a new run, the run's own on --resume
    transpose: int = 5
    max_points: int = 240  # strokes: longest sequence trained on (longer Hershey lines are skipped)
    val_sequences: int = 256  # strokes: held-out sequences scored at each evaluation
    scheduled_sampling: float = 0.0  # final probability of feeding the model its own sample
    kl_warmup: int = 0  # latent-variable heads: steps over which the KL weight rises from 0 to 1
    precision: str = "auto"  # auto | fp32 | bf16: the autocast dtype of the forward pass
    ema: float = 0.0  # decay of the exponential moving average of the weights (0: none)
    ema_warmup: float = 10.0  # the average's decay at step s is min(ema, (1 + s) / (ema_warmup + s))
    shift_windows: bool = False  # token models: each pass starts its BPTT windows at a seeded offset

    def sampling_probability(self, step: int, total_steps: int) -> float:
        """Scheduled sampling (Bengio et al. 2015): rises linearly from 0 at step 0 to
        ``scheduled_sampling`` at the last step of the schedule."""
        return self.scheduled_sampling * min(1.0, step / max(1, total_steps))

    def __post_init__(self) -> None:
        require(self.batch_size >= 1, f"--batch-size must be at least 1 (got {self.batch_size})")
        require(self.seq_len >= 2, f"--seq-len must be at least 2 (got {self.seq_len})")
        require(
            0 < self.learning_rate <= MAX_LEARNING_RATE,
            f"--lr must be above 0 and at most {MAX_LEARNING_RATE:g} (got {self.learning_rate})",
        )
        require(0 <= self.weight_decay <= 1, f"--weight-decay must be 0 to 1 (got {self.weight_decay})")
        require(self.warmup_steps >= 0, f"--warmup-steps must be 0 or more (got {self.warmup_steps})")
        require(self.patience >= 1, f"--patience must be at least 1 evaluation (got {self.patience})")
        require(self.clip > 0, f"--clip must be positive (got {self.clip})")
        require(0.0 <= self.ema < 1.0, f"--ema must be 0 (off) or a decay in (0, 1), e.g. 0.999 (got {self.ema})")
        require(
            self.ema_warmup > 1.0,
            f"--ema-warmup must be above 1 (the decay at step s is (1 + s) / (W + s)), e.g. 10 (got {self.ema_warmup})",
        )
        require(0.0 <= self.min_lr_ratio <= 1.0, f"--min-lr-ratio must be in [0, 1] (got {self.min_lr_ratio})")
        require(self.max_steps is None or self.max_steps >= 1, "--max-steps must be at least 1")
        require(self.max_minutes is None or self.max_minutes > 0, "--max-minutes must be positive")
        require(self.epochs > 0, f"--epochs must be positive (got {self.epochs})")
        require(self.eval_every >= 1, "--eval-every must be at least 1")
        require(0.0 < self.val_fraction < 0.5, f"--val-fraction must be in (0, 0.5) (got {self.val_fraction})")
        require(
            self.held_out in HELD_OUT,
            f"--held-out must be one of {' | '.join(HELD_OUT)} (got {self.held_out!r})",
        )
        require(self.transpose >= 0, "--transpose must be 0 or more semitones")
        require(self.max_points >= 2, f"--max-points must be at least 2 (got {self.max_points})")
        require(
            0.0 <= self.scheduled_sampling <= 1.0,
            f"--scheduled-sampling must be in [0, 1] (got {self.scheduled_sampling})",
        )
        require(self.kl_warmup >= 0, f"--kl-warmup must be 0 or more steps (got {self.kl_warmup})")
        require(
            self.precision in PRECISIONS,
            f"--precision must be one of {' | '.join(PRECISIONS)} (got {self.precision!r})",
        )
        require(self.val_sequences >= 1, f"--val-sequences must be at least 1 (got {self.val_sequences})")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})
