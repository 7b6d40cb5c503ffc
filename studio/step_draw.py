"""The sampling draw inside a categorical step graph, so the per-token loop does no
numpy work between two model calls.  Torch-free and onnx-free.

A plain row (no rule but a temperature ``T``, not greedy) takes its next token by the
Gumbel-max trick: ``argmax(logits / T + g)`` with ``g`` standard Gumbels (one per
vocabulary entry), which picks token ``i`` with probability ``softmax(logits / T)_i``.
The graph takes ``argmax(logits + T g)``, the same token (``T > 0`` scales every entry
alike), so the temperature rides on the noise and costs the graph nothing.  The Gumbels
come from the row's own random stream (``CounterRNG.gumbel``, times ``T`` and rounded to
float32), so the numpy draw of :func:`studio.sampling.rules.gumbel_max` and the graph's
give the same token bit for bit: one float32 addition, correctly rounded in both, then
the first index of the largest value.

:func:`with_draw` appends two nodes to a bundle's step graph, without the ``onnx``
package (the sampling path never imports it): an ONNX model is a protobuf message, and
protobuf merges a singular message field that occurs twice (its repeated fields are
concatenated), so a second ``graph`` field at the end of the file, holding only the new
input, nodes and output, adds them to the graph::

    draw_perturbed = Add(logits, noise)                  # (batch, 1, vocab), float32
    draw_token     = ArgMax(draw_perturbed, axis=-1)     # (batch, 1), int64, first maximum

The token output has the shape of the ``tokens`` input, so the loop feeds it straight
back.  The graph is otherwise the bundle's own: the same weights, the same logits, and a
call that does not feed ``noise`` gets them as before.  The runtime loads every
categorical graph this way, so one session (one thread pool) serves the prime, the
batches and the draw.
"""

from __future__ import annotations

NOISE, TOKEN = "noise", "draw_token"
_PERTURBED = "draw_perturbed"

# ONNX protobuf field numbers (onnx/onnx.proto) and enum values used here
_MODEL_GRAPH = 7
_GRAPH_NODE, _GRAPH_INITIALIZER, _GRAPH_INPUT, _GRAPH_OUTPUT = 1, 5, 11, 12
_TENSOR_DIMS, _TENSOR_TYPE, _TENSOR_NAME, _TENSOR_RAW = 1, 2, 8, 9
_NODE_INPUT, _NODE_OUTPUT, _NODE_NAME, _NODE_OP, _NODE_ATTRIBUTE = 1, 2, 3, 4, 5
_ATTR_NAME, _ATTR_INT, _ATTR_TYPE, _ATTR_TYPE_INT = 1, 3, 20, 2
_VALUE_NAME, _VALUE_TYPE = 1, 2
_TYPE_TENSOR, _TENSOR_ELEM, _TENSOR_SHAPE = 1, 1, 2
_SHAPE_DIM, _DIM_VALUE, _DIM_PARAM = 1, 1, 2
_FLOAT, _INT64 = 1, 7


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # negative int64s are ten-byte two's complement varints
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number: int, payload: bytes | str) -> bytes:
    """A length-delimited field (a string or an embedded message)."""
    data = payload.encode() if isinstance(payload, str) else payload
    return _varint(number << 3 | 2) + _varint(len(data)) + data


def _int_field(number: int, value: int) -> bytes:
    return _varint(number << 3) + _varint(value)


def _tensor_value(name: str, elem_type: int, dims: list[int | str]) -> bytes:
    """A ValueInfoProto: a tensor of ``elem_type`` whose dimensions are sizes or names."""
    shape = b"".join(
        _field(_SHAPE_DIM, _field(_DIM_PARAM, d) if isinstance(d, str) else _int_field(_DIM_VALUE, d)) for d in dims
    )
    tensor = _int_field(_TENSOR_ELEM, elem_type) + _field(_TENSOR_SHAPE, shape)
    return _field(_VALUE_NAME, name) + _field(_VALUE_TYPE, _field(_TYPE_TENSOR, tensor))


def _node(op: str, inputs: list[str], outputs: list[str], name: str, **ints: int) -> bytes:
    body = b"".join(_field(_NODE_INPUT, i) for i in inputs) + b"".join(_field(_NODE_OUTPUT, o) for o in outputs)
    body += _field(_NODE_NAME, name) + _field(_NODE_OP, op)
    for key, value in ints.items():
        attribute = _field(_ATTR_NAME, key) + _int_field(_ATTR_INT, value) + _int_field(_ATTR_TYPE, _ATTR_TYPE_INT)
        body += _field(_NODE_ATTRIBUTE, attribute)
    return body


def _zeros(name: str, dims: list[int]) -> bytes:
    """A float32 TensorProto of ``dims``, all zeros."""
    count = 1
    for d in dims:
        count *= d
    body = b"".join(_int_field(_TENSOR_DIMS, d) for d in dims) + _int_field(_TENSOR_TYPE, _FLOAT)
    return body + _field(_TENSOR_NAME, name) + _field(_TENSOR_RAW, bytes(4 * count))


def with_draw(model: bytes, vocab: int) -> bytes:
    """``model`` (a categorical step graph: ``logits`` of shape (batch, time, vocab) from
    ``tokens`` (batch, time)) with the ``noise`` input and the ``draw_token`` output (see
    the module's docstring).  ``noise`` defaults to zeros of shape (1, 1, vocab) (an
    initializer that is also an input), so a call that does not feed it (a prime, a
    batch of rows with rules) runs the graph as before and ignores ``draw_token``."""
    graph = _field(_GRAPH_NODE, _node("Add", ["logits", NOISE], [_PERTURBED], "studio_draw_add"))
    graph += _field(_GRAPH_NODE, _node("ArgMax", [_PERTURBED], [TOKEN], "studio_draw_argmax", axis=-1, keepdims=0))
    graph += _field(_GRAPH_INITIALIZER, _zeros(NOISE, [1, 1, vocab]))
    graph += _field(_GRAPH_INPUT, _tensor_value(NOISE, _FLOAT, ["noise_batch", 1, vocab]))
    graph += _field(_GRAPH_OUTPUT, _tensor_value(TOKEN, _INT64, ["batch", "draw_steps"]))
    return bytes(model) + _field(_MODEL_GRAPH, graph)
