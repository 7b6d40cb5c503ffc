"""Text by words: words, whitespace runs and punctuation marks are tokens, so
``decode(encode(text)) == text`` whenever every token is in the vocabulary."""

from __future__ import annotations

import re
from collections import Counter
from typing import Any, Sequence

from ..errors import StudioError, require
from .base import CategoricalDomain, Document
from .chars import SEPARATOR, TextDomainMixin

UNKNOWN = "\ufffd"  # shown for out-of-vocabulary tokens
TOKEN_PATTERN = re.compile(r"\w+|\s+|[^\w\s]", re.UNICODE)
DEFAULT_VOCAB_SIZE = 10_000


def split_tokens(text: str) -> list[str]:
    """Words, whitespace runs and single punctuation marks; their concatenation is ``text``."""
    return TOKEN_PATTERN.findall(text)


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
    def from_documents(cls, documents: Sequence[Document], vocab_size: int = DEFAULT_VOCAB_SIZE,
                       **options: Any) -> "WordsDomain":
        require(vocab_size >= 3, f"--vocab-size must be at least 3 (got {vocab_size})")
        counts: Counter[str] = Counter()
        for document in documents:
            counts.update(split_tokens(document.content))
        counts.pop(SEPARATOR, None)
        counts.pop(UNKNOWN, None)
        kept = [token for token, _ in counts.most_common(vocab_size - 2)]
        return cls([SEPARATOR, UNKNOWN, *kept])

    def to_config(self) -> dict:
        return {"name": self.name, "tokens": self.tokens}

    @classmethod
    def from_config(cls, config: dict) -> "WordsDomain":
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
            raise StudioError(f"{len(missing)} word(s) of the prime are not in the model's vocabulary: "
                              f"{shown}; leave them out or train with a larger --vocab-size")
        return self.encode(prime)

    def decode(self, ids: Sequence[int]) -> str:
        return "".join(self.tokens[i] for i in ids)

    def token_text(self, token_id: int) -> str:
        return self.tokens[token_id]
