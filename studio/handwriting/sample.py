"""Sampling pen strokes through onnxruntime (numpy only, no torch).

``generate(domain, runtime, settings) -> Rendered`` is what ``StrokesDomain.generate``
calls.  A text-conditioned model writes ``settings.text`` in *pieces* of whole words no
longer than the lines it was trained on (:func:`segments`); each piece stops as soon as
the attention window has moved past its last character (Graves §5.2: the weight of the
position after the text exceeds every character's), less a mark the model had just
begun after the last character (:func:`_without_trailing_mark`), so no scribble trails
the text.  Pieces flow onto page lines as wide as ``settings.page_width`` pixels.

One hand for the whole text: every piece is primed (Graves §5.5: its strokes
teacher-forced with its text in front of the piece's) with the same style: the user's
own strokes (``settings.style_file`` and ``style_text``, read and fitted to the corpus
by :mod:`.style_file`), a stored real sequence (``settings.style``), or, given neither,
the first piece the model wrote.  :mod:`.consistency` measures how well that holds.

An unconditional model draws ``settings.num`` doodles in a row.  ``settings.bias`` is
Graves's sampling bias (:func:`studio.handwriting.mdn.apply_bias`); ``settings.seed``
fixes everything.
"""

from __future__ import annotations

import textwrap

import numpy as np

from studio.errors import StudioError
from studio.handwriting import mdn
from studio.handwriting.consistency import split_words
from studio.handwriting.render import MARGIN, PIXELS_PER_UNIT, Rendered, doodle_page
from studio.handwriting.style_file import load_style
from studio.sampling.rng import CounterRNG

POINTS_PER_CHARACTER_LIMIT = 40  # a line never runs longer than this many points per character
TRAILING_MARK_POINTS = 2  # a stroke this short, begun as the window leaves the text, is dropped
LINE_SPACING = 2.4  # baselines apart, in capital-letter heights
CAPITAL_HEIGHT = 21.0  # Hershey units
DEFAULT_LINE_CHARACTERS = 16
PAGE_LINE_SPACING = 2.0  # baselines apart on a page, in capital-letter heights
WORD_GAP = 0.6  # between pieces on a page line, in capital-letter heights
MIN_PIECE_CHARACTERS = 6  # a piece written after a style's text is never shorter than this


def wrap_lines(text: str, width: int) -> list[str]:
    """Word-wrap ``text`` into lines of at most ``width`` characters (newlines kept)."""
    lines = []
    for paragraph in text.splitlines():
        paragraph = " ".join(paragraph.split())
        if paragraph:
            lines.extend(textwrap.wrap(paragraph, width=width, break_long_words=True, break_on_hyphens=False))
    return lines


def _absolute(offsets: np.ndarray) -> np.ndarray:
    points = offsets.astype(np.float64).copy()
    points[:, :2] = np.cumsum(points[:, :2], 0)
    return points


def _style_strokes(runtime, style: int | None) -> tuple[str, np.ndarray] | None:
    if style is None:
        return None
    styles = runtime.bundle.card.get("styles", [])
    if not 0 <= style < len(styles):
        raise StudioError(f"Style {style} does not exist: this model has styles 0 to {len(styles) - 1}.")
    chosen = styles[style]
    return chosen.get("text", ""), np.asarray(chosen["strokes"], dtype=np.float32)


def _start_point(batch: int) -> np.ndarray:
    points = np.zeros((batch, 3), dtype=np.float32)
    points[:, 2] = 1.0
    return points


def _prime(runtime, state, strokes: np.ndarray, domain, extra_inputs: dict):
    """Teacher-force ``strokes`` (raw units) through the graph; returns the state and
    the last point fed (normalised), ready to continue sampling."""
    normalised = domain.normalise(strokes)
    points = _start_point(1)
    for row in normalised:
        _, state = runtime.run({"points": points, **extra_inputs}, state)
        points = row[None, :].astype(np.float32)
    return state, points


def write_line(domain, runtime, line: str, settings, rng: np.random.Generator, style=None):
    """Sample one line of handwriting.  Returns ``(offsets (T, 3) raw units, phi (T, U + 1),
    logprob)``: ``phi`` restricted to the line's own characters, ``logprob`` the unbiased
    model's log-density of the drawn points (normalised units)."""
    prefix = ""
    if style is not None:
        prefix = style[0] + " " if style[0] else ""
    text_ids = domain.encode_text([prefix + line])  # (1, U)
    offset = len(prefix)
    length = text_ids.shape[1]
    state = runtime.init_state(1)
    points = _start_point(1)
    if style is not None:
        state, points = _prime(runtime, state, style[1], domain, {"text": text_ids})
    drawn, phis, logprobs, on_style = [], [], [], []
    limit = POINTS_PER_CHARACTER_LIMIT * len(line) + 20
    for _ in range(limit):
        outputs, state = runtime.run({"points": points, "text": text_ids}, state)
        head = {k: outputs[k] for k in mdn.HEAD_NAMES}
        points = mdn.draw(head, rng, settings.bias)
        logprobs.append(float(mdn.log_likelihood(head, points)[0]))
        phi = outputs["phi"][0]  # (U + 1,)
        phis.append(np.concatenate([phi[offset:length], phi[length : length + 1]]))
        on_style.append(offset > 0 and phi[:offset].max() > phi[offset : length + 1].max())
        finished = phi[length] > phi[:length].max()
        if finished:
            points[0, 2] = 1.0
        drawn.append(points[0].copy())
        if finished:
            kept = _without_trailing_mark(drawn)
            drawn, phis, logprobs = drawn[:kept], phis[:kept], logprobs[:kept]
            break
    offsets = domain.denormalise(np.asarray(drawn)) if drawn else np.zeros((0, 3), np.float32)
    cut = _style_ink(offsets, on_style)
    if cut:
        offsets[cut, :2] += offsets[:cut, :2].sum(0)  # where the pen went stays where it went
        offsets, phis, logprobs = offsets[cut:], phis[cut:], logprobs[cut:]
    return offsets, np.asarray(phis), float(sum(logprobs))


def _style_ink(offsets: np.ndarray, on_style: list[bool]) -> int:
    """How many leading points of a primed line belong to the style's text, not the
    line's: whole strokes finished while the window still weighed the style's characters
    (and the space after them) most.  A model primed with a hand sometimes adds to the
    primer's last letter (a dash after a user's "hi") before it moves on; that ink is not
    the line's.  A stroke that ends on the line's text is the line's first letter, even
    when it began a little early.  0 when every stroke ended there (nothing is dropped)."""
    ends = np.flatnonzero(offsets[:, 2] > 0.5).tolist()
    for end in ends:
        if not on_style[end]:
            previous = [e for e in ends if e < end]
            return previous[-1] + 1 if previous else 0
    return 0


def _without_trailing_mark(drawn: list[np.ndarray]) -> int:
    """How many of a finished line's points to keep.  The window leaves the text only
    after the last character is complete, and a model that never saw ink after a line's
    last character has by then begun another mark: a second period after "music.", a
    tick after "!" or "?", a dot after "x".  A stroke of at most ``TRAILING_MARK_POINTS``
    points in progress when the line finished is that mark, and is dropped; a last
    character's own final stroke (a t's cross, an e's tail) is longer by the time the
    window moves on.  (Checked by eye on 16 texts x 3 seeds: every stroke in progress
    of 1-2 points was such a mark, every genuine one had 3 or more.)"""
    lifts = [index for index, point in enumerate(drawn[:-1]) if point[2] > 0.5]
    start = lifts[-1] + 1 if lifts else 0  # first point of the stroke in progress
    if start and len(drawn) - start <= TRAILING_MARK_POINTS:
        return start
    return len(drawn)


def draw_doodle(domain, runtime, settings, rng: np.random.Generator, style=None) -> np.ndarray:
    """One unconditional sequence of about ``mdn.DOODLE_POINTS`` points, ending on a pen lift:
    ``(offsets (T, 3) raw units, logprob)``."""
    state = runtime.init_state(1)
    points = _start_point(1)
    if style is not None:
        state, points = _prime(runtime, state, style[1], domain, {})

    def step(last: np.ndarray) -> dict[str, np.ndarray]:
        nonlocal state
        outputs, state = runtime.run({"points": last}, state)
        return {k: outputs[k] for k in mdn.HEAD_NAMES}

    drawn, logprob = mdn.draw_doodle_points(step, points, rng, settings.bias)
    return domain.denormalise(drawn), logprob


def _chosen_style(domain, runtime, settings) -> tuple[str, np.ndarray] | None:
    """The style every line is primed with: the user's strokes (``style_file``) or a
    stored one (``style``); None for neither."""
    if settings.style_file is None:
        if settings.style_text is not None:
            raise StudioError("--style-text goes with --style-file: give the file of strokes that says it")
        return _style_strokes(runtime, settings.style)
    if settings.style is not None:
        raise StudioError("give either --style (a stored hand) or --style-file (your own), not both")
    if not domain.conditional:
        raise StudioError("--style-file needs a text-conditioned handwriting model (this one draws doodles)")
    user = load_style(settings.style_file, settings.style_text or "", domain.alphabet, domain.line_characters)
    return user.text, user.strokes


def segments(text: str, width: int, first_width: int) -> list[tuple[str, bool]]:
    """Split ``text`` into pieces the model writes at one go: ``(piece, starts_paragraph)``.
    Whole words, at most ``width`` characters a piece (``first_width`` for the first);
    a word longer than ``width`` is cut.  Newlines start paragraphs."""
    pieces: list[tuple[str, bool]] = []
    for paragraph in text.splitlines():
        words = []
        for word in paragraph.split():
            words += [word[i : i + width] for i in range(0, len(word), width)]
        current, starts = "", True
        for word in words:
            limit = first_width if not pieces else width
            if current and len(current) + 1 + len(word) > limit:
                pieces.append((current, starts))
                current, starts = "", False
            current = f"{current} {word}" if current else word
        if current:
            pieces.append((current, starts))
    return pieces


def page_units(settings) -> float:
    """The page's writing width in model units (0: one piece a line, as before issue 14)."""
    if not settings.page_width:
        return 0.0
    return max(1.0, (settings.page_width - 2 * MARGIN) / PIXELS_PER_UNIT)


def _leading_words(piece: str, limit: int) -> str:
    """The first words of ``piece`` that fit in ``limit`` characters (at least one)."""
    words = piece.split()
    kept = words[:1]
    for word in words[1:]:
        if len(" ".join([*kept, word])) > limit:
            break
        kept.append(word)
    return " ".join(kept)


def hand_of(offsets: np.ndarray, phi: np.ndarray, piece: str, hand_text: str) -> tuple[str, np.ndarray]:
    """The style a text's first piece sets for the rest: its leading words ``hand_text``
    and their strokes (offsets from the line's start), short enough that a later piece
    fits after them in a line the model was trained on.  The whole piece when its words
    cannot be told apart."""
    count = len(hand_text.split())
    words = split_words(_absolute(offsets), phi, piece)
    if count >= len(piece.split()) or len(words) < count or [w for _, w in words[:count]] != hand_text.split():
        return piece, offsets
    points = np.concatenate([points for points, _ in words[:count]])
    points[-1, 2] = 1.0
    strokes = points.astype(np.float32).copy()
    strokes[1:, :2] = points[1:, :2] - points[:-1, :2]
    return hand_text, strokes


def _write_text(domain, runtime, settings, rng, style, one_hand: bool):
    """Every line of ``settings.num`` texts, placed on one page: ``(page, attention,
    page lines, words, points, logprob)``; ``words`` are ``(page line, points, word)``."""
    text = settings.text if settings.text is not None else "Hello world"
    domain.encode_text([text.replace("\n", " ")])  # names unknown characters before any work
    width = domain.line_characters or DEFAULT_LINE_CHARACTERS
    pieces = segments(text, width, width)
    if one_hand and pieces:
        hand_text = style[0] if style is not None else _leading_words(pieces[0][0], width // 2)
        piece_width = max(MIN_PIECE_CHARACTERS, width - len(hand_text) - 1)
        pieces = segments(text, piece_width, piece_width if style is not None else width)
    page_width = page_units(settings)
    line_height = (PAGE_LINE_SPACING if page_width else LINE_SPACING) * CAPITAL_HEIGHT
    if not pieces:
        raise StudioError("Give some text to write (it is empty).")
    page, attention, lines, words = [], [], [], []
    total, logprob, line = 0, 0.0, -1
    for sample_index in range(settings.num):
        hand, cursor = style, None
        line += 1 if sample_index else 0  # a blank line between samples
        for piece, starts_paragraph in pieces:
            offsets, phi, piece_logprob = write_line(domain, runtime, piece, settings, rng, hand)
            if one_hand and hand is None and len(offsets):
                hand = hand_of(offsets, phi, piece, hand_text)  # every later piece keeps it
            logprob += piece_logprob
            absolute = _absolute(offsets)
            absolute[:, 0] -= absolute[:, 0].min() if len(absolute) else 0.0
            piece_width = float(np.ptp(absolute[:, 0])) if len(absolute) else 0.0
            if cursor is not None and not starts_paragraph and cursor + piece_width <= page_width:
                lines[-1] += " " + piece
            else:
                line, cursor = line + 1, 0.0
                lines.append(piece)
            absolute[:, 0] += cursor
            absolute[:, 1] -= line_height * line
            cursor += piece_width + WORD_GAP * CAPITAL_HEIGHT
            page.append(absolute)
            attention.append((phi, piece))
            words += [(line, points, word) for points, word in split_words(absolute, phi, piece)]
            total += len(offsets)
    return page, attention, lines, words, total, logprob


def generate(domain, runtime, settings, one_hand: bool = True) -> Rendered:
    """Sample what ``settings`` asks for; see the module docstring.  ``one_hand=False``
    writes every piece on its own hand; with ``settings.page_width=0`` as well, one piece a
    line: how text was written before issue 14 (kept to measure the difference)."""
    rng = CounterRNG(settings.seed)
    one_hand = one_hand and not settings.hand_per_line
    style = _chosen_style(domain, runtime, settings)
    page: list[np.ndarray] = []
    total, logprob = 0, 0.0
    if domain.conditional:
        page, attention, lines, words, total, logprob = _write_text(domain, runtime, settings, rng, style, one_hand)
        text = settings.text if settings.text is not None else "Hello world"
        summary = f"handwriting {text!r}: {len(lines)} line(s), {total} points, bias {settings.bias}"
        return Rendered(
            page,
            summary,
            settings.stroke_width,
            settings.color,
            attention,
            lines,
            total,
            logprob=logprob,
            words=words,
            page_width=settings.page_width,
        )
    doodles = []
    for _ in range(settings.num):
        offsets, doodle_logprob = draw_doodle(domain, runtime, settings, rng, style)
        doodles.append(_absolute(offsets))
        logprob += doodle_logprob
    return doodle_page(doodles, settings, logprob)
