"""Style from the user's own strokes (SVG, JSON, InkML), one hand across a whole text,
and previews that are never cropped.

Tests against the shipped ``handwriting`` bundle check properties (print stays print,
lines keep one hand) over several seeds, never exact strokes, so a change of random
generator keeps them meaningful.
"""

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from studio.cli import app
from studio.errors import StudioError
from studio.handwriting import consistency
from studio.handwriting.render import Rendered, to_image
from studio.handwriting.style_file import MAX_FILE_BYTES, fit_style, load_style, read_strokes
from studio.sampling.settings import SampleSettings

HANDWRITING = Path(__file__).resolve().parent.parent / "export" / "handwriting"
needs_model = pytest.mark.skipif(not (HANDWRITING / "card.json").is_file(), reason="needs export/handwriting")
ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,'!?-"
NEW_TEXT = "the quick brown fox jumps over the lazy dog"


def hi_strokes(size: float = 60.0) -> list[list[list[float]]]:
    """ "hi" in print, screen coordinates (y down): h = stem + arch, i = stem + dot."""
    s = size / 60.0
    return [
        [[10 * s, 10 * s + k * 12 * s] for k in range(6)],
        [[10 * s, 70 * s], [10 * s, 50 * s], [18 * s, 40 * s], [30 * s, 40 * s], [36 * s, 52 * s], [36 * s, 70 * s]],
        [[52 * s, 40 * s + k * 6 * s] for k in range(6)],
        [[52 * s, 28 * s], [52.5 * s, 28.5 * s]],
    ]


# --- reading files -----------------------------------------------------------------------


def test_json_svg_and_inkml_give_the_same_strokes(tmp_path):
    strokes = hi_strokes()
    (tmp_path / "hi.json").write_text(json.dumps(strokes))
    paths = "".join(
        '<path d="M{},{} '.format(*run[0]) + " ".join("L{},{}".format(*p) for p in run[1:]) + '"/>' for run in strokes
    )
    (tmp_path / "hi.svg").write_text(f'<svg xmlns="http://www.w3.org/2000/svg"><g>{paths}</g></svg>')
    traces = "".join("<trace>" + ", ".join(f"{x} {y} 0" for x, y in run) + "</trace>" for run in strokes)
    (tmp_path / "hi.inkml").write_text(f'<ink xmlns="http://www.w3.org/2003/InkML">{traces}</ink>')
    expected = [np.asarray(run) for run in strokes]
    for name in ("hi.json", "hi.svg", "hi.inkml"):
        runs = read_strokes(tmp_path / name)
        assert len(runs) == len(expected), name
        for run, want in zip(runs, expected):
            np.testing.assert_allclose(run, want, err_msg=name)


def test_an_svg_as_studio_writes_it_reads_back_as_its_own_pen_points(tmp_path):
    """The end point of every Bézier the renderer writes is a pen point it was given."""
    rng = np.random.default_rng(0)
    absolute = np.concatenate([np.cumsum(rng.normal(3, 1, (12, 2)), 0), np.zeros((12, 1))], 1)
    absolute[5, 2] = absolute[-1, 2] = 1.0
    path = Rendered([absolute], "x").save(tmp_path / "drawn.svg")
    runs = read_strokes(path)
    assert [len(r) for r in runs] == [6, 6]
    # the same shapes up to the page's scale and the flip of y
    for run, want in zip(runs, (absolute[:6, :2], absolute[6:, :2])):
        steps, want_steps = np.diff(run, axis=0), np.diff(want, axis=0) * [1, -1]
        ratio = np.linalg.norm(steps) / np.linalg.norm(want_steps)
        np.testing.assert_allclose(steps, want_steps * ratio, atol=0.11)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "is empty"),
        (b"   \n", "is empty"),
        (b"hello there", "neither SVG, InkML nor JSON"),
        (b"<html><body>hi</body></html>", "neither SVG nor InkML"),
        (b"<svg><path d='M1,2", "not well-formed XML"),
        (b'<svg xmlns="http://www.w3.org/2000/svg"><rect width="5" height="5"/></svg>', "holds no ink"),
        (b"[]", "holds no ink"),
        (b'{"strokes": "no"}', "JSON list of strokes"),
        (b"[[[1, 2], [3]]]", "every point must be"),
        (b'[[["a", 2]]]', "must be numbers"),
        (b"[[[1, 2]", "not valid JSON"),
        (b"\xff\xfe\x00\x01", "not text"),
        (b'<!DOCTYPE svg [<!ENTITY x "y">]><svg/>', "DOCTYPE"),
    ],
)
def test_bad_strokes_files_get_one_line_errors(tmp_path, content, message):
    path = tmp_path / "mine.svg"
    path.write_bytes(content)
    with pytest.raises(StudioError, match=message) as caught:
        read_strokes(path)
    assert "\n" not in str(caught.value)


def test_huge_files_and_missing_files_are_refused(tmp_path):
    huge = tmp_path / "huge.json"
    huge.write_text("[" + " " * MAX_FILE_BYTES + "]")
    with pytest.raises(StudioError, match="a style sample is at most"):
        read_strokes(huge)
    many = tmp_path / "many.json"
    many.write_text(json.dumps([[[i, i % 7] for i in range(60_000)]]))
    with pytest.raises(StudioError, match="points; a style sample has at most"):
        read_strokes(many)
    with pytest.raises(StudioError, match="no style file at"):
        read_strokes(tmp_path / "absent.svg")


# --- fitting to the corpus -------------------------------------------------------------


def test_the_users_strokes_are_fitted_to_the_corpus_scale_slant_and_point_spacing():
    small, large = fit_style(hi_strokes(30), "hi", ALPHABET, 16), fit_style(hi_strokes(300), "hi", ALPHABET, 16)
    for style in (small, large):
        points = np.cumsum(style.strokes[:, :2].astype(np.float64), 0)
        assert 19 < np.ptp(points[:, 1]) < 23  # as tall as the corpus's plain font draws "hi"
        assert style.strokes[-1, 2] == 1.0 and int(style.strokes[:, 2].sum()) == 4
    np.testing.assert_allclose(small.strokes, large.strokes, atol=1e-3)  # the size drawn does not matter
    leaning = [[[x + 0.9 * (70 - y), y] for x, y in run] for run in hi_strokes()]  # far past italic
    fitted = fit_style(leaning, "hi", ALPHABET, 16)
    runs = consistency.pen_runs(np.concatenate([np.cumsum(fitted.strokes[:, :2], 0), fitted.strokes[:, 2:]], 1))
    assert consistency.slant_of(runs) == pytest.approx(0.6, abs=0.05)  # clamped to the corpus's range


@pytest.mark.parametrize(
    ("strokes", "text", "message"),
    [
        (hi_strokes(), "", "give --style-text"),
        (hi_strokes(), "hi~", "cannot write '~'"),
        (hi_strokes(), "a" * 17, "write at most 16"),
        ([[[5, 5]]], "hi", "a single dot"),
        ([[[0, 0], [3, 0]]], "hello", "too little ink"),
        (hi_strokes(), "hello world", "too little ink for 'hello world'"),
        ([[[0, 0], [10, 60], [20, 0], [30, 60], [40, 0], [50, 60], [60, 0]]], "hello world", "too short"),
        ([[[0, 0], [400, 0], [400, 30], [0, 30], [0, 60], [400, 60]]], "i", "too long for 'i'"),
    ],
)
def test_a_sample_that_cannot_be_the_text_is_refused(strokes, text, message):
    with pytest.raises(StudioError, match=message) as caught:
        fit_style(strokes, text, ALPHABET, 16)
    assert "\n" not in str(caught.value)


def test_the_cli_refuses_bad_style_files_in_one_line_and_writes_nothing(tmp_path):
    (tmp_path / "empty.svg").write_text("")
    (tmp_path / "hi.json").write_text(json.dumps(hi_strokes()))
    cases = [
        (["--style-file", str(tmp_path / "empty.svg"), "--style-text", "hi"], "empty.svg is empty"),
        (["--style-file", str(tmp_path / "hi.json")], "give --style-text"),
        (["--style-file", str(tmp_path / "hi.json"), "--style-text", "hello world"], "too little ink"),
        (["--style-text", "hi"], "--style-text goes with --style-file"),
        (["--style-file", str(tmp_path / "hi.json"), "--style-text", "hi", "--style", "1"], "not both"),
        (["--page-width", "50"], "page width must be 200 to 2400"),
    ]
    for extra, message in cases:
        out = tmp_path / "out.svg"
        result = CliRunner().invoke(
            app, ["sample", "--model", str(HANDWRITING), "--text", "new", "--out", str(out), *extra]
        )
        if not (HANDWRITING / "card.json").is_file() and "page width" not in message:
            continue
        assert result.exit_code != 0, extra
        assert message in result.output, (extra, result.output)
        assert "Traceback" not in result.output and not out.exists()


# --- the shipped model: print stays print ------------------------------------------------


def _mean_statistics(rendered) -> dict[str, float]:
    words = [consistency.word_statistics(points, word) for _, points, word in rendered.words]
    return {name: float(np.mean([w[name] for w in words])) for name in consistency.STATISTICS}


@needs_model
def test_a_print_hello_given_back_as_a_style_file_writes_new_text_in_print(tmp_path):
    """The model writes "hello" in its print style; that SVG, given back with
    --style-text hello, makes the new text print: as many pen lifts per letter as the
    corpus's print font has (1.75; its joined-up fonts 1.43-1.52) and pen-down runs about
    half a letter wide (print 0.54, joined-up 0.98).  A cursive "hello" given back the same
    way writes joined-up text, so the statistic tells the two apart."""
    from studio.api import load, sample

    loaded = load(str(HANDWRITING))
    print_style = next(i for i, s in enumerate(loaded.runtime.bundle.card["styles"]) if s.get("font") == "futural")
    cursive_style = next(i for i, s in enumerate(loaded.runtime.bundle.card["styles"]) if s.get("font") == "cursive")
    results = {}
    for name, style in (("print", print_style), ("cursive", cursive_style)):
        [hello] = sample(str(HANDWRITING), text="hello", style=style, bias=2.0, seed=1)
        path = hello.output.save(tmp_path / f"hello-{name}.svg")
        runs = []
        for seed in (1, 2, 3):
            [new] = sample(
                str(HANDWRITING), text=NEW_TEXT, style_file=str(path), style_text="hello", bias=1.5, seed=seed
            )
            runs.append(_mean_statistics(new.output))
        results[name] = {key: float(np.mean([r[key] for r in runs])) for key in consistency.STATISTICS}
    assert results["print"]["pen_ups"] >= 1.55, results
    assert results["print"]["run_width"] <= 0.75, results
    assert results["cursive"]["run_width"] >= 0.8, results
    assert results["print"]["pen_ups"] > results["cursive"]["pen_ups"] + 0.1, results


@needs_model
def test_the_cli_writes_in_a_hand_drawn_as_json(tmp_path):
    (tmp_path / "hi.json").write_text(json.dumps(hi_strokes()))
    out = tmp_path / "mine.png"
    result = CliRunner().invoke(
        app,
        [
            "sample",
            "--model",
            str(HANDWRITING),
            "--text",
            "hello there",
            "--style-file",
            str(tmp_path / "hi.json"),
            "--style-text",
            "hi",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    assert out.read_bytes()[:4] == b"\x89PNG"


# --- one hand across a text --------------------------------------------------------------


def test_line_spread_against_hand_computed_figures():
    lines = [
        [dict.fromkeys(consistency.STATISTICS, v) for v in (1.0, 3.0)],  # mean 2, std 1
        [dict.fromkeys(consistency.STATISTICS, v) for v in (3.0, 5.0)],  # mean 4, std 1
    ]
    spread = consistency.line_spread(lines)
    for name in consistency.STATISTICS:
        assert spread[name] == pytest.approx({"between": 1.0, "within": 1.0, "ratio": 1.0})
    assert consistency.consistency_figure(spread) == pytest.approx(1.0)
    same = [[dict.fromkeys(consistency.STATISTICS, v) for v in (1.0, 3.0)]] * 3
    assert consistency.consistency_figure(consistency.line_spread(same)) == 0.0


def test_word_statistics_tell_print_from_joined_up_strokes():
    """Three separate upright strokes against one joined-up zigzag over the same width."""
    print_word = np.array([[x, y, float(y == 10)] for x in (0, 10, 20) for y in (0, 5, 10)], dtype=float)
    joined = np.array([[k * 2.0, 10.0 * (k % 2), float(k == 10)] for k in range(11)])
    printed = consistency.word_statistics(print_word, "abc")
    cursive = consistency.word_statistics(joined, "abc")
    assert printed["pen_ups"] == 1.0 and cursive["pen_ups"] == pytest.approx(1 / 3)
    assert printed["run_width"] == 0.0 and cursive["run_width"] == pytest.approx(3.0)
    assert printed["slant"] == 0.0 and cursive["slant"] == pytest.approx(0.0, abs=1e-9)
    leaning = print_word.copy()
    leaning[:, 0] += 0.3 * leaning[:, 1]
    assert consistency.word_statistics(leaning, "abc")["slant"] == pytest.approx(0.3)


def test_split_words_follows_the_attention_window():
    points = np.array([[0, 0, 0], [1, 0, 1], [5, 0, 0], [6, 0, 1], [9, 0, 1]], dtype=float)
    phi = np.zeros((5, 6))  # "ab cd" + end
    phi[[0, 1], 0] = phi[[2, 3], 3] = phi[4, 4] = 1.0
    words = consistency.split_words(points, phi, "ab cd")
    assert [w for _, w in words] == ["ab", "cd"]
    assert [len(p) for p, _ in words] == [2, 3]


@needs_model
def test_every_line_of_a_text_keeps_the_first_lines_hand():
    """The line-consistency figure (largest between-lines / within-line spread ratio of
    slant, x-height, letter width, pen-ups and run width) is computed for one long text
    and is at most 1, on average over seeds, when every line keeps the first line's
    hand; writing every line on its own on the same page scores higher."""
    from studio.api import load
    from studio.handwriting.consistency_report import DEFAULT_TEXT
    from studio.handwriting.sample import generate

    loaded = load(str(HANDWRITING))
    figures = {True: [], False: []}
    for seed in (1, 2, 3, 4):
        settings = SampleSettings(model="handwriting", text=DEFAULT_TEXT, bias=1.5, seed=seed)
        for one_hand in (True, False):
            rendered = generate(loaded.domain, loaded.runtime, settings, one_hand=one_hand)
            lines = consistency.rendered_lines(rendered)
            assert len(lines) >= 3 and all(lines)
            figure = consistency.consistency_figure(consistency.line_spread(lines))
            assert np.isfinite(figure) and figure >= 0
            figures[one_hand].append(figure)
    assert np.mean(figures[True]) <= 1.0, figures
    assert np.mean(figures[True]) < np.mean(figures[False]), figures


# --- previews ----------------------------------------------------------------------------


@pytest.mark.parametrize("stroke_width", [1.0, 6.0])
def test_no_ink_touches_the_edge_of_a_png(stroke_width):
    """Splines swing past their points at sharp turns and a wide pen reaches past them:
    neither may reach the picture's border."""
    rng = np.random.default_rng(3)
    page = []
    for line in range(3):
        points = np.concatenate([np.cumsum(rng.normal(0, 9, (40, 2)), 0), (rng.random((40, 1)) < 0.15)], 1)
        points[:, 1] -= 60 * line
        page.append(points)
    for page_width in (0, 900):
        image = np.asarray(to_image(page, stroke_width, "black", page_width=page_width).convert("L"))
        border = np.concatenate([image[:3].ravel(), image[-3:].ravel(), image[:, :3].ravel(), image[:, -3:].ravel()])
        assert border.min() == 255, (stroke_width, page_width)
        if page_width:
            assert image.shape[1] == 900


def test_load_style_reads_and_fits(tmp_path):
    (tmp_path / "hi.json").write_text(json.dumps({"strokes": hi_strokes()}))
    style = load_style(tmp_path / "hi.json", " hi ", ALPHABET, 16)
    assert style.text == "hi" and style.strokes.dtype == np.float32 and style.strokes.shape[1] == 3
