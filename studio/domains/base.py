"""The one contract every representation fulfils.

A *domain* owns the path between the world and token ids (or, for the mixture head,
pen offsets): reading a corpus, building its vocabulary, encoding and decoding, writing
what a model produced.  Training, export, sampling, the CLI and the web UI take a domain
object and never branch on its name.  A domain is rebuilt from its JSON config alone
(``to_config`` / ``from_config``): the representation travels with the weights.

Categorical domains (chars, words, music events) share one model family, trainer,
exporter, runtime and generator; a mixture domain (pen strokes) brings its own model
and draw step but the same bundle, card and runtime contracts.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np


@dataclass(frozen=True)
class Document:
    """One readable unit of a corpus: its source path and whatever the domain parsed."""

    path: str
    content: Any


class Domain(ABC):
    """Base class; see the module docstring for the contract."""

    name: ClassVar[str]
    head: ClassVar[str] = "categorical"  # or "mixture"
    suffixes: ClassVar[tuple[str, ...]] = ()  # file types that select this domain

    # --- corpus -------------------------------------------------------------
    @classmethod
    @abstractmethod
    def read_corpus(cls, path: Path) -> list[Document]:
        """Read a file or folder (recursively); skip unreadable files with one warning
        listing them; raise StudioError when nothing usable remains."""

    @classmethod
    @abstractmethod
    def from_documents(cls, documents: Sequence[Document], **options: Any) -> "Domain":
        """Build the domain (its vocabulary) from a corpus."""

    # --- persistence ----------------------------------------------------------
    @abstractmethod
    def to_config(self) -> dict:
        """JSON-able dict with ``name`` and everything needed to rebuild this domain."""

    @classmethod
    @abstractmethod
    def from_config(cls, config: dict) -> "Domain":
        """Inverse of :meth:`to_config`."""


class CategoricalDomain(Domain):
    """A domain whose items are sequences of ids in ``range(vocab_size)``."""

    head = "categorical"

    @property
    @abstractmethod
    def vocab_size(self) -> int: ...

    @property
    @abstractmethod
    def separator_id(self) -> int:
        """Id placed between documents, so a sample can end a document."""

    @abstractmethod
    def encode(self, item: Any) -> list[int]:
        """Item (text, event list, ...) -> ids.  Raise StudioError naming symbols the
        vocabulary lacks when the domain has no unknown token for them."""

    @abstractmethod
    def decode(self, ids: Sequence[int]) -> Any:
        """Ids -> item; the separator id ends nothing here, callers decide."""

    def hidden_prefix(self, prime_ids: Sequence[int], settings: Any) -> int:
        """How many leading ``prime_ids`` are context that a sample does not show: by
        default a leading separator ("start of a document")."""
        return 1 if list(prime_ids[:1]) == [self.separator_id] else 0

    def token_text(self, token_id: int) -> str:
        """Human-readable label for one id (streaming, visualisation)."""
        return str(self.decode([token_id]))

    def corpus_ids(self, documents: Sequence[Document], **options: Any) -> np.ndarray:
        """All documents as one int array, each preceded and the last followed by
        ``separator_id``, so the model learns how documents start and end."""
        parts: list[int] = [self.separator_id]
        for document in documents:
            parts.extend(self.encode(document.content))
            parts.append(self.separator_id)  # ends this document, starts the next
        return np.asarray(parts, dtype=np.int64)
