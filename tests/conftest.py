"""Shared fixtures: a tiny text corpus and a tiny trained bundle (session scoped).

Tests never import a ``tests`` package (Hershey-Fonts installs one into site-packages);
helpers live here as fixtures instead.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

ROOT = Path(__file__).resolve().parent.parent
SHAKESPEARE = ROOT / "corpora" / "shakespeare" / "input.txt"
STUDIO = [sys.executable, "-m", "studio"]


@pytest.fixture(scope="session", autouse=True)
def token_cache_dir(tmp_path_factory) -> Path:
    """Token caches of every test (and of the `studio` processes tests start) go to one
    session folder, never the user's ~/.cache."""
    folder = tmp_path_factory.mktemp("token-cache")
    os.environ["STUDIO_CACHE_DIR"] = str(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> Path:
    """Two small text files cut from tinyshakespeare (about 30 k characters)."""
    folder = tmp_path_factory.mktemp("corpus")
    text = SHAKESPEARE.read_text()[:30_000]
    (folder / "a.txt").write_text(text[:15_000])
    (folder / "b.txt").write_text(text[15_000:])
    return folder


@pytest.fixture(scope="session")
def tiny_bundle(tiny_corpus, tmp_path_factory) -> Path:
    """A 1x48 LSTM trained for 40 steps and exported with an int8 graph."""
    from studio.config import TrainConfig
    from studio.training import run_training

    root = tmp_path_factory.mktemp("tiny")
    config = TrainConfig(
        batch_size=8, seq_len=32, max_steps=40, eval_every=20, seed=7, learning_rate=1e-2, warmup_steps=5
    )
    run_training(
        corpus=tiny_corpus,
        resume=None,
        name="tiny",
        domain="chars",
        domain_options={},
        model=dict(hidden_size=48, layers=1, embedding_size=16, dropout=0.0),
        config=config,
        stop_after=None,
        out=root / "export" / "tiny",
        quantize="int8",
        export=True,
        runs_dir=root / "runs",
        quiet=True,
    )
    return root / "export" / "tiny"


@pytest.fixture
def studio_env(tiny_bundle) -> dict:
    """Environment for subprocess runs of `studio` that can see the tiny bundle."""
    env = dict(os.environ)
    env["STUDIO_MODELS"] = str(tiny_bundle.parent)
    env["PYTHONPATH"] = str(ROOT)
    return env


@pytest.fixture(scope="session")
def torchrun():
    """``torchrun(nproc, *args)``: the command line of ``torchrun --standalone
    --nproc-per-node NPROC ARGS...`` in this interpreter."""

    def command(nproc: int, *args: str) -> list[str]:
        return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc), *args]

    return command


@pytest.fixture
def straight_and_resumed(tiny_corpus, tmp_path):
    """A function ``(model_overrides, settings) -> straight run`` that trains the tiny
    corpus straight through ``settings["max_steps"]`` and again in two halves (stopped at
    ``eval_every``, then resumed), and asserts that both runs logged the same losses."""
    import csv

    from studio.config import TrainConfig
    from studio.train import train

    def rows(run):
        with open(run.path / "metrics.csv") as handle:
            return {int(r["step"]): r for r in csv.DictReader(handle)}

    def check(model: dict, settings: dict):
        runs = {}
        for name, stop in (("straight", None), ("halves", settings["eval_every"])):
            runs[name] = train(
                tiny_corpus,
                tmp_path / name,
                domain_name="chars",
                model_overrides=model,
                train_config=TrainConfig(**settings),
                stop_after=stop,
                quiet=True,
            )
        resumed = train(None, tmp_path / "halves", resume=True, quiet=True)
        a, b = rows(runs["straight"]), rows(resumed)
        assert set(a) == set(b) and settings["max_steps"] in a
        assert all(abs(float(a[s]["train_loss"]) - float(b[s]["train_loss"])) < 1e-6 for s in a)
        return runs["straight"]

    return check
