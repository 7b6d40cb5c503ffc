"""One entry point for training and exporting any domain.

Categorical domains share :mod:`studio.train` and :mod:`studio.export`; a domain class
that brings its own trainer (the mixture head) provides ``train_run`` / ``export_run``
classmethods with the same arguments, so callers never branch on a domain's name.
"""

from __future__ import annotations

import json
from pathlib import Path

from .config import TrainConfig
from .errors import StudioError


def _domain_class_for(corpus: Path | None, resume: Path | None, domain: str | None):
    from .domains import domain_class, guess_domain

    if resume is not None:
        config_file = Path(resume) / "config.json"
        if not config_file.exists():
            raise StudioError(f"nothing to resume in {resume}: no config.json")
        return domain_class(json.loads(config_file.read_text())["domain"])
    if not Path(corpus).exists():
        raise StudioError(f"corpus not found: {corpus} (give a file or a folder)")
    return domain_class(domain or guess_domain(Path(corpus)))


def run_training(*, corpus: Path | None, resume: Path | None, name: str | None, domain: str | None,
                 domain_options: dict, model: dict, config: TrainConfig, stop_after: int | None,
                 out: Path | None, quantize: str | None, export: bool, runs_dir: Path,
                 quiet: bool, int8_only: bool = False) -> Path:
    """Train (or resume) a run, then export it unless paused or asked not to."""
    import os

    cls = _domain_class_for(corpus, resume, domain)
    if resume is not None:
        run_dir = Path(resume)
    else:
        run_dir = Path(runs_dir) / (name or Path(corpus).resolve().stem)
    if hasattr(cls, "train_run"):
        run = cls.train_run(corpus=corpus, run_dir=run_dir, resume=resume is not None,
                            config=config, model=model, stop_after=stop_after, quiet=quiet)
        run_path = Path(run)
    else:
        from .train import train

        run = train(corpus, run_dir, domain_name=cls.name, domain_options=domain_options,
                    model_overrides=model, train_config=config, resume=resume is not None,
                    stop_after=stop_after, quiet=quiet)
        run_path = run.path
    summary_file = run_path / "summary.json"
    paused = summary_file.exists() and "paused" in json.loads(summary_file.read_text())["stop_reason"]
    if export and not paused and int(os.environ.get("RANK", "0")) == 0:
        export_any(run_path, out or Path("export") / run_path.name, quantize=quantize,
                   drop_fp32=int8_only)
    return run_path


def export_any(run_dir: Path, out_dir: Path, *, quantize: str | None = None,
               drop_fp32: bool = False, drop_int8: bool = False) -> Path:
    """Export a run of any domain to a bundle folder; returns the card path."""
    run_dir = Path(run_dir)
    config_file = run_dir / "config.json"
    if not config_file.exists():
        raise StudioError(f"{run_dir} is not a training run (no config.json): train one with `studio train`")
    from .domains import domain_class

    cls = domain_class(json.loads(config_file.read_text())["domain"])
    if hasattr(cls, "export_run"):
        return cls.export_run(run_dir, out_dir, quantize=quantize)
    from .export import export_run

    return export_run(run_dir, out_dir, quantize=quantize, drop_fp32=drop_fp32, drop_int8=drop_int8)
