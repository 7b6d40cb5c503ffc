"""onnxruntime sessions with explicit, named recurrent state.  Torch-free.

``Runtime.run(inputs, state) -> (outputs, next_state)`` where ``inputs`` and
``outputs`` map the card's names to numpy arrays and ``state`` maps each state name
to its array.  ``init_state(batch)`` gives zeros of the card's shapes.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .bundle import Bundle
from .errors import StudioError

DTYPES = {"float32": np.float32, "int64": np.int64, "int32": np.int32}


def providers_for(device: str) -> list[str]:
    """ORT execution providers for "cpu" or "cuda" (CUDA falls back to CPU with a notice)."""
    import onnxruntime as ort

    if device == "cpu":
        return ["CPUExecutionProvider"]
    if device.startswith("cuda"):
        if "CUDAExecutionProvider" in ort.get_available_providers():
            return ["CUDAExecutionProvider", "CPUExecutionProvider"]
        import sys

        print("notice: onnxruntime has no CUDA provider here (install onnxruntime-gpu); using CPU",
              file=sys.stderr)
        return ["CPUExecutionProvider"]
    raise StudioError(f"unknown --device {device!r}: use cpu or cuda")


class Runtime:
    def __init__(self, bundle: Bundle, device: str = "cpu", precision: str = "auto",
                 threads: int | None = None):
        import onnxruntime as ort

        self.bundle = bundle
        io = bundle.card["io"]
        self.input_names = list(io["inputs"])
        self.state_spec = io["state"]
        self.state_names = list(self.state_spec)
        self.output_names = list(io["outputs"])
        options = ort.SessionOptions()
        options.log_severity_level = 3
        options.intra_op_num_threads = threads or min(4, os.cpu_count() or 1)
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        path = bundle.graph_path(precision)
        try:
            self.session = ort.InferenceSession(str(path), options, providers=providers_for(device))
        except Exception as error:  # onnxruntime raises its own types for corrupt files
            raise StudioError(f"cannot load {path} ({str(error).splitlines()[0][:120]}): "
                              "the model file is damaged; re-export it") from None
        self._fetch = self.output_names + [f"{n}_out" for n in self.state_names]

    def init_state(self, batch: int) -> dict[str, np.ndarray]:
        state = {}
        for name, spec in self.state_spec.items():
            shape = [batch if d == "batch" else d for d in spec["shape"]]
            state[name] = np.zeros(shape, dtype=DTYPES[spec["dtype"]])
        return state

    def run(self, inputs: dict[str, np.ndarray], state: dict[str, np.ndarray]):
        values = self.session.run(self._fetch, {**inputs, **state})
        outputs = dict(zip(self.output_names, values[: len(self.output_names)]))
        next_state = dict(zip(self.state_names, values[len(self.output_names):]))
        return outputs, next_state

    # categorical convenience ---------------------------------------------------------
    def logits(self, tokens: np.ndarray, state: dict[str, np.ndarray]):
        """tokens (batch, time) -> logits (batch, time, vocab), next state."""
        outputs, state = self.run({"tokens": np.ascontiguousarray(tokens, dtype=np.int64)}, state)
        return outputs["logits"], state

    @staticmethod
    def select(state: dict[str, np.ndarray], rows: np.ndarray) -> dict[str, np.ndarray]:
        """Reorder / repeat batch rows of every state tensor (axis 1 by convention)."""
        return {k: np.ascontiguousarray(v[:, rows]) for k, v in state.items()}
