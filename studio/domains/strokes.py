"""Pen strokes: the mixture-density domain (Graves 2013).

Items are stroke-3 arrays ``(T, 3)`` of ``(dx, dy, pen_lift)`` with y up.  The config
holds what sampling needs and nothing the corpus must supply again: the offset
normalisation (mean and std over training), whether the model is text-conditioned and,
if it is, the alphabet it can write (1-based ids, 0 = padding).

Corpora: the synthetic Hershey corpus (labelled; see :mod:`studio.handwriting.data`)
and stroke npz files in the Omniglot layout.  Generation runs the exported step graph
through onnxruntime (:mod:`studio.handwriting.sample`) and returns a
:class:`~studio.handwriting.render.Rendered`.  Nothing here imports torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from studio.domains.base import Document, Domain
from studio.errors import StudioError


class StrokesDomain(Domain):
    """Pen strokes; ``conditional`` models write ``alphabet`` text."""

    name = "strokes"
    head = "mixture"
    suffixes = (".npz",)
    default_suffix = ".svg"  # what `studio sample` writes when no --out is given

    def __init__(self, alphabet: str = "", mean: Sequence[float] = (0.0, 0.0), std: Sequence[float] = (1.0, 1.0),
                 conditional: bool = False, source: str = "", line_characters: int = 0):
        if conditional and not alphabet:
            raise StudioError("A text-conditioned strokes domain needs a non-empty alphabet.")
        self.alphabet = alphabet
        self.mean = [float(v) for v in mean]
        self.std = [float(v) for v in std]
        self.conditional = bool(conditional)
        self.source = source
        self.line_characters = int(line_characters)  # longest line trained on; sampling wraps there

    # --- corpus -------------------------------------------------------------
    @classmethod
    def read_corpus(cls, path: Path) -> list[Document]:
        """A stroke npz in the Omniglot layout (``train_points``/``train_offsets``)."""
        from studio.handwriting.data import load_omniglot

        path = Path(path)
        if not path.exists():
            raise StudioError(f"No such stroke corpus: {path}")
        return [Document(str(path), strokes) for strokes in load_omniglot("train", path)]

    @classmethod
    def from_documents(cls, documents: Sequence[Document], **options: Any) -> "StrokesDomain":
        from studio.handwriting.data import offset_statistics

        if not documents:
            raise StudioError("The stroke corpus is empty.")
        mean, std = offset_statistics([d.content for d in documents])
        return cls(mean=mean, std=std, **options)

    # --- persistence ----------------------------------------------------------
    def to_config(self) -> dict:
        return {"name": self.name, "alphabet": self.alphabet, "mean": self.mean, "std": self.std,
                "conditional": self.conditional, "source": self.source, "line_characters": self.line_characters}

    @classmethod
    def from_config(cls, config: dict) -> "StrokesDomain":
        return cls(alphabet=config.get("alphabet", ""), mean=config.get("mean", (0.0, 0.0)),
                   std=config.get("std", (1.0, 1.0)), conditional=config.get("conditional", False),
                   source=config.get("source", ""), line_characters=config.get("line_characters", 0))

    # --- encoding -------------------------------------------------------------
    def encode_text(self, texts: Sequence[str]) -> np.ndarray:
        """Texts -> int64 ``(B, U)`` ids; StudioError names characters not in the alphabet."""
        from studio.handwriting.data import encode_texts

        return encode_texts(list(texts), self.alphabet)

    def normalise(self, strokes: np.ndarray) -> np.ndarray:
        from studio.handwriting.data import normalise

        return normalise(strokes, self.mean, self.std)

    def denormalise(self, strokes: np.ndarray) -> np.ndarray:
        from studio.handwriting.data import denormalise

        return denormalise(strokes, self.mean, self.std)

    # --- training, export and evaluation hooks (see studio.training, studio.api) ---------
    @classmethod
    def train_run(cls, *, corpus, run_dir, resume: bool, config, model: dict, stop_after=None, quiet=False):
        """``studio train`` for strokes.  A stroke npz (Omniglot layout) trains the
        unconditional prediction network; a folder (``corpora/handwriting``) trains the
        text-conditioned synthesis network on the synthetic Hershey corpus."""
        from studio.handwriting.train import train_strokes

        conditional = corpus is not None and not str(corpus).endswith(".npz")
        source = "hershey" if conditional else str(corpus)
        return train_strokes(source, run_dir, conditional=conditional, resume=resume,
                             max_minutes=config.max_minutes or 25.0, max_steps=config.max_steps or 1500,
                             seed=config.seed, progress=not quiet, stop_after=stop_after,
                             **({} if resume else dict(hidden_size=model.get("hidden_size", 128),
                                                       layers=model.get("layers", 3),
                                                       batch_size=config.batch_size,
                                                       learning_rate=config.learning_rate,
                                                       eval_every=config.eval_every)))

    @classmethod
    def export_run(cls, run_dir, out_dir, quantize=None):
        from studio.handwriting.export import export_strokes

        if quantize:
            raise StudioError("Stroke models have no int8 export; drop --quantize.")
        export_strokes(run_dir, out_dir)
        return Path(out_dir) / "card.json"

    def evaluate_corpus(self, runtime, corpus: Path, **options) -> dict:
        """``studio eval`` for strokes: nats per point on held-out sequences (the
        Omniglot test split of ``corpus``, or unseen Hershey lines)."""
        from studio.handwriting.evaluate import evaluate_strokes

        corpus = Path(corpus)
        source = corpus if (not self.conditional and corpus.suffix == ".npz") else None
        result = evaluate_strokes(runtime.bundle, source, runtime=runtime)
        return {"model": runtime.bundle.name, "corpus": str(corpus), **result}

    # --- generation -------------------------------------------------------------
    def generate(self, runtime, settings):
        """Draw with the bundle behind ``runtime`` per ``settings`` (a SampleSettings):
        returns a :class:`~studio.handwriting.render.Rendered`."""
        from studio.handwriting.sample import generate

        return generate(self, runtime, settings)
