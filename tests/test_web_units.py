"""The web studio's pure pieces, without a server: cell statistics against naive
versions, text features, HTML escaping, option parsing."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("gradio")

from studio.errors import StudioError  # noqa: E402
from web.cells import Activations, activation_html, correlations, rank_cells, text_features  # noqa: E402
from web.common import as_int, user_errors  # noqa: E402
from web.handwrite import hex_colour, parse_style  # noqa: E402
from web.text_view import confidence_html, corpus_view, markdown_html, plain_html  # noqa: E402
from web.write import parse_stops  # noqa: E402


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
    expected = [np.corrcoef(values[:, i], feature)[0, 1] for i in range(7)]
    got = correlations(values, feature)
    for i in (0, 1, 2, 3, 4, 6):
        assert got[i] == pytest.approx(expected[i], abs=1e-12)
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


def test_model_text_is_escaped_everywhere():
    nasty = '<img src=x onerror="alert(1)"><script>alert(2)</script>'
    for html in (plain_html(nasty), markdown_html(nasty),
                 confidence_html("<b>", [nasty], np.array([0.5]))):
        assert "<script>" not in html and "<img" not in html
    activations = Activations([nasty], np.array([[0.3]]), ["h layer 1 unit 0"])
    assert "<script>" not in activation_html(activations, 0)
    assert "<h1>Title</h1>" in markdown_html("# Title")


def test_option_parsing():
    assert parse_stops("\\n\\n\nEND\n") == ("\n\n", "END")
    assert parse_stops("") == ()
    assert hex_colour("rgba(26, 26, 46, 1)") == "#1a1a2e" and hex_colour("#102030") == "#102030"
    assert parse_style("none") is None and parse_style("3: a lazy dog (futural)") == 3
    assert as_int(40.0, "top-k") == 40
    with pytest.raises(StudioError, match="whole number"):
        as_int(2.5, "beams")


def test_corpus_view_reads_the_corpus_then_the_name(tmp_path, monkeypatch):
    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "a.md").write_text("# x")
    monkeypatch.chdir(tmp_path)
    assert corpus_view({"corpus": {"path": "corpus"}}) == ("markdown", None)
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")  # a corpus outside the server's folders is not looked at
    assert corpus_view({"corpus": {"path": str(tmp_path / "corpus")}, "name": "prose"}) == ("plain", None)
    assert corpus_view({"corpus": {"path": "/nowhere"}, "name": "code"}) == ("code", "python")
    assert corpus_view({"name": "prose"}) == ("plain", None)
    assert corpus_view({"render": {"view": "code", "language": "rust"}}) == ("code", "rust")


def test_user_errors_turn_everything_into_one_line():
    import gradio as gr

    @user_errors
    def fails():
        raise StudioError("give a prime")

    @user_errors
    def streams():
        yield 1
        raise ZeroDivisionError

    with pytest.raises(gr.Error, match="give a prime"):
        fails()
    stream = streams()
    assert next(stream) == 1
    with pytest.raises(gr.Error, match="internal error"):
        next(stream)
