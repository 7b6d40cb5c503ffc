"""What `studio sample` does after parsing: generate, stream, write files atomically."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from .api import load_runtime
from .errors import StudioError
from .generate import Generation, Sample
from .sampling.settings import SampleSettings


def atomic_save(output, path: Path, **kwargs) -> Path:
    """``output.save`` to a temp file beside ``path``, renamed over it when complete, so a
    failure never leaves a partial file."""
    path = Path(path)
    if path.parent and not path.parent.exists():
        raise StudioError(f"folder {path.parent} does not exist: create it or choose another --out")
    tmp = path.with_name(f".{path.stem}.partial{path.suffix}")
    try:
        output.save(tmp, **kwargs) if kwargs else output.save(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def numbered(path: Path, index: int, count: int) -> Path:
    return path if count == 1 else path.with_name(f"{path.stem}-{index + 1}{path.suffix}")


def run_sample(settings: SampleSettings, *, out: Path | None, json_lines: bool, wav: bool = False,
               piano_roll: bool = False, attention_plot: Path | None = None) -> list[Sample]:
    runtime = load_runtime(settings.model, settings.device, settings.precision)
    domain = runtime.bundle.domain
    suffix = getattr(domain, "default_suffix", None)
    if out is None and suffix:
        out = Path(f"{runtime.bundle.name}-seed{settings.seed}{suffix}")
    if domain.head == "mixture":
        from .api import sample

        samples = sample(settings=settings)
    else:
        generation = Generation(runtime, domain, settings)
        stream = not json_lines and settings.num == 1 and getattr(domain, "streams_text", False)
        if stream:
            sys.stdout.write(domain.decode(generation.prime[generation.hidden:]))
            sys.stdout.flush()
        for row, token in generation:
            if stream:
                sys.stdout.write(domain.token_text(token))
                sys.stdout.flush()
        samples = generation.results
        if stream:
            sys.stdout.write("\n")
    written: list[str] = []
    for index, item in enumerate(samples):
        if out is not None:
            target = numbered(Path(out), index, len(samples))
            written.append(str(atomic_save(item.output, target)))
            if wav:
                written.append(str(atomic_save(item.output, target.with_suffix(".wav"))))
            if piano_roll:
                written.append(str(atomic_save(item.output, target.with_suffix(".png"))))
            if attention_plot is not None and hasattr(item.output, "save_attention_plot"):
                plot = numbered(Path(attention_plot), index, len(samples))
                item.output.save_attention_plot(plot)
                written.append(str(plot))
        if json_lines:
            print(json.dumps({**item.to_json(), "files": written[:]} if out else item.to_json(),
                             ensure_ascii=False))
        elif not getattr(domain, "streams_text", False) or settings.num > 1:
            if len(samples) > 1:
                print(f"--- sample {index + 1} (logprob {item.logprob:.2f}) ---")
            print(item.text)
    if written and not json_lines:
        print("wrote " + ", ".join(written), file=sys.stderr)
    return samples
