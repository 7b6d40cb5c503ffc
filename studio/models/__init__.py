"""Head registry, torch side: ``TRAINABLES[card["head"]]`` builds, trains and exports.

A new head is a :class:`~studio.models.base.Trainable` module here plus one line in
:data:`TRAINABLES` (and its sampler and scorer in :data:`studio.heads.HEADS`).
"""

from __future__ import annotations

from ..errors import StudioError
from .base import Trainable, TrainData
from .categorical import CategoricalTrainable
from .mixture import MixtureTrainable
from .vrnn import VrnnTrainable

TRAINABLES: dict[str, Trainable] = {
    head.name: head for head in (CategoricalTrainable(), MixtureTrainable(), VrnnTrainable())
}


def trainable_for(head: str) -> Trainable:
    """The registered torch side of ``head``; StudioError names the known heads."""
    if head not in TRAINABLES:
        raise StudioError(
            f"unknown model head {head!r} (known: {', '.join(sorted(TRAINABLES))}); "
            "this run or bundle needs a newer studio"
        )
    return TRAINABLES[head]


__all__ = ["TRAINABLES", "TrainData", "Trainable", "trainable_for"]
