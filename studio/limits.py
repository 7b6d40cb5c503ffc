"""What a shell allows its users, on top of what the settings themselves allow.

:class:`~studio.sampling.settings.SampleSettings` and
:class:`~studio.config.TrainConfig` refuse what makes no sense anywhere (temperature
-3, top-p 0, beams 0); the limits here refuse what one shell will not run for the people
it serves: the web studio shares a small machine, so it writes at most 2,000 tokens with
at most 8 beams, 64 bars of music, 200 characters of handwriting, and trains models no
bigger than its Train tab offers.  The CLI has no such limits.  Nothing is ever clamped:
every refusal is one StudioError sentence naming the setting as the shell labels it, the
value it got and what it accepts.  Torch-free.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .config import TrainConfig
from .domains import Domain, Medium
from .errors import StudioError, require
from .sampling.settings import SampleSettings


@dataclass(frozen=True)
class SampleLimits:
    """Caps on one request: ``max_length`` tokens of text, ``max_beams`` beams,
    ``max_bars`` bars of music, ``max_text`` characters of handwriting, ``max_best_of``
    candidates drawn for a sample."""

    max_length: int
    max_beams: int
    max_bars: int
    max_text: int
    max_best_of: int = 16

    def check(self, settings: SampleSettings, domain: Domain) -> None:
        """StudioError for the first setting ``domain`` uses that is over a limit, and
        for a text-conditioned pen model given no text (it would otherwise write a
        default line the user never typed)."""
        if domain.medium is Medium.TEXT:
            require(
                settings.length <= self.max_length,
                f"length is at most {self.max_length:,} tokens here (got {settings.length:,}); "
                "the command line `studio sample --length N` has no such limit",
            )
        if domain.medium in (Medium.TEXT, Medium.MUSIC):
            require(
                settings.num_beams <= self.max_beams,
                f"beams must be 1 to {self.max_beams} here (got {settings.num_beams})",
            )
            require(
                settings.best_of <= self.max_best_of,
                f"candidates (best of) must be 1 to {self.max_best_of} here (got {settings.best_of}); "
                "the command line `studio sample --best-of N` allows more",
            )
        if domain.medium is Medium.MUSIC and settings.bars is not None:
            require(
                settings.bars <= self.max_bars,
                f"bars must be 1 to {self.max_bars} here (got {settings.bars}); "
                "the command line `studio sample --bars N` has no such limit",
            )
        if domain.medium is Medium.INK and domain.conditional:
            text = settings.text or ""
            require(text.strip() != "", "type the text to write: this model writes what you give it")
            require(
                len(text) <= self.max_text,
                f"at most {self.max_text} characters here (got {len(text)}); "
                "the command line `studio sample --text` has no such limit",
            )


@dataclass(frozen=True)
class Bounds:
    """An option's accepted whole-number or decimal range, both ends included."""

    label: str
    low: float
    high: float | None = None

    def check(self, value: float) -> None:
        if self.high is None:
            require(value >= self.low, f"{self.label} must be {self.low:g} or more (got {value:g})")
        else:
            require(
                self.low <= value <= self.high,
                f"{self.label} must be {self.low:g} to {self.high:g} here (got {value:g})",
            )


@dataclass(frozen=True)
class TrainLimits:
    """Ranges of the training options a shell offers (see :meth:`check`)."""

    hidden_size: Bounds
    layers: Bounds
    seq_len: Bounds
    batch_size: Bounds
    max_steps: Bounds
    max_minutes: Bounds
    eval_every: Bounds

    def check(self, options: dict[str, Any]) -> None:
        """StudioError for the first option outside its range, then for anything
        :class:`TrainConfig` refuses.  ``options`` holds the fields named here (a
        ``max_steps`` or ``max_minutes`` of None means "no limit")."""
        for name in ("hidden_size", "layers", "seq_len", "batch_size", "max_steps", "max_minutes", "eval_every"):
            value = options.get(name)
            if value is not None:
                getattr(self, name).check(value)
        try:
            TrainConfig(
                **{
                    name: options[name]
                    for name in ("seq_len", "batch_size", "max_steps", "max_minutes", "eval_every")
                    if name in options
                }
            )
        except TypeError as error:  # a programming error, not the user's
            raise StudioError(f"unknown training option: {error}") from None
