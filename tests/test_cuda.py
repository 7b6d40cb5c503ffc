"""CUDA paths: one-GPU training with mixed precision, pinned copies, NCCL DDP and ORT's
CUDA provider.  The GPU tests skip cleanly on a machine without one; the fallbacks (a
one-line error for ``--device cuda`` without a GPU, ORT falling back to CPU with a
notice) are tested everywhere.

On a GPU machine: ``pytest tests/test_cuda.py -v`` (with ``pip install onnxruntime-gpu``
for the ORT provider test, and two GPUs for the NCCL test).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import torch
from typer.testing import CliRunner

from studio.api import _cached, sample
from studio.bundle import Bundle
from studio.cli import app
from studio.config import TrainConfig
from studio.errors import StudioError
from studio.models.categorical import to_device
from studio.runtime import Runtime, providers_for
from studio.train import resolve_device, train

ROOT = Path(__file__).resolve().parent.parent
MODEL = dict(hidden_size=32, layers=2, embedding_size=16, dropout=0.1)
needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
needs_two_gpus = pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA GPUs")
needs_ort_cuda = pytest.mark.skipif(
    "CUDAExecutionProvider" not in onnxruntime.get_available_providers(), reason="needs onnxruntime-gpu and a CUDA GPU"
)


def gpu_config(**changes) -> TrainConfig:
    base = dict(
        batch_size=8, seq_len=32, max_steps=6, eval_every=3, seed=2, warmup_steps=2, learning_rate=1e-2, device="cuda"
    )
    return TrainConfig(**{**base, **changes})


def no_cuda(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)


def cpu_only_onnxruntime(monkeypatch) -> None:
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CPUExecutionProvider"])


@pytest.fixture
def fresh_runtimes():
    """No cached session built with another provider list before or after the test."""
    _cached.cache_clear()
    yield
    _cached.cache_clear()


# --- everywhere ---------------------------------------------------------------------


def test_cuda_without_a_gpu_is_a_clear_error(monkeypatch):
    no_cuda(monkeypatch)
    with pytest.raises(StudioError, match="use --device cpu"):
        resolve_device("cuda")
    assert resolve_device("auto") == torch.device("cpu")


@pytest.mark.parametrize("extra", [[], ["--nproc", "2"]])
def test_train_on_cuda_without_a_gpu_fails_in_one_line(monkeypatch, tiny_corpus, tmp_path, extra):
    no_cuda(monkeypatch)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setattr(subprocess, "call", lambda *a, **k: pytest.fail("torchrun started"))
    result = CliRunner().invoke(
        app, ["train", str(tiny_corpus), "--device", "cuda", "--max-steps", "1", "--runs-dir", str(tmp_path), *extra]
    )
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        "error: --device cuda asked for, but no CUDA GPU is visible: use --device cpu"
    ]


def test_host_copies_stay_on_the_cpu():
    window = np.arange(12).reshape(3, 4)[:, 1:3]  # a strided view, as windows are
    tensor = to_device(window, torch.device("cpu"))
    assert tensor.device.type == "cpu" and tensor.is_contiguous()
    assert np.array_equal(tensor.numpy(), window)


def test_ort_cuda_falls_back_to_cpu_with_a_one_line_notice(monkeypatch, capsys):
    cpu_only_onnxruntime(monkeypatch)
    assert providers_for("cuda") == ["CPUExecutionProvider"]
    notice = capsys.readouterr().err.strip().splitlines()
    assert len(notice) == 1 and "onnxruntime-gpu" in notice[0] and "CPU" in notice[0]
    assert providers_for("cpu") == ["CPUExecutionProvider"]
    assert capsys.readouterr().err == ""


def test_ort_cuda_provider_is_chosen_when_installed(monkeypatch):
    monkeypatch.setattr(
        onnxruntime, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"]
    )
    assert providers_for("cuda") == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    with pytest.raises(StudioError, match="use cpu or cuda"):
        providers_for("tpu")


def test_sampling_with_device_cuda_falls_back_to_the_same_cpu_result(monkeypatch, tiny_bundle, capsys, fresh_runtimes):
    cpu_only_onnxruntime(monkeypatch)
    options = dict(prime="ROMEO:", seed=4, temperature=0.8, length=40)
    on_cpu = sample(tiny_bundle, device="cpu", **options)
    capsys.readouterr()
    runtime = Runtime(Bundle.load(tiny_bundle), device="cuda")
    assert runtime.session.get_providers() == ["CPUExecutionProvider"]
    assert "onnxruntime-gpu" in capsys.readouterr().err
    assert sample(tiny_bundle, device="cuda", **options)[0].text == on_cpu[0].text


# --- one GPU ---------------------------------------------------------------------------


@needs_gpu
def test_pinned_copies_reach_the_gpu():
    window = np.arange(64).reshape(8, 8)[:, 2:6]
    tensor = to_device(window, torch.device("cuda"))
    torch.cuda.synchronize()
    assert tensor.is_cuda and np.array_equal(tensor.cpu().numpy(), window)


@needs_gpu
@pytest.mark.parametrize("bf16", [True, False], ids=["bf16-autocast", "fp16-grad-scaler"])
def test_trains_on_one_gpu_with_mixed_precision(monkeypatch, tiny_corpus, tmp_path, bf16):
    if bf16 and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)
    run = train(
        tiny_corpus,
        tmp_path / "gpu",
        domain_name="chars",
        model_overrides=MODEL,
        train_config=gpu_config(),
        stop_after=3,
        quiet=True,
    )
    checkpoint = torch.load(run.checkpoint, map_location="cpu", weights_only=False)
    # the carried state is saved in fp32 whatever autocast computed it in
    assert all(s.dtype == torch.float32 and s.shape == (2, 8, 32) for s in checkpoint["carried_state"])
    assert "cuda" in checkpoint["rng"]
    assert all(p.dtype == torch.float32 for p in checkpoint["model_state"].values())
    train(None, run.path, resume=True, quiet=True)
    summary = json.loads((run.path / "summary.json").read_text())
    assert summary["step"] == 6 and math.isfinite(summary["best_val_nats"])
    assert summary["best_val_nats"] < math.log(100)  # below a uniform guess over the characters


@needs_gpu
def test_gpu_run_exports_an_fp32_bundle(tiny_corpus, tmp_path):
    from studio.training import run_training

    run_training(
        corpus=tiny_corpus,
        resume=None,
        name="gpu",
        domain="chars",
        domain_options={},
        model=MODEL,
        config=gpu_config(max_steps=3),
        stop_after=None,
        out=tmp_path / "export" / "gpu",
        quantize="int8",
        export=True,
        runs_dir=tmp_path / "runs",
        quiet=True,
    )
    bundle = Bundle.load(tmp_path / "export" / "gpu")
    assert sample(bundle.path, prime="A", seed=1, length=20)[0].text


@needs_ort_cuda
def test_ort_cuda_provider_matches_cpu(tiny_bundle):
    bundle = Bundle.load(tiny_bundle)
    gpu, cpu = Runtime(bundle, device="cuda"), Runtime(bundle, device="cpu")
    assert gpu.session.get_providers()[0] == "CUDAExecutionProvider"
    tokens = np.arange(20, dtype=np.int64).reshape(2, 10) % 10
    gpu_logits, _ = gpu.logits(tokens, gpu.init_state(2))
    cpu_logits, _ = cpu.logits(tokens, cpu.init_state(2))
    np.testing.assert_allclose(gpu_logits, cpu_logits, atol=1e-3)


# --- several GPUs ----------------------------------------------------------------------


@needs_two_gpus
def test_two_gpus_train_with_nccl(tiny_corpus, tmp_path, torchrun):
    command = torchrun(
        "2",
        "-m",
        "studio",
        "train",
        str(tiny_corpus),
        "--name",
        "nccl",
        "--device",
        "cuda",
        "--hidden-size",
        "32",
        "--layers",
        "1",
        "--batch-size",
        "8",
        "--seq-len",
        "32",
        "--max-steps",
        "6",
        "--eval-every",
        "3",
        "--no-export",
        "--quiet",
    )
    done = subprocess.run(
        command, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((tmp_path / "runs" / "nccl" / "summary.json").read_text())
    assert (summary["step"], summary["world_size"], summary["effective_batch"]) == (6, 2, 16)
