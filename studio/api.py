"""The Python API: the same calls the CLI and the web UI make.  Torch-free.

    import studio
    [sample] = studio.sample("prose", prime="ROMEO:", temperature=0.8, seed=1, length=200)
    print(sample.text, sample.logprob)

:func:`load` turns a model name or path into everything a shell needs (bundle,
onnxruntime session, domain, head); :func:`sample_iter` is the one sampling entry point,
yielding typed events (:class:`~studio.heads.Started`, :class:`~studio.heads.Token`,
:class:`~studio.heads.Finished`) for every head.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .bundle import Bundle, list_bundles
from .domains import Domain, domain_class, domain_from_config
from .errors import StudioError, require
from .evaluation import EVAL_PIECES, MAX_TWO_SAMPLE_RUNS, TWO_SAMPLE_MIN_PIECES, TWO_SAMPLE_PIECES, evaluate_model
from .formats import CARD, MAX_TOKENS
from .generate import Sample
from .heads import Event, Finished, Head, head_for
from .runtime import Runtime
from .sampling.settings import MAX_BEST_OF, SampleSettings
from .uncertainty import require_mc_graph, require_passes

__all__ = [
    "Loaded",
    "Sample",
    "SampleSettings",
    "evaluate",
    "load",
    "load_bundle",
    "list_models",
    "load_runtime",
    "sample",
    "sample_iter",
    "settings_from",
]


@dataclass(frozen=True)
class Loaded:
    """A model ready to use: its bundle, onnxruntime session, domain and head."""

    bundle: Bundle
    runtime: Runtime
    domain: Domain
    head: Head

    @property
    def name(self) -> str:
        return self.bundle.name


def load_bundle(model: str | Path = "prose") -> Bundle:
    return Bundle.load(model)


def bundle_domain(bundle: Bundle) -> Domain:
    """The domain a bundle's card describes; StudioError when the card is damaged."""
    try:
        return domain_from_config(bundle.card["domain"])
    except (KeyError, TypeError, ValueError) as error:
        raise StudioError(
            f"damaged model card {bundle.path / CARD}: bad domain ({error}); re-export the model"
        ) from None


def bundle_head(bundle: Bundle) -> Head:
    """The head the card records; cards older than that field use their domain's."""
    name = bundle.head
    if name is None:
        name = domain_class(bundle.card["domain"].get("name")).head
    return head_for(name)


@functools.lru_cache(maxsize=8)
def _cached(path: str, mtime: float, device: str, precision: str) -> Loaded:
    bundle = Bundle.load(path)
    return Loaded(
        bundle, Runtime(bundle, device=device, precision=precision), bundle_domain(bundle), bundle_head(bundle)
    )


def load(model: str | Path, device: str = "cpu", precision: str = "auto") -> Loaded:
    """A (cached) loaded model; reloaded when its card changes."""
    bundle = Bundle.load(model)
    card = bundle.path / CARD
    return _cached(str(bundle.path.resolve()), card.stat().st_mtime, device, precision)


def load_runtime(model: str | Path, device: str = "cpu", precision: str = "auto") -> Runtime:
    """The (cached) onnxruntime session of a bundle."""
    return load(model, device, precision).runtime


def settings_from(model: str | Path = "prose", **options: Any) -> SampleSettings:
    """SampleSettings from keyword options; ``max_new_tokens`` is accepted for ``length``."""
    if "max_new_tokens" in options:
        options["length"] = options.pop("max_new_tokens")
    if "stop" in options and isinstance(options["stop"], str):
        options["stop"] = (options["stop"],)
    if "stop" in options:
        options["stop"] = tuple(options["stop"])
    if options.get("length") is None:
        options.pop("length", None)
        if options.get("bars"):
            options["length"] = MAX_TOKENS  # the bar count ends the piece; this is only a cap
    try:
        return SampleSettings(model=str(model), **options)
    except TypeError as error:
        raise StudioError(f"unknown sampling option: {error}") from None


def sample_iter(model: str | Path = "prose", settings: SampleSettings | None = None, **options: Any) -> Iterator[Event]:
    """Stream a generation as typed events: ``Started``, then ``Token`` as tokens are
    committed (text and music), then ``Finished`` with the samples."""
    settings = settings or settings_from(model, **options)
    loaded = load(settings.model, settings.device, settings.precision)
    yield from loaded.head.generate(loaded.runtime, loaded.domain, settings)


def sample(model: str | Path = "prose", settings: SampleSettings | None = None, **options: Any) -> list[Sample]:
    """Generate ``num`` samples (list of :class:`Sample`) with the given settings."""
    results: list[Sample] = []
    for event in sample_iter(model, settings, **options):
        if isinstance(event, Finished):
            results = event.samples
    return results


def evaluate(
    model: str | Path,
    corpus: str | Path,
    device: str = "cpu",
    precision: str = "auto",
    split: str = "all",
    val_fraction: float = 0.1,
    temperature: float = 1.0,
    samples: int | None = None,
    bars: int = 16,
    seed: int = 0,
    two_sample: bool = False,
    two_sample_beats: int = 48,
    mc_dropout: int = 0,
    match_lengths: bool = False,
    two_sample_runs: int = 1,
    best_of: int = 1,
    top_p: float = 1.0,
    pitch_temperature: float = 1.0,
    lockstep: bool = False,
    on_run: Callable[[int], None] | None = None,
) -> dict:
    """Nats and bits per unit of a bundle on a corpus (file or folder), through
    onnxruntime; ``split="val"`` scores only the held-out tail (the last
    ``val_fraction``).  Domains that compare samples (music) also generate ``samples``
    pieces of ``bars`` bars at ``temperature`` (seeded) and set their metrics beside the
    corpus's; the others ignore those four.  ``samples`` defaults to 50, or 100 with
    ``two_sample``: then a classifier two-sample test also tells the generated pieces from
    as many corpus pieces, both cut to ``two_sample_beats`` beats (see
    :mod:`studio.music.two_sample`); with ``match_lengths`` each generated piece is as
    many bars long as a corpus piece drawn for it (within those beats), not ``bars``;
    ``two_sample_runs`` N > 1 repeats the test on N generated sets (seeds ``seed`` on) and
    reports the mean accuracy with its standard error; ``on_run(done)`` is called as each
    generated set is ready.  ``best_of``, ``top_p``, ``pitch_temperature`` and
    ``lockstep`` shape the generated pieces as the sampling options of those names do.
    ``mc_dropout`` N > 0 (token models trained with
    dropout) also scores the text N times with dropout active and adds
    ``nats_per_token_std`` and the other keys of :meth:`studio.uncertainty.MCScores.report`."""
    require(split in ("all", "val"), f"--split must be all or val (got {split!r})")
    require(0 < val_fraction < 1, f"--val-fraction must be between 0 and 1 (got {val_fraction})")
    require(temperature > 0, f"--temp must be positive (got {temperature})")
    samples = samples if samples is not None else (TWO_SAMPLE_PIECES if two_sample else EVAL_PIECES)
    require(samples >= 1, f"--samples must be at least 1 (got {samples})")
    require(bars >= 0, f"--bars must be 0 (the model ends each piece) or more (got {bars})")
    if two_sample:
        require(
            samples >= TWO_SAMPLE_MIN_PIECES,
            f"--two-sample needs at least {TWO_SAMPLE_MIN_PIECES} pieces: give --n {TWO_SAMPLE_MIN_PIECES} or more",
        )
        require(two_sample_beats >= 1, f"--two-sample-beats must be at least 1 (got {two_sample_beats})")
    require(not match_lengths or two_sample, "--match-lengths goes with --two-sample: add --two-sample")
    require(
        1 <= two_sample_runs <= MAX_TWO_SAMPLE_RUNS,
        f"--two-sample-runs must be 1 to {MAX_TWO_SAMPLE_RUNS} (got {two_sample_runs})",
    )
    require(two_sample_runs == 1 or two_sample, "--two-sample-runs goes with --two-sample: add --two-sample")
    require(1 <= best_of <= MAX_BEST_OF, f"--best-of must be 1 (off) to {MAX_BEST_OF} candidates (got {best_of})")
    SampleSettings(top_p=top_p, pitch_temperature=pitch_temperature)  # a bad value: its one-line error, now
    if mc_dropout:
        require_passes(mc_dropout)
    loaded = load(model, device, precision)
    if mc_dropout:
        require(
            loaded.head.name == "categorical",
            f"--mc-dropout scores token models (text, music); {model} is a {loaded.domain.name} model",
        )
        require_mc_graph(loaded.runtime.bundle)
    if two_sample:
        require(
            loaded.domain.compares_samples,
            f"--two-sample compares generated music with a corpus; {model} is a {loaded.domain.name} model",
        )
    return evaluate_model(
        loaded.runtime,
        loaded.domain,
        loaded.head,
        Path(corpus),
        split=split,
        val_fraction=val_fraction,
        temperature=temperature,
        samples=samples,
        bars=bars,
        seed=seed,
        two_sample=two_sample,
        two_sample_beats=two_sample_beats,
        match_lengths=match_lengths,
        mc_dropout=mc_dropout,
        two_sample_runs=two_sample_runs,
        best_of=best_of,
        top_p=top_p,
        pitch_temperature=pitch_temperature,
        lockstep=lockstep,
        on_run=on_run,
    )


def list_models() -> list[dict]:
    """One row per bundle on the search path, as ``studio models`` and the web Models tab
    show it; a damaged bundle's row carries ``error`` instead of figures."""
    rows = []
    for name, path in list_bundles().items():
        try:
            bundle = Bundle.load(path)
        except StudioError as error:
            rows.append({"name": name, "path": str(path), "error": str(error)})
            continue
        value, unit = bundle.validation()
        metrics, corpus = bundle.card.get("metrics", {}), bundle.card.get("corpus") or {}
        rows.append(
            {
                "name": name,
                "path": str(path),
                "domain": bundle.card["domain"].get("name"),
                "head": bundle.head or bundle_head(bundle).name,
                "size_mb": round(bundle.size_bytes() / 1e6, 2),
                "graphs": ",".join(bundle.card["graphs"]),
                "parameters": metrics.get("parameters"),
                "corpus": str(corpus.get("path") or corpus.get("name") or ""),
                "validation": value,
                "unit": f"nats/{unit}",
                "steps": metrics.get("steps"),
                "train_minutes": metrics.get("train_minutes"),
            }
        )
    return rows
