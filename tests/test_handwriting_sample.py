"""The sampling loop against a toy step function: stop-at-end, styles, rendering."""

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from studio.domains.strokes import StrokesDomain
from studio.errors import StudioError
from studio.handwriting.render import MARGIN, PIXELS_PER_UNIT, Rendered
from studio.handwriting.sample import (
    CAPITAL_HEIGHT,
    POINTS_PER_CHARACTER_LIMIT,
    WORD_GAP,
    generate,
    write_line,
)
from studio.sampling.settings import SampleSettings

MIXTURES = 2


class ToyRuntime:
    """A step function whose window advances ``speed`` characters per point and whose
    pen moves right by one unit per point, lifting every ``lift_every`` points."""

    def __init__(self, speed=0.25, lift_every=4, styles=()):
        self.speed, self.lift_every = speed, lift_every
        self.bundle = SimpleNamespace(card={"styles": list(styles)})
        self.calls = 0
        self.texts = []  # the text ids of every call

    def init_state(self, batch):
        return {"kappa": np.zeros((batch, 1), np.float32), "t": np.zeros((batch, 1), np.float32)}

    def run(self, inputs, state):
        self.calls += 1
        self.texts.append(inputs["text"][0].tolist())
        batch, chars = inputs["text"].shape
        kappa = state["kappa"] + self.speed
        t = state["t"] + 1
        positions = np.arange(1, chars + 2, dtype=np.float32)
        phi = np.exp(-((kappa - positions) ** 2)).astype(np.float32)  # (B, U + 1)
        lift = ((t[:, 0] % self.lift_every) == 0).astype(np.float32)
        outputs = {
            "pen_logit": np.where(lift > 0, 30.0, -30.0).astype(np.float32),
            "mixture_logits": np.zeros((batch, MIXTURES), np.float32),
            "means": np.tile(np.array([[1.0, 0.0]], np.float32), (batch, MIXTURES, 1)),
            "log_scales": np.full((batch, MIXTURES, 2), -3.0, np.float32),
            "correlations": np.zeros((batch, MIXTURES), np.float32),
            "phi": phi,
        }
        return outputs, {"kappa": kappa, "t": t}


DOMAIN = StrokesDomain(alphabet="abcdefghijklmnopqrstuvwxyz ", conditional=True, line_characters=8)


def test_sampling_stops_once_the_window_passes_the_last_character():
    runtime = ToyRuntime(speed=0.25)
    settings = SampleSettings(model="toy", text="abc", bias=2.0, seed=0)
    offsets, phi, logprob = write_line(DOMAIN, runtime, "abc", settings, np.random.default_rng(0))
    # phi(U + 1) first beats every character's weight once kappa > U + 0.5 = 3.5.
    assert len(offsets) == 15 and runtime.calls == 15
    assert offsets[-1, 2] == 1.0
    assert phi.shape == (15, 4)
    assert phi[-1, -1] > phi[-1, :-1].max() and phi[-2, -1] <= phi[-2, :-1].max()
    assert np.isfinite(logprob)


def test_a_mark_begun_as_the_window_leaves_the_text_is_dropped():
    """The window passes the text at point 15; the pen lifted at point 13, so points 14
    and 15 begin a new mark after the text (the doubled period of "music..")."""
    runtime = ToyRuntime(speed=0.25, lift_every=13)
    settings = SampleSettings(model="toy", text="abc", seed=0)
    offsets, phi, logprob = write_line(DOMAIN, runtime, "abc", settings, np.random.default_rng(0))
    assert runtime.calls == 15 and len(offsets) == 13 and len(phi) == 13
    assert offsets[-1, 2] == 1.0 and np.isfinite(logprob)
    # a longer stroke in progress is the last character's own, and stays
    runtime = ToyRuntime(speed=0.25, lift_every=12)
    offsets, _, _ = write_line(DOMAIN, runtime, "abc", settings, np.random.default_rng(0))
    assert len(offsets) == 15


HANDWRITING = Path(__file__).resolve().parent.parent / "export" / "handwriting"


@pytest.mark.skipif(not (HANDWRITING / "card.json").is_file(), reason="needs export/handwriting")
@pytest.mark.parametrize("text", ["music.", "why?"])
def test_the_shipped_model_ends_on_the_last_mark(text):
    """ "Dear Ada, thank you for the music." ended "music.." in every variant tried: the
    period, then a second small mark.  Now the last stroke is the period (or the
    question mark's dot), and the stroke before it is a letter's or the curve's."""
    from studio.api import load

    loaded = load(str(HANDWRITING))
    runtime, domain = loaded.runtime, loaded.domain
    small = CAPITAL_HEIGHT / 4
    for seed in range(6):
        settings = SampleSettings(model="handwriting", text=text, seed=seed, bias=1.0 + seed % 3 / 2)
        offsets, _, _ = write_line(domain, runtime, text, settings, np.random.default_rng(seed))
        points = np.cumsum(offsets[:, :2], 0)
        ends = np.flatnonzero(offsets[:, 2] > 0.5)
        strokes = np.split(points, ends[:-1] + 1)
        extent = [float(np.ptp(stroke, 0).max()) if len(stroke) > 1 else 0.0 for stroke in strokes]
        assert extent[-1] < small and extent[-2] > small, (seed, extent[-3:])


def test_sampling_gives_up_when_the_window_never_arrives():
    runtime = ToyRuntime(speed=0.0)
    settings = SampleSettings(model="toy", text="ab", seed=0)
    offsets, _, _ = write_line(DOMAIN, runtime, "ab", settings, np.random.default_rng(0))
    assert len(offsets) == POINTS_PER_CHARACTER_LIMIT * 2 + 20


def test_long_text_wraps_and_every_line_stops_at_its_end():
    runtime = ToyRuntime(speed=0.5)
    settings = SampleSettings(model="toy", text="hello there world", seed=1, page_width=0)
    rendered = generate(DOMAIN, runtime, settings)
    assert isinstance(rendered, Rendered)
    assert rendered.lines == ["hello", "there", "world"]
    assert len(rendered.page) == 3 and len(rendered.attention) == 3
    baselines = [p[:, 1].mean() for p in rendered.page]
    assert baselines[0] > baselines[1] > baselines[2]


@pytest.mark.parametrize("page_width", [200, 320, 800])
def test_lines_fill_the_page_width_the_user_chose(page_width):
    """Pieces flow onto a page line while they fit; no ink passes the page's edge, and
    the next piece would not have fitted on the line before."""
    text = "ab cd ef gh ij kl mn op qr st uv wx"
    settings = SampleSettings(model="toy", text=text, seed=1, page_width=page_width)
    rendered = generate(DOMAIN, ToyRuntime(speed=0.5), settings)
    usable = (page_width - 2 * MARGIN) / PIXELS_PER_UNIT
    assert " ".join(rendered.lines) == text
    assert max(p[:, 0].max() for p in rendered.page) <= usable + 1e-6
    rows = sorted({round(float(p[0, 1]) / CAPITAL_HEIGHT) for p in rendered.page}, reverse=True)
    assert len(rows) == len(rendered.lines)
    for upper, lower in zip(rows, rows[1:]):
        last = max(p[:, 0].max() for p in rendered.page if round(float(p[0, 1]) / CAPITAL_HEIGHT) == upper)
        first = next(p for p in rendered.page if round(float(p[0, 1]) / CAPITAL_HEIGHT) == lower)
        assert last + WORD_GAP * CAPITAL_HEIGHT + np.ptp(first[:, 0]) > usable
    wider = generate(DOMAIN, ToyRuntime(speed=0.5), settings.with_(page_width=page_width + 400))
    assert len(wider.lines) <= len(rendered.lines)
    from studio.handwriting.render import Layout

    layout = Layout.fit(rendered.page, stroke_width=2.0, page_width=page_width)
    assert layout.width == page_width


def test_every_piece_after_the_first_is_primed_with_the_first_pieces_hand():
    runtime = ToyRuntime(speed=0.5)
    settings = SampleSettings(model="toy", text="ab cd ef gh ij", seed=1)
    generate(DOMAIN, runtime, settings)
    written = {"".join(DOMAIN.alphabet[i - 1] for i in ids if i) for ids in runtime.texts}
    assert written == {"ab cd ef", "ab gh ij"}  # the first piece's first word primes the second
    alone = ToyRuntime(speed=0.5)
    generate(DOMAIN, alone, settings, one_hand=False)
    assert {"".join(DOMAIN.alphabet[i - 1] for i in ids if i) for ids in alone.texts} == {"ab cd ef", "gh ij"}


def test_same_seed_same_strokes():
    settings = SampleSettings(model="toy", text="abc", bias=0.0, seed=7)
    first = generate(DOMAIN, ToyRuntime(), settings).page[0]
    again = generate(DOMAIN, ToyRuntime(), settings).page[0]
    np.testing.assert_array_equal(first, again)


def test_unknown_characters_are_refused_before_sampling():
    runtime = ToyRuntime()
    with pytest.raises(StudioError, match="'Q'.*'~'|'~'.*'Q'"):
        generate(DOMAIN, runtime, SampleSettings(model="toy", text="aQb~", seed=0))
    assert runtime.calls == 0


def test_style_priming_feeds_the_stored_strokes_first():
    style = {"text": "ab", "strokes": [[1.0, 0.0, 0.0], [1.0, 0.0, 1.0]]}
    runtime = ToyRuntime(speed=0.25, styles=[style])
    settings = SampleSettings(model="toy", text="c", seed=0, style=0)
    generate(DOMAIN, runtime, settings)
    assert runtime.calls > 2
    with pytest.raises(StudioError, match="Style 3"):
        generate(DOMAIN, ToyRuntime(styles=[style]), settings.with_(style=3))


def test_rendered_files(tmp_path):
    rendered = generate(
        DOMAIN, ToyRuntime(speed=0.3), SampleSettings(model="toy", text="ab", seed=0, color="crimson", stroke_width=3)
    )
    svg = rendered.save(tmp_path / "out.svg").read_text()
    assert svg.startswith("<svg") and 'stroke="#dc143c"' in svg and 'stroke-width="3' in svg and " C" in svg
    from PIL import Image

    assert Image.open(rendered.save(tmp_path / "out.png")).format == "PNG"
    gif = Image.open(rendered.save(tmp_path / "out.gif"))
    assert gif.format == "GIF" and gif.n_frames > 3
    assert Image.open(rendered.save_attention_plot(tmp_path / "att.png")).size[0] > 100
    with pytest.raises(StudioError, match=r"\.svg, \.png or \.gif"):
        rendered.save(tmp_path / "out.jpg")
    with pytest.raises(StudioError, match="colour"):
        Rendered(rendered.page, "x", color="not-a-colour")
