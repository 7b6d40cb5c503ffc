"""How text is shown as HTML: rendered Markdown, highlighted code, each token coloured
by the model's confidence in it, or by one hidden cell's activation.  Pure functions from
text (and numbers) to HTML, used by the web app; model text is always escaped, so
nothing it writes can run in the page.  (The numbers come from :mod:`studio.inspection`.)
"""

from __future__ import annotations

import html
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from studio.bundle import PACKAGE_ROOT
from studio.confine import contain
from studio.errors import StudioError

VIEWS = ("auto", "plain", "markdown", "code")
CODE_LANGUAGES = {
    ".py": "python",
    ".js": "javascript",
    ".ts": "typescript",
    ".c": "c",
    ".h": "c",
    ".cpp": "cpp",
    ".rs": "rust",
    ".go": "go",
    ".java": "java",
    ".sh": "bash",
    ".lua": "lua",
    ".rb": "ruby",
    ".css": "css",
    ".html": "html",
    ".toml": "toml",
    ".json": "json",
    ".yaml": "yaml",
    ".yml": "yaml",
    ".tex": "latex",
}
MARKDOWN_SUFFIXES = (".md", ".markdown")
CORPUS_SCAN_LIMIT = 2000  # files looked at to tell what a corpus holds
TEXT_STYLE = "white-space:pre-wrap;font-family:var(--font-mono,monospace);font-size:0.9em;line-height:1.5;margin:0"


def corpus_view(card: dict) -> tuple[str, str | None]:
    """("markdown" | "code" | "plain", language) for a text bundle: the card's own
    ``render`` hint if it has one, else what most files of its training corpus are (a
    corpus under the working folder or the package only), else what its name says."""
    hint = card.get("render")
    if isinstance(hint, dict):
        return hint.get("view", "plain"), hint.get("language")
    corpus = Path(str((card.get("corpus") or {}).get("path", "")))
    suffixes: Counter[str] = Counter()
    if str(corpus) not in ("", ".") and corpus.exists() and _studio_path(corpus):
        files = [corpus] if corpus.is_file() else corpus.rglob("*")
        for count, file in enumerate(files):
            if count >= CORPUS_SCAN_LIMIT:
                break
            suffixes[file.suffix.lower()] += 1
    for suffix, _ in suffixes.most_common():
        if suffix in MARKDOWN_SUFFIXES:
            return "markdown", None
        if suffix in CODE_LANGUAGES:
            return "code", CODE_LANGUAGES[suffix]
        if suffix == ".txt":
            return "plain", None
    name = str(card.get("name", "")).lower()
    if "markdown" in name:
        return "markdown", None
    if "code" in name:
        return "code", "python"
    return "plain", None


def _studio_path(path: Path) -> bool:
    """Whether ``path`` lies in the working folder or the package: a card may name any
    folder, and the server lists only its own."""
    try:
        contain(path, [Path.cwd(), PACKAGE_ROOT], what="corpus")
    except StudioError:
        return False
    return True


def plain_html(text: str) -> str:
    return f'<pre class="studio-text" style="{TEXT_STYLE}">{html.escape(text)}</pre>'


def markdown_html(text: str) -> str:
    """CommonMark (+ tables) with raw HTML switched off: tags the model writes are shown
    as text, never inserted."""
    from markdown_it import MarkdownIt

    renderer = MarkdownIt("commonmark", {"html": False, "linkify": False}).enable("table")
    return f'<div class="studio-markdown">{renderer.render(text)}</div>'


def code_html(text: str, language: str | None) -> str:
    """Pygments highlighting with inline styles (no stylesheet to fetch)."""
    from pygments import highlight
    from pygments.formatters import HtmlFormatter
    from pygments.lexers import get_lexer_by_name
    from pygments.util import ClassNotFound

    try:
        lexer = get_lexer_by_name(language or "python")
    except ClassNotFound:
        lexer = get_lexer_by_name("text")
    formatter = HtmlFormatter(noclasses=True, style="friendly", nowrap=True)
    return f'<pre class="studio-code" style="{TEXT_STYLE}">{highlight(text, lexer, formatter)}</pre>'


def view_html(text: str, view: str, language: str | None = None) -> str:
    if view == "markdown":
        return markdown_html(text)
    if view == "code":
        return code_html(text, language)
    return plain_html(text)


def confidence_colour(probability: float) -> str:
    """Red (unsure) through yellow to green (sure), light enough to read text on."""
    hue = int(round(120 * min(1.0, max(0.0, probability))))
    return f"hsl({hue},85%,80%)"


def confidence_html(prime: str, pieces: list[str], probabilities: np.ndarray) -> str:
    """The prime in grey, then each generated token on a background coloured by the
    model's probability of it (hover for the number)."""
    titles = [f"p = {float(p):.3f}" for p in probabilities]
    colours = [confidence_colour(float(p)) for p in probabilities]
    stops = [(confidence_colour(p), f"{p:.1f}") for p in (0.0, 0.25, 0.5, 0.75, 1.0)]
    return _coloured_tokens(prime, pieces, colours, titles, "confidence", stops)


UNCERTAINTY_SCALE = 0.25  # a probability spread (sd over passes) drawn at full strength


def uncertainty_colour(spread: float) -> str:
    """White (the passes agree) to purple (they disagree), by the spread of a token's
    probability over MC-dropout passes."""
    strength = min(1.0, max(0.0, spread / UNCERTAINTY_SCALE))
    return f"hsl(280,70%,{int(round(97 - 22 * strength))}%)"


def uncertainty_html(prime: str, pieces: list[str], means: np.ndarray, spreads: np.ndarray, passes: int) -> str:
    """The prime in grey, then each generated token coloured by how much its probability
    varies over ``passes`` MC-dropout passes (hover for the mean and the spread)."""
    titles = [f"p = {float(m):.3f} ± {float(s):.3f} over {passes} passes" for m, s in zip(means, spreads)]
    colours = [uncertainty_colour(float(s)) for s in spreads]
    stops = [(uncertainty_colour(s), f"±{s:.2f}") for s in (0.0, 0.06, 0.12, 0.19, 0.25)]
    return _coloured_tokens(prime, pieces, colours, titles, f"uncertainty (MC dropout, {passes} passes)", stops)


def _coloured_tokens(
    prime: str, pieces: list[str], colours: list[str], titles: list[str], legend: str, stops: list[tuple[str, str]]
) -> str:
    spans = [f'<span style="color:#777">{html.escape(prime)}</span>'] if prime else []
    for piece, colour, title in zip(pieces, colours, titles):
        spans.append(f'<span style="background:{colour}" title="{html.escape(title)}">{html.escape(piece)}</span>')
    key = "".join(f'<span style="background:{colour};padding:0 0.4em">{label}</span>' for colour, label in stops)
    return (
        f'<pre class="studio-confidence" style="{TEXT_STYLE}">{"".join(spans)}</pre>'
        f'<div style="font-size:0.8em;margin-top:0.5em">{html.escape(legend)}: {key}</div>'
    )


def activation_html(pieces: Sequence[str], values: np.ndarray, label: str) -> str:
    """Each token of ``pieces`` on a background for one cell's activation ``values`` (T,):
    blue negative, red positive, scaled by the largest magnitude over the text (hover for
    the value), under a heading with ``label`` and the range."""
    scale = float(np.abs(values).max()) or 1.0
    spans = []
    for piece, value in zip(pieces, values):
        strength = min(1.0, abs(value) / scale)
        colour = f"rgba(220,40,40,{strength:.2f})" if value > 0 else f"rgba(40,90,220,{strength:.2f})"
        shown = html.escape(piece).replace("\n", "↵\n")
        spans.append(f'<span style="background:{colour}" title="{value:+.3f}">{shown}</span>')
    return (
        f'<div style="font-size:0.85em;margin-bottom:0.3em">{html.escape(label)}'
        f" (range {values.min():+.3f} to {values.max():+.3f})</div>"
        '<pre class="studio-cells" style="white-space:pre-wrap;font-family:var(--font-mono,monospace);'
        f'line-height:1.6;margin:0">{"".join(spans)}</pre>'
    )
