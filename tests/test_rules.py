"""Sampling rules: properties (hypothesis), rule order, validation, bad settings via the CLI."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from typer.testing import CliRunner

from studio.cli import app
from studio.errors import StudioError
from studio.numeric import log_softmax
from studio.sampling.rules import (
    AllowedTokens,
    NoRepeatNGram,
    RepetitionPenalty,
    Temperature,
    TopK,
    TopP,
    apply_rules,
    build_rules,
    draw,
)
from studio.sampling.settings import SampleSettings

FAST = hypothesis_settings(max_examples=60, deadline=None)
# no subnormals: dividing one by a temperature can round it to zero (order lost in float32)
finite = st.floats(-30, 30, allow_nan=False, allow_infinity=False, width=32, allow_subnormal=False)


@st.composite
def logits_batches(draw_, max_vocab: int = 40):
    """(history (batch, t) int64, logits (batch, vocab) float32), ties likely."""
    batch = draw_(st.integers(1, 3))
    vocab = draw_(st.integers(2, max_vocab))
    # few distinct values make ties common
    values = draw_(st.one_of(st.just(None), st.lists(finite, min_size=1, max_size=4)))
    if values is None:
        logits = draw_(arrays(np.float32, (batch, vocab), elements=finite))
    else:
        logits = np.asarray(
            draw_(st.lists(st.sampled_from(values), min_size=batch * vocab, max_size=batch * vocab)), np.float32
        ).reshape(batch, vocab)
    length = draw_(st.integers(0, 12))
    history = draw_(arrays(np.int64, (batch, length), elements=st.integers(0, vocab - 1)))
    return history, logits


def probabilities(logits: np.ndarray) -> np.ndarray:
    return np.exp(log_softmax(logits))


@FAST
@given(st.integers(1, 3), st.integers(1, 50), finite, st.floats(0.01, 100))
def test_uniform_stays_uniform_under_temperature(batch, vocab, value, temperature):
    logits = np.full((batch, vocab), value, np.float32)
    probs = probabilities(Temperature(temperature)(np.zeros((batch, 0), np.int64), logits))
    np.testing.assert_allclose(probs, 1.0 / vocab, rtol=1e-9)


@FAST
@given(logits_batches(), st.floats(0.05, 20))
def test_temperature_keeps_the_order(case, temperature):
    history, logits = case
    out = Temperature(temperature)(history, logits)
    assert np.array_equal(np.argsort(-out, kind="stable"), np.argsort(-logits, kind="stable"))


@FAST
@given(logits_batches(), st.integers(1, 50))
def test_top_k_keeps_exactly_k_highest_ties_to_lower_ids(case, k):
    history, logits = case
    out = TopK(k)(history, logits)
    vocab = logits.shape[1]
    kept = np.isfinite(out)
    assert (kept.sum(-1) == min(k, vocab)).all()
    for row in range(len(logits)):
        # ties are broken by id: a stable sort on descending logit, lower id first
        expected = np.sort(np.argsort(-logits[row], kind="stable")[:k])
        assert np.array_equal(np.flatnonzero(kept[row]), expected)
        assert np.array_equal(out[row, kept[row]], logits[row, kept[row]])


@FAST
@given(logits_batches(), st.floats(0.01, 1.0))
def test_top_p_keeps_the_smallest_set_with_mass_at_least_p(case, p):
    history, logits = case
    out = TopP(p)(history, logits)
    probs = probabilities(logits)
    for row in range(len(logits)):
        kept = np.isfinite(out[row])
        order = np.argsort(-logits[row], kind="stable")
        size = int(kept.sum())
        # the kept set is the top `size` tokens (ties: lower id first) ...
        assert set(np.flatnonzero(kept)) == set(order[:size].tolist())
        mass = probs[row, kept].sum()
        # ... its mass reaches p, and without its least likely token it would not
        assert mass >= p - 1e-9
        if size > 1:
            assert mass - probs[row, order[size - 1]] < p + 1e-9
        assert np.array_equal(out[row, kept], logits[row, kept])


def test_top_p_boundary_cases():
    logits = np.log(np.array([[0.5, 0.3, 0.2]]))
    assert np.isfinite(TopP(0.5)(None, logits)).sum() == 1  # 0.5 already reaches 0.5
    assert np.isfinite(TopP(0.51)(None, logits)).sum() == 2
    assert np.isfinite(TopP(1.0)(None, logits)).sum() == 3
    assert np.isfinite(TopP(1e-6)(None, logits)).sum() == 1  # the top token always stays


@FAST
@given(logits_batches(), st.integers(0, 2**32 - 1))
def test_top_k_one_equals_greedy(case, seed):
    history, logits = case
    out = TopK(1)(history, logits)
    greedy = np.argmax(logits, -1)  # numpy's argmax also takes the lowest id among ties
    assert np.array_equal(np.argmax(out, -1), greedy)
    generators = [np.random.default_rng([seed, row]) for row in range(len(logits))]
    assert np.array_equal(draw(out, generators), greedy)


RULES = [
    Temperature(0.7),
    TopK(3),
    TopP(0.8),
    RepetitionPenalty(1.3),
    RepetitionPenalty(0.8),
    NoRepeatNGram(1),
    NoRepeatNGram(2),
    NoRepeatNGram(3),
]


@FAST
@given(logits_batches(), st.sampled_from(RULES))
def test_no_rule_edits_its_input(case, rule):
    history, logits = case
    before_logits, before_history = logits.copy(), history.copy()
    logits.flags.writeable = False  # an in-place write would raise
    history.flags.writeable = False
    out = rule(history, logits)
    assert out is not logits
    assert np.array_equal(logits, before_logits) and np.array_equal(history, before_history)


def test_allowed_tokens_masks_and_does_not_edit():
    logits = np.zeros((2, 4), np.float32)
    logits.flags.writeable = False
    out = AllowedTokens(np.array([True, False, True, False]))(None, logits)
    assert np.isfinite(out).tolist() == [[True, False, True, False]] * 2
    with pytest.raises(StudioError):
        AllowedTokens(np.zeros(4, bool))


def test_repetition_penalty_follows_ctrl():
    logits = np.array([[2.0, -2.0, 2.0, -2.0]])
    history = np.array([[0, 1, 1]])
    out = RepetitionPenalty(2.0)(history, logits)
    assert out.tolist() == [[1.0, -4.0, 2.0, -2.0]]  # seen: positive / 2, negative * 2


def test_no_repeat_ngram_bans_only_completions_of_seen_ngrams():
    history = np.array([[1, 2, 3, 1, 2]])
    logits = np.zeros((1, 5))
    out = NoRepeatNGram(3)(history, logits)  # "1 2" was followed by 3 before
    assert np.flatnonzero(~np.isfinite(out[0])).tolist() == [3]
    assert np.isfinite(NoRepeatNGram(3)(history[:, :1], logits)).all()  # too short to repeat


def test_build_rules_order_and_greedy():
    settings = SampleSettings(temperature=0.8, top_k=5, top_p=0.9, repetition_penalty=1.2, no_repeat_ngram_size=3)
    mask = np.ones(10, bool)
    names = [type(rule).__name__ for rule in build_rules(settings, mask)]
    assert names == ["AllowedTokens", "RepetitionPenalty", "NoRepeatNGram", "Temperature", "TopK", "TopP"]
    greedy = [type(rule).__name__ for rule in build_rules(settings.with_(greedy=True))]
    assert greedy == ["RepetitionPenalty", "NoRepeatNGram"]  # penalties still shape greedy picks
    assert build_rules(SampleSettings()) == []


def test_draw_depends_only_on_the_seed_and_raises_when_everything_is_banned():
    logits = np.log(np.array([[0.1, 0.2, 0.3, 0.4]] * 3))
    first = draw(logits, [np.random.default_rng([5, row]) for row in range(3)])
    alone = draw(logits[:1], [np.random.default_rng([5, 0])])
    assert first[0] == alone[0]
    banned = apply_rules([NoRepeatNGram(1)], np.array([[0, 1, 2, 3]]), logits[:1])
    with pytest.raises(StudioError, match="ban every token"):
        draw(banned, [np.random.default_rng(0)])


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: Temperature(0), "temperature"),
        (lambda: Temperature(-1), "temperature"),
        (lambda: TopK(0), "top-k"),
        (lambda: TopP(0), "top-p"),
        (lambda: TopP(1.5), "top-p"),
        (lambda: RepetitionPenalty(-1.0), "penalty"),
        (lambda: RepetitionPenalty(0), "penalty"),
        (lambda: NoRepeatNGram(0), "n-gram"),
        (lambda: SampleSettings(top_p=0), "top-p"),
        (lambda: SampleSettings(top_p=1.01), "top-p"),
        (lambda: SampleSettings(top_k=-1), "top-k"),
        (lambda: SampleSettings(num_beams=0), "beams"),
        (lambda: SampleSettings(num_beams=2, num=3), "--num"),
        (lambda: SampleSettings(repetition_penalty=-0.5), "penalty"),
        (lambda: SampleSettings(temperature=-0.1), "temperature"),
        (lambda: SampleSettings(no_repeat_ngram_size=-1), "no-repeat"),
        (lambda: SampleSettings(num_beams=2, length_penalty=-1), "length penalty"),
    ],
)
def test_bad_settings_raise_studio_error(make, message):
    with pytest.raises(StudioError, match=message):
        make()


runner = CliRunner()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--top-p", "0"], "top-p"),
        (["--top-p", "1.5"], "top-p"),
        (["--top-k", "-1"], "top-k"),
        (["--beam", "0"], "beams"),
        (["--beam", "2", "--num", "3"], "--num"),
        (["--repetition-penalty", "-1"], "penalty"),
        (["--temp", "-1"], "temperature"),
        (["--beam", "2", "--length-penalty", "-0.5"], "length penalty"),
    ],
)
def test_bad_settings_via_cli_are_one_line_errors(args, message):
    # settings are validated before any model is loaded, so no bundle is needed
    result = runner.invoke(app, ["sample", "--model", "no-such-model", *args])
    assert result.exit_code != 0
    stderr = result.stderr.strip().splitlines()
    assert len(stderr) == 1 and stderr[0].startswith("error: ") and message in stderr[0]
    assert "Traceback" not in result.output and isinstance(result.exception, SystemExit)
