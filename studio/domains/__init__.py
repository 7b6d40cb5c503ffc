"""Domain registry: a card's ``domain.name`` picks the class that rebuilds it.

A new domain is one module here (a :class:`~studio.domains.base.Domain` subclass) and
one line in :data:`DOMAINS`.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from ..corpus import held_out_order
from ..errors import StudioError
from .base import CategoricalDomain, Document, Domain, Medium, MixtureDomain
from .chars import CharsDomain
from .music import MusicDomain
from .strokes import StrokesDomain
from .words import WordsDomain

DOMAINS: dict[str, type[Domain]] = {cls.name: cls for cls in (CharsDomain, WordsDomain, MusicDomain, StrokesDomain)}


def domain_class(name: str) -> type[Domain]:
    """The class registered as ``name``; StudioError lists the known names otherwise."""
    if not isinstance(name, str) or name not in DOMAINS:
        raise StudioError(f"unknown domain {name!r}: choose one of {', '.join(sorted(DOMAINS))}")
    return DOMAINS[name]


def domain_from_config(config: dict) -> Domain:
    """Rebuild a domain from the JSON config stored in a checkpoint or card."""
    if not isinstance(config, dict) or "name" not in config:
        raise StudioError("damaged domain config (no name); re-export the model")
    return domain_class(config["name"]).from_config(config)


def read_documents(cls: type[Domain], corpus: Path, held_out: str = "tail") -> list[Document]:
    """``cls.read_corpus(corpus)`` in the order training reads it for ``--held-out``
    (:func:`~studio.corpus.held_out_order`): file-name order, or the random one."""
    documents = cls.read_corpus(Path(corpus))
    return [documents[i] for i in held_out_order([d.path for d in documents], Path(corpus), held_out)]


def guess_domain(path: Path) -> str:
    """Domain name from the corpus's file types: the most common suffix that a non-text
    domain claims wins; text-like or unknown suffixes fall back to ``chars``."""
    path = Path(path)
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    votes: Counter[str] = Counter()
    for file in files:
        for name, cls in DOMAINS.items():
            if cls.medium is not Medium.TEXT and file.suffix.lower() in cls.suffixes:
                votes[name] += 1
    return votes.most_common(1)[0][0] if votes else "chars"


__all__ = [
    "CategoricalDomain",
    "DOMAINS",
    "Document",
    "Domain",
    "Medium",
    "MixtureDomain",
    "domain_class",
    "domain_from_config",
    "guess_domain",
    "read_documents",
]
