"""Finding and fingerprinting corpus files.

A corpus is a file or a folder read recursively.  Domains decide how to parse each
file; this module finds the files, reads text safely (whole, or in chunks for corpora
larger than memory) and reports skipped files once.
"""

from __future__ import annotations

import codecs
import hashlib
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from .errors import StudioError
from .formats import HELD_OUT

# corpus folders document themselves; these files at a corpus root are not training data
DOC_PREFIXES = ("README", "LICENSE", "COPYING", "NOTICE")
SNIFF_BYTES = 8192
CHUNK_BYTES = 1 << 20  # what streaming readers and the fingerprint hold of a file at once


class NotText(ValueError):
    """A file that is binary (NUL bytes near its start) or not valid UTF-8."""


def corpus_files(path: Path, suffixes: Iterable[str] | None = None) -> list[Path]:
    """All regular files under ``path`` (sorted, hidden files and corpus READMEs left
    out), optionally only those whose suffix is in ``suffixes``."""
    path = Path(path)
    if not path.exists():
        raise StudioError(f"corpus not found: {path} (give a file or a folder of files)")
    if path.is_file():
        return [path]
    wanted = {s.lower() for s in suffixes} if suffixes else None
    files = []
    for file in sorted(path.rglob("*")):
        relative = file.relative_to(path)
        if any(part.startswith(".") for part in relative.parts) or not file.is_file():
            continue
        if file.parent == path and file.name.upper().startswith(DOC_PREFIXES):
            continue
        if wanted is not None and file.suffix.lower() not in wanted:
            continue
        files.append(file)
    if not files:
        raise StudioError(f"no usable files in {path}: add text files (or pick another --domain)")
    return files


def text_chunks(file: Path, chunk_bytes: int | None = None) -> Iterator[tuple[str, int]]:
    """The file's text in pieces, each with the number of bytes read for it; joined, the
    pieces are exactly :func:`read_text`'s text (a leading BOM dropped, CRLF as LF).

    Decoding is incremental, so a character or a CRLF split by a chunk edge comes out
    whole.  Raises :class:`NotText` when the file is binary (NUL bytes in its first
    ``SNIFF_BYTES``) or not valid UTF-8, possibly after some pieces were yielded."""
    decoder = codecs.getincrementaldecoder("utf-8-sig")()  # drops one leading BOM, as read_text does
    held = ""  # a trailing CR waits for the next piece: it may be half of a CRLF
    chunk_bytes = chunk_bytes or CHUNK_BYTES
    with open(file, "rb") as handle:
        data = handle.read(max(chunk_bytes, SNIFF_BYTES))
        if b"\x00" in data[:SNIFF_BYTES]:
            raise NotText(f"{file} is binary")
        while True:
            try:
                text = held + decoder.decode(data, final=not data)
            except UnicodeDecodeError:
                raise NotText(f"{file} is not UTF-8") from None
            held = text[-1:] if data and text.endswith("\r") else ""
            text = text[: len(text) - len(held)].replace("\r\n", "\n")
            if text or data:
                yield text, len(data)
            if not data:
                return
            data = handle.read(chunk_bytes)


def read_text(file: Path) -> str | None:
    """The file's text, or None when it is binary (NUL bytes) or not valid UTF-8."""
    try:
        return "".join(text for text, _ in text_chunks(file))
    except NotText:
        return None


def changed_while_reading(path: Path, detail: str = "") -> StudioError:
    """The error for a corpus edited while it was being tokenised (a streamed corpus is
    read more than once, and fingerprinted before and after)."""
    return StudioError(f"{path} changed while it was being tokenised{detail}: run again once nothing writes to it")


def warn_skipped(skipped: Sequence[Path], why: str) -> None:
    """One warning line listing every skipped file."""
    if skipped:
        from rich.console import Console

        names = ", ".join(str(p) for p in skipped[:20]) + (" ..." if len(skipped) > 20 else "")
        Console(stderr=True).print(
            f"[yellow]warning:[/] skipped {len(skipped)} {why}: {names}", highlight=False, markup=True, soft_wrap=True
        )


def fingerprint(files: Sequence[Path]) -> str:
    """sha256 over the files' names and bytes, in sorted order, read in chunks (a corpus
    may be larger than memory)."""
    digest = hashlib.sha256()
    for file in sorted(files):
        digest.update(file.name.encode())
        with open(file, "rb") as handle:
            while data := handle.read(CHUNK_BYTES):
                digest.update(data)
    return digest.hexdigest()


# --- which files are held out ------------------------------------------------------
HELD_OUT_OPTION = "held_out"  # the token cache's option that records a random order


def _held_out_key(name: str, root: Path) -> str:
    """A file's place in the random order: a hash of its path within the corpus, so the
    draw is the same on every machine and for every checkout (not a seeded shuffle of
    the file list, which would move every file when one is added)."""
    base = str(root)
    relative = name[len(base) :].lstrip("/\\") if name.startswith(base) else Path(name).name
    return hashlib.sha256(f"held-out:{relative}".encode()).hexdigest()


def held_out_of(card: dict) -> str:
    """How a bundle's trainer chose its validation files (the card's ``train.held_out``;
    ``tail`` on cards from before the option)."""
    held_out = card.get("train", {}).get("held_out", "tail")
    return held_out if held_out in HELD_OUT else "tail"


def _file_of(name: str) -> str:
    """The file a document came from: ``FILE`` for ``FILE#N`` (one of several pieces)."""
    file, _, index = name.rpartition("#")
    return file if file and index.isdigit() else name


def held_out_order(names: Sequence[str], root: Path, held_out: str) -> list[int]:
    """Indices of ``names`` (corpus files, or documents named ``FILE`` or ``FILE#N``) in
    the order the corpus is read for ``held_out``: as listed for ``tail`` (file-name order,
    so the validation tail is the last files), in a fixed hashed order of their files for
    ``random`` (so the tail is a random draw of files; a file's documents stay together
    and in order).  A corpus of one file has one order either way."""
    if held_out not in HELD_OUT:
        raise StudioError(f"--held-out must be one of {' | '.join(HELD_OUT)} (got {held_out!r})")
    if held_out == "tail":
        return list(range(len(names)))
    keys = [_held_out_key(_file_of(name), Path(root)) for name in names]
    return sorted(range(len(names)), key=lambda index: keys[index])
