"""DDP on this CPU: two gloo processes under torchrun train like one process with the same
effective batch, rank 0 alone writes files, and one process resumes their checkpoint.

The two-process run is started once per module (about 15 s on two cores) with the
command a user types; everything else reads its run folder.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from typer.testing import CliRunner

from studio.cli import app
from studio.config import TrainConfig
from studio.data import StreamBatches
from studio.train import train

ROOT = Path(__file__).resolve().parent.parent
MODEL = dict(hidden_size=24, layers=1, embedding_size=8, dropout=0.0)
# per process; the single-process reference runs WORLD x BATCH streams
WORLD, BATCH = 2, 4
SCHEDULE = dict(seq_len=16, learning_rate=1e-2, warmup_steps=2, max_steps=12, eval_every=3, seed=5)
FLAGS = [
    "--domain",
    "chars",
    "--hidden-size",
    "24",
    "--layers",
    "1",
    "--embedding-size",
    "8",
    "--dropout",
    "0",
    "--batch-size",
    str(BATCH),
    "--seq-len",
    "16",
    "--lr",
    "1e-2",
    "--warmup-steps",
    "2",
    "--max-steps",
    "12",
    "--eval-every",
    "3",
    "--seed",
    "5",
]
TOLERANCE = 1e-4  # float sums in another order; observed differences are about 1e-6

# Loaded by every rank through PYTHONPATH: logs each write under the working folder to
# writes.<RANK>, so the test sees which rank touched which file.
WRITE_LOG = """
import os, sys
_root = os.getcwd()
_log = open(os.path.join(os.environ["STUDIO_TEST_WRITE_LOG"], "writes." + os.environ.get("RANK", "-")),
            "a", buffering=1)
_WRITE = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC

def _inside(path):
    return isinstance(path, (str, bytes, os.PathLike)) and \\
        os.path.abspath(os.fsdecode(path)).startswith(_root + os.sep)

def _hook(event, args):
    if event == "open" and isinstance(args[2], int) and args[2] & _WRITE and _inside(args[0]):
        _log.write(os.path.relpath(os.fsdecode(args[0]), _root) + "\\n")
    elif event in ("os.rename", "os.mkdir", "os.remove"):
        target = args[1] if event == "os.rename" else args[0]  # rename: (src, dst, ...)
        if _inside(target):
            _log.write(event + " " + os.path.relpath(os.fsdecode(target), _root) + "\\n")

sys.addaudithook(_hook)
"""


def metrics(run_dir: Path) -> dict[int, dict]:
    with open(run_dir / "metrics.csv") as handle:
        return {int(r["step"]): r for r in csv.DictReader(handle)}


@pytest.fixture(scope="module")
def ddp_run(tiny_corpus, tmp_path_factory, torchrun) -> dict:
    """`torchrun --nproc-per-node 2 -m studio train ...` in a fresh folder, with writes logged."""
    work = tmp_path_factory.mktemp("ddp")
    hook = tmp_path_factory.mktemp("hook")
    (hook / "sitecustomize.py").write_text(WRITE_LOG)
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "STUDIO_TEST_WRITE_LOG": str(hook),
        "PYTHONPATH": os.pathsep.join([str(hook), str(ROOT)]),
    }
    command = torchrun(str(WORLD), "-m", "studio", "train", str(tiny_corpus), "--name", "ddp", *FLAGS)
    done = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    writes = {rank: sorted(set((hook / f"writes.{rank}").read_text().split("\n")) - {""}) for rank in range(WORLD)}
    return {"work": work, "run": work / "runs" / "ddp", "writes": writes, "output": done.stdout}


@pytest.fixture(scope="module")
def reference(tiny_corpus, tmp_path_factory) -> Path:
    """One process, the same seed and schedule, WORLD x BATCH streams."""
    config = TrainConfig(batch_size=WORLD * BATCH, **SCHEDULE)
    run = train(
        tiny_corpus,
        tmp_path_factory.mktemp("one") / "one",
        domain_name="chars",
        model_overrides=MODEL,
        train_config=config,
        quiet=True,
    )
    return run.path


def test_two_processes_follow_one_process_with_the_same_effective_batch(ddp_run, reference):
    two, one = metrics(ddp_run["run"]), metrics(reference)
    assert set(two) == set(one) == {1, 3, 6, 9, 10, 12}
    for step in one:
        assert float(two[step]["train_loss"]) == pytest.approx(float(one[step]["train_loss"]), abs=TOLERANCE)
        assert two[step]["learning_rate"] == one[step]["learning_rate"]
        if one[step]["val_loss"]:
            assert float(two[step]["val_loss"]) == pytest.approx(float(one[step]["val_loss"]), abs=TOLERANCE)
    assert float(one[12]["train_loss"]) < float(one[1]["train_loss"]) - 0.3  # the curve moves


def test_effective_batch_and_learning_rate_are_reported(ddp_run):
    lines = [line for line in ddp_run["output"].splitlines() if "effective batch" in line]
    assert len(lines) == 1  # rank 0 alone speaks
    assert f"effective batch {WORLD * BATCH} x 16" in lines[0] and "lr 0.01" in lines[0]


def test_rank_zero_alone_writes_files(ddp_run):
    writes = ddp_run["writes"]
    assert writes[1] == []
    written = "\n".join(writes[0])
    for name in (
        "metrics.csv",
        "config.json",
        "checkpoint.pt",
        "best.pt",
        "loss.png",
        "summary.json",
        "card.json",
        "model.onnx",
    ):
        assert name in written, f"rank 0 never wrote {name}: {writes[0]}"
    with open(ddp_run["run"] / "metrics.csv") as handle:
        steps = [int(row["step"]) for row in csv.DictReader(handle)]
    assert steps == sorted(set(steps))  # each row once, in order
    assert ddp_run["output"].count("exported") == 1
    bundle = ddp_run["work"] / "export" / "ddp"
    card = json.loads((bundle / "card.json").read_text())
    summary = json.loads((ddp_run["run"] / "summary.json").read_text())
    assert (card["name"], card["domain"]["name"], card["metrics"]["steps"]) == ("ddp", "chars", 12)
    assert card["metrics"]["val_nats_per_token"] == round(summary["best_val_nats"], 5)
    graph = onnx.load(str(bundle / card["graphs"]["fp32"]))
    onnx.checker.check_model(graph)
    assert [i.name for i in graph.graph.input] == ["tokens", "h", "c"]


def test_checkpoint_holds_the_state_of_every_stream(ddp_run):
    checkpoint = torch.load(ddp_run["run"] / "checkpoint.pt", weights_only=False)
    assert checkpoint["step"] == 12
    assert all(s.shape == (1, WORLD * BATCH, 24) and s.dtype == torch.float32 for s in checkpoint["carried_state"])
    summary = json.loads((ddp_run["run"] / "summary.json").read_text())
    assert summary["stop_reason"] == "finished"
    assert (summary["world_size"], summary["effective_batch"]) == (WORLD, WORLD * BATCH)


def test_one_process_resumes_a_two_process_checkpoint(ddp_run, tmp_path, capsys):
    run_dir = tmp_path / "ddp"
    shutil.copytree(ddp_run["run"], run_dir)
    before = metrics(run_dir)
    run = train(None, run_dir, resume=True, train_config=TrainConfig(max_steps=18), quiet=True)
    assert "carried 8 streams, this run has 4" in capsys.readouterr().out
    after = metrics(run.path)
    assert {step: after[step] for step in before} == before
    assert max(after) == 18 and torch.load(run.checkpoint, weights_only=False)["step"] == 18
    # the weights carried over: validation goes on from where two processes left it
    assert float(after[18]["val_loss"]) < float(before[12]["val_loss"]) + 0.05


def test_two_processes_resume_and_agree_on_the_time_limit(ddp_run, tmp_path, torchrun):
    """Each rank carries its own rows back in; rank 0's clock stops both ranks at once."""
    run_dir = tmp_path / "ddp"
    shutil.copytree(ddp_run["run"], run_dir)
    command = torchrun(
        str(WORLD),
        "-m",
        "studio",
        "train",
        "--resume",
        str(run_dir),
        "--max-steps",
        "18",
        "--max-minutes",
        "0.0001",
        "--no-export",
        "--quiet",
    )
    done = subprocess.run(
        command, cwd=tmp_path, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=240
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "carried state starts from zeros" not in done.stdout
    summary = json.loads((run_dir / "summary.json").read_text())
    # no time left at all: both ranks agree before a step, score the last weights and stop
    assert summary["stop_reason"].startswith("time limit") and "no time left" in summary["stop_reason"]
    assert summary["step"] == 12
    assert torch.load(run_dir / "checkpoint.pt", weights_only=False)["step"] == 12


def test_rank_blocks_tile_the_single_process_streams():
    ids = np.arange(1000)
    whole = StreamBatches(ids, WORLD * BATCH, 16)
    parts = [StreamBatches(ids, BATCH, 16, rank, WORLD) for rank in range(WORLD)]
    assert all(p.windows_per_epoch == whole.windows_per_epoch for p in parts)
    for index in (0, 1, whole.windows_per_epoch + 2):
        for half in (0, 1):  # inputs, targets
            joined = np.concatenate([p.window(index)[half] for p in parts])
            assert np.array_equal(joined, whole.window(index)[half])


def test_nproc_relaunches_the_same_command_under_torchrun(monkeypatch):
    calls = []
    monkeypatch.setattr(subprocess, "call", lambda command, env: calls.append((command, env)) or 3)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    argv = ["train", "corpus.txt", "--nproc", "2", "--max-steps", "5"]
    monkeypatch.setattr(sys, "argv", ["studio", *argv])
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 3  # torchrun's exit status is ours
    command, env = calls[0]
    assert command == [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node=2",
        "-m",
        "studio",
        "train",
        "corpus.txt",
        "--max-steps",
        "5",
    ]
    assert int(env["OMP_NUM_THREADS"]) >= 1


def test_nproc_inside_torchrun_is_refused(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    result = CliRunner().invoke(app, ["train", "corpus.txt", "--nproc", "2"])
    assert result.exit_code == 1 and "drop --nproc" in result.output


def test_stroke_models_train_under_ddp_too(tmp_path, torchrun):
    """The one trainer runs the mixture head under torchrun: each rank reads its half of
    every global batch, rank 0 alone writes the run and the bundle."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    command = torchrun(
        str(WORLD),
        "-m",
        "studio",
        "train",
        str(ROOT / "corpora" / "handwriting" / "omniglot_strokes.npz"),
        "--domain",
        "strokes",
        "--name",
        "pen",
        "--hidden-size",
        "8",
        "--layers",
        "1",
        "--mixtures",
        "2",
        "--batch-size",
        "2",
        "--val-sequences",
        "4",
        "--max-steps",
        "4",
        "--eval-every",
        "2",
        "--quiet",
    )
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = json.loads((tmp_path / "runs" / "pen" / "summary.json").read_text())
    assert summary["world_size"] == WORLD and summary["effective_batch"] == WORLD * 2
    assert summary["step"] == 4 and summary["unit"] == "point"
    with open(tmp_path / "runs" / "pen" / "metrics.csv") as handle:
        steps = [int(r["step"]) for r in csv.DictReader(handle)]
    assert steps == [1, 2, 4]
    card = json.loads((tmp_path / "export" / "pen" / "card.json").read_text())
    assert card["head"] == "mixture" and card["parity"]["max_abs_diff"] < 1e-4
