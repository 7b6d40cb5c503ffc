"""The README's handwriting pictures (docs/handwriting/): one three-line text written the
way lines were written before issue 14 (each its own hand, one model line a page line)
and as now (one hand, lines on a page), and a style sample drawn on the web pad with
what the model writes in that hand.

    python scripts/handwriting_pictures.py [--seed 1] [--pad-strokes my-hand.json --pad-text hi]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from studio.api import load, settings_from
from studio.handwriting.render import Rendered
from studio.handwriting.sample import generate
from studio.handwriting.style_file import read_strokes

FOLDER = Path(__file__).resolve().parent.parent / "docs" / "handwriting"
TEXT = "The quick brown fox jumps over the lazy dog"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--bias", type=float, default=1.5)
    parser.add_argument("--page-width", type=int, default=560)
    parser.add_argument("--pad-strokes", type=Path, default=None)
    parser.add_argument("--pad-text", default="")
    parser.add_argument("--styled-text", default="Sphinx of black quartz, judge my vow")
    arguments = parser.parse_args()
    FOLDER.mkdir(parents=True, exist_ok=True)
    loaded = load("handwriting")
    base = settings_from("handwriting", text=TEXT, bias=arguments.bias, seed=arguments.seed)
    before = generate(loaded.domain, loaded.runtime, base.with_(page_width=0), one_hand=False)
    before.save(FOLDER / "three-lines-before.png")
    after = generate(loaded.domain, loaded.runtime, base.with_(page_width=arguments.page_width))
    after.save(FOLDER / "three-lines-after.png")
    print("before:", before.lines, "\nafter:", after.lines)
    if arguments.pad_strokes:
        runs = read_strokes(arguments.pad_strokes)
        page = []
        for run in runs:  # screen (y down) -> page (y up), one pen-down run each
            points = np.concatenate([run * [1, -1], np.zeros((len(run), 1))], 1)
            points[-1, 2] = 1.0
            page.append(points)
        Rendered(page, "style sample", scale=1.0).save(FOLDER / "own-hand-sample.png")
        styled = settings_from(
            "handwriting",
            text=arguments.styled_text,
            bias=arguments.bias,
            seed=arguments.seed,
            style_file=str(arguments.pad_strokes),
            style_text=arguments.pad_text,
            page_width=arguments.page_width,
        )
        generate(loaded.domain, loaded.runtime, styled).save(FOLDER / "own-hand-result.png")
        plain = styled.with_(style_file=None, style_text=None)
        generate(loaded.domain, loaded.runtime, plain).save(FOLDER / "own-hand-unstyled.png")


if __name__ == "__main__":
    main()
