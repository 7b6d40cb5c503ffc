"""Export: ONNX graph contract, torch parity, dynamic axes, int8 card figures."""

import json
import math

import numpy as np
import onnx
import torch

from studio.bundle import Bundle
from studio.config import ModelConfig
from studio.export import export_onnx, session_for
from studio.models import TRAINABLES
from studio.models.categorical import token_parity
from studio.runtime import Runtime


def test_card_holds_everything_to_sample(tiny_bundle, tiny_corpus):
    card = json.loads((tiny_bundle / "card.json").read_text())
    text = "".join(file.read_text() for file in sorted(tiny_corpus.iterdir()))
    assert card["domain"] == {"name": "chars", "symbols": ["\x1e", *sorted(set(text))]}
    assert card["model"]["cell"] == "lstm" and card["opset"] == 17
    assert card["model"]["vocab_size"] == len(card["domain"]["symbols"])
    assert len(card["corpus"]["sha256"]) == 64
    assert card["head"] == "categorical" and card["parity"]["max_abs_diff"] < 1e-4
    # the best validation figure of the run, in nats per token: below a uniform guess
    summary = json.loads((tiny_bundle.parent.parent / "runs" / "tiny" / "summary.json").read_text())
    assert card["metrics"]["val_nats_per_token"] == round(summary["best_val_nats"], 5)
    assert card["metrics"]["unit"] == "token" and card["metrics"]["steps"] == summary["step"] == 40
    assert 0 < card["metrics"]["val_nats_per_token"] < math.log(card["model"]["vocab_size"]) - 0.5
    quant = card["quantization"]
    assert quant["type"] == "int8" and 0.5 < quant["top1_agreement"] <= 1.0
    assert abs(quant["delta_nats_per_token"]) < 0.05


def test_graph_has_named_state_and_dynamic_axes(tiny_bundle):
    model = onnx.load(str(tiny_bundle / "model.onnx"))
    onnx.checker.check_model(model)
    inputs = {i.name: i for i in model.graph.input}
    outputs = [o.name for o in model.graph.output]
    assert list(inputs) == ["tokens", "h", "c"]
    assert outputs == ["logits", "h_out", "c_out"]
    dims = [d.dim_param for d in inputs["tokens"].type.tensor_type.shape.dim]
    assert dims == ["batch", "time"]  # not fixed by the exporter


def test_sequence_call_equals_step_calls(tiny_bundle):
    runtime = Runtime(Bundle.load(tiny_bundle), precision="fp32")
    tokens = np.random.default_rng(1).integers(0, 40, (3, 50))
    full, _ = runtime.logits(tokens, runtime.init_state(3))
    state = runtime.init_state(3)
    for t in range(50):
        step, state = runtime.logits(tokens[:, t : t + 1], state)
        assert np.abs(step[:, 0] - full[:, t]).max() < 1e-4


def test_parity_helper_detects_drift(tmp_path):
    """The parity check is not vacuous: a model with different weights fails it."""
    head = TRAINABLES["categorical"]
    config = ModelConfig(vocab_size=12, hidden_size=8, layers=1, embedding_size=4).to_dict()
    model = head.build_model(config).eval()
    io = head.io_spec(config)
    export_onnx(head.step_module(model), head.example_inputs(model, io), io, tmp_path / "m.onnx")
    tokens = np.random.default_rng(0).integers(0, 12, (2, 30))
    session = session_for(tmp_path / "m.onnx")
    assert token_parity(model, session, io, tokens) < 1e-5
    with torch.no_grad():
        model.head.bias.add_(0.5)
    assert token_parity(model, session, io, tokens) > 0.4


def test_past_the_tolerance_parity_is_judged_against_float64(tmp_path, monkeypatch):
    """Where fp32 itself strays (random text can drive a trained recurrence into
    amplifying rounding), onnxruntime is measured against a float64 run of the same
    weights: a faithful export passes, a wrong one still fails."""
    import studio.models.categorical as categorical

    monkeypatch.setattr(categorical, "PARITY_TOLERANCE", 1e-12)  # every fp32 run now "drifts"
    head = TRAINABLES["categorical"]
    config = ModelConfig(vocab_size=12, hidden_size=8, layers=2, embedding_size=4).to_dict()
    model = head.build_model(config).eval()
    io = head.io_spec(config)
    export_onnx(head.step_module(model), head.example_inputs(model, io), io, tmp_path / "m.onnx")
    session = session_for(tmp_path / "m.onnx")
    error, checked = head.parity(model, session, None, io)
    assert checked["against"] == "float64" and checked["torch_fp32_vs_float64"] > 0
    assert checked["limit"] == max(1e-12, 2 * checked["torch_fp32_vs_float64"])
    assert error < 1e-5 and checked["onnxruntime_vs_torch_fp32"] < 1e-5
    with torch.no_grad():
        model.head.bias.add_(0.5)  # the graph no longer matches these weights
    error, checked = head.parity(model, session, None, io)
    assert error > 0.4 and not error < checked["limit"]
