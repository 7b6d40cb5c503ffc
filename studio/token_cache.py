"""The token cache: a corpus tokenised once, streamed to disk, memory-mapped by every run.

A categorical domain's corpus (``Domain.streams_corpus``) is encoded by streaming over its
files (:meth:`~studio.domains.base.Domain.stream_corpus`), never holding its text, into
one folder per corpus and domain configuration::

    <cache dir>/<corpus>-<domain>-<hash>/tokens.bin    flat uint16 ids (uint32 past 65,536 symbols)
    <cache dir>/<corpus>-<domain>-<hash>/cache.json    format, dtype, tokens, document ends,
                                                       split, fingerprint, domain config

The hash covers the corpus fingerprint (sha256 of its files), the domain's name and the
options that shape its ids (:meth:`~studio.domains.base.Domain.corpus_options`), so an
edited corpus gets a new cache (with a one-line notice) and an unchanged one is reused.
Training reads windows from ``np.memmap`` views of ``tokens.bin``; every DDP rank maps the
same file and touches only its own rows.

Builds are safe against each other and against failure: a per-cache ``fcntl`` lock lets
one process (one DDP rank) build while the others wait; the folder is written under a
temporary name and renamed into place, as checkpoints are, so no reader ever sees half a
cache; the fingerprint is taken again after the build, so a corpus edited meanwhile is
refused; a damaged cache (bad JSON, wrong size) is rebuilt with a notice; a full disk is
one line of error and leaves nothing behind.

A checkpoint keeps :meth:`TokenCache.reference` (key, fingerprint, corpus path), not the
ids: ``--resume`` maps the cache in seconds, rebuilds it from the corpus when it was
cleared, and refuses when the corpus changed since.  Numpy only; no torch.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import re
import shutil
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .corpus import HELD_OUT_OPTION, changed_while_reading, fingerprint, held_out_order
from .data import split_point
from .domains import Domain, domain_class, domain_from_config
from .errors import StudioError, require

FORMAT_VERSION = 1
TOKENS_FILE = "tokens.bin"
META_FILE = "cache.json"
CACHE_DIR_VARIABLE = "STUDIO_CACHE_DIR"  # overrides the default folder (tests, shared machines)
UINT16_SYMBOLS = 1 << 16  # vocabularies up to this size store 2 bytes per token
BUILDING = ".building-"  # a folder being written: <key>.building-<pid>
LOCK_SUFFIX = ".lock"
REFERENCE_KEY = "token_cache"  # marks a checkpoint's corpus entry as a cache reference
FULL_DISK = (errno.ENOSPC, errno.EDQUOT)


def default_cache_dir() -> Path:
    """``$STUDIO_CACHE_DIR``, else ``$XDG_CACHE_HOME/sequence-studio``, else
    ``~/.cache/sequence-studio``."""
    if os.environ.get(CACHE_DIR_VARIABLE):
        return Path(os.environ[CACHE_DIR_VARIABLE])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "sequence-studio"


@dataclass(frozen=True)
class CacheSettings:
    """Whether training goes through the token cache, and where it lives (None: the
    default folder, or for ``--resume`` the folder the run started with)."""

    enabled: bool = True
    folder: Path | None = None

    def root(self, recorded: str | None = None) -> Path:
        return Path(self.folder or recorded or default_cache_dir())


class DamagedCache(Exception):
    """A cache folder that cannot be trusted; ``str`` says why."""


@dataclass(frozen=True)
class TokenCache:
    """One complete cache: its folder, its ``cache.json`` and the memory-mapped ids."""

    folder: Path
    meta: dict
    ids: np.ndarray  # np.memmap, read-only, 1-D

    @property
    def key(self) -> str:
        return self.folder.name

    @property
    def domain(self) -> Domain:
        return domain_from_config(self.meta["domain"])

    @property
    def size_bytes(self) -> int:
        return sum(f.stat().st_size for f in (self.folder / TOKENS_FILE, self.folder / META_FILE))

    def facts(self, corpus: Path) -> dict:
        """What a run's config records of its corpus (as for a corpus read whole)."""
        return {
            "path": str(corpus),
            "sha256": self.meta["corpus"]["sha256"],
            "documents": len(self.meta["document_ends"]),
            "tokens": int(self.meta["tokens"]),
        }

    def reference(self) -> dict:
        """What a checkpoint keeps instead of the ids: enough to map this cache again, or
        to rebuild it from an unchanged corpus."""
        corpus = self.meta["corpus"]
        return {
            REFERENCE_KEY: self.key,
            "cache_dir": str(self.folder.parent),
            "corpus": corpus["path"],
            "sha256": corpus["sha256"],
            "domain": self.meta["domain"]["name"],
            "options": self.meta["options"],
        }


def open_cache(folder: Path) -> TokenCache:
    """Map a cache folder; :class:`DamagedCache` when anything does not add up."""
    try:
        meta = json.loads((folder / META_FILE).read_text())
    except FileNotFoundError:
        raise DamagedCache(f"no {META_FILE}") from None
    except (OSError, ValueError) as error:
        raise DamagedCache(f"unreadable {META_FILE} ({type(error).__name__})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_VERSION:
        raise DamagedCache(f"{META_FILE} is not format {FORMAT_VERSION}")
    try:
        dtype = np.dtype(meta["dtype"])
        tokens = int(meta["tokens"])
        domain_from_config(meta["domain"])
        if not (
            isinstance(meta["corpus"]["sha256"], str)
            and isinstance(meta["document_ends"], list)
            and isinstance(meta["options"], dict)
        ):
            raise TypeError("corpus, document_ends or options")
    except (KeyError, TypeError, ValueError, StudioError) as error:
        raise DamagedCache(f"{META_FILE} lacks or garbles {error}") from None
    if dtype not in (np.uint16, np.uint32) or tokens < 1:
        raise DamagedCache(f"{META_FILE} describes {tokens} tokens of {dtype}")
    path = folder / TOKENS_FILE
    try:
        size = path.stat().st_size
        if size != tokens * dtype.itemsize:
            raise DamagedCache(f"{TOKENS_FILE} holds {size:,} bytes, not {tokens * dtype.itemsize:,}")
        ids = np.memmap(path, dtype=dtype, mode="r", shape=(tokens,))
    except OSError as error:
        raise DamagedCache(f"unreadable {TOKENS_FILE} ({error.strerror})") from None
    return TokenCache(folder, meta, ids)


# --- building ----------------------------------------------------------------------------


def cache_key(corpus: Path, domain: str, options: dict, corpus_sha256: str) -> str:
    """``<corpus name>-<domain>-<16 hex>``: readable in ``studio cache list``, unique by hash."""
    recipe = json.dumps(
        {"format": FORMAT_VERSION, "sha256": corpus_sha256, "domain": domain, "options": options}, sort_keys=True
    )
    name = re.sub(r"[^A-Za-z0-9_.]+", "_", Path(corpus).resolve().stem)[:40] or "corpus"
    return f"{name}-{domain}-{hashlib.sha256(recipe.encode()).hexdigest()[:16]}"


def _console():
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=True)


def notice(message: str) -> None:
    """One line on stderr, shown even when quiet (like the skipped-files warning)."""
    _console().print(f"[yellow]note:[/] {message}", markup=True)


class CacheWriter:
    """The :class:`~studio.domains.base.TokenSink` that writes ``tokens.bin``, records
    document ends and drives the progress bar (bytes read, MB/s, ETA)."""

    def __init__(self, handle: Any, progress: Any, corpus_bytes: int):
        self.handle, self.progress, self.corpus_bytes = handle, progress, corpus_bytes
        self.task = progress.add_task("tokenising", total=corpus_bytes)
        self.dtype: np.dtype | None = None
        self.separator: np.ndarray | None = None
        self.vocab_size = 0
        self.tokens = 0
        self.document_ends: list[int] = []

    def start_pass(self, description: str) -> None:
        self.progress.reset(self.task, total=self.corpus_bytes, description=description)

    def advance(self, bytes_read: int) -> None:
        self.progress.advance(self.task, bytes_read)

    def begin(self, vocab_size: int, separator_id: int) -> None:
        self.vocab_size = int(vocab_size)
        self.dtype = np.dtype(np.uint16 if vocab_size <= UINT16_SYMBOLS else np.uint32)
        self.separator = np.array([separator_id], dtype=self.dtype)
        self._append(self.separator)

    def write(self, ids: np.ndarray) -> None:
        if self.dtype is None:
            raise RuntimeError("TokenSink.begin must come before write")
        self._append(np.asarray(ids).astype(self.dtype, copy=False))

    def end_document(self) -> None:
        self.document_ends.append(self.tokens)
        self._append(self.separator)

    def _append(self, ids: np.ndarray) -> None:
        if ids.size:
            self.handle.write(memoryview(np.ascontiguousarray(ids)).cast("B"))
            self.tokens += int(ids.size)


def _build(
    corpus: Path,
    cls: type[Domain],
    options: dict,
    files: Sequence[Path],
    corpus_sha256: str,
    folder: Path,
    val_fraction: float,
    quiet: bool,
) -> None:
    """Stream the corpus into ``<folder>.building-<pid>``, check the fingerprint again and
    rename the folder into place; nothing is left behind on failure."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

    building = folder.with_name(folder.name + BUILDING + str(os.getpid()))
    held_out = options.get(HELD_OUT_OPTION, "tail")
    files = [files[i] for i in held_out_order([str(f) for f in files], Path(corpus), held_out)]
    reading = {k: v for k, v in options.items() if k != HELD_OUT_OPTION}
    corpus_bytes = sum(f.stat().st_size for f in files)
    started = time.time()
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=_console(),
        disable=quiet,
        transient=True,
    )
    try:
        building.mkdir(parents=True)
        with open(building / TOKENS_FILE, "wb", buffering=1 << 20) as handle, progress:
            writer = CacheWriter(handle, progress, corpus_bytes)
            domain = cls.stream_corpus(corpus, files, reading, writer)
            handle.flush()
            os.fsync(handle.fileno())
        if fingerprint(cls.source_files(corpus)) != corpus_sha256:
            raise changed_while_reading(corpus)
        cut = split_point(writer.tokens, val_fraction)
        meta = {
            "format": FORMAT_VERSION,
            "dtype": writer.dtype.name,
            "tokens": writer.tokens,
            "vocab_size": writer.vocab_size,
            "corpus": {
                "path": str(Path(corpus).resolve()),
                "sha256": corpus_sha256,
                "files": len(files),
                "bytes": corpus_bytes,
            },
            "options": options,
            "domain": domain.to_config(),
            "split": {"val_fraction": val_fraction, "train_tokens": cut, "validation_tokens": writer.tokens - cut},
            "document_ends": writer.document_ends,
            "built": time.strftime("%Y-%m-%d %H:%M:%S"),
            "build_seconds": round(time.time() - started, 2),
        }
        with open(building / META_FILE, "w") as handle:
            json.dump(meta, handle)
            handle.flush()
            os.fsync(handle.fileno())
        _rename_into_place(building, folder)
    except OSError as error:
        if error.errno in FULL_DISK:
            raise StudioError(
                f"no space left for the token cache in {folder.parent} ({corpus_bytes / 1e6:,.0f} MB "
                "of corpus): free some space or give --cache-dir a folder on a larger disk"
            ) from None
        if isinstance(error, FileNotFoundError) and not Path(error.filename or "").is_relative_to(folder.parent):
            raise changed_while_reading(corpus, f" ({error.filename} vanished)") from None
        raise StudioError(
            f"cannot write the token cache in {folder.parent} ({error.strerror}): give --cache-dir a writable folder"
        ) from None
    finally:
        shutil.rmtree(building, ignore_errors=True)  # gone already when the rename happened


def _rename_into_place(building: Path, folder: Path) -> None:
    try:
        os.rename(building, folder)
    except OSError as error:
        # another process built the same cache past the lock (`cache clear` removed the lock
        # file it waited on): the two are identical, keep the one in place
        if error.errno not in (errno.ENOTEMPTY, errno.EEXIST):
            raise


@contextmanager
def _locked(root: Path, key: str, corpus: Path, quiet: bool) -> Iterator[None]:
    """Hold ``<root>/<key>.lock``: one process builds a cache, the others wait for it."""
    lock_path = root / (key + LOCK_SUFFIX)
    try:
        root.mkdir(parents=True, exist_ok=True)
        lock_path.touch()
    except OSError as error:
        raise StudioError(
            f"cannot use {root} for the token cache ({error.strerror}): give --cache-dir a writable folder"
        ) from None
    with open(lock_path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not quiet:
                notice(f"waiting for another process to finish tokenising {corpus}")
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _stale_versions(root: Path, corpus: Path, domain: str, options: dict, key: str) -> list[str]:
    """Other caches of the same corpus path, domain and options: the corpus changed."""
    path = str(Path(corpus).resolve())
    stale = []
    for folder in root.iterdir():
        if folder.name == key or not (folder / META_FILE).is_file():
            continue
        try:
            meta = json.loads((folder / META_FILE).read_text())
            if (meta["corpus"]["path"], meta["domain"]["name"], meta["options"]) == (path, domain, options):
                stale.append(folder.name)
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return stale


def _open_or_build(
    root: Path,
    key: str,
    corpus: Path,
    cls: type[Domain],
    options: dict,
    files: Sequence[Path],
    corpus_sha256: str,
    val_fraction: float,
    quiet: bool,
) -> TokenCache:
    folder = root / key
    if folder.is_dir():  # complete by construction (renamed into place), unless damaged since
        try:
            return _reused(open_cache(folder), quiet)
        except DamagedCache:
            pass  # judged again under the lock, where it is rebuilt
    with _locked(root, key, corpus, quiet):
        if folder.exists():
            try:
                return _reused(open_cache(folder), quiet)
            except DamagedCache as why:
                notice(f"the token cache {folder} is damaged ({why}): rebuilding it")
                shutil.rmtree(folder)
        for leftover in root.glob(key + BUILDING + "*"):  # a build killed before its rename
            shutil.rmtree(leftover, ignore_errors=True)
        stale = _stale_versions(root, corpus, cls.name, options, key)
        if stale:
            notice(
                f"{corpus} changed since it was tokenised: building a new token cache "
                f"(`studio cache clear {' '.join(stale)}` frees the old)"
            )
        _build(corpus, cls, options, files, corpus_sha256, folder, val_fraction, quiet)
        cache = open_cache(folder)
    if not quiet:
        meta = cache.meta
        _console().print(
            f"token cache: {meta['tokens']:,} tokens ({meta['dtype']}), "
            f"{cache.size_bytes / 1e6:,.1f} MB on disk, "
            f"{cache.size_bytes / max(1, meta['corpus']['bytes']):.2f} bytes per corpus byte, "
            f"built in {meta['build_seconds']:.1f} s: {folder}"
        )
    return cache


def _reused(cache: TokenCache, quiet: bool) -> TokenCache:
    if not quiet:
        _console().print(
            f"token cache: {cache.meta['tokens']:,} tokens, {cache.size_bytes / 1e6:,.1f} MB, reused: {cache.folder}"
        )
    return cache


def load(
    corpus: Path,
    cls: type[Domain],
    options: dict,
    settings: CacheSettings,
    *,
    val_fraction: float = 0.1,
    held_out: str = "tail",
    quiet: bool = False,
) -> TokenCache:
    """The cache of ``corpus`` read by ``cls`` with ``options``: reused when the corpus is
    unchanged, built (streaming, under the lock) otherwise.  ``held_out="random"`` reads
    the files in the hashed order of :func:`~studio.corpus.held_out_order` (and keys the
    cache by it), so the validation tail is a random draw of files."""
    require(cls.streams_corpus, f"{cls.name} corpora are read whole: train with --no-cache")
    options = cls.corpus_options(options) | ({HELD_OUT_OPTION: held_out} if held_out != "tail" else {})
    files = cls.source_files(corpus)
    corpus_sha256 = fingerprint(files)
    root = settings.root()
    key = cache_key(corpus, cls.name, options, corpus_sha256)
    return _open_or_build(root, key, Path(corpus), cls, options, files, corpus_sha256, val_fraction, quiet)


def reopen(reference: dict, settings: CacheSettings, *, val_fraction: float = 0.1, quiet: bool = False) -> TokenCache:
    """The cache a checkpoint refers to; rebuilt from its corpus when it was cleared or
    damaged, refused (StudioError) when that corpus is gone or changed since."""
    root = settings.root(reference.get("cache_dir"))
    key = reference[REFERENCE_KEY]
    try:
        return _reused(open_cache(root / key), quiet)
    except DamagedCache:
        pass
    corpus = Path(reference["corpus"])
    require(
        corpus.exists(),
        f"the token cache {key} is missing or damaged and its corpus {corpus} is gone: "
        "restore the corpus to continue this run",
    )
    cls = domain_class(reference["domain"])
    files = cls.source_files(corpus)
    state = "gone" if not (root / key).exists() else "damaged"
    require(
        fingerprint(files) == reference["sha256"],
        f"the token cache {key} is {state} and {corpus} changed since this run started: restore the "
        "corpus it was trained on to continue, or start a new run",
    )
    if state == "gone" and not quiet:  # a damaged one is announced where it is rebuilt
        notice(f"the token cache {key} is gone: tokenising {corpus} again")
    return _open_or_build(root, key, corpus, cls, reference["options"], files, reference["sha256"], val_fraction, quiet)


def is_reference(stored: Any) -> bool:
    """Whether a checkpoint's corpus entry refers to a token cache (else it is the payload)."""
    return isinstance(stored, dict) and REFERENCE_KEY in stored


# --- listing and clearing ------------------------------------------------------------------


def list_caches(root: Path) -> list[dict]:
    """One row per folder in ``root``: key, state (ok, damaged, building), domain,
    corpus, tokens, bytes on disk, when built."""
    root = Path(root)
    rows = []
    for folder in sorted(root.iterdir()) if root.is_dir() else []:
        if not folder.is_dir():
            continue
        size = sum(f.stat().st_size for f in folder.iterdir() if f.is_file())
        row = {
            "key": folder.name,
            "state": "building" if BUILDING in folder.name else "ok",
            "bytes": size,
            "domain": "",
            "corpus": "",
            "tokens": 0,
            "built": "",
        }
        if row["state"] == "ok":
            try:
                meta = open_cache(folder).meta
                row.update(
                    domain=meta["domain"]["name"],
                    corpus=meta["corpus"]["path"],
                    tokens=meta["tokens"],
                    built=meta.get("built", ""),
                )
            except DamagedCache as why:
                row.update(state=f"damaged: {why}")
        rows.append(row)
    return rows


def clear_caches(root: Path, keys: Sequence[str] = ()) -> tuple[list[str], list[str], int]:
    """Delete the named caches (all when ``keys`` is empty); returns (removed, busy, bytes
    freed).  A cache being built is busy and kept; a run reading a removed cache keeps its
    memory map, and its next ``--resume`` tokenises the corpus again."""
    root = Path(root)
    folders = {row["key"]: row for row in list_caches(root)}
    unknown = [key for key in keys if key not in folders]
    require(not unknown, f"no token cache named {', '.join(unknown)} in {root}: see `studio cache list`")
    removed, busy, freed = [], [], 0
    for key in keys or sorted(folders):
        base = key.split(BUILDING)[0]
        lock_path = root / (base + LOCK_SUFFIX)
        with open(lock_path, "a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                busy.append(key)
                continue
            shutil.rmtree(root / key, ignore_errors=True)
            if not any(path.is_dir() for path in root.glob(base + "*")):
                lock_path.unlink(missing_ok=True)
        removed.append(key)
        freed += folders[key]["bytes"]
    return removed, busy, freed
