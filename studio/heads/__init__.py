"""Head registry, numpy side: ``HEADS[card["head"]]`` samples and scores a bundle.

A new head is a :class:`~studio.heads.base.Head` module here plus one line in
:data:`HEADS` (and its torch side in :data:`studio.models.TRAINABLES`).  Torch-free.
"""

from __future__ import annotations

from ..errors import StudioError
from .base import Event, Finished, Head, Score, Started, Token
from .categorical import CategoricalHead
from .mixture import MixtureHead
from .vrnn import VrnnHead

HEADS: dict[str, Head] = {head.name: head for head in (CategoricalHead(), MixtureHead(), VrnnHead())}


def head_for(name: str) -> Head:
    """The registered head ``name``; StudioError when a bundle needs one this studio lacks."""
    if name not in HEADS:
        raise StudioError(
            f"unknown model head {name!r} (known: {', '.join(sorted(HEADS))}); this bundle needs a newer studio"
        )
    return HEADS[name]


__all__ = ["Event", "Finished", "HEADS", "Head", "Score", "Started", "Token", "head_for"]
