"""The one contract every representation fulfils.

A *domain* owns the path between the world and what a model reads and writes: reading
a corpus, building its vocabulary (or normalisation), encoding and decoding, priming,
masks and constraints for sampling, the end test, rendering outputs, and pure metrics.
Training, export, sampling, the CLI and the web UI take a domain object and never
branch on its name, and never ask it ``hasattr``: everything they call is declared
here, with a default where most domains share one.

A domain is rebuilt from its JSON config alone (``to_config`` / ``from_config``): the
representation travels with the weights.  ``head`` names the output head a domain needs
(``categorical`` or ``mixture``); the card records it and the head registries
(:mod:`studio.models` for training and export, :mod:`studio.heads` for sampling and
scoring) dispatch on it.

A categorical domain also *streams* its corpus (:meth:`Domain.stream_corpus`): it builds
its vocabulary and writes its ids to a :class:`TokenSink` without ever holding the
corpus's text, which is how :mod:`studio.token_cache` tokenises corpora larger than
memory once.  Stroke corpora (a generated Hershey corpus, or one npz loaded whole) are
read whole and need no token cache.

Domains are numpy-only: they import nothing from training, export, generation,
evaluation or torch (an import-linter contract in ``pyproject.toml`` checks it).
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np

from ..corpus import corpus_files


@dataclass(frozen=True)
class Document:
    """One readable unit of a corpus: its source path and whatever the domain parsed."""

    path: str
    content: Any


class Medium(enum.Enum):
    """What a domain's samples are, so shells pick a view without knowing domain names."""

    TEXT = "text"  # streamed as text (Write tab, terminal)
    MUSIC = "music"  # MIDI, audio and a piano roll (Compose tab)
    INK = "ink"  # pen strokes drawn as SVG/PNG/GIF (Handwrite tab)


class Output(Protocol):
    """What :meth:`Domain.render` returns: a one-line ``text`` (the sample itself for text
    domains, a summary otherwise) and ``save(path)`` choosing the format by suffix."""

    text: str

    def save(self, path: Path) -> Path | None: ...


class TokenSink(Protocol):
    """Where :meth:`Domain.stream_corpus` sends a corpus (the token cache writes it to a
    file).  The stream it receives is laid out as :meth:`CategoricalDomain.corpus_ids`
    lays out a corpus read whole: a separator first, then every document followed by a
    separator."""

    def start_pass(self, description: str) -> None:
        """A pass over every corpus file begins (progress restarts at 0 bytes)."""

    def advance(self, bytes_read: int) -> None:
        """``bytes_read`` more bytes of corpus files were read in this pass."""

    def begin(self, vocab_size: int, separator_id: int) -> None:
        """Called once, before the first :meth:`write`: the ids are below ``vocab_size``
        (which picks the storage dtype); writes the opening separator."""

    def write(self, ids: np.ndarray) -> None:
        """Append ids of the current document (any integer dtype, one dimension)."""

    def end_document(self) -> None:
        """The current document is complete: writes a separator after it."""


class Domain(ABC):
    """Base of every domain; see the module docstring for the contract."""

    name: ClassVar[str]
    head: ClassVar[str]  # key of the head registries; recorded in the card
    # heads `studio train --model NAME` may choose instead of ``head``, reading the same corpora
    other_heads: ClassVar[tuple[str, ...]] = ()
    medium: ClassVar[Medium]
    suffixes: ClassVar[tuple[str, ...]] = ()  # file types that select this domain
    default_suffix: ClassVar[str | None] = None  # what `studio sample` writes when no --out is given
    output_suffixes: ClassVar[tuple[str, ...]] = ()  # what a sample can be saved as (empty: any name)
    streams_text: ClassVar[bool] = False  # tokens can be printed as they come
    compares_samples: ClassVar[bool] = False  # `studio eval` also scores generated samples
    pitched: ClassVar[bool] = False  # its samples have pitches that --pitch-temp can shape
    unit_name: ClassVar[str] = "token"  # one step of the model, as a reader would name it
    streams_corpus: ClassVar[bool] = False  # stream_corpus works: training goes through the token cache

    # --- corpus -------------------------------------------------------------
    @classmethod
    @abstractmethod
    def read_corpus(cls, path: Path) -> list[Document]:
        """Read a file or folder (recursively); skip unreadable files with one warning
        listing them; raise StudioError when nothing usable remains."""

    @classmethod
    @abstractmethod
    def from_documents(cls, documents: Sequence[Document], **options: Any) -> Domain:
        """Build the domain (its vocabulary, its normalisation) from a corpus.  Options
        meant for other domains are ignored."""

    @classmethod
    def source_files(cls, path: Path) -> list[Path]:
        """The files under ``path`` that reading the corpus opens, sorted: what its
        fingerprint covers.  By default those with one of the domain's ``suffixes``."""
        return corpus_files(Path(path), cls.suffixes or None)

    @classmethod
    def corpus_options(cls, options: dict) -> dict:
        """The options of :meth:`from_documents` this domain reads, defaults filled in:
        besides the corpus, what decides its vocabulary and ids (a token cache's key)."""
        return {}

    @classmethod
    def stream_corpus(cls, path: Path, files: Sequence[Path], options: dict, sink: TokenSink) -> Domain:
        """Build the domain from the corpus ``files`` (its :meth:`source_files`; ``path``
        names the corpus in messages) and write its ids to ``sink``, holding no more than
        a chunk of a file at a time (one file, for formats parsed whole).

        The domain and the ids equal what :meth:`from_documents` and ``corpus_ids`` give
        for :meth:`read_corpus`, unreadable files skipped with the same warning.  Only
        domains that set ``streams_corpus`` implement it; the others' corpora are read
        whole (strokes: a generated corpus or one npz) and need no token cache."""
        raise NotImplementedError(f"{cls.name} corpora are read whole, not streamed")

    # --- persistence ----------------------------------------------------------
    @abstractmethod
    def to_config(self) -> dict:
        """JSON-able dict with ``name`` and everything needed to rebuild this domain."""

    @classmethod
    @abstractmethod
    def from_config(cls, config: dict) -> Domain:
        """Inverse of :meth:`to_config`."""

    # --- shells -----------------------------------------------------------------
    def sample_defaults(self) -> dict:
        """Sample settings (:class:`~studio.sampling.settings.SampleSettings` field names)
        a shell offers first for this model, e.g. the tempo and key of a music corpus;
        empty by default."""
        return {}

    # --- evaluation -------------------------------------------------------------
    def sample_report(self, outputs: Sequence[Any], documents: Sequence[Document]) -> dict:
        """Pure metrics of generated ``outputs`` (what :meth:`render` returned) beside the
        corpus ``documents``, as a flat dict; used when ``compares_samples`` is set."""
        return {}

    def matched_lengths(self, documents: Sequence[Document], length: int) -> list[int]:
        """The sample length (the domain's unit: bars for music) that matches each corpus
        document within its first ``length`` (beats for music), so that generated samples
        can be asked for as long as the corpus's; only domains that ``compares_samples``."""
        raise NotImplementedError(f"{self.name} models have no length-matched samples")

    def matched_metres(self, documents: Sequence[Document]) -> list[str | None]:
        """The time signature (``"3/4"``) a sample matched to each corpus document is
        asked for, or None for the model's own choice; by default None for all."""
        return [None] * len(documents)

    def two_sample_report(
        self,
        outputs: Sequence[Any],
        documents: Sequence[Document],
        *,
        length: int,
        seed: int = 0,
        more_runs: Sequence[tuple[Sequence[Any], Sequence[Document]]] = (),
        reference: Sequence[Document] = (),
    ) -> dict:
        """A classifier two-sample test of generated ``outputs`` against the corpus
        ``documents``, both cut to ``length`` (the domain's unit: beats for music), as a
        flat dict with ``two_sample_accuracy`` (0.5: indistinguishable), ``two_sample_std``
        and ``two_sample_features``; ``more_runs`` (further generated sets) make the
        accuracy a mean over runs, ``reference`` (training pieces) adds the same test
        between them and ``documents``.  Only domains that ``compares_samples`` have one."""
        raise NotImplementedError(f"{self.name} models have no two-sample test")


class CategoricalDomain(Domain):
    """A domain whose items are sequences of ids in ``range(vocab_size)``; the model's
    head is a softmax over them.  ``settings`` below is a
    :class:`studio.sampling.settings.SampleSettings`."""

    head: ClassVar[str] = "categorical"
    streams_corpus: ClassVar[bool] = True
    # Documents are independent pieces (music): training and scoring start each one, at
    # its separator, from the fresh state the sampler starts from, instead of carrying
    # the state of the piece before it (a state the sampler never has).
    fresh_pieces: ClassVar[bool] = False

    @property
    def restart_id(self) -> int | None:
        """The separator when every document starts fresh (``fresh_pieces``), else None."""
        return self.separator_id if self.fresh_pieces else None

    @classmethod
    @abstractmethod
    def stream_corpus(cls, path: Path, files: Sequence[Path], options: dict, sink: TokenSink) -> CategoricalDomain:
        """See :meth:`Domain.stream_corpus`; every categorical domain streams."""

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

    def token_text(self, token_id: int) -> str:
        """Human-readable label for one id (streaming, visualisation)."""
        return str(self.decode([token_id]))

    # --- training data --------------------------------------------------------------
    def corpus_ids(self, documents: Sequence[Document]) -> np.ndarray:
        """All documents as one int array, each preceded and the last followed by
        ``separator_id``, so the model learns how documents start and end (the layout a
        :class:`TokenSink` gives a streamed corpus)."""
        parts: list[int] = [self.separator_id]
        for document in documents:
            parts.extend(self.encode(document.content))
            parts.append(self.separator_id)  # ends this document, starts the next
        return np.asarray(parts, dtype=np.int64)

    def augment(self, ids: np.ndarray, amount: int) -> np.ndarray:
        """Training ids with data augmentation of strength ``amount`` (music: transposed
        copies); by default none."""
        return ids

    # --- sampling ---------------------------------------------------------------------
    @abstractmethod
    def prime_ids(self, settings: Any) -> list[int]:
        """The ids fed before sampling starts (never empty)."""

    def hidden_prefix(self, prime_ids: Sequence[int], settings: Any) -> int:
        """How many leading ``prime_ids`` are context that a sample does not show: by
        default a leading separator ("start of a document")."""
        return 1 if list(prime_ids[:1]) == [self.separator_id] else 0

    def logits_mask(self, settings: Any) -> np.ndarray | None:
        """Bool ``[vocab_size]`` of ids that may be drawn, or None for all."""
        return None

    def constraints(self, settings: Any) -> list:
        """Sampling rules (``(history, logits) -> logits`` objects, see
        :mod:`studio.sampling.rules`) that keep samples well formed; applied right after
        the mask, for sampling and beam search alike."""
        return []

    def is_finished(self, generated: Sequence[int], settings: Any) -> bool:
        """Whether the ids generated so far (prime excluded) complete the sample, besides
        ending on the separator."""
        return False

    def finish_tracker(self, settings: Any):
        """:meth:`is_finished` folded one id at a time, for beam search: an object with
        ``start()``, ``advance(state, id)``, ``finished(state)`` and ``remaining(state)``
        (an upper bound on the ids still to come, or None), or None when only the
        separator ends a sample.  A domain that overrides :meth:`is_finished` gives one."""
        return None

    @abstractmethod
    def render(self, ids: Sequence[int], settings: Any) -> Output:
        """The shown prime plus the generated ids, as an output that can be saved."""


class MixtureDomain(Domain):
    """A domain of real-valued points (pen offsets) drawn from a mixture density; the
    sampler and scorer of the ``mixture`` head (:mod:`studio.heads.mixture`) and its
    trainer (:mod:`studio.models.mixture`) call what is declared here.  Its corpora are
    read whole (``streams_corpus`` is False): no token cache."""

    head: ClassVar[str] = "mixture"

    conditional: bool  # text-conditioned (synthesis) or not
    alphabet: str  # characters a conditional model can write (1-based ids, 0 = padding)
    line_characters: int  # longest line trained on: sampling wraps text there

    @abstractmethod
    def encode_text(self, texts: Sequence[str]) -> np.ndarray:
        """Texts -> int64 ``(B, U)`` ids; StudioError names characters not in the alphabet."""

    @abstractmethod
    def normalise(self, points: np.ndarray) -> np.ndarray:
        """Raw ``(T, 3)`` points -> the units the model reads and writes."""

    @abstractmethod
    def denormalise(self, points: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`normalise`."""
