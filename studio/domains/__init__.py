"""Domain registry: a card's ``domain.name`` picks the class that rebuilds it."""

from __future__ import annotations

from pathlib import Path

from ..errors import StudioError
from .base import CategoricalDomain, Document, Domain
from .chars import CharsDomain
from .words import WordsDomain

DOMAINS: dict[str, type[Domain]] = {"chars": CharsDomain, "words": WordsDomain}


def _register_optional() -> None:
    """Domains whose modules may be absent in a partial install register themselves here."""
    try:
        from .music import MusicDomain

        DOMAINS[MusicDomain.name] = MusicDomain
    except ImportError:
        pass
    try:
        from .strokes import StrokesDomain

        DOMAINS[StrokesDomain.name] = StrokesDomain
    except ImportError:
        pass


_register_optional()


def domain_class(name: str) -> type[Domain]:
    """The class registered as ``name``; StudioError lists the known names otherwise."""
    if name not in DOMAINS:
        raise StudioError(f"unknown domain {name!r}: choose one of {', '.join(sorted(DOMAINS))}")
    return DOMAINS[name]


def domain_from_config(config: dict) -> Domain:
    """Rebuild a domain from the JSON config stored in a checkpoint or card."""
    return domain_class(config["name"]).from_config(config)


def guess_domain(path: Path) -> str:
    """Domain name from the corpus's file types: the most common suffix that a domain
    claims wins; text-like or unknown suffixes fall back to ``chars``."""
    from collections import Counter

    path = Path(path)
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    votes: Counter[str] = Counter()
    for file in files:
        for name, cls in DOMAINS.items():
            if name != "chars" and name != "words" and file.suffix.lower() in cls.suffixes:
                votes[name] += 1
    return votes.most_common(1)[0][0] if votes else "chars"


__all__ = ["CategoricalDomain", "Document", "Domain", "DOMAINS", "domain_class",
           "domain_from_config", "guess_domain"]
