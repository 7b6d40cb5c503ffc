"""Build ``corpora/songs`` (MIDI files) from music21's bundled corpus.

Collections (each in its own sub-folder, so one can train on a single style):

* ``bach``         the 350 unique four-part chorales (Riemenschneider numbering);
* ``oneills1850``  O'Neill's *Music of Ireland* (1850 tunes), as ABC books.

The Essen folk songs are left out (non-commercial licence).  Every file is written by
:func:`studio.music.files.write_midi`, so the pickup bar is padded and bar lines sit
where the score has them.  Run ``python -m studio.music.corpus corpora/songs``; it takes
a few minutes (music21 parses every score) and prints what it wrote and skipped.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

from studio.music.files import score_to_piece, write_midi

COLLECTIONS = ("bach", "oneills1850")
PROGRAMS = {"bach": 19, "oneills1850": 40}  # General MIDI church organ, violin
DEFAULT_TEMPI = {"bach": 96.0, "oneills1850": 120.0}


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:60] or "untitled"


def _chorale_scores():
    from music21 import corpus
    from music21.corpus import chorales

    names = chorales.Iterator(numberingSystem="riemenschneider", returnType="filename")
    for name in sorted(set(names), key=lambda n: [int(x) if x.isdigit() else x for x in re.split(r"(\d+)", n)]):
        yield name.split("/")[-1], lambda name=name: corpus.parse(name)


def _oneill_scores():
    from music21 import corpus, stream

    for path in sorted(corpus.getComposer("oneills1850")):
        book = corpus.parse(path)
        scores = book.scores if isinstance(book, stream.Opus) else [book]
        for score in scores:
            number = score.metadata.number if score.metadata and score.metadata.number else "0"
            title = score.metadata.title if score.metadata and score.metadata.title else ""
            yield f"{int(number):04d}-{_slug(title)}", lambda score=score: score


SOURCES = {"bach": _chorale_scores, "oneills1850": _oneill_scores}


def build(out: Path, collections: tuple[str, ...] = COLLECTIONS) -> dict[str, tuple[int, list[str]]]:
    """Write ``out/<collection>/<name>.mid``; returns written count and skipped names."""
    report: dict[str, tuple[int, list[str]]] = {}
    for collection in collections:
        folder = out / collection
        folder.mkdir(parents=True, exist_ok=True)
        written, skipped, seen = 0, [], set()
        for name, load in SOURCES[collection]():
            if name in seen:
                continue
            seen.add(name)
            try:
                piece = score_to_piece(load(), program=PROGRAMS[collection])
                if not piece.notes:
                    raise ValueError("no notes")
                write_midi(piece, folder / f"{name}.mid", piece.tempo or DEFAULT_TEMPI[collection])
                written += 1
            except Exception as error:  # a bad score is skipped, the build goes on
                skipped.append(f"{name} ({type(error).__name__})")
        report[collection] = (written, skipped)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="folder to write, e.g. corpora/songs")
    parser.add_argument("--collections", default=",".join(COLLECTIONS), help="comma-separated")
    args = parser.parse_args(argv)
    collections = tuple(c for c in args.collections.split(",") if c)
    unknown = [c for c in collections if c not in SOURCES]
    if unknown:
        print(f"unknown collection(s) {unknown}; choose from {list(SOURCES)}", file=sys.stderr)
        return 1
    started = time.perf_counter()
    for collection, (written, skipped) in build(args.out, collections).items():
        print(f"{collection}: wrote {written} MIDI files, skipped {len(skipped)}: {', '.join(skipped)}")
    size = sum(path.stat().st_size for path in args.out.rglob("*.mid"))
    print(f"total {size / 1e6:.2f} MB in {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
