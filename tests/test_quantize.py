"""Row-exact static int8 (studio.quantize): the rewrite matches the export, a batch of int8
rows equals the same rows run alone, the variant chooser, the fallback to dynamic int8,
and `studio quantize` re-quantising a bundle in place."""

import json
import shutil
import subprocess
import sys

import numpy as np
import onnx
import pytest
import torch

from studio.bundle import Bundle
from studio.config import ModelConfig
from studio.export import export_onnx, quantize_bundle_graph
from studio.formats import OPSET, PARITY_TOLERANCE
from studio.half_weights import STORED_SUFFIX, expanded, round_weights_fp16
from studio.models import TRAINABLES
from studio.models.categorical import held_out_nats, io_state_names
from studio.quantize import (
    VARIANTS,
    NotStaticQuantizable,
    calibration_feeds,
    choose,
    folds_input_table,
    quantize_step_graph,
    read_lstm,
    session_for,
    step_graph,
    step_parity,
)
from studio.runtime import Runtime

VOCAB = 23


def _bundle(folder, cell="lstm", layers=2, hidden=24, embedding=8, half=False):
    """A random-weight categorical bundle (fp32 graph + card) in ``folder``; ``half``:
    weights rounded to float16 values, as `studio export --fp16-weights` does."""
    head = TRAINABLES["categorical"]
    config = ModelConfig(
        vocab_size=VOCAB, cell=cell, hidden_size=hidden, layers=layers, embedding_size=embedding
    ).to_dict()
    torch.manual_seed(3)
    model = head.build_model(config).eval()
    if half:
        round_weights_fp16(model)
    io = head.io_spec(config)
    folder.mkdir(parents=True)
    export_onnx(head.step_module(model), head.example_inputs(model, io), io, folder / "model.onnx")
    card = {
        "name": folder.name,
        "head": "categorical",
        "domain": {"name": "chars", "symbols": ["\x1e", *"abcdefghijklmnopqrstuv"]},
        "model": config,
        "graphs": {"fp32": "model.onnx"},
        "io": io,
    }
    (folder / "card.json").write_text(json.dumps(card))
    return folder


def _text_ids(count, seed=0):
    """Token ids with some structure (a random walk), so the state moves like on text."""
    steps = np.random.default_rng(seed).integers(-2, 3, count)
    return np.mod(np.cumsum(steps), VOCAB).astype(np.int64)


def _quantise(folder, half_weights=False):
    ids = _text_ids(6000)
    train, val = ids[:5000], ids[5000:]

    def score(session):
        return held_out_nats(session, io_state_names(session), val)

    fp32_nats, predictions = score(session_for(folder / "model.onnx"))
    fp32 = {"held_out_nats": fp32_nats, "predictions": predictions, "held_out_tokens": len(val) - 1}
    report = quantize_bundle_graph(
        folder / "model.onnx", folder / "model.int8.onnx", train, score, fp32, "walk", half_weights=half_weights
    )
    card = json.loads((folder / "card.json").read_text())
    card["graphs"]["int8"] = "model.int8.onnx"
    card["quantization"] = report
    (folder / "card.json").write_text(json.dumps(card))
    return report


@pytest.fixture(scope="module")
def static_bundle(tmp_path_factory):
    folder = _bundle(tmp_path_factory.mktemp("q") / "static")
    _quantise(folder)
    return folder


@pytest.mark.parametrize("embedding", [8, 64])
def test_both_layer0_layouts_match_the_export(tmp_path, embedding):
    """A table no larger than the embedding and W0 it replaces is folded (64 wide: 23 x 96
    floats against 23 x 64 + 64 x 96); a large vocabulary for its width (8 wide: 23 x 96
    against 23 x 8 + 8 x 96) keeps the embedding and multiplies it by W0 in the graph."""
    folder = _bundle(tmp_path / "b", embedding=embedding)
    weights = read_lstm(onnx.load(str(folder / "model.onnx")))
    assert folds_input_table(weights) == (embedding == 64)
    rewritten = step_graph(weights, OPSET)
    names = {init.name for init in rewritten.graph.initializer}
    assert ("layer0_input_table" in names) == (embedding == 64) and ("W0_T" in names) == (embedding == 8)
    onnx.save(rewritten, str(tmp_path / "step.onnx"))
    drift, _ = step_parity(session_for(folder / "model.onnx"), session_for(tmp_path / "step.onnx"), weights, 1e-4)
    assert drift < PARITY_TOLERANCE


def test_half_weights_are_stored_float16_in_the_int8_graph_with_the_same_outputs(tmp_path):
    """With float16-valued weights, the float weights the int8 graph keeps (here the
    head, 48 x 23; smaller ones stay float32) are stored as float16 and cast back:
    every output is bit for bit the same."""
    folder = _bundle(tmp_path / "b", hidden=48, half=True)
    report = _quantise(folder, half_weights=True)
    assert report["scheme"] == "static" and report["float16_stored_initializers"] == 1
    stored = onnx.load(str(folder / "model.int8.onnx"))
    assert "head_weight" + STORED_SUFFIX in {init.name for init in stored.graph.initializer}
    onnx.save(expanded(stored), str(tmp_path / "float32.onnx"))
    assert (folder / "model.int8.onnx").stat().st_size < (tmp_path / "float32.onnx").stat().st_size
    rng = np.random.default_rng(2)
    feeds = {"tokens": rng.integers(0, VOCAB, (5, 1))}
    h, c = (rng.uniform(-1, 1, (2, 5, 48)).astype(np.float32) for _ in range(2))
    feeds.update(h=h, c=c)
    ours = session_for(folder / "model.int8.onnx").run(None, feeds)
    theirs = session_for(tmp_path / "float32.onnx").run(None, feeds)
    assert all(np.array_equal(a, b) for a, b in zip(ours, theirs))
    # without float16 weights nothing is stored so
    plain = _bundle(tmp_path / "plain")
    assert "float16_stored_initializers" not in _quantise(plain)


def test_rewritten_step_graph_matches_the_export(tmp_path):
    folder = _bundle(tmp_path / "b", layers=3)
    rewritten = step_graph(read_lstm(onnx.load(str(folder / "model.onnx"))), OPSET)
    onnx.checker.check_model(rewritten)
    onnx.save(rewritten, str(tmp_path / "step.onnx"))
    weights = read_lstm(onnx.load(str(folder / "model.onnx")))
    drift, record = step_parity(session_for(folder / "model.onnx"), session_for(tmp_path / "step.onnx"), weights, 1e-4)
    assert drift < PARITY_TOLERANCE and record["on"] == "random tokens"
    # the check can fail: a different model drifts far beyond the tolerance
    other = _bundle(tmp_path / "other", layers=3, hidden=24)
    torch.manual_seed(9)
    head = TRAINABLES["categorical"]
    config = json.loads((other / "card.json").read_text())["model"]
    model = head.build_model(config).eval()
    io = head.io_spec(config)
    export_onnx(head.step_module(model), head.example_inputs(model, io), io, other / "model.onnx")
    drift, _ = step_parity(session_for(other / "model.onnx"), session_for(tmp_path / "step.onnx"), weights, 1e-4)
    assert drift > 1e-2
    # past the tolerance on random tokens, the training text decides, and still tells them apart
    text = np.random.default_rng(5).integers(0, VOCAB, 2000)
    drift, record = step_parity(
        session_for(other / "model.onnx"), session_for(tmp_path / "step.onnx"), weights, 1e-4, text
    )
    assert drift > 1e-2 and record["on"] == "training text" and record["random_tokens_max_abs_diff"] > 1e-2


def test_static_card_records_calibration_and_quality(static_bundle):
    quant = json.loads((static_bundle / "card.json").read_text())["quantization"]
    assert quant["scheme"] == "static" and quant["row_exact"] is True
    assert quant["calibration"]["tokens"] == 32 * 512 and "held-out tail excluded" in quant["calibration"]["data"]
    assert quant["variant"] in quant["variants"]
    # random weights give near-ties everywhere: static must at least match dynamic int8
    assert quant["top1_agreement"] >= min(0.98, quant["dynamic"]["top1_agreement"])
    assert abs(quant["delta_nats_per_token"]) < 0.01
    model = onnx.load(str(static_bundle / "model.int8.onnx"))
    ops = {node.op_type for node in model.graph.node}
    integer = {"MatMulNBits"} if quant["variant"] == "nbits8-blocks" else {"QuantizeLinear", "DequantizeLinear"}
    assert integer <= ops and "LSTM" not in ops


def test_a_batch_of_int8_rows_equals_the_rows_run_alone(static_bundle):
    runtime = Runtime(Bundle.load(static_bundle), precision="int8", threads=2)
    assert runtime.precision == "int8" and not runtime.row_by_row
    calls = []
    real_run = runtime.call
    runtime.call = lambda fetch, feeds: calls.append(1) or real_run(fetch, feeds)
    rows = 7
    tokens = np.stack([_text_ids(40, seed) for seed in range(rows)])
    batch_logits, batch_state = runtime.logits(tokens[:, :10], runtime.init_state(rows))  # prefill, then steps
    for t in range(10, 40):
        logits, batch_state = runtime.logits(tokens[:, t : t + 1], batch_state)
        batch_logits = np.concatenate([batch_logits, logits], 1)
    assert len(calls) == 40  # one call per step for the whole batch
    for row in range(rows):
        alone, state = runtime.logits(tokens[row : row + 1, :10], runtime.init_state(1))
        for t in range(10, 40):
            logits, state = runtime.logits(tokens[row : row + 1, t : t + 1], state)
            alone = np.concatenate([alone, logits], 1)
        assert np.array_equal(alone[0], batch_logits[row])  # exactly, not approximately
        assert all(np.array_equal(state[name][:, 0], batch_state[name][:, row]) for name in state)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_variant_is_row_exact(static_bundle, tmp_path, variant):
    """Whichever variant `studio quantize` picks on a machine, its batches are exact."""
    rewritten = step_graph(read_lstm(onnx.load(str(static_bundle / "model.onnx"))), OPSET)
    onnx.save(rewritten, str(tmp_path / "step.onnx"))
    session = session_for(tmp_path / "step.onnx")
    feeds = calibration_feeds(session, _text_ids(2000), 8, 64)
    quantize_step_graph(tmp_path / "step.onnx", tmp_path / "int8.onnx", feeds, variant)
    int8 = session_for(tmp_path / "int8.onnx", threads=2)
    rng = np.random.default_rng(4)
    tokens = rng.integers(0, VOCAB, (9, 1))
    h, c = (rng.uniform(-1, 1, (2, 9, 24)).astype(np.float32) for _ in range(2))
    batch = int8.run(None, {"tokens": tokens, "h": h, "c": c})
    for row in range(9):
        alone = int8.run(None, {"tokens": tokens[row : row + 1], "h": h[:, row : row + 1], "c": c[:, row : row + 1]})
        assert np.array_equal(alone[0][0], batch[0][row])
        assert np.array_equal(alone[1][:, 0], batch[1][:, row]) and np.array_equal(alone[2][:, 0], batch[2][:, row])


def test_dynamic_int8_still_runs_row_by_row(tmp_path):
    folder = _bundle(tmp_path / "gru", cell="gru", layers=1)
    report = _quantise(folder)
    assert report["scheme"] == "dynamic" and report["row_exact"] is False
    assert "LSTM" in report["static_refused"]
    runtime = Runtime(Bundle.load(folder), precision="int8")
    assert runtime.row_by_row
    tokens = np.stack([_text_ids(12, seed) for seed in range(3)])
    batch, _ = runtime.logits(tokens, runtime.init_state(3))
    alone, _ = runtime.logits(tokens[1:2], runtime.init_state(1))
    assert np.array_equal(alone[0], batch[1])


def test_gru_graph_is_refused_by_the_rewrite(tmp_path):
    folder = _bundle(tmp_path / "gru", cell="gru", layers=1)
    with pytest.raises(NotStaticQuantizable):
        read_lstm(onnx.load(str(folder / "model.onnx")))


def test_chooser_prefers_fast_variants_on_target_then_quality():
    def variant(agreement, speed, delta=0.0):
        return {"top1_agreement": agreement, "steps_per_s_batch1": speed, "delta_nats_per_token": delta}

    assert choose({"a": variant(0.995, 100), "b": variant(0.991, 200), "c": variant(0.985, 900)}) == "b"
    assert choose({"a": variant(0.985, 100), "b": variant(0.982, 200)}) == "a"
    assert choose({"a": variant(0.97, 100), "b": variant(0.995, 200, delta=0.02)}) is None
    # below the floor, but better than the dynamic int8 it replaces
    assert choose({"a": variant(0.97, 100)}, baseline=variant(0.96, 0)) == "a"
    assert choose({"a": variant(0.97, 100)}, baseline=variant(0.975, 0)) is None


def test_quantize_command_requantises_a_bundle_in_place(tiny_bundle, tiny_corpus, tmp_path, studio_env):
    copy = tmp_path / "tiny"
    shutil.copytree(tiny_bundle, copy)
    card = json.loads((copy / "card.json").read_text())
    card["quantization"] = {"type": "int8", "scheme": "dynamic"}  # as an older export wrote it
    (copy / "card.json").write_text(json.dumps(card))
    command = [sys.executable, "-m", "studio", "quantize", str(copy), "--corpus", str(tiny_corpus)]
    done = subprocess.run(command, env=studio_env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "int8 static" in done.stdout
    quant = json.loads((copy / "card.json").read_text())["quantization"]
    assert quant["scheme"] == "static" and quant["held_out_tokens"] > 0
    assert sorted(p.name for p in copy.iterdir()) == ["card.json", "model.int8.onnx", "model.onnx"]
    missing = [sys.executable, "-m", "studio", "quantize", str(copy), "--corpus", str(tmp_path / "nowhere")]
    done = subprocess.run(missing, env=studio_env, capture_output=True, text=True, timeout=600)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert "--corpus" in done.stderr.strip().splitlines()[-1]
