"""A PyTorch :class:`studio.models.recurrent_lm.RecurrentLM` rebuilt from a bundle's fp32 ONNX graph,
so that ``studio bench`` times PyTorch and onnxruntime on the very same weights.

ONNX stores each recurrent layer's gate blocks in its own order (LSTM: i, o, f, c;
GRU: z, r, h) where PyTorch uses another (LSTM: i, f, g, o; GRU: r, z, n), and the
input and recurrent biases side by side in one tensor.
"""

from __future__ import annotations

import numpy as np

from ..bundle import Bundle
from ..errors import StudioError
from ..half_weights import expanded
from ..runtime import Runtime

ONNX_TO_TORCH_GATES = {"LSTM": [0, 2, 3, 1], "GRU": [1, 0, 2], "RNN": [0]}  # torch block <- onnx block


def torch_model_from_onnx(bundle: Bundle):
    """A :class:`studio.models.recurrent_lm.RecurrentLM` holding the bundle's fp32 ONNX weights."""
    import onnx
    import torch
    from onnx import numpy_helper

    from ..config import ModelConfig
    from ..models.recurrent_lm import RecurrentLM

    if "fp32" not in bundle.card["graphs"]:
        raise StudioError(
            f"{bundle.name} ships no fp32 graph to rebuild PyTorch from; re-export it without --int8-only"
        )
    config = ModelConfig.from_dict(bundle.card["model"])
    if config.tie_weights:
        raise StudioError("bench rebuilds PyTorch models from untied graphs only")
    graph = expanded(onnx.load(str(bundle.graph_path("fp32")))).graph  # float16-stored weights as float32
    weights = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    recurrent, embedding, head = _layout(graph, weights, config.layers, bundle)
    state = {"embedding.weight": weights[embedding.input[0]], **_head_state(graph, head, weights)}
    for layer, node in enumerate(recurrent):
        state.update(_recurrent_state(node, weights, layer, config.hidden_size))
    model = RecurrentLM(config).eval()
    model.load_state_dict({k: torch.from_numpy(np.array(v, dtype=np.float32)) for k, v in state.items()})
    return model


def _layout(graph, weights: dict, layers: int, bundle: Bundle) -> tuple[list, object, object]:
    """(recurrent nodes in order, the embedding's Gather, the output layer's MatMul/Gemm)."""
    recurrent = [node for node in graph.node if node.op_type in ONNX_TO_TORCH_GATES]
    gathers = [node for node in graph.node if node.op_type == "Gather" and node.input[0] in weights]
    heads = [node for node in graph.node if node.op_type in ("MatMul", "Gemm") and node.input[1] in weights]
    if len(recurrent) != layers or len(gathers) != 1 or len(heads) != 1:
        raise StudioError(f"cannot map {bundle.graph_path('fp32')} back to PyTorch (unexpected graph layout)")
    return recurrent, gathers[0], heads[0]


def _head_state(graph, head, weights: dict) -> dict[str, np.ndarray]:
    """``head.weight`` and ``head.bias`` from the output MatMul (+ Add) or Gemm."""
    head_weight = weights[head.input[1]]
    transposed = head.op_type == "Gemm" and any(a.name == "transB" and a.i for a in head.attribute)
    bias_nodes = [node for node in graph.node if node.op_type == "Add" and head.output[0] in node.input]
    bias_name = (
        head.input[2]
        if head.op_type == "Gemm" and len(head.input) > 2
        else next((name for node in bias_nodes for name in node.input if name in weights), None)
    )
    if bias_name is None:
        raise StudioError("cannot find the output layer's bias in the ONNX graph")
    return {"head.weight": head_weight if transposed else head_weight.T, "head.bias": weights[bias_name]}


def _recurrent_state(node, weights: dict, layer: int, hidden: int) -> dict[str, np.ndarray]:
    """One layer's PyTorch weights from an ONNX LSTM/GRU/RNN node (W, R, B inputs)."""
    order = ONNX_TO_TORCH_GATES[node.op_type]

    def regate(matrix: np.ndarray) -> np.ndarray:
        blocks = [matrix[i * hidden : (i + 1) * hidden] for i in range(len(order))]
        return np.concatenate([blocks[i] for i in order])

    w, r, b = (weights[name][0] for name in node.input[1:4])
    return {
        f"rnn.weight_ih_l{layer}": regate(w),
        f"rnn.weight_hh_l{layer}": regate(r),
        f"rnn.bias_ih_l{layer}": regate(b[: len(order) * hidden]),
        f"rnn.bias_hh_l{layer}": regate(b[len(order) * hidden :]),
    }


def check_parity(model, runtime: Runtime, tokens: int = 64) -> float:
    """Max |logit difference| between the rebuilt PyTorch model and onnxruntime fp32."""
    import torch

    ids = np.random.default_rng(0).integers(0, model.config.vocab_size, (2, tokens))
    with torch.no_grad():
        expected, _ = model(torch.from_numpy(ids), model.init_state(2))
    got, _ = runtime.logits(ids, runtime.init_state(2))
    return float(np.abs(got - expected.numpy()).max())
