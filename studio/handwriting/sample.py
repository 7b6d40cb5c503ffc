"""Sampling pen strokes through onnxruntime (numpy only, no torch).

``generate(domain, runtime, settings) -> Rendered`` is what ``StrokesDomain.generate``
calls.  A text-conditioned model writes ``settings.text`` line by line (long text is
wrapped at word boundaries to the line length it was trained on); each line stops as
soon as the attention window has moved past the last character (Graves §5.2: the
weight of the position after the text exceeds every character's), less a mark the
model had just begun after the last character (:func:`_without_trailing_mark`), so no
scribble trails the text.  ``settings.style`` primes every line with a stored real
sequence (its strokes teacher-forced with its text in front of the line's).  An unconditional
model draws ``settings.num`` doodles in a row.  ``settings.bias`` is Graves's
sampling bias (:func:`studio.handwriting.mdn.apply_bias`); ``settings.seed`` fixes
everything.
"""

from __future__ import annotations

import textwrap

import numpy as np

from studio.errors import StudioError
from studio.handwriting import mdn
from studio.handwriting.render import Rendered
from studio.sampling.rng import CounterRNG

POINTS_PER_CHARACTER_LIMIT = 40  # a line never runs longer than this many points per character
TRAILING_MARK_POINTS = 2  # a stroke this short, begun as the window leaves the text, is dropped
LINE_SPACING = 2.4  # baselines apart, in capital-letter heights
CAPITAL_HEIGHT = 21.0  # Hershey units
DOODLE_POINTS = 45  # an Omniglot character has ~31 points on average
DOODLE_SPACING = 1.3  # of the widest doodle
DEFAULT_LINE_CHARACTERS = 16
DOODLE_PIXELS = 110  # height of a doodle on the page


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
    drawn, phis, logprobs = [], [], []
    limit = POINTS_PER_CHARACTER_LIMIT * len(line) + 20
    for _ in range(limit):
        outputs, state = runtime.run({"points": points, "text": text_ids}, state)
        head = {k: outputs[k] for k in mdn.HEAD_NAMES}
        points = mdn.draw(head, rng, settings.bias)
        logprobs.append(float(mdn.log_likelihood(head, points)[0]))
        phi = outputs["phi"][0]  # (U + 1,)
        phis.append(np.concatenate([phi[offset:length], phi[length : length + 1]]))
        finished = phi[length] > phi[:length].max()
        if finished:
            points[0, 2] = 1.0
        drawn.append(points[0].copy())
        if finished:
            kept = _without_trailing_mark(drawn)
            drawn, phis, logprobs = drawn[:kept], phis[:kept], logprobs[:kept]
            break
    return domain.denormalise(np.asarray(drawn)), np.asarray(phis), float(sum(logprobs))


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
    """One unconditional sequence of about ``DOODLE_POINTS`` points, ending on a pen lift:
    ``(offsets (T, 3) raw units, logprob)``."""
    state = runtime.init_state(1)
    points = _start_point(1)
    if style is not None:
        state, points = _prime(runtime, state, style[1], domain, {})
    drawn, logprob = [], 0.0
    for step in range(3 * DOODLE_POINTS):
        outputs, state = runtime.run({"points": points}, state)
        head = {k: outputs[k] for k in mdn.HEAD_NAMES}
        points = mdn.draw(head, rng, settings.bias)
        logprob += float(mdn.log_likelihood(head, points)[0])
        drawn.append(points[0].copy())
        if step + 1 >= DOODLE_POINTS and points[0, 2] > 0.5:
            break
    drawn[-1][2] = 1.0
    return domain.denormalise(np.asarray(drawn)), logprob


def generate(domain, runtime, settings) -> Rendered:
    """Sample what ``settings`` asks for; see the module docstring."""
    rng = CounterRNG(settings.seed)
    style = _style_strokes(runtime, settings.style)
    page: list[np.ndarray] = []
    total, logprob = 0, 0.0
    if domain.conditional:
        text = settings.text if settings.text is not None else "Hello world"
        domain.encode_text([text.replace("\n", " ")])  # names unknown characters before any work
        width = domain.line_characters or DEFAULT_LINE_CHARACTERS
        lines = wrap_lines(text, width)
        if not lines:
            raise StudioError("Give some text to write (it is empty).")
        attention = []
        line_height = LINE_SPACING * CAPITAL_HEIGHT
        for sample in range(settings.num):
            for index, line in enumerate(lines):
                offsets, phi, line_logprob = write_line(domain, runtime, line, settings, rng, style)
                logprob += line_logprob
                absolute = _absolute(offsets)
                absolute[:, 0] -= absolute[:, 0].min() if len(absolute) else 0.0
                absolute[:, 1] -= line_height * (index + sample * (len(lines) + 1))
                page.append(absolute)
                attention.append((phi, line))
                total += len(offsets)
        summary = f"handwriting {text!r}: {len(lines)} line(s), {total} points, bias {settings.bias}"
        return Rendered(page, summary, settings.stroke_width, settings.color, attention, lines, total, logprob=logprob)
    doodles = []
    for _ in range(settings.num):
        offsets, doodle_logprob = draw_doodle(domain, runtime, settings, rng, style)
        doodles.append(_absolute(offsets))
        logprob += doodle_logprob
    widest = max(max(np.ptp(d[:, 0]), np.ptp(d[:, 1])) for d in doodles)
    for index, doodle in enumerate(doodles):
        doodle[:, :2] -= doodle[:, :2].min(0)
        doodle[:, 0] += index * DOODLE_SPACING * widest
        page.append(doodle)
        total += len(doodle)
    summary = f"{settings.num} doodle(s), {total} points, bias {settings.bias}"
    return Rendered(
        page,
        summary,
        settings.stroke_width,
        settings.color,
        [],
        [],
        total,
        scale=DOODLE_PIXELS / max(widest, 1e-6),
        logprob=logprob,
    )
