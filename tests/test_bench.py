"""`studio bench`: the PyTorch model rebuilt from ONNX weights, and the report's keys."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from studio.bench import KEYS, timing
from studio.bench.bundles import fp32_bundle, int8_bundle, shaped_bundle
from studio.bench.onnx_to_torch import check_parity, torch_model_from_onnx
from studio.bundle import Bundle
from studio.cli import app
from studio.errors import StudioError
from studio.runtime import Runtime


def test_torch_model_from_onnx_matches_onnxruntime(tiny_bundle):
    bundle = Bundle.load(tiny_bundle)
    model = torch_model_from_onnx(bundle)
    runtime = Runtime(bundle, precision="fp32")
    assert check_parity(model, runtime) < 1e-5


def test_torch_model_from_onnx_gate_order_against_checkpoint(tiny_bundle):
    """The ONNX -> PyTorch mapping recovers the trained weights themselves."""
    import torch

    best = tiny_bundle.parent.parent / "runs" / "tiny" / "best.pt"
    if not best.exists():
        pytest.skip("the tiny run kept no best.pt")
    saved = torch.load(best, map_location="cpu", weights_only=False)["model_state"]
    rebuilt = torch_model_from_onnx(Bundle.load(tiny_bundle)).state_dict()
    for name, value in saved.items():
        np.testing.assert_allclose(rebuilt[name].numpy(), value.numpy(), rtol=0, atol=1e-7)


def test_bench_json_has_the_agreed_keys(tiny_bundle, monkeypatch):
    monkeypatch.setattr(timing, "cold_start", lambda path, runs=3: 0.5)  # subprocesses: timed elsewhere
    result = CliRunner().invoke(app, ["bench", "--model", str(tiny_bundle), "--json", "--seconds", "0.05"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    for key in KEYS:
        assert isinstance(report[key], (int, float)) and report[key] > 0, key
    assert report["cold_start_s"] == 0.5
    assert report["ort_fp32_b8_tok_s"] > 0 and report["ort_int8_b64_tok_s"] > 0
    assert report["torch_parity_max_abs"] < 1e-5
    for precision in ("fp32", "int8"):  # a median of chunk-pair ratios: near the ratio of the medians
        ratio = report[f"ort_{precision}_tok_s"] / report[f"ort_{precision}_graph_only_tok_s"]
        assert 0.5 * ratio < report[f"loop_vs_graph_{precision}"] < 2 * ratio
    # paired with batch-1 chunks of their own, timed apart from ort_int8_tok_s (so no bound
    # against it holds at 0.05 s a figure): the pairing itself is tested on a fake clock
    assert report["int8_b64_vs_b1"] > 0 and report["beam8_vs_int8"] > 0
    ratio = report["serve_20_tok_s"] / report["serve_1_tok_s"]  # the median of each turn's ratio
    assert 0.5 * ratio < report["serve_20_vs_1"] < 2 * ratio
    if report["int8_batches"] == "one call":  # row-exact int8: the server batches it, the ceilings exist
        assert report["serve_precision"] == "int8"
        graph = {b: report[f"ort_int8_b{b}_graph_only_tok_s"] for b in (8, 20, 64)}
        assert report["ceiling_int8_b64_vs_b1"] == round(graph[64] / report["ort_int8_graph_only_tok_s"], 2)
        assert report["ceiling_beam8_vs_int8"] == round(graph[8] / 8 / report["ort_int8_graph_only_tok_s"], 3)


def test_cold_start_runs_a_fresh_process(tiny_bundle):
    assert 0 < timing.cold_start(tiny_bundle, runs=1) < 60


def test_bench_quantises_on_the_fly(tiny_bundle, tmp_path):
    import shutil

    fp32_only = tmp_path / "fp32-only"
    fp32_only.mkdir()
    shutil.copy(tiny_bundle / "model.onnx", fp32_only / "model.onnx")
    card = json.loads((tiny_bundle / "card.json").read_text())
    card["graphs"] = {"fp32": "model.onnx"}
    (fp32_only / "card.json").write_text(json.dumps(card))
    quantised = int8_bundle(Bundle.load(fp32_only), tmp_path)
    assert "int8" in quantised.card["graphs"] and (tmp_path / "model.int8.onnx").exists()


def test_bench_exports_fp32_for_an_int8_only_bundle(tiny_bundle, tmp_path):
    import shutil

    int8_only = tmp_path / "tiny"
    int8_only.mkdir()
    shutil.copy(tiny_bundle / "model.int8.onnx", int8_only / "model.int8.onnx")
    card = json.loads((tiny_bundle / "card.json").read_text())
    card["graphs"] = {"int8": "model.int8.onnx"}
    (int8_only / "card.json").write_text(json.dumps(card))
    (tmp_path / "out").mkdir()
    rebuilt = fp32_bundle(Bundle.load(int8_only), tmp_path / "out", runs_dir=tiny_bundle.parent.parent / "runs")
    original = Runtime(Bundle.load(tiny_bundle), precision="fp32")
    again = Runtime(rebuilt, precision="fp32")
    tokens = np.arange(12)[None, :] % card["model"]["vocab_size"]
    expected, _ = original.logits(tokens, original.init_state(1))
    got, _ = again.logits(tokens, again.init_state(1))
    np.testing.assert_allclose(got, expected, atol=1e-5)
    with pytest.raises(Exception, match="int8"):
        fp32_bundle(Bundle.load(int8_only), tmp_path / "out", runs_dir=tmp_path / "none")


def test_shape_times_a_random_model_of_that_shape(tiny_bundle, tmp_path):
    like = Bundle.load(tiny_bundle)
    shaped = shaped_bundle(like, "3x24", tmp_path)
    assert shaped.card["model"]["layers"] == 3 and shaped.card["model"]["hidden_size"] == 24
    assert shaped.card["model"]["vocab_size"] == like.card["model"]["vocab_size"]
    runtime = Runtime(shaped, precision="fp32")
    state = runtime.init_state(2)
    assert state["h"].shape == (3, 2, 24)
    logits, _ = runtime.logits(np.zeros((2, 5), dtype=np.int64), state)
    assert logits.shape == (2, 5, like.card["model"]["vocab_size"])
    for bad in ("2by512", "0x512", "2x4"):
        with pytest.raises(StudioError, match="--shape"):
            shaped_bundle(like, bad, tmp_path)


def test_paired_rates_take_the_ratio_within_each_pair(monkeypatch):
    """Load that slows both chunks of a pair alike leaves that pair's ratio as it was; a
    fake clock, so the figure is exact."""
    clock = [0.0]
    monkeypatch.setattr(timing.time, "perf_counter", lambda: clock[0])
    loads = iter([1, 1] + [1, 1, 4, 4, 1, 1, 2, 2, 1, 1, 3, 3, 1, 1])  # warm-ups, then 7 pairs

    def work(cost: float) -> int:
        clock[0] += cost * next(loads)
        return 10

    first, second = (lambda: work(1.0)), (lambda: work(2.0))
    a, b, paired = timing.paired_rates(first, second, seconds=100.0, chunks=7)
    assert (a, b) == (10.0, 5.0)  # the medians of 10 / (1 * load) and 10 / (2 * load)
    assert paired == 2.0  # the first work is twice as fast in every pair


def test_a_batch_or_beam_ratio_is_paired_with_batch_1_chunks_of_its_own(monkeypatch):
    """``rate_against_single`` times the batch (or beam) loop on one runtime and the batch-1
    loop with the base settings on the other, alternately, and gives the median of each
    pair's ratio (a fake clock: beams cost 4 units a step against 1 for a token)."""
    from studio.bench import runtime_rates

    clock, calls = [0.0], []
    monkeypatch.setattr(timing.time, "perf_counter", lambda: clock[0])

    def fake_work(runtime, domain, settings, seconds, per_step):
        def work() -> int:
            calls.append((runtime, settings.num_beams))
            clock[0] += 4.0 if settings.num_beams > 1 else 1.0
            return per_step(settings) * 10

        return work

    monkeypatch.setattr(runtime_rates, "_generation_work", fake_work)
    base = runtime_rates.SampleSettings(seed=0)
    units, paired = runtime_rates.rate_against_single(
        "beam runtime", None, base.with_(num_beams=8), "int8 runtime", base, 1.0, lambda s: 1
    )
    assert (units, paired) == (2.5, 0.25)  # 10 beam steps in 4 units; 10 tokens in 1
    assert calls[:4] == [("beam runtime", 8), ("int8 runtime", 1)] * 2  # warm-ups, then alternating
