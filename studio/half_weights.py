"""fp32 step graphs whose weights are stored as float16 (``studio export --fp16-weights``).

The model's weights are rounded to float16 once, before export, and the graph is exported
and checked against those rounded weights as usual.  Then every large float32 weight of
the graph, now exactly a float16 value, is stored as float16 and cast back to float32 by
a ``Cast`` node at the start of the graph.  onnxruntime folds those casts when it loads
the graph (and any ONNX runtime computes them exactly), so the graph computes in float32
with the very numbers it was checked with, from a file about half the size.

:func:`expanded` undoes the storage (for tools that read the weights: the int8
quantisers, the torch twin of ``studio bench``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

STORED_SUFFIX = "__fp16"
MIN_ELEMENTS = 1024  # smaller weights stay float32: their bytes do not matter
FP16_MAX = float(np.finfo(np.float16).max)


def store_weights_fp16(path: Path) -> int:
    """Rewrite the graph at ``path`` in place: each float32 initializer of at least
    ``MIN_ELEMENTS`` values, every one exactly a float16 value, is stored as float16 and
    cast back by a ``Cast`` node.  Returns how many were stored so."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    inputs = {value.name for value in graph.input}
    casts = []
    for init in graph.initializer:
        if init.data_type != TensorProto.FLOAT or init.name in inputs:
            continue
        values = numpy_helper.to_array(init)
        if values.size < MIN_ELEMENTS:
            continue
        half = values.astype(np.float16)
        if not np.array_equal(half.astype(np.float32), values):  # not rounded (or not finite): leave it
            continue
        name = init.name
        init.CopyFrom(numpy_helper.from_array(half, name + STORED_SUFFIX))
        cast = helper.make_node("Cast", [name + STORED_SUFFIX], [name], to=TensorProto.FLOAT, name=name + "_cast")
        casts.append(cast)
    if casts:
        nodes = list(graph.node)
        del graph.node[:]
        graph.node.extend(casts + nodes)
        onnx.checker.check_model(model)
        onnx.save(model, str(path))
    return len(casts)


def has_stored_weights(model) -> bool:
    """Whether ``model`` (an ``onnx.ModelProto``) holds weights stored by :func:`store_weights_fp16`."""
    return any(init.name.endswith(STORED_SUFFIX) for init in model.graph.initializer)


def expanded(model):
    """``model`` (an ``onnx.ModelProto``) with weights stored by :func:`store_weights_fp16`
    back as float32 initializers under their own names and without the casts; a graph
    without such weights comes back as it is."""
    from onnx import TensorProto, numpy_helper

    graph = model.graph
    if not has_stored_weights(model):
        return model
    stored = {init.name: init for init in graph.initializer if init.name.endswith(STORED_SUFFIX)}
    casts = [
        node
        for node in graph.node
        if node.op_type == "Cast"
        and len(node.input) == 1
        and node.input[0] in stored
        and node.attribute[0].i == TensorProto.FLOAT
    ]
    for node in casts:
        values = numpy_helper.to_array(stored.pop(node.input[0])).astype(np.float32)
        graph.initializer.append(numpy_helper.from_array(values, node.output[0]))
        graph.node.remove(node)
    kept = [init for init in graph.initializer if not init.name.endswith(STORED_SUFFIX) or init.name in stored]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    return model


def round_weights_fp16(module) -> None:
    """Round every floating parameter and buffer of ``module`` (torch) to the nearest
    float16 value, in place; refuses weights beyond float16's range."""
    import torch

    from .errors import require

    with torch.no_grad():
        for name, tensor in [*module.named_parameters(), *module.named_buffers()]:
            if not tensor.dtype.is_floating_point:
                continue
            largest = float(tensor.abs().max()) if tensor.numel() else 0.0
            require(
                largest <= FP16_MAX,
                f"--fp16-weights: weight {name} reaches {largest:.3g}, beyond float16's range: export without it",
            )
            tensor.copy_(tensor.half().to(tensor.dtype))
