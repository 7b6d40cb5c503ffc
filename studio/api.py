"""The Python API: the same calls the CLI and the web UI make.  Torch-free.

    import studio
    [sample] = studio.sample("prose", prime="ROMEO:", temperature=0.8, seed=1, length=200)
    print(sample.text, sample.logprob)
"""

from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import Any, Iterator

from .bundle import Bundle
from .errors import StudioError, require
from .generate import Generation, Sample, nats_per_token
from .runtime import Runtime
from .sampling.settings import SampleSettings

__all__ = ["Sample", "SampleSettings", "evaluate", "load_bundle", "load_runtime", "sample",
           "sample_iter"]


def load_bundle(model: str | Path = "prose") -> Bundle:
    return Bundle.load(model)


@functools.lru_cache(maxsize=8)
def _cached_runtime(path: str, mtime: float, device: str, precision: str) -> Runtime:
    return Runtime(Bundle.load(path), device=device, precision=precision)


def load_runtime(model: str | Path, device: str = "cpu", precision: str = "auto") -> Runtime:
    """A (cached) onnxruntime session for a bundle; reloaded when its card changes."""
    bundle = Bundle.load(model)
    card = bundle.path / "card.json"
    return _cached_runtime(str(bundle.path.resolve()), card.stat().st_mtime, device, precision)


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
            options["length"] = 20_000  # the bar count ends the piece; this is only a cap
    try:
        return SampleSettings(model=str(model), **options)
    except TypeError as error:
        raise StudioError(f"unknown sampling option: {error}") from None


def sample_iter(model: str | Path = "prose", settings: SampleSettings | None = None,
                **options: Any) -> Iterator[tuple[int, int, str] | list[Sample]]:
    """Stream a generation: yields ``(row, token_id, token_text)`` as tokens are committed,
    then, last, the list of finished samples."""
    settings = settings or settings_from(model, **options)
    runtime = load_runtime(settings.model, settings.device, settings.precision)
    domain = runtime.bundle.domain
    if domain.head == "mixture":
        output = domain.generate(runtime, settings)
        yield [Sample(output.text, [], float(getattr(output, "logprob", math.nan)), settings, output)]
        return
    generation = Generation(runtime, domain, settings)
    for row, token in generation:
        yield row, token, domain.token_text(token)
    yield generation.results


def sample(model: str | Path = "prose", settings: SampleSettings | None = None,
           **options: Any) -> list[Sample]:
    """Generate ``num`` samples (list of :class:`Sample`) with the given settings."""
    results: list[Sample] = []
    for item in sample_iter(model, settings, **options):
        if isinstance(item, list):
            results = item
    return results


def evaluate(model: str | Path, corpus: str | Path, device: str = "cpu",
             precision: str = "auto", split: str = "all", val_fraction: float = 0.1,
             temperature: float = 1.0, samples: int = 50, bars: int = 16, seed: int = 0) -> dict:
    """Nats and bits per token of a bundle on a corpus (file or folder), through onnxruntime.
    Documents are joined by the separator, as in training; ``split="val"`` scores only
    the last ``val_fraction`` of the tokens (the usual held-out split).  Music models also
    generate ``samples`` pieces of ``bars`` bars at ``temperature`` (seeded) and compare
    their metrics with the corpus's; text models ignore those four."""
    if split not in ("all", "val"):
        raise StudioError(f"--split must be all or val (got {split!r})")
    require(0 < val_fraction < 1, f"--val-fraction must be between 0 and 1 (got {val_fraction})")
    require(temperature > 0, f"--temp must be positive (got {temperature})")
    require(samples >= 1 and bars >= 1, f"--samples and --bars must be at least 1 (got {samples}, {bars})")
    runtime = load_runtime(model, device, precision)
    domain = runtime.bundle.domain
    if hasattr(domain, "evaluate_corpus"):
        return domain.evaluate_corpus(runtime, Path(corpus), split=split, val_fraction=val_fraction,
                                      temperature=temperature, samples=samples, bars=bars, seed=seed)
    documents = domain.read_corpus(Path(corpus))
    ids = domain.corpus_ids(documents)
    if split == "val":
        ids = ids[int(len(ids) * (1 - val_fraction)):]
    nats, count = nats_per_token(runtime, ids)
    return {"model": runtime.bundle.name, "corpus": str(corpus), "nats_per_token": round(nats, 5),
            "bits_per_token": round(nats / math.log(2), 5), "tokens": count}
