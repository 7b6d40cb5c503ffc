"""What a shell shows before it is asked anything: the quality figure in words, a short
sample with its recipe, and a text each shipped text model can read (Look inside)."""

from __future__ import annotations

import math

import pytest

import studio
from studio.api import load
from studio.bundle import Bundle
from studio.heads import HEADS
from studio.previews import READING_SAMPLES, preview, quality, readable, reading_sample


def test_categorical_scores_read_as_bits_and_equally_likely_choices():
    figure, gloss = HEADS["categorical"].explain(math.log(2) * 2.0, "character")
    assert figure == "2.00 bits per character"
    assert "a pick among 4.0 equally likely ones" in gloss and "lower is better" in gloss


def test_a_negative_stroke_score_is_explained_as_a_density():
    figure, gloss = HEADS["mixture"].explain(-1.3, "point")
    assert figure == "-1.30 nats per point"
    assert "below zero" in gloss and "density" in gloss


def test_quality_of_the_shipped_bundles_names_their_units():
    prose = quality(Bundle.load("prose"))
    assert prose.unit == "character" and prose.figure.endswith("bits per character")
    assert float(prose.figure.split()[0]) == pytest.approx(prose.nats / math.log(2), abs=0.006)
    assert quality(Bundle.load("songs")).figure.endswith("bits per event")
    hand = quality(Bundle.load("handwriting"))
    assert hand.nats < 0 and hand.figure.endswith("nats per point") and "below zero" in hand.gloss


@pytest.mark.parametrize("model, first_line", [("code", "def greet"), ("prose", "ROMEO:"), ("markdown", "# Streams")])
def test_each_text_model_gets_a_stock_text_it_reads_best(model, first_line):
    loaded = load(model)
    text = reading_sample(loaded)
    assert text.startswith(first_line) and readable(loaded, text)
    assert reading_sample(loaded, READING_SAMPLES[0] if model != "code" else READING_SAMPLES[1]) == text


def test_the_users_own_text_stays_when_the_model_reads_it():
    prose = load("prose")
    assert reading_sample(prose, "Good morrow, cousin.") == "Good morrow, cousin."
    assert not readable(prose, "print({'a': 1})")  # braces: not in Shakespeare's vocabulary
    assert reading_sample(prose, "print({'a': 1})").startswith("ROMEO:")


def test_previews_come_with_the_recipe_that_repeats_them(tmp_path):
    text = preview("prose", tmp_path)
    assert text.image is None and text.text and text.command.startswith("studio sample --model prose")
    [again] = studio.sample("prose", temperature=0.8, length=160, seed=1)
    assert again.text == text.text
    drawing = preview("handwriting", tmp_path)
    assert "--text 'Sequence Studio'" in drawing.command
    assert drawing.image.read_bytes()[:4] == b"\x89PNG"
