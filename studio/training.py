"""Train then export, for every domain: what ``studio train`` and ``studio export`` call."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .config import TrainConfig
from .errors import StudioError
from .export import export_run
from .runs import RunDir
from .token_cache import CacheSettings
from .train import train
from .writable import check_folder

EXPORT_ROOT = Path("export")


def run_training(
    *,
    corpus: Path | None,
    resume: Path | None,
    name: str | None,
    domain: str | None,
    domain_options: dict,
    model: dict,
    config: TrainConfig,
    stop_after: int | None,
    out: Path | None,
    quantize: str | None,
    export: bool,
    runs_dir: Path,
    quiet: bool,
    int8_only: bool = False,
    cache: CacheSettings | None = None,
    head: str | None = None,
) -> Path:
    """Train (or resume) a run, then export it unless paused, interrupted or asked not to;
    ``cache`` chooses the token cache (see :mod:`studio.token_cache`), ``head`` the model
    head when the domain offers more than one (``--model``)."""
    if resume is not None:
        run_dir = Path(resume)
        if not (run_dir / "config.json").exists():
            raise StudioError(f"nothing to resume in {run_dir}: no config.json")
    else:
        if corpus is None or not Path(corpus).exists():
            raise StudioError(f"corpus not found: {corpus} (give a file or a folder)")
        run_dir = Path(runs_dir) / (name or Path(corpus).resolve().stem)
    if int(os.environ.get("RANK", "0")) == 0:  # rank 0 alone writes, so it alone tries writing
        if resume is None:
            check_folder(run_dir, "--runs-dir")  # before the corpus is read, as the bundle's folder below
        if export:
            check_folder(out or EXPORT_ROOT / run_dir.name, "--out")
    run = train(
        corpus,
        run_dir,
        domain_name=domain,
        domain_options=domain_options,
        model_overrides=model,
        train_config=config,
        resume=resume is not None,
        stop_after=stop_after,
        quiet=quiet,
        cache=cache,
        model=head,
    )
    summary_file = run.path / "summary.json"
    reason = json.loads(summary_file.read_text())["stop_reason"] if summary_file.exists() else ""
    stopped_early = reason.startswith(("paused", "interrupted"))
    if export and not stopped_early and int(os.environ.get("RANK", "0")) == 0:
        export_run(run.path, out or EXPORT_ROOT / run.path.name, quantize=quantize, drop_fp32=int8_only, quiet=quiet)
    return run.path


def export_any(run_dir: Path, out_dir: Path, **options: Any) -> Path:
    """Export a run of any domain to a bundle folder; returns the card path.  ``options``:
    :func:`studio.export.export_run`'s (``quantize``, ``drop_fp32``, ``fp16_weights`` ...)."""
    if not RunDir(run_dir).path.joinpath("config.json").exists():
        raise StudioError(f"{run_dir} is not a training run (no config.json): train one with `studio train`")
    check_folder(out_dir, "--out")
    return export_run(Path(run_dir), Path(out_dir), **options)
