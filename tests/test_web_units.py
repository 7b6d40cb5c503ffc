"""The web studio's own pieces, without a server: option parsing and error handling.
(What the tabs show is computed in the library: tests/test_inspection.py and
tests/test_text_view.py.)"""

from __future__ import annotations

import pytest

pytest.importorskip("gradio")

from studio.errors import StudioError
from web.common import as_int, user_errors
from web.handwrite import hex_colour, parse_style
from web.write import parse_stops


def test_option_parsing():
    assert parse_stops("\\n\\n\nEND\n") == ("\n\n", "END")
    assert parse_stops("") == ()
    assert hex_colour("rgba(26, 26, 46, 1)") == "#1a1a2e" and hex_colour("#102030") == "#102030"
    assert parse_style("none") is None and parse_style("3: a lazy dog (futural)") == 3
    assert as_int(40.0, "top-k") == 40
    with pytest.raises(StudioError, match="whole number"):
        as_int(2.5, "beams")


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
    for value, message in [
        (None, "give a number for temperature"),
        ("", "give a number for temperature"),
        (float("nan"), "finite"),
        ("warm", "must be a number"),
    ]:
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
