"""`studio export --fp16-weights`: the fp32 graph computes in float32 from float16-stored
weights, exactly as the graph it was checked with, and every tool that reads weights
(the int8 quantisers, bench's torch twin) reads them back."""

import json
import shutil

import numpy as np
import onnx
import pytest
import torch

from studio.bench.onnx_to_torch import check_parity, torch_model_from_onnx
from studio.bundle import Bundle
from studio.errors import StudioError
from studio.export import export_run, requantize_bundle
from studio.half_weights import expanded, round_weights_fp16, store_weights_fp16
from studio.runtime import Runtime


@pytest.fixture(scope="module")
def half_bundle(tiny_bundle, tmp_path_factory):
    out = tmp_path_factory.mktemp("half") / "tiny-half"
    export_run(tiny_bundle.parent.parent / "runs" / "tiny", out, quantize="int8", fp16_weights=True, quiet=True)
    return out


def logits(bundle, precision="fp32"):
    runtime = Runtime(Bundle.load(bundle), precision=precision)
    vocab = runtime.bundle.card["model"]["vocab_size"]
    tokens = (np.arange(40)[None, :] * 7) % vocab
    values, _ = runtime.logits(tokens, runtime.init_state(1))
    return values


def test_the_card_records_the_rounding_and_the_file_halves(half_bundle, tiny_bundle):
    card = json.loads((half_bundle / "card.json").read_text())
    record = card["fp32_weights"]
    assert record["stored"] == "float16" and record["initializers"] >= 2
    assert abs(record["delta_nats_per_token"]) < 0.01 and record["top1_agreement"] > 0.95
    graph = onnx.load(str(half_bundle / "model.onnx")).graph
    assert sum(i.data_type == onnx.TensorProto.FLOAT16 for i in graph.initializer) == record["initializers"]
    assert (half_bundle / "model.onnx").stat().st_size < 0.7 * (tiny_bundle / "model.onnx").stat().st_size
    assert "int8" in card["graphs"] and card["parity"]  # the rest of the bundle as usual
    # the rounding moved the numbers a little, not the model
    np.testing.assert_allclose(logits(half_bundle), logits(tiny_bundle), atol=0.05)
    assert not np.array_equal(logits(half_bundle), logits(tiny_bundle))


def test_stored_weights_compute_exactly_as_float32_ones(half_bundle, tmp_path):
    plain = tmp_path / "plain"
    shutil.copytree(half_bundle, plain)
    model = expanded(onnx.load(str(plain / "model.onnx")))
    assert not any(i.data_type == onnx.TensorProto.FLOAT16 for i in model.graph.initializer)
    assert not any(n.op_type == "Cast" and n.input[0].endswith("__fp16") for n in model.graph.node)
    onnx.save(model, str(plain / "model.onnx"))
    assert np.array_equal(logits(plain), logits(half_bundle))  # bit for bit
    assert store_weights_fp16(plain / "model.onnx") >= 2  # and stored again
    assert np.array_equal(logits(plain), logits(half_bundle))


def test_weights_that_are_not_float16_values_stay_float32(tiny_bundle, tmp_path):
    copy = tmp_path / "model.onnx"
    shutil.copy(tiny_bundle / "model.onnx", copy)
    before = copy.read_bytes()
    assert store_weights_fp16(copy) == 0  # trained weights, never rounded: nothing to store
    assert copy.read_bytes() == before


def test_tools_that_read_weights_read_them_back(half_bundle, tiny_corpus, tmp_path):
    bundle = Bundle.load(half_bundle)
    twin = torch_model_from_onnx(bundle)
    assert check_parity(twin, Runtime(bundle, precision="fp32")) < 1e-4
    requantized = tmp_path / "tiny-half"
    shutil.copytree(half_bundle, requantized)
    report = requantize_bundle(requantized, corpus=tiny_corpus, say=lambda message: None)
    assert abs(report["delta_nats_per_token"]) < 0.05
    assert not list(requantized.glob("*.float32"))  # the expanded copy is gone
    np.testing.assert_allclose(logits(requantized, "int8"), logits(half_bundle), atol=0.5)


def test_rounding_refuses_weights_beyond_float16():
    layer = torch.nn.Linear(2, 2)
    with torch.no_grad():
        layer.weight.fill_(1e6)
    with pytest.raises(StudioError, match="float16's range"):
        round_weights_fp16(layer)
    small = torch.nn.Linear(2, 2)
    with torch.no_grad():
        small.weight.copy_(torch.tensor([[0.1, 1 / 3], [2.0, -1e-3]]))
    round_weights_fp16(small)
    assert torch.equal(small.weight, small.weight.half().float())
