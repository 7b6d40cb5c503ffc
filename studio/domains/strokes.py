"""Pen strokes: the mixture-density domain (Graves 2013).

Items are stroke-3 arrays ``(T, 3)`` of ``(dx, dy, pen_lift)`` with y up.  The config
holds what sampling needs and nothing the corpus must supply again: the offset
normalisation (mean and std over training), whether the model is text-conditioned and,
if it is, the alphabet it can write (1-based ids, 0 = padding).

Corpora (``studio train PATH --domain strokes``):

* a folder holding a ``words.txt`` (``corpora/handwriting``): the synthetic, labelled
  Hershey corpus (see :mod:`studio.handwriting.data`), which trains the text-conditioned
  synthesis network;
* a stroke ``.npz`` in the Omniglot layout (``train_points``/``train_offsets``, ...):
  unlabelled strokes, which train the unconditional prediction network.

Both are read whole, never streamed (``streams_corpus`` is False): the Hershey corpus is
generated line by line as training asks for it, and an npz is loaded in one piece (numpy
cannot read part of a compressed archive), so stroke corpora need no token cache.

Nothing here imports torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ..errors import StudioError
from ..handwriting import data as stroke_data
from ..handwriting.render import SUFFIXES as PAGE_SUFFIXES
from .base import Document, Medium, MixtureDomain

HERSHEY_SOURCE = "hershey"
WORDS_FILE = "words.txt"
STATISTICS_SEED = 1_900_000_000  # Hershey lines from here on set the offset normalisation
STATISTICS_LINES = 2000


class StrokesDomain(MixtureDomain):
    """Pen strokes; ``conditional`` models write ``alphabet`` text."""

    name: ClassVar[str] = "strokes"
    medium: ClassVar[Medium] = Medium.INK
    suffixes: ClassVar[tuple[str, ...]] = (".npz",)
    default_suffix: ClassVar[str | None] = ".svg"
    output_suffixes: ClassVar[tuple[str, ...]] = PAGE_SUFFIXES
    unit_name: ClassVar[str] = "point"
    other_heads: ClassVar[tuple[str, ...]] = ("vrnn",)  # the variational RNN (unconditional corpora)

    def __init__(
        self,
        alphabet: str = "",
        mean: Sequence[float] = (0.0, 0.0),
        std: Sequence[float] = (1.0, 1.0),
        conditional: bool = False,
        source: str = "",
        line_characters: int = 0,
        characters_per_point: float = 0.0,
    ):
        if conditional and not alphabet:
            raise StudioError("A text-conditioned strokes domain needs a non-empty alphabet.")
        self.alphabet = alphabet
        self.mean = [float(v) for v in mean]
        self.std = [float(v) for v in std]
        self.conditional = bool(conditional)
        self.source = source  # "hershey" or the stroke npz trained on
        self.line_characters = int(line_characters)  # longest line trained on; sampling wraps there
        self.characters_per_point = float(characters_per_point)

    # --- corpus -------------------------------------------------------------
    @classmethod
    def read_corpus(cls, path: Path) -> list[Document]:
        """A folder with ``words.txt``: one document standing for the generated Hershey
        corpus (its :class:`~studio.handwriting.data.HersheyCorpusConfig`).  A stroke npz:
        one document per training sequence, ``("", strokes)``."""
        path = Path(path)
        if path.is_dir() and (path / WORDS_FILE).is_file():
            return [Document(HERSHEY_SOURCE, stroke_data.HersheyCorpusConfig())]
        if path.is_dir():
            found = sorted(path.glob("*.npz"))
            if len(found) != 1:
                raise StudioError(
                    f"{path} holds neither {WORDS_FILE} (the synthetic handwriting corpus) "
                    "nor exactly one stroke .npz: give the .npz file itself"
                )
            path = found[0]
        if path.suffix.lower() != ".npz" or not path.is_file():
            raise StudioError(
                f"no stroke corpus at {path}: give a stroke .npz (Omniglot layout) or a folder with {WORDS_FILE}"
            )
        try:
            sequences = stroke_data.load_omniglot("train", path)
        except (OSError, ValueError, KeyError) as error:
            raise StudioError(
                f"cannot read {path.name} as strokes ({error}); give an npz with train_points/train_offsets arrays"
            ) from None
        if not sequences:
            raise StudioError(f"{path.name} holds no stroke sequences")
        return [Document(str(path), ("", strokes)) for strokes in sequences]

    @classmethod
    def from_documents(
        cls, documents: Sequence[Document], statistics_lines: int = STATISTICS_LINES, **options: Any
    ) -> StrokesDomain:
        """Normalisation from the corpus: the first ``statistics_lines`` generated lines of
        a Hershey corpus, or every training sequence of a stroke file."""
        if not documents:
            raise StudioError("The stroke corpus is empty.")
        first = documents[0].content
        if isinstance(first, stroke_data.HersheyCorpusConfig):
            items = stroke_data.hershey_examples(first, range(STATISTICS_SEED, STATISTICS_SEED + statistics_lines))
            strokes = [s for _, s in items]
            mean, std = stroke_data.offset_statistics(strokes)
            characters = sum(len(t) for t, _ in items)
            return cls(
                alphabet=first.alphabet,
                mean=mean,
                std=std,
                conditional=True,
                source=HERSHEY_SOURCE,
                line_characters=first.max_characters,
                characters_per_point=round(characters / sum(len(s) for s in strokes), 4),
            )
        mean, std = stroke_data.offset_statistics([d.content[1] for d in documents])
        return cls(mean=mean, std=std, conditional=False, source=documents[0].path)

    # --- persistence ----------------------------------------------------------
    def to_config(self) -> dict:
        config = {
            "name": self.name,
            "alphabet": self.alphabet,
            "mean": self.mean,
            "std": self.std,
            "conditional": self.conditional,
            "source": self.source,
            "line_characters": self.line_characters,
        }
        if self.characters_per_point:
            config["characters_per_point"] = self.characters_per_point
        return config

    @classmethod
    def from_config(cls, config: dict) -> StrokesDomain:
        return cls(
            alphabet=config.get("alphabet", ""),
            mean=config.get("mean", (0.0, 0.0)),
            std=config.get("std", (1.0, 1.0)),
            conditional=config.get("conditional", False),
            source=config.get("source", ""),
            line_characters=config.get("line_characters", 0),
            characters_per_point=config.get("characters_per_point", 0.0),
        )

    # --- encoding -------------------------------------------------------------
    def encode_text(self, texts: Sequence[str]) -> np.ndarray:
        return stroke_data.encode_texts(list(texts), self.alphabet)

    def normalise(self, points: np.ndarray) -> np.ndarray:
        return stroke_data.normalise(points, self.mean, self.std)

    def denormalise(self, points: np.ndarray) -> np.ndarray:
        return stroke_data.denormalise(points, self.mean, self.std)
