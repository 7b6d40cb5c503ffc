"""Text by words: words, whitespace runs and punctuation marks are tokens, so
``decode(encode(text)) == text`` whenever every token is in the vocabulary."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import StudioError, require
from .base import CategoricalDomain, Document, TokenSink
from .chars import SEPARATOR, TextDomainMixin, encode_text_files, scan_text_corpus

UNKNOWN = "\ufffd"  # shown for out-of-vocabulary tokens
TOKEN_PATTERN = re.compile(r"\w+|\s+|[^\w\s]", re.UNICODE)
DEFAULT_VOCAB_SIZE = 10_000


def split_tokens(text: str) -> list[str]:
    """Words, whitespace runs and single punctuation marks; their concatenation is ``text``."""
    return TOKEN_PATTERN.findall(text)


def piece_tokens(pieces: Iterable[str]) -> Iterator[list[str]]:
    """:func:`split_tokens` of a text given in pieces, a list per piece.  Tokens are runs
    of one character class (or single marks), so only a piece's last token can go on in
    the next piece: it waits and is split again with it."""
    held = ""
    for text in pieces:
        tokens = split_tokens(held + text)
        held = tokens.pop() if tokens else ""
        yield tokens
    if held:
        yield [held]


def count_tokens(pieces: Iterable[str]) -> Counter[str]:
    """Token counts of a text given in pieces, keys in order of first sight."""
    counts: Counter[str] = Counter()
    for tokens in piece_tokens(pieces):
        counts.update(tokens)
    return counts


class WordsDomain(TextDomainMixin, CategoricalDomain):
    """Vocabulary: separator, unknown, then the most frequent tokens (ties by first sight)."""

    name = "words"
    unit_name = "word"

    def __init__(self, tokens: Sequence[str]):
        self.tokens = list(tokens)
        if self.tokens[:2] != [SEPARATOR, UNKNOWN]:
            raise ValueError("a words vocabulary starts with the separator and unknown tokens")
        self.index = {t: i for i, t in enumerate(self.tokens)}

    @classmethod
    def from_documents(
        cls, documents: Sequence[Document], vocab_size: int = DEFAULT_VOCAB_SIZE, **options: Any
    ) -> WordsDomain:
        require(vocab_size >= 3, f"--vocab-size must be at least 3 (got {vocab_size})")
        counts: Counter[str] = Counter()
        for document in documents:
            counts.update(split_tokens(document.content))
        return cls.from_counts(counts, vocab_size)

    @classmethod
    def from_counts(cls, counts: Counter[str], vocab_size: int) -> WordsDomain:
        """The ``vocab_size - 2`` most frequent tokens (ties by first sight) after the
        separator and unknown tokens."""
        ranked = (token for token, _ in counts.most_common(vocab_size) if token not in (SEPARATOR, UNKNOWN))
        return cls([SEPARATOR, UNKNOWN, *list(ranked)[: vocab_size - 2]])

    @classmethod
    def corpus_options(cls, options: dict) -> dict:
        return {"vocab_size": int(options.get("vocab_size", DEFAULT_VOCAB_SIZE))}

    @classmethod
    def stream_corpus(cls, path: Path, files: Sequence[Path], options: dict, sink: TokenSink) -> WordsDomain:
        """Two passes: token counts (each file's merged once it read cleanly), capped to
        the vocabulary; then each piece's tokens looked up."""
        vocab_size = cls.corpus_options(options)["vocab_size"]
        require(vocab_size >= 3, f"--vocab-size must be at least 3 (got {vocab_size})")
        sink.start_pass("counting words")
        counts: Counter[str] = Counter()
        usable = []
        for file, file_counts in scan_text_corpus(path, files, sink, count_tokens):
            counts.update(file_counts)
            usable.append(file)
        domain = cls.from_counts(counts, vocab_size)
        del counts

        def encode(pieces: Iterable[str]) -> Iterator[np.ndarray]:
            for tokens in piece_tokens(pieces):
                yield np.fromiter(
                    (domain.index.get(t, domain.unknown_id) for t in tokens), dtype=np.int64, count=len(tokens)
                )

        sink.begin(domain.vocab_size, domain.separator_id)
        sink.start_pass("encoding words")
        encode_text_files(path, usable, sink, encode)
        return domain

    def to_config(self) -> dict:
        return {"name": self.name, "tokens": self.tokens}

    @classmethod
    def from_config(cls, config: dict) -> WordsDomain:
        return cls(config["tokens"])

    @property
    def vocab_size(self) -> int:
        return len(self.tokens)

    @property
    def separator_id(self) -> int:
        return 0

    @property
    def unknown_id(self) -> int:
        return 1

    def encode(self, text: str) -> list[int]:
        return [self.index.get(token, self.unknown_id) for token in split_tokens(text)]

    def encode_prime(self, prime: str) -> list[int]:
        tokens = split_tokens(prime)
        missing = sorted({t for t in tokens if t not in self.index})
        if missing:
            shown = ", ".join(repr(t) for t in missing[:10])
            raise StudioError(
                f"{len(missing)} word(s) of the prime are not in the model's vocabulary: "
                f"{shown}; leave them out or train with a larger --vocab-size"
            )
        return self.encode(prime)

    def decode(self, ids: Sequence[int]) -> str:
        return "".join(self.tokens[i] for i in ids)

    def token_text(self, token_id: int) -> str:
        return self.tokens[token_id]
