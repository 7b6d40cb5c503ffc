"""HTML views of text: escaping everywhere, and which view a bundle's corpus asks for."""

from __future__ import annotations

import numpy as np

from studio.text_view import (
    activation_html,
    code_html,
    confidence_colour,
    confidence_html,
    corpus_view,
    markdown_html,
    plain_html,
    view_html,
)

NASTY = '<img src=x onerror="alert(1)"><script>alert(2)</script>'


def test_model_text_is_escaped_everywhere():
    for html in (
        plain_html(NASTY),
        markdown_html(NASTY),
        code_html(NASTY, "python"),
        confidence_html("<b>", [NASTY], np.array([0.5])),
        activation_html([NASTY], np.array([0.3]), "h layer 1 unit 0"),
    ):
        assert "<script>" not in html and "<img" not in html
    assert "<h1>Title</h1>" in markdown_html("# Title")


def test_view_html_picks_the_renderer():
    assert view_html("# T", "markdown").startswith('<div class="studio-markdown"><h1>T</h1>')
    assert view_html("x = 1", "code", "python").startswith('<pre class="studio-code"')
    assert view_html("# T", "plain") == plain_html("# T") and "# T</pre>" in plain_html("# T")


def test_confidence_and_activation_colours():
    assert confidence_colour(0.0) == "hsl(0,85%,80%)" and confidence_colour(1.0) == "hsl(120,85%,80%)"
    assert confidence_colour(7.0) == confidence_colour(1.0)
    html = confidence_html("A", ["b", "c"], np.array([0.25, 1.0]))
    assert 'title="p = 0.250">b</span>' in html and "hsl(30,85%,80%)" in html
    html = activation_html(["x", "\n", "y"], np.array([-2.0, 0.0, 1.0]), "c layer 1 unit 3")
    assert "c layer 1 unit 3 (range -2.000 to +1.000)" in html
    assert 'rgba(40,90,220,1.00)" title="-2.000">x<' in html and 'rgba(220,40,40,0.50)" title="+1.000">y<' in html
    assert "↵\n" in html  # newlines stay visible


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
