"""Looking inside a text model: cell activations, the features they are ranked
against, and the teacher-forced token scores behind the confidence colours."""

from __future__ import annotations

import re

import numpy as np
import pytest

from studio.bundle import Bundle
from studio.errors import StudioError
from studio.generate import nats_per_token
from studio.inspection import (
    MAX_TOKENS,
    Activations,
    confidence_view,
    correlations,
    look_inside,
    rank_cells,
    record_activations,
    text_features,
    token_log_probs,
)
from studio.numeric import log_softmax
from studio.runtime import Runtime
from studio.sampling.settings import SampleSettings

TEXT = "ROMEO:\nWhat say you, sir? I know not.\n\nJULIET:\nAy me!\n"


@pytest.fixture(scope="module")
def runtime(tiny_bundle) -> Runtime:
    return Runtime(Bundle.load(tiny_bundle), precision="fp32")


@pytest.fixture(scope="module")
def domain(runtime):
    from studio.api import bundle_domain

    return bundle_domain(runtime.bundle)


# --- token scores --------------------------------------------------------------------------


def test_token_log_probs_sum_to_the_teacher_forced_nats(runtime, domain):
    ids = domain.encode(TEXT * 4)
    log_probs = token_log_probs(runtime, ids)
    nats, count = nats_per_token(runtime, np.asarray(ids))
    assert log_probs.shape == (len(ids) - 1,) and count == len(ids) - 1
    assert -log_probs.sum() == pytest.approx(nats * count, rel=1e-6)
    assert (log_probs < 0).all()


def test_token_log_probs_windows_carry_the_state(runtime, domain):
    ids = domain.encode(TEXT)
    whole = token_log_probs(runtime, ids)
    np.testing.assert_allclose(token_log_probs(runtime, ids, window=7), whole, atol=1e-5)
    logits, _ = runtime.logits(np.asarray([ids[:1]]), runtime.init_state(1))
    assert whole[0] == pytest.approx(log_softmax(logits[0, 0])[ids[1]], abs=1e-9)
    assert token_log_probs(runtime, ids[:1]).shape == (0,)


def test_confidence_view_colours_each_generated_token_by_its_probability(runtime, domain):
    settings = SampleSettings(model=str(runtime.bundle.path), prime="ROMEO:")
    tokens = domain.encode("\nI know not.")
    html = confidence_view(runtime, domain, settings, tokens)
    expected = np.exp(token_log_probs(runtime, domain.prime_ids(settings) + tokens))[-len(tokens) :]
    shown = [float(p) for p in re.findall(r'title="p = ([0-9.]+)"', html)]
    assert shown == pytest.approx(expected.tolist(), abs=5e-4)
    assert html.startswith('<pre class="studio-confidence" style="')
    assert '<span style="color:#777">ROMEO:</span><span style="background:hsl(' in html
    assert re.findall(r'title="p = [0-9.]+">([^<]*)</span>', html) == list("\nI know not.")
    assert confidence_view(runtime, domain, settings, []).count("title=") == 0


# --- cells ----------------------------------------------------------------------------------


def test_record_activations_keeps_every_state_unit_after_each_token(runtime, domain):
    activations = record_activations(runtime, domain, TEXT)
    ids = domain.encode(TEXT)
    config = runtime.bundle.card["model"]
    cells = 2 * config["layers"] * config["hidden_size"]  # c and h of an LSTM
    assert activations.values.shape == (len(ids), cells) and len(activations.labels) == cells
    assert activations.labels[0] == "c layer 1 unit 0" and activations.labels[-1].startswith("h layer")
    assert "".join(activations.pieces) == TEXT
    # stepping token by token ends where one full-sequence call from the separator ends
    _, state = runtime.logits(np.asarray([[domain.separator_id, *ids]]), runtime.init_state(1))
    final = np.concatenate([state[name][:, 0, :].ravel() for name in sorted(state)])
    np.testing.assert_allclose(activations.values[-1], final, atol=1e-5)


def test_look_inside_colours_the_chosen_cell_and_checks_it(runtime, domain):
    html, rows, count = look_inside(runtime, domain, TEXT, 5)
    activations = record_activations(runtime, domain, TEXT)
    assert count == activations.values.shape[1] and rows == rank_cells(activations)
    assert "c layer 1 unit 5" in html and html.count("<span") == len(TEXT)
    values = activations.values[:, 5]
    assert f"(range {values.min():+.3f} to {values.max():+.3f})" in html
    with pytest.raises(StudioError, match=f"cell must be 0 to {count - 1}"):
        look_inside(runtime, domain, TEXT, count)
    with pytest.raises(StudioError, match="give some text"):
        look_inside(runtime, domain, "", 0)
    with pytest.raises(StudioError, match=f"at most {MAX_TOKENS} tokens"):
        look_inside(runtime, domain, "a" * (MAX_TOKENS + 1), 0)


def test_text_features_by_hand():
    pieces = list('a "b"\n  c(d)')
    features = text_features(pieces)
    assert features["inside quotes"].tolist() == [0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0]
    assert features["line length so far"].tolist() == [1, 2, 3, 4, 5, 0, 1, 2, 3, 4, 5, 6]
    assert features["indentation"].tolist() == [0, 0, 0, 0, 0, 0, 1, 2, 2, 2, 2, 2]
    assert features["bracket depth"].tolist() == [0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0]


def test_correlations_match_numpy_corrcoef():
    rng = np.random.default_rng(0)
    values = rng.normal(size=(200, 7))
    feature = rng.normal(size=200)
    values[:, 3] = 2 * feature + 0.1 * rng.normal(size=200)
    values[:, 5] = 1.0  # a constant cell has no correlation, not NaN
    got = correlations(values, feature)
    for i in (0, 1, 2, 3, 4, 6):
        assert got[i] == pytest.approx(np.corrcoef(values[:, i], feature)[0, 1], abs=1e-12)
    assert got[5] == 0.0


def test_rank_cells_finds_the_quote_cell_and_skips_constant_features():
    pieces = list('x = "abc" + "de"\ny = "f"\n')
    quotes = text_features(pieces)["inside quotes"]
    rng = np.random.default_rng(1)
    values = rng.normal(scale=0.1, size=(len(pieces), 6))
    values[:, 4] = np.tanh(quotes * 2 - 1)
    activations = Activations(pieces, values, [f"c layer 1 unit {i}" for i in range(6)])
    rows = rank_cells(activations, top=3)
    first_quote_row = next(row for row in rows if row[0] == "inside quotes")
    assert first_quote_row[1] == 4 and first_quote_row[3] == pytest.approx(1.0)
    assert not any(row[0] == "indentation" for row in rows)  # no line is indented
