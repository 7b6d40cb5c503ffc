"""Keeping names that come from outside (a web request, a bundle's card) inside the
folders the studio owns.  Standard library only, so it can be tested on its own.

A value from outside is a *name*, never a path.  :func:`check_name` says what a name
may be; :func:`confine` joins names to a root, resolves symbolic links and refuses a
result outside the root; :func:`contain` does the same for a whole path that must lie
under one of some roots; :func:`pick` maps a name to an entry of a listing the studio
made itself; :func:`escaping_links` finds the links in a folder tree that lead out of
a root.  Every refusal is a :class:`StudioError` of one line that repeats only what
the caller sent (shortened), never where a link led.
"""

from __future__ import annotations

import os
import unicodedata
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TypeVar

from .errors import StudioError

MAX_NAME_BYTES = 255  # the longest file name Linux and macOS file systems store
SHOWN_CHARACTERS = 40  # how much of a refused value an error message repeats
# Separator look-alikes that Unicode normalisation leaves alone (NFKC already maps the
# fullwidth solidus and the dot leaders to '/' and '.'); none belongs in a name.
SLASH_LIKES = frozenset("\u0337\u0338\u2044\u2215\u2216\u2571\u2572\u29f8\u29f9")

Entry = TypeVar("Entry")


def shown(value: object) -> str:
    """``value`` quoted for an error message: escaped (so it stays one line) and cut short."""
    text = str(value)
    if len(text) > SHOWN_CHARACTERS:
        text = text[:SHOWN_CHARACTERS] + "..."
    return repr(text)


def _name_problem(name: object) -> str | None:
    """Why ``name`` is not a plain file or folder name, or None when it is."""
    if not isinstance(name, str) or not name.strip():
        return "the name is empty"
    # NFKC folds compatibility look-alikes ('／' to '/', '․' to '.'); NFC does not, so a
    # difference means the name only looks like what it says.
    if unicodedata.normalize("NFKC", name) != unicodedata.normalize("NFC", name):
        return "it holds look-alike characters (such as a fullwidth '/' or a dot leader)"
    if any(unicodedata.category(character).startswith("C") for character in name):
        return "it holds control, invisible or unassigned characters"
    if "/" in name or "\\" in name or SLASH_LIKES.intersection(name):
        return "it is a path, not a name"
    if name.startswith("."):
        return "hidden names and '..' are not allowed"
    if len(name.encode("utf-8")) > MAX_NAME_BYTES:
        return f"it is longer than {MAX_NAME_BYTES} bytes"
    return None


def is_plain_name(name: object) -> bool:
    """Whether ``name`` would pass :func:`check_name`."""
    return _name_problem(name) is None


def check_name(name: object, what: str) -> str:
    """``name`` itself when it is one plain name: not empty, no '/' or '\\' (nor a
    look-alike of either), not hidden (so neither '.' nor '..'), no control or invisible
    characters, no compatibility look-alikes, at most 255 bytes.  StudioError otherwise."""
    problem = _name_problem(name)
    if problem is not None:
        raise StudioError(f"{what} {shown(name)} refused: {problem}")
    return name  # type: ignore[return-value]


def _resolved(path: Path) -> Path | None:
    """``path`` with every link resolved, or None for a link loop or an unreadable link."""
    try:
        return path.resolve()
    except (OSError, RuntimeError):  # RuntimeError: a symlink loop (Python < 3.13)
        return None


def _inside(path: Path, root: Path) -> bool:
    return path == root or path.is_relative_to(root)


def confine(root: str | os.PathLike, *names: str, what: str) -> Path:
    """``root/names...`` with links resolved, when it is still inside ``root`` (itself
    resolved); StudioError otherwise.  Each name must pass :func:`check_name`.  Reads
    nothing but links and creates nothing; the path need not exist."""
    for name in names:
        check_name(name, what)
    base = _resolved(Path(root))
    target = _resolved(Path(root).joinpath(*names)) if base is not None else None
    if target is None or not _inside(target, base):
        raise StudioError(f"{what} {shown('/'.join(names))} refused: it leads outside the studio's folders")
    return target


def contain(path: str | os.PathLike, roots: Iterable[str | os.PathLike], what: str) -> Path:
    """``path`` with links resolved, when it lies inside one of ``roots``; StudioError
    otherwise.  For paths the server made itself (an upload's temporary file), never
    for names a user typed: those go through :func:`pick` or :func:`confine`."""
    target = _resolved(Path(path))
    if target is not None:
        for root in roots:
            base = _resolved(Path(root))
            if base is not None and _inside(target, base):
                return target
    raise StudioError(f"{what} {shown(Path(path).name)} refused: it is not where the studio keeps such files")


def pick(value: object, listing: Mapping[str, Entry], what: str) -> Entry:
    """The entry of ``listing`` (made by the studio, keyed by plain names) that ``value``
    names exactly; StudioError naming the choices otherwise."""
    choices = ", ".join(listing) or "none"
    problem = _name_problem(value)
    if problem is not None:
        raise StudioError(f"{what} {shown(value)} refused: {problem}; pick one of: {choices}")
    if value not in listing:
        raise StudioError(f"{what} {shown(value)} not found; pick one of: {choices}")
    return listing[value]  # type: ignore[index]


def escaping_links(folder: str | os.PathLike, root: str | os.PathLike) -> list[str]:
    """Links under ``folder`` (hidden ones included, none followed) whose target is not
    inside ``root``, as paths relative to ``folder``, sorted.  Broken links and link
    loops count as escaping: nobody can say where they lead."""
    base = _resolved(Path(root))
    escaping = []
    for parent, folders, files in os.walk(folder, followlinks=False):
        for name in folders + files:
            entry = Path(parent) / name
            if entry.is_symlink():
                target = _resolved(entry)
                if base is None or target is None or not target.exists() or not _inside(target, base):
                    escaping.append(str(entry.relative_to(folder)))
    return sorted(escaping)
