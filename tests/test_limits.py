"""A shell's limits refuse, never clamp: one sentence naming the setting, the value and
the range, for every medium's settings and for training options."""

from __future__ import annotations

import re
from types import SimpleNamespace

import pytest

from studio.domains import Medium
from studio.errors import StudioError
from studio.limits import Bounds, SampleLimits, TrainLimits
from studio.sampling.settings import SampleSettings

LIMITS = SampleLimits(max_length=2000, max_beams=8, max_bars=64, max_text=200)
TEXT = SimpleNamespace(medium=Medium.TEXT)
MUSIC = SimpleNamespace(medium=Medium.MUSIC)
HANDWRITING = SimpleNamespace(medium=Medium.INK, conditional=True)
DOODLE = SimpleNamespace(medium=Medium.INK, conditional=False)


@pytest.mark.parametrize(
    "settings, domain, message",
    [
        (SampleSettings(length=99_999_999), TEXT, "length is at most 2,000 tokens here (got 99,999,999)"),
        (SampleSettings(num_beams=9), TEXT, "beams must be 1 to 8 here (got 9)"),
        (SampleSettings(num_beams=9, bars=8), MUSIC, "beams must be 1 to 8 here (got 9)"),
        (SampleSettings(bars=65), MUSIC, "bars must be 1 to 64 here (got 65)"),
        (SampleSettings(text=None), HANDWRITING, "type the text to write"),
        (SampleSettings(text="   "), HANDWRITING, "type the text to write"),
        (SampleSettings(text="x" * 201), HANDWRITING, "at most 200 characters here (got 201)"),
    ],
)
def test_sample_limits_refuse_with_the_value_and_the_range(settings, domain, message):
    with pytest.raises(StudioError, match=message.replace("(", r"\(").replace(")", r"\)")):
        LIMITS.check(settings, domain)


def test_sample_limits_pass_what_a_medium_does_not_use():
    LIMITS.check(SampleSettings(length=2000, num_beams=8), TEXT)
    LIMITS.check(SampleSettings(length=20_000, bars=64), MUSIC)  # the bar count ends a piece
    LIMITS.check(SampleSettings(length=20_000, text=None), DOODLE)  # a doodle takes no text
    LIMITS.check(SampleSettings(text="Dear Ada"), HANDWRITING)


def test_settings_refuse_what_makes_no_sense_anywhere():
    """What the web used to clamp silently is refused by the settings themselves."""
    for changes, message in [
        ({"temperature": -3}, "temperature must be 0"),
        ({"top_p": 0}, "top-p must be in"),
        ({"num_beams": 0}, "beams must be at least 1"),
        ({"bias": -3}, "bias must be 0"),
    ]:
        with pytest.raises(StudioError, match=message):
            SampleSettings(**changes)


@pytest.mark.parametrize(
    "changes, message",
    [
        # past where the numbers overflow: inf Gumbels (temperature), tracebacks (bias,
        # length penalty), an SVG of nan size (stroke width)
        ({"temperature": 1e308}, "temperature must be 0 (greedy) to 100 (got 1e+308)"),
        ({"repetition_penalty": 1e308}, "repetition penalty must be above 0 and at most 100; 1.0 is off"),
        ({"length_penalty": 1e308}, "length penalty must be 0 (off) to 10"),
        ({"bias": 1e308}, "bias must be 0 to 100 (got 1e+308)"),
        ({"stroke_width": 1e308}, "stroke width must be above 0 and at most 100 pixels (got 1e+308)"),
        ({"temperature": 10**400}, "--temp must be a finite number (got inf)"),
        # of the wrong type: from the Python API a TypeError inside sampling (top_k 2.5:
        # "slice indices must be integers"), or taken as they were (length 10.5)
        ({"temperature": "hot"}, "temperature must be a number (got 'hot')"),
        ({"length": "10"}, "length must be a whole number (got '10')"),
        ({"length": 10.5}, "length must be a whole number (got 10.5)"),
        ({"num": True}, "num must be a whole number (got True)"),
        ({"top_k": 2.5}, "top_k must be a whole number (got 2.5)"),
        ({"greedy": "yes"}, "greedy must be True or False (got 'yes')"),
        ({"prime": 5}, "prime must be text (got 5)"),
        ({"stop": ("a", 3)}, "stop must hold text"),
    ],
)
def test_settings_refuse_out_of_range_or_mistyped_values_in_one_sentence(changes, message):
    with pytest.raises(StudioError, match=re.escape(message)):
        SampleSettings(**changes)


def test_settings_take_whole_floats_as_ints_and_ints_as_floats():
    settings = SampleSettings(length=300.0, num=2.0, temperature=1, bars=8.0)  # a form's numbers
    assert (settings.length, settings.num, settings.bars) == (300, 2, 8)
    assert all(type(value) is int for value in (settings.length, settings.num, settings.bars))
    assert type(settings.temperature) is float and settings.temperature == 1.0
    assert SampleSettings(**settings.to_dict()) == settings  # stop comes back as a list: taken as a tuple
    assert SampleSettings(stop="\n\n").stop == ("\n\n",) and SampleSettings(stop=["a", "b"]).stop == ("a", "b")


def test_settings_take_the_largest_values_they_allow():
    SampleSettings(temperature=100, repetition_penalty=100, length_penalty=10, bias=100, stroke_width=100)


TRAIN = TrainLimits(
    hidden_size=Bounds("hidden size", 16, 1024),
    layers=Bounds("layers", 1, 3),
    seq_len=Bounds("sequence length", 16, 256),
    batch_size=Bounds("batch size", 1, 128),
    max_steps=Bounds("max steps", 0),
    max_minutes=Bounds("max minutes", 0),
    eval_every=Bounds("validate every", 1),
)
GOOD = dict(hidden_size=128, layers=2, seq_len=64, batch_size=32, max_steps=None, max_minutes=None, eval_every=50)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"hidden_size": 0}, "hidden size must be 16 to 1024 here (got 0)"),
        ({"hidden_size": 5000}, "hidden size must be 16 to 1024 here (got 5000)"),
        ({"layers": 9}, "layers must be 1 to 3 here (got 9)"),
        ({"batch_size": 0}, "batch size must be 1 to 128 here (got 0)"),
        ({"max_steps": -5}, "max steps must be 0 or more (got -5)"),
        ({"eval_every": 0}, "validate every must be 1 or more (got 0)"),
    ],
)
def test_train_limits_refuse_with_the_value_and_the_range(changes, message):
    TRAIN.check(GOOD)
    with pytest.raises(StudioError) as caught:
        TRAIN.check({**GOOD, **changes})
    assert str(caught.value) == message
