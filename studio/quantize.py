"""Row-exact static int8: an LSTM bundle's fp32 graph rewritten as a one-token step graph
of plain MatMuls, then quantised with activation scales calibrated on training text.

Why: onnxruntime's dynamic int8 (:func:`studio.export.quantize_int8`) picks one
activation scale per tensor *per call*, so in a batch every row depends on the others
and the runtime has to run int8 batches row by row.  Here every scale is a constant
stored in the graph, so row *i* of a batch is computed exactly as a batch of one
(integer products are exact; the float work after them is elementwise), and a batch is
one call.  onnxruntime has no static int8 LSTM kernel, hence the rewrite:

* layer 0's input product is folded into a table: ``Gather(embedding @ W0ᵀ + biases,
  token)``, fp32, exact up to rounding (vocab x 4·hidden floats), where that table is no
  larger than the embedding and W0; for a large vocabulary (music events) the embedding
  is gathered and multiplied by W0 as a MatMul of its own, with its own scale;
* each layer's gates are one MatMul of ``[input, h]`` against ``[Wᵀ; Rᵀ]`` (layer 0: of
  ``h`` against ``Rᵀ``), then sigmoid/tanh and the cell update (ONNX gate order i, o, f, c);
* the head is ``h_top @ W_out + b``.

Every MatMul input but that embedding is an LSTM output ``h`` in (-1, 1), which is why
one calibrated scale per tensor holds.  :func:`quantize_static` (QDQ format) places the
Quantize/Dequantize pairs; onnxruntime fuses them into integer MatMul kernels when the
session is built.  The graph's time axis is 1: prefill steps it token by token (the
runtime and the scorer already do that for one-step graphs).

Export side only (imports ``onnx``); the sampling path never imports this module.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import StudioError

CALIBRATION_STREAMS = 32  # parallel streams through the training text
CALIBRATION_STEPS = 512  # tokens per stream: 16,384 calibration tokens in all
PARITY_TOKENS = 200  # tokens over which the rewritten fp32 step graph must match the exported one
# name -> quantize_static options.  Every variant keeps the head (h_top @ W_out) in fp32:
# quantising it too cost prose 3.5 points of top-1 agreement (96.5%; measured, README).
# "nbits8-blocks" is onnxruntime's weight-only MatMulNBits (8-bit weights in blocks of 32)
# with int8 compute (accuracy level 4): activations are quantised per row and block at run
# time, so it is row-exact too and needs no calibration.  (Level 0, fp32 compute on
# dequantised weights, measured 29 steps/s against 405 for fp32 on prose and was not
# row-exact: not offered.)
VARIANTS = {
    "u8s8-per-channel": dict(activation="uint8", per_channel=True),
    "s8s8-per-channel": dict(activation="int8", per_channel=True),
    "u8s8-per-tensor": dict(activation="uint8", per_channel=False),
    "nbits8-blocks": dict(weights_only=True),
}
TARGET_AGREEMENT = 0.99  # the variant chooser prefers variants at or above it, fastest first
MIN_AGREEMENT = 0.98  # below this (or above MAX_DELTA_NATS) static int8 is refused: dynamic stays
MAX_DELTA_NATS = 0.01


class NotStaticQuantizable(StudioError):
    """The fp32 graph is not one this module can rewrite (only LSTM language models are)."""


@dataclass(frozen=True)
class LstmWeights:
    """What the rewrite needs from an exported fp32 LSTM language model (ONNX layouts)."""

    embedding: np.ndarray  # (vocab, embedding)
    layers: list[tuple[np.ndarray, np.ndarray, np.ndarray]]  # per layer W (4H, in), R (4H, H), B (8H,)
    head_weight: np.ndarray  # (H, vocab)
    head_bias: np.ndarray  # (vocab,)

    @property
    def hidden(self) -> int:
        return self.layers[0][1].shape[1]


def read_lstm(model) -> LstmWeights:
    """The weights of a RecurrentLM export (Gather -> LSTM x L -> MatMul + Add), or
    :class:`NotStaticQuantizable`."""
    from onnx import numpy_helper

    graph = model.graph
    values = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute:
            values.setdefault(node.output[0], numpy_helper.to_array(node.attribute[0].t))
    ops = [n for n in graph.node if n.op_type not in ("Constant",)]
    kinds = {n.op_type for n in ops}
    if kinds & {"GRU", "RNN", "Loop", "Scan"} or "LSTM" not in kinds:
        raise NotStaticQuantizable("static int8 covers LSTM token models only")
    lstms = [n for n in ops if n.op_type == "LSTM"]
    layers = []
    for node in lstms:
        attributes = {a.name for a in node.attribute}
        if attributes - {"hidden_size"} or len(node.input) > 7 and node.input[7]:
            raise NotStaticQuantizable(f"LSTM with {sorted(attributes)} / peepholes is not covered")
        w, r, b = (values.get(name) for name in node.input[1:4])
        if w is None or r is None or b is None or w.shape[0] != 1:
            raise NotStaticQuantizable("LSTM weights are not constants of one direction")
        layers.append((w[0], r[0], b[0]))
    gathers = [n for n in ops if n.op_type == "Gather" and n.input[1] == "tokens"]
    matmuls = [n for n in ops if n.op_type == "MatMul"]
    adds = [n for n in ops if n.op_type == "Add" and n.output[0] == "logits"]
    if len(gathers) != 1 or len(matmuls) != 1 or len(adds) != 1:
        raise NotStaticQuantizable("not an embedding -> LSTM -> linear head graph")
    embedding = values.get(gathers[0].input[0])
    head_weight = values.get(matmuls[0].input[1])
    bias_name = [name for name in adds[0].input if name != matmuls[0].output[0]]
    head_bias = values.get(bias_name[0]) if bias_name else None
    if embedding is None or head_weight is None or head_bias is None:
        raise NotStaticQuantizable("embedding or head weights are not constants (tied weights?)")
    return LstmWeights(embedding.astype(np.float32), layers, head_weight.astype(np.float32), head_bias)


def folds_input_table(weights: LstmWeights) -> bool:
    """Whether layer 0's input product is folded into a per-token table: when the table
    (vocab x 4H, float32) is no larger than the embedding and W0 it replaces; a large
    vocabulary (music events) keeps them, W0 then quantised like every other MatMul."""
    vocab, width = weights.embedding.shape
    gates = weights.layers[0][0].shape[0]
    return vocab * gates <= vocab * width + width * gates


def step_graph(weights: LstmWeights, opset: int):
    """The one-token fp32 step graph (tokens (batch, 1), h/c (layers, batch, H) ->
    logits (batch, 1, vocab), h_out, c_out) built from plain ops."""
    from onnx import TensorProto, helper, numpy_helper

    hidden = weights.hidden
    count = len(weights.layers)
    vocab = weights.embedding.shape[0]
    inits = []
    nodes = []

    def const(name: str, array: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(np.array(array, order="C"), name))
        return name

    def node(op: str, inputs: list[str], output: str | list[str], **attrs) -> str:
        outputs = [output] if isinstance(output, str) else output
        nodes.append(helper.make_node(op, inputs, outputs, name=outputs[0], **attrs))
        return outputs[0]

    const("flat", np.array([-1], np.int64))
    const("axis0", np.array([0], np.int64))
    const("axis1", np.array([1], np.int64))
    const("gate_split", np.array([3 * hidden, hidden], np.int64))
    node("Reshape", ["tokens", "flat"], "token_ids")
    w0, r0, b0 = weights.layers[0]
    if folds_input_table(weights):
        table = weights.embedding.astype(np.float64) @ w0.T.astype(np.float64) + b0[: 4 * hidden] + b0[4 * hidden :]
        const("layer0_input_table", table.astype(np.float32))  # (vocab, 4H)
        node("Gather", ["layer0_input_table", "token_ids"], "layer0_input")
    else:  # a large vocabulary: the embedding and its own (quantised) input product
        node("Gather", [const("embedding", weights.embedding), "token_ids"], "layer0_embedded")
        product = node("MatMul", ["layer0_embedded", const("W0_T", w0.T)], "layer0_input_product")
        node("Add", [product, const("B0", b0[: 4 * hidden] + b0[4 * hidden :])], "layer0_input")
    below = None
    h_outs, c_outs = [], []
    for layer, (w, r, b) in enumerate(weights.layers):
        const(f"index{layer}", np.array(layer, np.int64))
        h = node("Gather", ["h", f"index{layer}"], f"h{layer}", axis=0)
        c = node("Gather", ["c", f"index{layer}"], f"c{layer}", axis=0)
        if layer == 0:
            product = node("MatMul", [h, const("R0_T", r.T)], "layer0_recurrent")
            gates = node("Add", ["layer0_input", product], "layer0_gates")
        else:
            joined = node("Concat", [below, h], f"layer{layer}_joined", axis=1)
            product = node("MatMul", [joined, const(f"WR{layer}_T", np.concatenate([w.T, r.T], 0))], f"l{layer}_mm")
            bias = const(f"B{layer}", b[: 4 * hidden] + b[4 * hidden :])
            gates = node("Add", [product, bias], f"layer{layer}_gates")
        node("Split", [gates, "gate_split"], [f"l{layer}_iof_pre", f"l{layer}_g_pre"], axis=1)
        node("Sigmoid", [f"l{layer}_iof_pre"], f"l{layer}_iof")
        node("Tanh", [f"l{layer}_g_pre"], f"l{layer}_g")
        node("Split", [f"l{layer}_iof"], [f"l{layer}_i", f"l{layer}_o", f"l{layer}_f"], axis=1, num_outputs=3)
        node("Mul", [f"l{layer}_f", c], f"l{layer}_fc")
        node("Mul", [f"l{layer}_i", f"l{layer}_g"], f"l{layer}_ig")
        c_new = node("Add", [f"l{layer}_fc", f"l{layer}_ig"], f"c{layer}_new")
        node("Tanh", [c_new], f"l{layer}_tc")
        below = node("Mul", [f"l{layer}_o", f"l{layer}_tc"], f"h{layer}_new")
        h_outs.append(node("Unsqueeze", [below, "axis0"], f"h{layer}_out"))
        c_outs.append(node("Unsqueeze", [c_new, "axis0"], f"c{layer}_out"))
    head = node("MatMul", [below, const("head_weight", weights.head_weight)], "head_product")
    node("Add", [head, const("head_bias", weights.head_bias)], "head_logits")
    node("Unsqueeze", ["head_logits", "axis1"], "logits")
    if count == 1:
        node("Identity", h_outs, "h_out")
        node("Identity", c_outs, "c_out")
    else:
        node("Concat", h_outs, "h_out", axis=0)
        node("Concat", c_outs, "c_out", axis=0)
    state = [count, "batch", hidden]
    graph = helper.make_graph(
        nodes,
        "studio_lstm_step",
        [
            helper.make_tensor_value_info("tokens", TensorProto.INT64, ["batch", 1]),
            helper.make_tensor_value_info("h", TensorProto.FLOAT, state),
            helper.make_tensor_value_info("c", TensorProto.FLOAT, state),
        ],
        [
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 1, vocab]),
            helper.make_tensor_value_info("h_out", TensorProto.FLOAT, state),
            helper.make_tensor_value_info("c_out", TensorProto.FLOAT, state),
        ],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", max(opset, 18))])
    model.ir_version = 8
    return model


def calibration_feeds(session, train_ids: np.ndarray, streams: int, steps: int) -> list[dict[str, np.ndarray]]:
    """Step feeds (tokens (streams, 1), h, c) through the training text with the fp32 step
    graph: ``streams`` rows start at evenly spaced points, each reads ``steps`` tokens, the
    state carried along (the activations sampling will meet)."""
    shapes = {i.name: i.shape for i in session.get_inputs()}
    ids = np.asarray(train_ids)
    steps = min(steps, len(ids) - 1)
    starts = np.linspace(0, len(ids) - steps - 1, streams).astype(np.int64)
    state = {n: np.zeros((shapes[n][0], streams, shapes[n][2]), np.float32) for n in ("h", "c")}
    feeds = []
    for t in range(steps):
        feed = {"tokens": ids[starts + t].astype(np.int64)[:, None], **state}
        feeds.append(feed)
        _, h, c = session.run(None, feed)
        state = {"h": h, "c": c}
    return feeds


def quantize_step_graph(fp32_step: Path, out: Path, feeds: list[dict[str, np.ndarray]], variant: str) -> None:
    """``quantize_static`` (QDQ, MinMax calibration over ``feeds``) of every MatMul but the head's."""
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType
    from onnxruntime.quantization import quantize_static as ort_quantize_static

    options = VARIANTS[variant]
    if options.get("weights_only"):
        return _weights_only(fp32_step, out)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self._feeds = iter(feeds)

        def get_next(self):
            return next(self._feeds, None)

    logging.getLogger().setLevel(logging.ERROR)  # its pre-processing advice is for CNNs
    ort_quantize_static(
        str(fp32_step),
        str(out),
        Reader(),
        quant_format=QuantFormat.QDQ,
        op_types_to_quantize=["MatMul"],
        nodes_to_exclude=["head_product"],
        per_channel=options["per_channel"],
        reduce_range=False,
        activation_type=QuantType.QUInt8 if options["activation"] == "uint8" else QuantType.QInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod.MinMax,
        extra_options={"ActivationSymmetric": options["activation"] == "int8"},
    )


def _weights_only(fp32_step: Path, out: Path) -> None:
    """MatMulNBits (8-bit symmetric weights, blocks of 32, int8 compute) for every MatMul but the head's."""
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import DefaultWeightOnlyQuantConfig, MatMulNBitsQuantizer

    logging.getLogger("onnxruntime.quantization.matmul_nbits_quantizer").setLevel(logging.ERROR)
    config = DefaultWeightOnlyQuantConfig(
        block_size=32, is_symmetric=True, accuracy_level=4, bits=8, op_types_to_quantize=("MatMul",)
    )
    quantizer = MatMulNBitsQuantizer(
        onnx.load(str(fp32_step)),
        bits=8,
        block_size=32,
        is_symmetric=True,
        accuracy_level=4,
        nodes_to_exclude=["head_product"],
        algo_config=config,
    )
    quantizer.process()
    quantizer.model.save_model_to_file(str(out), False)


def session_for(path: Path, threads: int = 1):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def step_rate(session, layers: int, hidden: int, seconds: float = 1.0) -> float:
    """Steps per second of a step graph at batch 1, state fed back (best 50-step chunk
    within ``seconds``: the least disturbed by other load)."""
    feeds = {
        "tokens": np.zeros((1, 1), np.int64),
        "h": np.zeros((layers, 1, hidden), np.float32),
        "c": np.zeros((layers, 1, hidden), np.float32),
    }
    for _ in range(20):
        session.run(None, feeds)
    best = 0.0
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        start = time.perf_counter()
        for _ in range(50):
            _, feeds["h"], feeds["c"] = session.run(None, feeds)
        best = max(best, 50 / (time.perf_counter() - start))
    return best


def step_parity(
    reference, rewritten, weights: LstmWeights, tolerance: float, text_ids: np.ndarray | None = None
) -> tuple[float, dict]:
    """(drift, record): max |logit difference| of two step graphs over PARITY_TOKENS
    random tokens, batch 1 and 3, and what was checked.  Random text can drive a trained
    recurrence where fp32 rounding grows past ``tolerance`` (two correct fp32 graphs then
    differ by 1e-3); in that case, and given ``text_ids`` (the training text), the check
    is made again on that text, the input the model was made for, and that figure
    counts (``record["on"]``)."""
    generator = np.random.default_rng(0)
    vocab = weights.embedding.shape[0]
    random_tokens = [generator.integers(0, vocab, (batch, PARITY_TOKENS)) for batch in (1, 3)]
    drift = max(_drift(reference, rewritten, weights, tokens) for tokens in random_tokens)
    record = {"on": "random tokens", "max_abs_diff": drift}
    if drift < tolerance or text_ids is None or len(text_ids) < 3 * PARITY_TOKENS:
        return drift, record
    starts = np.linspace(0, len(text_ids) - PARITY_TOKENS, 3).astype(np.int64)
    text = [np.asarray(text_ids[:PARITY_TOKENS])[None], np.stack([text_ids[s : s + PARITY_TOKENS] for s in starts])]
    on_text = max(_drift(reference, rewritten, weights, np.asarray(tokens, np.int64)) for tokens in text)
    return on_text, {"on": "training text", "max_abs_diff": on_text, "random_tokens_max_abs_diff": drift}


def _drift(reference, rewritten, weights: LstmWeights, tokens: np.ndarray) -> float:
    layers, hidden = len(weights.layers), weights.hidden
    batch = len(tokens)
    states = [{n: np.zeros((layers, batch, hidden), np.float32) for n in ("h", "c")} for _ in range(2)]
    worst = 0.0
    for t in range(tokens.shape[1]):
        feed = tokens[:, t : t + 1].astype(np.int64)
        outputs = []
        for i, session in enumerate((reference, rewritten)):
            logits, h, c = session.run(["logits", "h_out", "c_out"], {"tokens": feed, **states[i]})
            states[i] = {"h": h, "c": c}
            outputs.append(logits)
        worst = max(worst, float(np.abs(outputs[0] - outputs[1]).max()))
    return worst


Scorer = Callable[[object], tuple[float, np.ndarray]]  # session -> (held-out nats/token, argmax per position)


def quantize_static(
    fp32_path: Path,
    int8_path: Path,
    train_ids: np.ndarray,
    score: Scorer,
    *,
    corpus: str,
    opset: int,
    parity_tolerance: float,
    baseline: dict | None = None,
    say: Callable[[str], None] = lambda message: None,
) -> dict:
    """Write the row-exact int8 step graph of ``fp32_path`` to ``int8_path``; returns the
    card's ``quantization`` record (calibration, every variant's quality and speed, the
    chosen one; ``baseline``: dynamic int8's ``delta_nats_per_token`` and
    ``top1_agreement``).  Raises :class:`NotStaticQuantizable` for graphs it cannot
    rewrite and for a result that does not hold quality (the caller keeps dynamic int8)."""
    import onnx

    weights = read_lstm(onnx.load(str(fp32_path)))
    layers, hidden = len(weights.layers), weights.hidden
    with tempfile.TemporaryDirectory(prefix="studio-quantize-") as tmp:
        folder = Path(tmp)
        onnx.save(step_graph(weights, opset), str(folder / "step.onnx"))
        reference, step = session_for(fp32_path), session_for(folder / "step.onnx")
        drift, parity = step_parity(reference, step, weights, parity_tolerance, train_ids)
        if not drift < parity_tolerance:
            raise NotStaticQuantizable(f"the rewritten step graph drifts {drift:.1e} from the export ({parity['on']})")
        say(f"calibrating on {CALIBRATION_STREAMS} x {CALIBRATION_STEPS} training tokens")
        feeds = calibration_feeds(step, train_ids, CALIBRATION_STREAMS, CALIBRATION_STEPS)
        say("scoring fp32 on held-out text")
        fp32_nats, fp32_predictions = score(reference)
        fp32_rate = step_rate(reference, layers, hidden)
        variants = {}
        for name in VARIANTS:
            say(f"quantising and scoring {name}")
            quantize_step_graph(folder / "step.onnx", folder / f"{name}.onnx", feeds, name)
            session = session_for(folder / f"{name}.onnx")
            nats, predictions = score(session)
            variants[name] = {
                "delta_nats_per_token": round(nats - fp32_nats, 5),
                "top1_agreement": round(float(np.mean(predictions == fp32_predictions)), 5),
                "steps_per_s_batch1": round(step_rate(session, layers, hidden), 1),
            }
        chosen = choose(variants, baseline)
        if chosen is None:
            raise NotStaticQuantizable(f"no static variant holds quality ({variants})")
        (folder / f"{chosen}.onnx").replace(int8_path)
    return {
        "type": "int8",
        "scheme": "static",
        "row_exact": True,
        "variant": chosen,
        **{key: variants[chosen][key] for key in ("delta_nats_per_token", "top1_agreement")},
        "graph": "one-token step graph (LSTM rewritten as MatMuls; "
        + ("layer 0's input product folded into a token table" if folds_input_table(weights) else "embedding kept")
        + "; head MatMul kept fp32)",
        "calibration": {
            "data": f"training split of {corpus} (the held-out tail excluded)",
            "tokens": len(feeds) * CALIBRATION_STREAMS,
            "streams": CALIBRATION_STREAMS,
            "method": "onnxruntime quantize_static, QDQ, MinMax ranges of every MatMul input "
            "(nbits8-blocks: none needed)",
        },
        "variants": variants,
        "fp32_steps_per_s_batch1": round(fp32_rate, 1),
        "rewrite_parity": drift,
        **({"rewrite_parity_check": parity} if parity["on"] != "random tokens" else {}),
        "cpu_flags": cpu_flags(),
    }


def choose(variants: dict[str, dict], baseline: dict | None = None) -> str | None:
    """The fastest variant at or above TARGET_AGREEMENT; else the most faithful one that
    holds quality (at most MAX_DELTA_NATS, and MIN_AGREEMENT or the top-1 agreement of
    ``baseline``, the dynamic int8 it replaces); else None."""

    def holds(v: dict) -> bool:
        if v["delta_nats_per_token"] > MAX_DELTA_NATS:
            return False
        return v["top1_agreement"] >= MIN_AGREEMENT or (
            baseline is not None and v["top1_agreement"] >= baseline["top1_agreement"]
        )

    holding = {name: v for name, v in variants.items() if holds(v)}
    on_target = [name for name, v in holding.items() if v["top1_agreement"] >= TARGET_AGREEMENT]
    if on_target:
        return max(on_target, key=lambda name: holding[name]["steps_per_s_batch1"])
    if holding:
        return max(holding, key=lambda name: holding[name]["top1_agreement"])
    return None


def cpu_flags() -> list[str]:
    """The CPU's vector extensions that onnxruntime's kernels care about (Linux; else []):
    int8 MatMuls use VNNI (avx512_vnni / avx_vnni) where present, else AVX2."""
    try:
        with open("/proc/cpuinfo") as handle:
            words = set(handle.read().split())
    except OSError:
        return []
    return sorted(w for w in words if w.startswith(("avx", "amx")) or w == "fma")
