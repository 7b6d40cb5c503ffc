"""``studio eval``: how well a bundle models a corpus, and how its samples compare.

Every head scores the corpus teacher-forced through onnxruntime (mean nats and bits per
token or point, :meth:`studio.heads.Head.score`).  A domain that ``compares_samples``
(music) also has ``samples`` pieces generated as one batch at the given settings and
sets them beside the corpus with its own pure metrics (:meth:`Domain.sample_report`).
With ``two_sample`` it also runs the domain's classifier two-sample test on the same
pieces (:meth:`Domain.two_sample_report`; music: :mod:`studio.music.two_sample`).
With ``mc_dropout`` N, token models are also scored N times with dropout active
(:mod:`studio.uncertainty`): ``nats_per_token_std`` is the spread of the per-pass means.
The report is flat (one number per key, the two-sample test's separating features
aside) so the CLI's table and ``--json`` both read it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .domains import Domain
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
    mc_dropout: int = 0,
) -> dict:
    score = head.score(runtime, domain, corpus, split, val_fraction)
    report: dict[str, Any] = {"model": runtime.bundle.name, "corpus": str(corpus), **score.to_json()}
    if mc_dropout:
        scorer = MCDropout(runtime.bundle, runtime.device, runtime.threads)
        ids = scored_ids(domain, corpus, split, val_fraction)
        report.update(scorer.score(ids, mc_dropout, seed, getattr(domain, "restart_id", None)).report())
    if not domain.compares_samples:
        return report
    documents = domain.read_corpus(Path(corpus))
    if split == "val":
        documents = documents[min(len(documents) - 1, int(len(documents) * (1 - val_fraction))) :]
    settings = SampleSettings(
        model=str(runtime.bundle.path),
        temperature=temperature,
        seed=seed,
        num=samples,
        bars=bars,
        length=min(MAX_TOKENS, bars * TOKENS_PER_BAR_CAP),
    )
    generated = Generation(runtime, domain, settings).run()
    report.update(pieces=len(documents), samples=len(generated), bars=bars, temperature=temperature, seed=seed)
    outputs = [sample.output for sample in generated]
    report.update(domain.sample_report(outputs, documents))
    if two_sample:
        report.update(domain.two_sample_report(outputs, documents, length=two_sample_beats, seed=seed))
    return report
