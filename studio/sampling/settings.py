"""Sampling settings: one frozen dataclass shared by the CLI, the Python API and the web UI.

Names follow Hugging Face's ``generate``: ``temperature``, ``top_k``, ``top_p``,
``repetition_penalty``, ``no_repeat_ngram_size``, ``num_beams``, ``length_penalty``,
``max_new_tokens`` (``length`` here), ``seed``, ``stop`` strings.  Domain settings
(music ``bars``/``tempo``/``key``/``metre``/``pitch_temperature``/``lockstep``, handwriting
``text``/``bias``/``style``/``page_width``) live here too so one recipe describes any sample.
"""

from __future__ import annotations

import math
import numbers
import re
from dataclasses import asdict, dataclass, fields, replace

from ..errors import require
from ..music.events import time_signature_text

DEFAULT_LENGTH = 500
MAX_ROWS = 4096  # --num: samples stepped as one batch (each row holds its state and generator)
MAX_BEAMS = 1024  # --beam, --branch-factor, --steps-per-iteration
MAX_BEST_OF = 64  # --best-of: candidates drawn for each sample
MAX_SEED = 2**63 - 1  # seeds are whole numbers a 64-bit counter can hold
FLOAT_OPTIONS = (
    "temperature",
    "top_p",
    "repetition_penalty",
    "length_penalty",
    "pitch_temperature",
    "bias",
    "stroke_width",
)
MAX_PITCH_TEMPERATURE = 10.0
# Upper bounds for the float options that scale a number the draw computes with: far
# past any use (temperature 100 is uniform noise already), and far below where those
# numbers overflow (temperature 1e308 turned every Gumbel into inf; bias 1e308 crashed
# the pen's mixture; length penalty 1e308 overflowed length ** penalty)
MAX_TEMPERATURE = 100.0
MAX_REPETITION_PENALTY = 100.0
MAX_LENGTH_PENALTY = 10.0
MAX_BIAS = 100.0
MAX_STROKE_WIDTH = 100.0  # pixels


def _float(value: numbers.Real) -> float:
    """``float(value)``, with a number too large for a float (10 ** 400) as infinity (which
    the range checks then refuse) instead of an OverflowError."""
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


@dataclass(frozen=True)
class SampleSettings:
    model: str = "prose"
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    no_repeat_ngram_size: int = 0
    greedy: bool = False
    num_beams: int = 1
    length_penalty: float = 1.0
    stochastic_beams: bool = False
    branch_factor: int = 1
    steps_per_iteration: int = 1
    length: int = DEFAULT_LENGTH
    num: int = 1
    best_of: int = 1  # draw this many for each sample and keep the likeliest (mean log-probability per token)
    seed: int = 0
    prime: str | None = None
    prime_file: str | None = None
    stop: tuple[str, ...] = ()
    device: str = "cpu"
    precision: str = "auto"
    # music
    bars: int | None = None
    tempo: float | None = None
    key: str | None = None
    metre: str | None = None  # a time signature, "3/4": every bar that long
    pitch_temperature: float = 1.0  # the choice among note-ons alone (studio.music.shaping)
    lockstep: bool = False  # no note-on while an earlier note sounds (studio.music.grammar)
    # handwriting
    text: str | None = None
    bias: float = 1.0
    style: int | None = None
    style_file: str | None = None
    style_text: str | None = None
    page_width: int = 800
    hand_per_line: bool = False
    stroke_width: float = 2.0
    color: str = "#1a1a2e"

    def __post_init__(self) -> None:
        self._take_types()
        for name in FLOAT_OPTIONS:
            value = getattr(self, name)
            require(math.isfinite(value), f"{CLI_FLAGS[name]} must be a finite number (got {value})")
        require(
            0 <= self.temperature <= MAX_TEMPERATURE,
            f"temperature must be 0 (greedy) to {MAX_TEMPERATURE:g} (got {self.temperature})",
        )
        require(self.top_k >= 0, f"top-k must be 0 (off) or more (got {self.top_k})")
        require(0 < self.top_p <= 1, f"top-p must be in (0, 1] (got {self.top_p})")
        require(
            0 < self.repetition_penalty <= MAX_REPETITION_PENALTY,
            f"repetition penalty must be above 0 and at most {MAX_REPETITION_PENALTY:g}; 1.0 is off "
            f"(got {self.repetition_penalty})",
        )
        require(
            self.no_repeat_ngram_size >= 0,
            f"no-repeat-ngram size must be 0 (off) or more (got {self.no_repeat_ngram_size})",
        )
        require(self.num_beams >= 1, f"beams must be at least 1 (got {self.num_beams})")
        require(self.num_beams <= MAX_BEAMS, f"beams must be at most {MAX_BEAMS:,} (got {self.num_beams:,})")
        require(
            0 <= self.length_penalty <= MAX_LENGTH_PENALTY,
            f"length penalty must be 0 (off) to {MAX_LENGTH_PENALTY:g}: scores are "
            f"divided by length ** penalty (got {self.length_penalty})",
        )
        require(self.length >= 1, f"length must be at least 1 (got {self.length})")
        require(self.num >= 1, f"num must be at least 1 (got {self.num})")
        require(self.num <= MAX_ROWS, f"num must be at most {MAX_ROWS:,} (got {self.num:,})")
        require(
            self.num_beams == 1 or self.num <= self.num_beams,
            f"--num ({self.num}) cannot exceed --beam ({self.num_beams}) with beam search",
        )
        require(
            1 <= self.best_of <= MAX_BEST_OF,
            f"best-of must be 1 (off) to {MAX_BEST_OF} candidates (got {self.best_of})",
        )
        require(
            self.num * self.best_of <= MAX_ROWS,
            f"--num times --best-of must be at most {MAX_ROWS:,} rows (got {self.num * self.best_of:,})",
        )
        require(
            self.best_of == 1 or (self.num_beams == 1 and not self.is_greedy),
            "--best-of draws several samples and keeps the likeliest: it needs sampling "
            "(a temperature above 0, no --greedy, no --beam)",
        )
        require(self.branch_factor >= 1, "branch factor must be at least 1")
        require(self.branch_factor <= MAX_BEAMS, f"branch factor must be at most {MAX_BEAMS:,}")
        require(self.steps_per_iteration >= 1, "steps per iteration must be at least 1")
        require(self.steps_per_iteration <= MAX_BEAMS, f"steps per iteration must be at most {MAX_BEAMS:,}")
        require(self.bars is None or self.bars >= 1, f"bars must be at least 1 (got {self.bars})")
        require(self.tempo is None or 10 <= self.tempo <= 400, f"tempo must be 10-400 bpm (got {self.tempo})")
        require(
            self.metre is None or time_signature_text(self.metre) is not None,
            f"metre must be a time signature such as 4/4, 3/4 or 6/8: beats 1-32 over 1, 2, 4, 8, 16 or 32 "
            f"(got {self.metre!r})",
        )
        require(
            0 < self.pitch_temperature <= MAX_PITCH_TEMPERATURE,
            f"pitch temperature must be above 0 and at most {MAX_PITCH_TEMPERATURE:g}; 1 is off "
            f"(got {self.pitch_temperature})",
        )
        require(0 <= self.bias <= MAX_BIAS, f"bias must be 0 to {MAX_BIAS:g} (got {self.bias})")
        require(
            0 < self.stroke_width <= MAX_STROKE_WIDTH,
            f"stroke width must be above 0 and at most {MAX_STROKE_WIDTH:g} pixels (got {self.stroke_width})",
        )
        require(
            self.page_width == 0 or 200 <= self.page_width <= 2400,
            f"page width must be 200 to 2400 pixels (got {self.page_width})",
        )
        require(self.precision in ("auto", "fp32", "int8"), "precision must be auto, fp32 or int8")
        require(all(self.stop), "stop strings must not be empty")
        require(0 <= self.seed <= MAX_SEED, f"seed must be 0 to {MAX_SEED} (got {self.seed})")

    def _take_types(self) -> None:
        """Values from the Python API or a form come as any Python type: a whole number
        where one is due (an integral float, a form's 300.0, is taken as 300), a real
        number where a float is, True or False for a switch, text for text; anything else
        is one sentence naming the setting, never a TypeError deep inside sampling."""
        for name, (kind, optional) in _FIELD_KINDS.items():
            value = getattr(self, name)
            if value is None and optional:
                continue
            if kind == "bool":
                require(value in (True, False), f"{name} must be True or False (got {value!r})")
                taken = bool(value)
            elif kind == "int":
                number = isinstance(value, numbers.Real) and not isinstance(value, bool)
                whole = number and (isinstance(value, numbers.Integral) or _float(value).is_integer())
                require(whole, f"{name} must be a whole number (got {value!r})")
                taken = int(value)
            elif kind == "float":
                real = isinstance(value, numbers.Real) and not isinstance(value, bool)
                require(real, f"{name} must be a number (got {value!r})")
                taken = _float(value)
            elif kind == "str":
                require(isinstance(value, str), f"{name} must be text (got {value!r})")
                continue
            else:  # stop: text strings, kept as a tuple (one string is one stop string)
                value = (value,) if isinstance(value, str) else value
                texts = isinstance(value, (list, tuple)) and all(isinstance(stop, str) for stop in value)
                require(texts, f"{name} must hold text (got {value!r})")
                taken = tuple(value)
            object.__setattr__(self, name, taken)

    @property
    def is_greedy(self) -> bool:
        return self.greedy or self.temperature == 0

    def with_(self, **changes) -> SampleSettings:
        return replace(self, **changes)

    def recipe(self) -> dict:
        """The settings that differ from the defaults (plus model and seed), as JSON data."""
        defaults = SampleSettings()
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in ("model", "seed") or value != getattr(defaults, f.name):
                out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    def to_dict(self) -> dict:
        data = asdict(self)
        data["stop"] = list(self.stop)
        return data


# Each setting's type, read once from the annotations: (bool, int, float, str or the
# stop strings' tuple; whether None is allowed)
_FIELD_KINDS = {f.name: (f.type.replace(" | None", ""), f.type.endswith("| None")) for f in fields(SampleSettings)}

# How each setting is spelled on the command line, for recipes (`studio sample ...`).
CLI_FLAGS = {
    "model": "--model",
    "temperature": "--temp",
    "top_k": "--top-k",
    "top_p": "--top-p",
    "repetition_penalty": "--repetition-penalty",
    "no_repeat_ngram_size": "--no-repeat-ngram",
    "greedy": "--greedy",
    "num_beams": "--beam",
    "length_penalty": "--length-penalty",
    "stochastic_beams": "--sample",
    "branch_factor": "--branch-factor",
    "steps_per_iteration": "--steps-per-iteration",
    "length": "--length",
    "num": "--num",
    "best_of": "--best-of",
    "seed": "--seed",
    "prime": "--prime",
    "prime_file": "--prime-file",
    "stop": "--stop",
    "device": "--device",
    "precision": "--precision",
    "bars": "--bars",
    "tempo": "--tempo",
    "key": "--key",
    "metre": "--metre",
    "pitch_temperature": "--pitch-temp",
    "lockstep": "--lockstep",
    "text": "--text",
    "bias": "--bias",
    "style": "--style",
    "style_file": "--style-file",
    "style_text": "--style-text",
    "page_width": "--page-width",
    "hand_per_line": "--hand-per-line",
    "stroke_width": "--stroke-width",
    "color": "--color",
}


MUSIC_OPTIONS = (("pitch_temperature", 1.0), ("lockstep", False))  # (setting, its value when off)


def require_pitched(settings: SampleSettings, domain) -> None:
    """A one-line error when ``settings`` shape notes (``--pitch-temp``, ``--lockstep``)
    and ``domain`` (a :class:`~studio.domains.Domain`) has none to shape."""
    if domain.pitched:
        return
    for option, off in MUSIC_OPTIONS:
        require(
            getattr(settings, option) == off,
            f"{CLI_FLAGS[option]} shapes the notes of music models; leave it out for this {domain.name} model",
        )


_ESCAPES = {"n": "\n", "t": "\t", "\\": "\\"}
_ESCAPED = re.compile(r"\\([nt\\])")


def unescape_stop(text: str) -> str:
    """A stop string as typed on a command line or in the web's box: ``\\n`` is a
    newline, ``\\t`` a tab and ``\\\\`` one backslash (a shell passes them as
    typed); any other backslash stays as it is."""
    return _ESCAPED.sub(lambda match: _ESCAPES[match.group(1)], text)


def escape_stop(text: str) -> str:
    """The inverse of :func:`unescape_stop`: what to type for ``text``, on one line."""
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t")


def command_line(settings: SampleSettings, out: str | None = None) -> str:
    """The `studio sample ...` command that reproduces ``settings`` byte for byte."""
    import shlex

    parts = ["studio", "sample"]
    for name, value in settings.recipe().items():
        flag = CLI_FLAGS[name]
        if isinstance(value, bool):
            if value:
                parts.append(flag)
        elif isinstance(value, list):
            for item in value:
                parts += [flag, shlex.quote(escape_stop(str(item)) if name == "stop" else str(item))]
        elif value is not None:
            parts += [flag, shlex.quote(str(value))]
    if out:
        parts += ["--out", shlex.quote(out)]
    return " ".join(parts)
