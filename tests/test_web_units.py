"""The web studio's own pieces, without a server: option parsing and error handling.
(What the tabs show is computed in the library: tests/test_inspection.py and
tests/test_text_view.py.)"""

from __future__ import annotations

import pytest

pytest.importorskip("gradio")

from studio.errors import StudioError  # noqa: E402
from web.common import as_int, user_errors  # noqa: E402
from web.handwrite import hex_colour, parse_style  # noqa: E402
from web.write import parse_stops  # noqa: E402


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
