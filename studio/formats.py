"""File-format facts shared by the exporter, the bundle reader and the sampler.

Every constant here is defined once: the ONNX opset, the export parity tolerance, the
bundle's file names and the card's required keys, and the token cap that stands in for
"no length given" where something else (a bar count) ends a sample.
"""

from __future__ import annotations

VERSION = "0.1.0"  # the studio version written into run configs, checkpoints and cards
OPSET = 17
PARITY_TOLERANCE = 1e-4  # max |torch - onnxruntime| over every output, or the export is refused


def float64_parity_limit(torch_fp32_error: float, tolerance: float = PARITY_TOLERANCE) -> float:
    """Where fp32 itself strays past ``tolerance`` (a wide trained recurrence), an export
    is measured against a float64 run of the same weights and passes when onnxruntime is
    no further from it than twice torch's own fp32 (``torch_fp32_error``)."""
    return max(tolerance, 2 * torch_fp32_error)


CARD = "card.json"
FP32_GRAPH = "model.onnx"
INT8_GRAPH = "model.int8.onnx"
MC_GRAPH = "model.mc.onnx"  # the step graph with its dropout masks as inputs (card["mc_dropout"])
CARD_REQUIRED_KEYS = ("domain", "graphs", "io")
MAX_TOKENS = 20_000  # a cap, not a target: --bars (or a separator) ends a piece long before
# --held-out: the validation part of a corpus is its last files in name order ("tail"), or a
# fixed hashed draw of its files ("random"); the card's train.held_out records which
HELD_OUT = ("tail", "random")
HELD_OUT_TOKENS = 20_000  # held-out tokens the exporter scores fp32 and int8 on
