"""Exported bundles: a folder with ONNX graph(s) and ``card.json``.  Torch-free, and
blind to domains: what a card's ``domain`` and ``head`` mean is decided above this layer.

A model is named either by a path to a bundle folder or by its name under the
bundle search path: ``$STUDIO_MODELS`` (colon-separated), ``./export``, then the
``export/`` folder shipped beside the package.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from .errors import StudioError
from .formats import CARD, CARD_REQUIRED_KEYS

PACKAGE_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODEL = "prose"


def search_path() -> list[Path]:
    extra = [Path(p) for p in os.environ.get("STUDIO_MODELS", "").split(os.pathsep) if p]
    roots = [*extra, Path.cwd() / "export", PACKAGE_ROOT / "export"]
    unique: list[Path] = []
    for root in roots:
        if root.resolve() not in [u.resolve() for u in unique]:
            unique.append(root)
    return unique


def resolve(name_or_path: str | os.PathLike) -> Path:
    """The bundle folder for a name or path; StudioError naming what exists otherwise."""
    text = str(name_or_path)
    candidate = Path(text)
    if candidate.is_dir() and (candidate / CARD).exists():
        return candidate
    if candidate.is_file() and candidate.name == CARD:
        return candidate.parent
    for root in search_path():
        if (root / text / CARD).exists():
            return root / text
    if candidate.exists():
        raise StudioError(f"{candidate} is not a model bundle (no {CARD}): export one with `studio export RUN`")
    known = ", ".join(sorted(list_bundles())) or "none"
    raise StudioError(f"model {text!r} not found; available: {known}")


def list_bundles() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for root in search_path():
        if root.is_dir():
            for card in sorted(root.glob(f"*/{CARD}")):
                found.setdefault(card.parent.name, card.parent)
    return found


@dataclass(frozen=True)
class Bundle:
    path: Path
    card: dict

    @classmethod
    def load(cls, name_or_path: str | os.PathLike = DEFAULT_MODEL) -> Bundle:
        path = resolve(name_or_path)
        try:
            card = json.loads((path / CARD).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise StudioError(
                f"damaged model card {path / CARD} ({error.__class__.__name__}): "
                "re-export the model with `studio export`"
            ) from None
        for key in CARD_REQUIRED_KEYS:
            if key not in card:
                raise StudioError(f"damaged model card {path / CARD}: no {key!r} field; re-export the model")
        bundle = cls(path, card)
        extra = [card["mc_dropout"]["graph"]] if isinstance(card.get("mc_dropout"), dict) else []
        for graph in [*card["graphs"].values(), *extra]:
            if not (path / graph).is_file():
                raise StudioError(f"model file missing: {path / graph}; re-export the model")
        return bundle

    @property
    def name(self) -> str:
        return self.card.get("name", self.path.name)

    @property
    def head(self) -> str | None:
        """The output head the card records (None on cards older than the field)."""
        return self.card.get("head")

    def validation(self) -> tuple[float | None, str]:
        """(validation nats per unit, unit) from the card's metrics."""
        metrics = self.card.get("metrics", {})
        unit = metrics.get("unit") or ("point" if "val_nats_per_point" in metrics else "token")
        value = metrics.get("val_nats", metrics.get(f"val_nats_per_{unit}"))
        return value, unit

    def graph_path(self, precision: str = "auto") -> Path:
        """fp32 or int8 graph; "auto" takes int8 when the bundle has one."""
        graphs = self.card["graphs"]
        if precision == "auto":
            precision = "int8" if "int8" in graphs else "fp32"
        if precision not in graphs:
            raise StudioError(f"{self.name} has no {precision} graph (it has {', '.join(graphs)})")
        return self.path / graphs[precision]

    def size_bytes(self) -> int:
        return sum(f.stat().st_size for f in self.path.iterdir() if f.is_file())
