"""Text by Unicode code points (emoji and accents survive: no bytes, no UTF-16 units)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from ..corpus import NotText, changed_while_reading, corpus_files, read_text, text_chunks, warn_skipped
from ..errors import StudioError
from .base import CategoricalDomain, Document, Medium, TokenSink

Tally = TypeVar("Tally")

SEPARATOR = "\x1e"  # ASCII record separator: ends a document, never occurs in real text
BLANK_LINE = "\n\n"
TEXT_SUFFIXES = (
    ".txt",
    ".md",
    ".markdown",
    ".rst",
    ".py",
    ".js",
    ".ts",
    ".c",
    ".h",
    ".cpp",
    ".rs",
    ".go",
    ".java",
    ".sh",
    ".toml",
    ".json",
    ".yaml",
    ".yml",
    ".html",
    ".css",
    ".lua",
    ".rb",
    ".tex",
    ".csv",
)


def read_text_corpus(path: Path) -> list[Document]:
    """Every UTF-8 text file under ``path``; binary or non-UTF-8 files skipped with one warning."""
    documents, skipped = [], []
    for file in corpus_files(Path(path)):
        text = read_text(file)
        if text is None:
            skipped.append(file)
        elif text.strip():
            documents.append(Document(str(file), text))
    warn_skipped(skipped, "binary or non-UTF-8 files")
    if not documents:
        raise StudioError(f"no usable text in {path}: the corpus needs non-empty UTF-8 text files")
    return documents


def _pieces(file: Path, sink: TokenSink, usable: list[bool]) -> Iterator[str]:
    """The file's text pieces; reports bytes read to ``sink`` and sets ``usable[0]`` once a
    piece holds more than whitespace (blank files are no documents, as in read_text_corpus)."""
    for text, size in text_chunks(file):
        sink.advance(size)
        if not usable[0] and text.strip():
            usable[0] = True
        yield text


def scan_text_corpus(
    path: Path, files: Sequence[Path], sink: TokenSink, tally: Callable[[Iterable[str]], Tally]
) -> Iterator[tuple[Path, Tally]]:
    """The first pass over a streamed text corpus: ``(file, tally(pieces of its text))``
    for each usable file.  A file that turns out binary or not UTF-8 part-way has its
    tally dropped; such files are listed in one warning at the end, and StudioError
    follows when no file is usable (the rules of :func:`read_text_corpus`)."""
    skipped, found = [], 0
    for file in files:
        usable = [False]
        try:
            result = tally(_pieces(file, sink, usable))
        except NotText:
            skipped.append(file)
            continue
        if usable[0]:
            found += 1
            yield file, result
    warn_skipped(skipped, "binary or non-UTF-8 files")
    if not found:
        raise StudioError(f"no usable text in {path}: the corpus needs non-empty UTF-8 text files")


def encode_text_files(
    path: Path, files: Sequence[Path], sink: TokenSink, encode: Callable[[Iterable[str]], Iterable[np.ndarray]]
) -> None:
    """The second pass: each file's ids (``encode(pieces of its text)``), one document per
    file.  The files passed the first pass, so failing now means they changed."""
    for file in files:
        try:
            for ids in encode(_pieces(file, sink, [True])):
                sink.write(ids)
        except NotText:
            raise changed_while_reading(path) from None
        sink.end_document()


def code_points(text: str) -> np.ndarray:
    """The text's Unicode code points as uint32, one per character."""
    return np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)


def distinct_code_points(pieces: Iterable[str]) -> np.ndarray:
    """Sorted code points occurring in the pieces."""
    seen = np.zeros(0, dtype=np.int64)
    for text in pieces:
        if text:
            seen = np.union1d(seen, np.flatnonzero(np.bincount(code_points(text))))
    return seen


class TextDomainMixin:
    """Sampling hooks shared by the text domains (chars and words)."""

    suffixes = TEXT_SUFFIXES
    medium = Medium.TEXT
    streams_text = True  # the CLI may print tokens as they come
    unknown_id: int | None = None  # an id shown for symbols outside the vocabulary, if any

    @classmethod
    def read_corpus(cls, path: Path) -> list[Document]:
        return read_text_corpus(path)

    @classmethod
    def source_files(cls, path: Path) -> list[Path]:
        return corpus_files(Path(path))  # every file is tried as text, whatever its suffix

    def _prime_text(self, settings: Any) -> str:
        if settings.prime_file:
            file = Path(settings.prime_file)
            text = read_text(file) if file.is_file() else None
            if text is None:
                raise StudioError(f"cannot read prime file {file}: give a UTF-8 text file")
            return text
        return settings.prime or ""

    def _line_start_id(self) -> int | None:
        """The id of a lone newline, when the vocabulary has one."""
        try:
            ids = self.encode("\n")
        except StudioError:
            return None
        return ids[0] if len(ids) == 1 and ids[0] != self.unknown_id else None

    def document_start_ids(self) -> list[int]:
        """Ids that put a model where documents start, fed unseen before a sample with no
        prime: a blank line, then the separator.  In training the separator follows a
        document's last lines, with the state they left; from the zero state a lone
        separator is an input the model saw once per epoch in one stream of a batch, and
        its guesses after it are close to uniform.  Measured on the shipped markdown
        model: after a lone separator the first character has an entropy of 4.7 nats,
        box-drawing characters leading at 2 % each; after a blank line and the separator
        '#' has 77 % (every document there opens with '# Title').  Nats/char of the first
        50 characters of each corpus document, lone separator -> this start: markdown
        1.79 -> 1.47, code 1.86 -> 1.77 (prose, one document: 0.99 -> 1.10)."""
        newline = self._line_start_id()
        blank_line = [newline, newline] if newline is not None else []
        try:  # a words vocabulary may hold the blank line as one token
            whole = self.encode(BLANK_LINE)
        except StudioError:
            whole = []
        if len(whole) == 1 and whole[0] != self.unknown_id:
            blank_line = whole
        return blank_line + [self.separator_id]

    def _primed(self, settings: Any) -> tuple[list[int], int]:
        """(prime ids, how many of them lead in unseen).  No prime: the start of a
        document (:meth:`document_start_ids`).  A prime starts on a fresh line: a hidden
        newline goes before it unless it begins with one.  Measured on the shipped
        bundles (first 10 characters after 100 line starts of held-out text, nats/char):
        prose 2.94 from the zero state, 1.76 after a separator, 1.62 after a newline;
        markdown 1.93 / 2.42 / 1.55; code 0.79 / 0.72 / 0.70.  Recurrent models trained
        on carried state rarely see the zero state, and single-document corpora show the
        separator only at their end."""
        prime = self._prime_text(settings)
        if not prime:
            start = self.document_start_ids()
            return start, len(start)
        ids = self.encode_prime(prime)
        newline = self._line_start_id()
        if newline is not None and ids[0] != newline:
            return [newline] + ids, 1
        return ids, 0

    def encode_prime(self, prime: str) -> list[int]:
        """The prime's ids; StudioError names what the vocabulary lacks, so a prime is
        always shown exactly as it was typed."""
        return self.encode(prime)

    def prime_ids(self, settings: Any) -> list[int]:
        return self._primed(settings)[0]

    def hidden_prefix(self, prime_ids: Sequence[int], settings: Any) -> int:
        return self._primed(settings)[1]

    def render(self, ids: Sequence[int], settings: Any) -> TextOutput:
        return TextOutput(self.decode(ids))


class TextOutput:
    """Generated text; ``save`` writes it as UTF-8."""

    def __init__(self, text: str):
        self.text = text

    def save(self, path: Path) -> None:
        Path(path).write_text(self.text, encoding="utf-8")


class CharsDomain(TextDomainMixin, CategoricalDomain):
    """Vocabulary: the corpus's code points, sorted, plus the document separator."""

    name = "chars"
    unit_name = "character"

    def __init__(self, symbols: Sequence[str]):
        if SEPARATOR not in symbols:
            symbols = [SEPARATOR, *symbols]
        self.symbols = list(symbols)
        self.index = {s: i for i, s in enumerate(self.symbols)}

    @classmethod
    def from_documents(cls, documents: Sequence[Document], **options: Any) -> CharsDomain:
        counts = Counter()
        for document in documents:
            counts.update(document.content)
        counts.pop(SEPARATOR, None)
        return cls([SEPARATOR, *sorted(counts)])

    @classmethod
    def stream_corpus(cls, path: Path, files: Sequence[Path], options: dict, sink: TokenSink) -> CharsDomain:
        """Two passes: the code points that occur, then each piece's ids through a lookup
        table indexed by code point (vectorised; no per-character Python)."""
        sink.start_pass("finding characters")
        seen, usable = np.zeros(0, dtype=np.int64), []
        for file, points in scan_text_corpus(path, files, sink, distinct_code_points):
            seen = np.union1d(seen, points)
            usable.append(file)
        domain = cls([SEPARATOR, *(chr(point) for point in seen if chr(point) != SEPARATOR)])
        lookup = np.full(max(int(seen[-1]), ord(SEPARATOR)) + 1, -1, dtype=np.int32)  # -1: not seen
        lookup[[ord(symbol) for symbol in domain.symbols]] = np.arange(domain.vocab_size)

        def encode(pieces: Iterable[str]) -> Iterator[np.ndarray]:
            for text in pieces:
                points = code_points(text)
                if points.size and points.max() >= len(lookup):  # a character the first pass never saw
                    raise changed_while_reading(path)
                ids = lookup[points]
                if ids.size and ids.min() < 0:
                    raise changed_while_reading(path)
                yield ids

        sink.begin(domain.vocab_size, domain.separator_id)
        sink.start_pass("encoding characters")
        encode_text_files(path, usable, sink, encode)
        return domain

    def to_config(self) -> dict:
        return {"name": self.name, "symbols": self.symbols}

    @classmethod
    def from_config(cls, config: dict) -> CharsDomain:
        return cls(config["symbols"])

    @property
    def vocab_size(self) -> int:
        return len(self.symbols)

    @property
    def separator_id(self) -> int:
        return self.index[SEPARATOR]

    def encode(self, text: str) -> list[int]:
        try:
            return [self.index[ch] for ch in text]
        except KeyError:
            missing = sorted({ch for ch in text if ch not in self.index})
            shown = ", ".join(repr(ch) for ch in missing[:10])
            raise StudioError(
                f"{len(missing)} character(s) not in the model's vocabulary: {shown}; "
                "remove them or train on a corpus that has them"
            ) from None

    def decode(self, ids: Sequence[int]) -> str:
        return "".join(self.symbols[i] for i in ids)

    def token_text(self, token_id: int) -> str:
        return self.symbols[token_id]
