"""Whether a file or folder can be written where the user asked, found out before any
work (sampling, training, export) rather than after it: each check tries the very
operation (creating a temp file or folder there, then removing it), so a read-only
place, a path through a file or a pseudo file system (/proc) is one sentence up front.
Torch-free."""

from __future__ import annotations

import tempfile
from pathlib import Path

from .errors import StudioError


def partial_name(path: Path) -> Path:
    """The temp file a save writes first and renames over ``path`` when complete."""
    return path.with_name(f".{path.stem}.partial{path.suffix}")


def check_file(path: Path, flag: str, suffixes: tuple[str, ...] = ()) -> None:
    """StudioError unless a file can be written at ``path`` (given as ``flag``): its suffix
    one of ``suffixes`` (empty: any), not a folder, in a folder where a file can be made."""
    path = Path(path)
    if suffixes and path.suffix.lower() not in suffixes:
        raise StudioError(f"cannot write {path.name}: this model's samples are saved as {', '.join(suffixes)}")
    if path.is_dir():
        raise StudioError(f"{flag} {path} is a folder: give a file name in it")
    folder = path.parent
    if not folder.is_dir():
        raise StudioError(f"folder {folder} does not exist: create it or choose another {flag}")
    probe = partial_name(path)
    try:
        with open(probe, "xb"):
            pass
        probe.unlink()
    except OSError as error:
        raise StudioError(f"cannot write in {folder} ({error.strerror}): choose another {flag}") from None


def check_folder(folder: Path, flag: str) -> None:
    """StudioError unless ``folder`` (given as ``flag``) is a folder or can be made: not a
    file, and its nearest existing ancestor a folder where a folder can be made."""
    folder = Path(folder).absolute()
    if folder.exists() and not folder.is_dir():
        raise StudioError(f"{flag} {folder} is a file: give a folder")
    base = folder
    while not base.exists():
        base = base.parent
    if not base.is_dir():
        raise StudioError(f"cannot make {folder}: {base} is a file; choose another {flag}")
    try:
        Path(tempfile.mkdtemp(prefix=".studio-probe-", dir=base)).rmdir()
    except OSError as error:
        raise StudioError(f"cannot write in {base} ({error.strerror}): choose another {flag}") from None
