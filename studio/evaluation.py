"""``studio eval``: how well a bundle models a corpus, and how its samples compare.

Every head scores the corpus teacher-forced through onnxruntime (mean nats and bits per
token or point, :meth:`studio.heads.Head.score`).  A domain that ``compares_samples``
(music) also has ``samples`` pieces generated as one batch at the given settings and
sets them beside the corpus with its own pure metrics (:meth:`Domain.sample_report`).
With ``two_sample`` it also runs the domain's classifier two-sample test on the same
pieces (:meth:`Domain.two_sample_report`; music: :mod:`studio.music.two_sample`); with
``two_sample_runs`` N > 1, on N sets generated with seeds ``seed .. seed + N - 1`` (the
accuracy is their mean, with its standard error).  With ``split`` "val" the held-out
pieces are those the trainer held out (:func:`split_documents`, in the file order the
card's ``--held-out`` records) and the same test also sets the training pieces beside
the held-out ones
(``two_sample_reference_accuracy``: what a model that wrote exactly like the pieces it
trained on would measure).
With ``match_lengths``, as many corpus pieces as ``samples`` are drawn (seeded) and each
generated piece is asked for as long as its corpus piece within the compared window
(:meth:`Domain.matched_lengths`: bars), instead of ``bars`` for all: a corpus of short
pieces is then not told from the samples by their length alone.  With ``bars`` 0 each
piece is as long as the model makes it: it ends where the model writes the end of the
piece (at most :data:`MODEL_ENDS_CAP_BARS` bars' worth of events), so the lengths are the
model's own, as the corpus's are its composers'.
With ``mc_dropout`` N, token models are also scored N times with dropout active
(:mod:`studio.uncertainty`): ``nats_per_token_std`` is the spread of the per-pass means.
The report is flat (one number per key, the two-sample test's separating features
aside) so the CLI's table and ``--json`` both read it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .corpus import held_out_of
from .data import split_point
from .domains import Document, Domain, read_documents
from .errors import require
from .formats import MAX_TOKENS
from .generate import Generation
from .heads import Head
from .heads.categorical import scored_ids
from .runtime import Runtime
from .sampling.settings import SampleSettings
from .uncertainty import MCDropout

EVAL_PIECES = 50  # pieces generated to set beside the corpus
TWO_SAMPLE_PIECES = 100  # with --two-sample: a steadier accuracy (about +-0.05 at 0.5)
TWO_SAMPLE_MIN_PIECES = 10  # two per fold of five
MAX_TWO_SAMPLE_RUNS = 100  # --two-sample-runs: each run generates its own set
MODEL_ENDS_CAP_BARS = 64  # --bars 0: a model that never ends a piece stops here
TOKENS_PER_BAR_CAP = 256  # a safety cap only (chorales use ~45): the bar count ends a piece


def evaluate_model(
    runtime: Runtime,
    domain: Domain,
    head: Head,
    corpus: Path,
    *,
    split: str = "all",
    val_fraction: float = 0.1,
    temperature: float = 1.0,
    samples: int = 50,
    bars: int = 16,
    seed: int = 0,
    two_sample: bool = False,
    two_sample_beats: int = 48,
    two_sample_runs: int = 1,
    mc_dropout: int = 0,
    match_lengths: bool = False,
    best_of: int = 1,
    top_p: float = 1.0,
    pitch_temperature: float = 1.0,
    lockstep: bool = False,
    on_run: Callable[[int], None] | None = None,
) -> dict:
    """``on_run(done)`` is called as each generated set of the two-sample test is ready;
    ``best_of`` K > 1: each generated piece is the likeliest of K drawn for it
    (``studio sample --best-of``); ``top_p``, ``pitch_temperature`` and ``lockstep`` as
    ``studio sample --top-p``, ``--pitch-temp`` and ``--lockstep``."""
    held_out = held_out_of(runtime.bundle.card)
    score = head.score(runtime, domain, corpus, split, val_fraction, held_out)
    report: dict[str, Any] = {"model": runtime.bundle.name, "corpus": str(corpus), **score.to_json()}
    if mc_dropout:
        scorer = MCDropout(runtime.bundle, runtime.device, runtime.threads)
        ids = scored_ids(domain, corpus, split, val_fraction, held_out)
        report.update(scorer.score(ids, mc_dropout, seed, getattr(domain, "restart_id", None)).report())
    if not domain.compares_samples:
        return report
    documents = read_documents(type(domain), Path(corpus), held_out)
    trained_on: list[Document] = []
    if split == "val":
        trained_on, documents = split_documents(domain, documents, val_fraction)
        report.update(held_out=held_out)
    report.update(pieces=len(documents))

    def compared(run_seed: int) -> tuple[list, list[Document]]:
        return comparison_samples(
            runtime,
            domain,
            documents,
            samples=samples,
            bars=bars,
            seed=run_seed,
            temperature=temperature,
            best_of=best_of,
            top_p=top_p,
            pitch_temperature=pitch_temperature,
            lockstep=lockstep,
            match_lengths=match_lengths,
            window=two_sample_beats,
        )

    outputs, shown = compared(seed)
    if on_run:
        on_run(1)
    shown_bars = "matched" if match_lengths else (bars or "model")
    report.update(samples=len(outputs), bars=shown_bars, temperature=temperature, seed=seed)
    if best_of > 1:
        report.update(best_of=best_of)
    if top_p < 1.0:
        report.update(top_p=top_p)
    if pitch_temperature != 1.0:
        report.update(pitch_temperature=pitch_temperature)
    if lockstep:
        report.update(lockstep=True)
    report.update(domain.sample_report(outputs, shown))
    if two_sample:
        more = []
        for run in range(1, two_sample_runs):
            more.append(compared(seed + run))
            if on_run:
                on_run(run + 1)
        report.update(
            domain.two_sample_report(
                outputs, shown, length=two_sample_beats, seed=seed, more_runs=more, reference=trained_on
            )
        )
    return report


def split_documents(
    domain: Domain, documents: Sequence[Document], val_fraction: float
) -> tuple[list[Document], list[Document]]:
    """(the documents the trainer trained on, those it held out): the trainer cuts the
    joined token stream at ``1 - val_fraction`` of its tokens, so a document wholly
    before the cut was trained on and one wholly after it was held out; the one the cut
    falls in was partly seen and is in neither."""
    ids = domain.corpus_ids(documents)  # each document between two separators
    separators = np.flatnonzero(ids == domain.separator_id)
    require(
        len(separators) == len(documents) + 1,
        f"cannot tell this corpus's {len(documents)} documents apart in its tokens: use --split all",
    )
    cut = split_point(len(ids), val_fraction)
    trained = [doc for doc, end in zip(documents, separators[1:]) if end < cut]
    held = [doc for doc, opening in zip(documents, separators[:-1]) if opening >= cut]
    require(held, f"no whole piece lies in the last {val_fraction:.0%} of the corpus: raise --val-fraction")
    return trained, held


def comparison_samples(
    runtime: Runtime,
    domain: Domain,
    documents: list[Document],
    *,
    samples: int,
    bars: int,
    seed: int,
    match_lengths: bool = False,
    window: int = 48,
    **settings: Any,
) -> tuple[list, list[Document]]:
    """Generated outputs to set beside corpus ``documents``, and the documents to set them
    beside: ``samples`` pieces of ``bars`` bars and all the documents; with
    ``match_lengths``, one piece per document drawn (seeded, at most ``samples``), as long
    as that document within ``window`` (:meth:`Domain.matched_lengths`) and in its metre
    (:meth:`Domain.matched_metres`: bars of another metre would not be as long), a batch
    per length and metre seeded by :func:`length_seed`.  ``settings``: other sample
    settings (temperature, top_p)."""
    if not match_lengths:
        return [sample.output for sample in _generate(runtime, domain, seed, samples, bars, settings)], documents
    chosen = np.sort(np.random.default_rng(seed).permutation(len(documents))[: min(samples, len(documents))])
    documents = [documents[index] for index in chosen]
    wanted = list(zip(domain.matched_lengths(documents, window), domain.matched_metres(documents)))
    outputs: list = [None] * len(documents)
    for length, metre in sorted(set(wanted), key=lambda group: (group[0], group[1] or "")):
        rows = [row for row, want in enumerate(wanted) if want == (length, metre)]
        batch_seed = length_seed(seed, length, metre)
        batch = _generate(runtime, domain, batch_seed, len(rows), length, {**settings, "metre": metre})
        for row, sample in zip(rows, batch):
            outputs[row] = sample.output
    return outputs, documents


def length_seed(seed: int, length: int, metre: str | None = None) -> int:
    """The seed of the batch of ``length``-bar pieces (in ``metre``) in run ``seed``: a
    hash of all three, so no two runs or batches share their draws (``seed + length``
    would give run 1's 8-bar pieces the same openings as run 0's 9-bar ones)."""
    return int(np.random.SeedSequence([seed, length, *(metre or "").encode()]).generate_state(1)[0])


def _generate(runtime: Runtime, domain: Domain, seed: int, num: int, bars: int, settings: dict) -> list:
    """``num`` pieces of ``bars`` bars (0: ended by the model), one batch."""
    return Generation(
        runtime,
        domain,
        SampleSettings(
            model=str(runtime.bundle.path),
            seed=seed,
            num=num,
            bars=bars or None,
            length=min(MAX_TOKENS, (bars or MODEL_ENDS_CAP_BARS) * TOKENS_PER_BAR_CAP),
            **settings,
        ),
    ).run()
