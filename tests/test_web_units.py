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


# --- actions whose errors stay on the page -------------------------------------------------

def test_number_boxes_are_refused_not_rounded_or_defaulted():
    from web.common import as_float

    assert as_float("0.8", "temperature") == 0.8 and as_int(300.0, "length") == 300
    for value, message in [(None, "give a number for temperature"), ("", "give a number for temperature"),
                           (float("nan"), "finite"), ("warm", "must be a number")]:
        with pytest.raises(StudioError, match=message):
            as_float(value, "temperature")


def test_a_user_error_is_one_log_line_and_a_bug_keeps_its_trace(caplog):
    from web.common import describe

    with caplog.at_level("INFO", logger="studio.web"):
        assert describe(StudioError("give a prime"), "/write") == "give a prime"
        assert describe(KeyError("x"), "/write").startswith("internal error (KeyError)")
    refused, fault = caplog.records
    assert refused.getMessage() == "/write refused: give a prime" and refused.exc_info is None
    assert fault.exc_info is not None  # a real fault keeps its traceback


def test_api_errors_print_no_trace():
    import gradio as gr

    @user_errors
    def fails():
        raise StudioError("bars must be 1 to 64 here (got 99)")

    with pytest.raises(gr.Error) as caught:
        fails()
    assert caught.value.print_exception is False and "bars must be" in caught.value.message


def test_on_the_page_a_failure_clears_the_outputs_and_stays_in_the_box():
    from web.common import _shown_on_page

    def compose(bars):
        if bars > 64:
            raise StudioError(f"bars must be 1 to 64 here (got {bars})")
        return "8 bars", "studio sample ..."

    def stream(count):
        yield ("partial",)
        raise StudioError("stopped by a test")

    page = _shown_on_page(compose, 2, lambda values: values, "/compose")
    *results, box = page(8)
    assert results == ["8 bars", "studio sample ..."] and box["visible"] is False
    *results, box = page(99)
    assert results == [None, None]  # nothing stale stays on screen
    assert box["visible"] is True and "bars must be 1 to 64 here (got 99)" in box["value"]
    updates = list(_shown_on_page(stream, 1, lambda values: values, "/write")(1))
    assert updates[0][0] == "partial" and updates[-1][0] is None and "stopped by a test" in updates[-1][1]["value"]


def test_uploads_are_named_as_the_user_named_them():
    from web.common import named_as_uploaded

    with pytest.raises(StudioError) as caught, named_as_uploaded({"/tmp/studio-web/primers/8706.mid": "my song.mid"}):
        raise StudioError("cannot read /tmp/studio-web/primers/8706.mid as music")
    assert str(caught.value) == "cannot read my song.mid as music"


def test_stop_counts_only_while_a_write_runs():
    from web.write import StopRequests

    stops = StopRequests()
    stops.press("tab-1")  # nothing running: a stale Stop must not cut the next write short
    stops.start("tab-1")
    assert not stops.pressed("tab-1")
    stops.press("tab-1")
    assert stops.pressed("tab-1") and not stops.pressed("tab-2")
    stops.finish("tab-1")
    assert not stops.pressed("tab-1")


def test_the_loss_plot_always_knows_both_series():
    from web.training import SERIES_COLOURS, every_series, plot_value

    table = every_series(plot_value([[1.0, 3.2, "train"]]))
    assert list(table["series"][:2]) == list(SERIES_COLOURS)  # first: the colour scale's domain
    assert table["loss"][:2].isna().all() and list(table["loss"][2:]) == [3.2]
    assert every_series(None) is None
