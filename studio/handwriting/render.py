"""Drawing strokes: SVG (smooth paths), PNG, animated GIF, and the attention plot.

Input is a *page*: a list of stroke arrays ``(T, 3)`` of absolute ``(x, y, pen_lift)``
in model units with y up (one per line of text or per doodle, already placed on the
page).  Each pen-down run of points is drawn as a Catmull-Rom spline, as cubic Béziers
in SVG and as a densified polyline in raster formats.  Torch-free.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from studio.errors import StudioError

SUFFIXES = (".svg", ".png", ".gif")  # what a page is saved as (by the file's suffix)

MARGIN = 12.0  # pixels around the drawing
PIXELS_PER_UNIT = 2.0  # raster scale for the Hershey unit (capital letters 21 units tall)
MAX_PIXELS = 2400
GIF_FRAMES = 48


def parse_color(color: str) -> tuple[int, int, int]:
    """CSS-style colour (``#1a1a2e``, ``navy``) -> RGB; StudioError when unknown."""
    from PIL import ImageColor

    try:
        return ImageColor.getrgb(color)[:3]
    except ValueError:
        raise StudioError(f"Unknown colour {color!r}: use a name like 'navy' or a hex value like '#1a1a2e'.") from None


def pen_runs(points: np.ndarray) -> list[np.ndarray]:
    """Absolute ``(T, 3)`` -> list of ``(n, 2)`` pen-down runs (a run ends at pen_lift)."""
    runs, start = [], 0
    for index in np.flatnonzero(points[:, 2] > 0.5).tolist() + [len(points) - 1]:
        if index >= start:
            runs.append(points[start : index + 1, :2])
            start = index + 1
    return [r for r in runs if len(r)]


def catmull_rom(run: np.ndarray, samples: int = 6) -> np.ndarray:
    """Densify a polyline ``(n, 2)`` along a Catmull-Rom spline: ``(~n * samples, 2)``."""
    if len(run) < 3:
        return run
    padded = np.concatenate([run[:1], run, run[-1:]])
    t = np.linspace(0, 1, samples, endpoint=False)[:, None]
    pieces = []
    for i in range(1, len(padded) - 2):
        p0, p1, p2, p3 = padded[i - 1], padded[i], padded[i + 1], padded[i + 2]
        pieces.append(
            0.5
            * ((2 * p1) + (-p0 + p2) * t + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t**2 + (-p0 + 3 * p1 - 3 * p2 + p3) * t**3)
        )
    pieces.append(run[-1:])
    return np.concatenate(pieces)


@dataclass
class Layout:
    """Maps model units (y up) to pixels (y down)."""

    scale: float
    x0: float
    y1: float
    width: int
    height: int
    margin: float = MARGIN

    @classmethod
    def fit(
        cls, page: list[np.ndarray], scale: float = PIXELS_PER_UNIT, stroke_width: float = 0.0, page_width: int = 0
    ) -> Layout:
        """Everything drawn fits, the pen's width and the splines' swing past their
        points included; ``page_width`` (pixels, 0: fit the ink) fixes the width of a
        page whose lines start at x = 0."""
        runs = [catmull_rom(run) for points in page for run in pen_runs(points)]
        points = np.concatenate(runs or [np.zeros((1, 2))])
        low, high = points.min(0), points.max(0)
        extent = np.maximum(high - low, 1.0)
        margin = MARGIN + stroke_width / 2
        if page_width:
            low[0] = min(low[0], 0.0)
            extent[0] = max(high[0] - low[0], (page_width - 2 * margin) / scale, 1.0)
        scale = min(scale, (MAX_PIXELS - 2 * margin) / extent.max())
        width, height = (np.ceil(extent * scale + 2 * margin)).astype(int)
        return cls(scale, float(low[0]), float(high[1]), int(width), int(height), margin)

    def pixels(self, xy: np.ndarray) -> np.ndarray:
        return np.stack(
            [(xy[:, 0] - self.x0) * self.scale + self.margin, (self.y1 - xy[:, 1]) * self.scale + self.margin], 1
        )


def to_svg(
    page: list[np.ndarray],
    stroke_width: float,
    color: str,
    title: str = "",
    scale: float = PIXELS_PER_UNIT,
    page_width: int = 0,
) -> str:
    rgb = parse_color(color)
    layout = Layout.fit(page, scale, stroke_width, page_width)
    paths = []
    for points in page:
        for run in pen_runs(points):
            xy = layout.pixels(run)
            if len(xy) == 1:
                paths.append(f"M{xy[0, 0]:.1f},{xy[0, 1]:.1f} l0.01,0")
                continue
            padded = np.concatenate([xy[:1], xy, xy[-1:]])
            commands = [f"M{xy[0, 0]:.1f},{xy[0, 1]:.1f}"]
            for i in range(1, len(padded) - 2):
                p0, p1, p2, p3 = padded[i - 1], padded[i], padded[i + 1], padded[i + 2]
                c1, c2 = p1 + (p2 - p0) / 6, p2 - (p3 - p1) / 6
                commands.append(f"C{c1[0]:.1f},{c1[1]:.1f} {c2[0]:.1f},{c2[1]:.1f} {p2[0]:.1f},{p2[1]:.1f}")
            paths.append(" ".join(commands))
    hex_color = "#%02x%02x%02x" % rgb
    body = "\n".join(f'  <path d="{d}"/>' for d in paths)
    escaped = title.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{layout.width}" height="{layout.height}" '
        f'viewBox="0 0 {layout.width} {layout.height}">\n  <title>{escaped}</title>\n'
        f'  <rect width="100%" height="100%" fill="white"/>\n'
        f'  <g fill="none" stroke="{hex_color}" stroke-width="{stroke_width}" stroke-linecap="round" '
        f'stroke-linejoin="round">\n{body}\n  </g>\n</svg>\n'
    )


def _raster_runs(page: list[np.ndarray], layout: Layout) -> list[np.ndarray]:
    """Every pen-down run in drawing order, densified, in pixels."""
    return [layout.pixels(catmull_rom(run)) for points in page for run in pen_runs(points)]


def _dot(draw, x, y, width, rgb):
    draw.ellipse([x - width / 2, y - width / 2, x + width / 2, y + width / 2], fill=rgb)


def _frames(page, stroke_width, color, checkpoints, supersample, scale, page_width=0):
    """Draw the page point by point, yielding an RGB image at each raster-point count
    in ``checkpoints`` (ascending); the last frame is the whole page."""
    from PIL import Image, ImageDraw

    rgb = parse_color(color)
    layout = Layout.fit(page, scale, stroke_width, page_width)
    big = Image.new("RGB", (layout.width * supersample, layout.height * supersample), "white")
    draw = ImageDraw.Draw(big)
    width = max(1, int(round(stroke_width * supersample)))
    pending = list(checkpoints)
    drawn = 0
    for run in _raster_runs(page, layout):
        run = run * supersample
        for start in range(0, len(run), 4):
            piece = run[max(0, start - 1) : start + 4]
            if len(piece) == 1:
                _dot(draw, *piece[0], width, rgb)
            else:
                draw.line([tuple(p) for p in piece], fill=rgb, width=width, joint="curve")
                for x, y in piece:
                    _dot(draw, x, y, width * 0.98, rgb)
            drawn += len(run[start : start + 4])
            while pending and drawn >= pending[0]:
                pending.pop(0)
                yield big.resize((layout.width, layout.height), Image.LANCZOS)
    yield big.resize((layout.width, layout.height), Image.LANCZOS)


def to_image(
    page: list[np.ndarray],
    stroke_width: float,
    color: str,
    supersample: int = 2,
    scale: float = PIXELS_PER_UNIT,
    page_width: int = 0,
):
    """The whole page as a PIL RGB image (drawn at ``supersample`` times, then reduced)."""
    *_, image = _frames(page, stroke_width, color, [], supersample, scale, page_width)
    return image


def save_gif(
    page: list[np.ndarray],
    path: Path,
    stroke_width: float,
    color: str,
    scale: float = PIXELS_PER_UNIT,
    page_width: int = 0,
) -> None:
    """Animated pen drawing: about ``GIF_FRAMES`` frames, the last one held for a second."""
    layout = Layout.fit(page, scale, stroke_width, page_width)
    total = sum(len(r) for r in _raster_runs(page, layout))
    checkpoints = np.linspace(0, total, GIF_FRAMES + 1)[1:-1].round().astype(int).tolist()
    frames = [
        f.convert("P", palette=1, colors=32)
        for f in _frames(page, stroke_width, color, checkpoints, 2, scale, page_width)
    ]
    durations = [60] * (len(frames) - 1) + [1200]
    frames[0].save(
        path, format="GIF", save_all=True, append_images=frames[1:], duration=durations, loop=0, optimize=True
    )


@dataclass
class Rendered:
    """What a strokes model produced, ready to save.

    ``page``: absolute stroke arrays (model units, y up) placed on one page;
    ``attention``: per piece of text written, ``(phi (T, U + 1), text)`` (empty for doodles);
    ``lines``: the page's lines; ``words``: each written word's points and its page line
    (for :mod:`studio.handwriting.consistency`).
    """

    page: list[np.ndarray]
    text: str
    stroke_width: float = 2.0
    color: str = "#1a1a2e"
    attention: list[tuple[np.ndarray, str]] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    points: int = 0
    scale: float = PIXELS_PER_UNIT  # pixels per model unit
    logprob: float = 0.0  # log-density of the drawn points under the unbiased model (nats)
    words: list[tuple[int, np.ndarray, str]] = field(default_factory=list)  # (page line, points, word)
    page_width: int = 0  # pixels; 0: as wide as the ink

    def __post_init__(self):
        parse_color(self.color)

    def summary(self) -> dict:
        return {
            "text": self.text,
            "lines": self.lines,
            "points": self.points,
            "logprob": round(self.logprob, 4),
            "strokes": sum(len(pen_runs(p)) for p in self.page),
        }

    def save(self, path: str | Path) -> Path:
        """Write ``.svg``, ``.png`` or ``.gif`` (animated) by the file's suffix."""
        path = Path(path)
        suffix = path.suffix.lower()
        if suffix not in SUFFIXES:
            raise StudioError(f"Cannot write {path.name}: handwriting is saved as .svg, .png or .gif.")
        if not path.parent.exists():
            raise StudioError(f"Folder {path.parent} does not exist.")
        tmp = path.with_name(path.name + ".part")
        if suffix == ".svg":
            svg = to_svg(self.page, self.stroke_width, self.color, self.text, self.scale, self.page_width)
            tmp.write_text(svg, encoding="utf-8")
        elif suffix == ".png":
            image = to_image(self.page, self.stroke_width, self.color, scale=self.scale, page_width=self.page_width)
            image.save(tmp, format="PNG")
        else:
            save_gif(self.page, tmp, self.stroke_width, self.color, self.scale, self.page_width)
        tmp.replace(path)
        return path

    def save_attention_plot(self, path: str | Path) -> Path:
        """PNG of the window weights ``phi`` over the characters against time, per line."""
        if not self.attention:
            raise StudioError("This model has no attention window (it is not text-conditioned).")
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        figure, axes = plt.subplots(len(self.attention), 1, figsize=(8, 2.2 * len(self.attention)), squeeze=False)
        for axis, (phi, line) in zip(axes[:, 0], self.attention):
            axis.imshow(phi.T, aspect="auto", origin="lower", cmap="magma", interpolation="nearest")
            axis.set_yticks(range(len(line) + 1))
            axis.set_yticklabels(list(line.replace(" ", "␣")) + ["end"], fontsize=7)
            axis.set_xlabel("pen point")
            axis.set_title(f"attention: {line!r}", fontsize=9)
        figure.tight_layout()
        path = Path(path)
        figure.savefig(path, dpi=110)
        plt.close(figure)
        return path


DOODLE_SPACING = 1.3  # of the widest doodle
DOODLE_PIXELS = 110  # height of a doodle on the page


def doodle_page(doodles: list[np.ndarray], settings, logprob: float, maker: str = "") -> Rendered:
    """Absolute doodles ``(T, 3)`` side by side on one page, each moved to start at its
    own slot (edited in place); ``maker`` names the model in the summary."""
    widest = max(max(np.ptp(d[:, 0]), np.ptp(d[:, 1])) for d in doodles)
    page, total = [], 0
    for index, doodle in enumerate(doodles):
        doodle[:, :2] -= doodle[:, :2].min(0)
        doodle[:, 0] += index * DOODLE_SPACING * widest
        page.append(doodle)
        total += len(doodle)
    return Rendered(
        page,
        f"{settings.num} doodle(s){maker}, {total} points, bias {settings.bias}",
        settings.stroke_width,
        settings.color,
        [],
        [],
        total,
        scale=DOODLE_PIXELS / max(widest, 1e-6),
        logprob=logprob,
    )
