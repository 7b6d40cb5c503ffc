"""What `studio sample` does after parsing: generate, stream, write files atomically."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from .api import load, sample_iter
from .domains import Medium
from .errors import StudioError
from .generate import Sample
from .heads import Finished, Started, Token
from .sampling.settings import SampleSettings
from .writable import check_file, partial_name


def atomic_save(output, path: Path, **kwargs) -> Path:
    """``output.save`` to a temp file beside ``path``, renamed over it when complete, so a
    failure never leaves a partial file."""
    path = Path(path)
    if path.parent and not path.parent.exists():  # the CLI checked --out before sampling (check_file)
        raise StudioError(f"folder {path.parent} does not exist: create it or choose another --out")
    tmp = partial_name(path)
    try:
        output.save(tmp, **kwargs) if kwargs else output.save(tmp)
        os.replace(tmp, path)
    except OSError as error:
        raise StudioError(f"cannot write {path} ({error.strerror}): choose another --out") from None
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def numbered(path: Path, index: int, count: int) -> Path:
    return path if count == 1 else path.with_name(f"{path.stem}-{index + 1}{path.suffix}")


def run_sample(
    settings: SampleSettings,
    *,
    out: Path | None,
    json_lines: bool,
    wav: bool = False,
    piano_roll: bool = False,
    attention_plot: Path | None = None,
) -> list[Sample]:
    """Generate per ``settings`` through :func:`studio.api.sample_iter`, streaming text to
    stdout as it comes, then write every sample's files atomically."""
    loaded = load(settings.model, settings.device, settings.precision)
    domain = loaded.domain
    if out is None and domain.default_suffix:
        out = Path(f"{loaded.name}-seed{settings.seed}{domain.default_suffix}")
    if attention_plot is not None and not (domain.medium is Medium.INK and domain.conditional):
        raise StudioError("--attention-plot needs a text-conditioned handwriting model")
    if out is not None:  # a file that cannot be written is refused before any sampling
        check_file(Path(out), "--out", domain.output_suffixes)
    if attention_plot is not None:
        check_file(Path(attention_plot), "--attention-plot")
    stream = not json_lines and settings.num == 1 and domain.streams_text
    samples: list[Sample] = []
    for event in sample_iter(settings=settings):
        if isinstance(event, Started) and stream:
            sys.stdout.write(event.shown_prime)
        elif isinstance(event, Token) and stream:
            sys.stdout.write(event.text)
        elif isinstance(event, Finished):
            samples = event.samples
        if stream:
            sys.stdout.flush()
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
            if attention_plot is not None:
                plot = numbered(Path(attention_plot), index, len(samples))
                item.output.save_attention_plot(plot)
                written.append(str(plot))
        if json_lines:
            print(json.dumps({**item.to_json(), "files": written[:]} if out else item.to_json(), ensure_ascii=False))
        elif not stream:
            if len(samples) > 1:
                print(f"--- sample {index + 1} (logprob {item.logprob:.2f}) ---")
            print(item.text)
    if written and not json_lines:
        print("wrote " + ", ".join(written), file=sys.stderr)
    return samples
