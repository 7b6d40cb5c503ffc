"""Finding and fingerprinting corpus files.

A corpus is a file or a folder read recursively.  Domains decide how to parse each
file; this module finds the files, reads text safely and reports skipped files once.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Iterable, Sequence

from .errors import StudioError

# corpus folders document themselves; these files at a corpus root are not training data
DOC_PREFIXES = ("README", "LICENSE", "COPYING", "NOTICE")
SNIFF_BYTES = 8192


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


def read_text(file: Path) -> str | None:
    """The file's text, or None when it is binary (NUL bytes) or not valid UTF-8."""
    data = file.read_bytes()
    if b"\x00" in data[:SNIFF_BYTES]:
        return None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return text.removeprefix("\ufeff").replace("\r\n", "\n")


def warn_skipped(skipped: Sequence[Path], why: str) -> None:
    """One warning line listing every skipped file."""
    if skipped:
        from rich.console import Console

        names = ", ".join(str(p) for p in skipped[:20]) + (" ..." if len(skipped) > 20 else "")
        Console(stderr=True).print(f"[yellow]warning:[/] skipped {len(skipped)} {why}: {names}",
                                   highlight=False, markup=True, soft_wrap=True)


def fingerprint(files: Sequence[Path]) -> str:
    """sha256 over the files' relative names and bytes, in sorted order."""
    digest = hashlib.sha256()
    for file in sorted(files):
        digest.update(file.name.encode())
        digest.update(file.read_bytes())
    return digest.hexdigest()
