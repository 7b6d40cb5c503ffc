"""``studio bench``: measure one bundle, then print the figures as JSON or a table."""

from __future__ import annotations

import json
import sys

from ..errors import StudioError
from .measure import measure

ROWS = [
    ("PyTorch step loop, default settings", "torch_naive_tok_s", "tok/s"),
    ("PyTorch, oneDNN off + inference_mode + best threads", "torch_best_tok_s", "tok/s"),
    ("onnxruntime fp32", "ort_fp32_tok_s", "tok/s"),
    ("onnxruntime fp32 through IOBinding", "ort_fp32_iobinding_tok_s", "tok/s"),
    ("onnxruntime int8", "ort_int8_tok_s", "tok/s"),
    ("onnxruntime fp32, step graph alone (no sampling)", "ort_fp32_graph_only_tok_s", "tok/s"),
    ("onnxruntime int8, step graph alone (no sampling)", "ort_int8_graph_only_tok_s", "tok/s"),
    ("onnxruntime fp32, batch 8", "ort_fp32_b8_tok_s", "tok/s"),
    ("onnxruntime fp32, batch 64", "ort_fp32_b64_tok_s", "tok/s"),
    ("onnxruntime int8, batch 8", "ort_int8_b8_tok_s", "tok/s"),
    ("onnxruntime int8, batch 64", "ort_int8_b64_tok_s", "tok/s"),
    ("onnxruntime int8, batch 64 as one call (rows not exact)", "ort_int8_b64_one_call_tok_s", "tok/s"),
    ("onnxruntime int8, step graph alone at batch 8", "ort_int8_b8_graph_only_tok_s", "tok/s"),
    ("onnxruntime int8, step graph alone at batch 20", "ort_int8_b20_graph_only_tok_s", "tok/s"),
    ("onnxruntime int8, step graph alone at batch 64", "ort_int8_b64_graph_only_tok_s", "tok/s"),
    ("loop ÷ graph, fp32", "loop_vs_graph_fp32", "x"),
    ("loop ÷ graph, int8", "loop_vs_graph_int8", "x"),
    ("int8 ÷ fp32, batch 1", "int8_vs_fp32", "x"),
    ("int8 batch 64 ÷ batch 1", "int8_b64_vs_b1", "x"),
    ("  the same for the graph alone (ceiling)", "ceiling_int8_b64_vs_b1", "x"),
    ("beam steps ÷ int8 batch-1 tokens", "beam8_vs_int8", "x"),
    ("  the same for the graph alone (ceiling)", "ceiling_beam8_vs_int8", "x"),
    ("server, 20 streams ÷ 1", "serve_20_vs_1", "x"),
    ("  the same for the graph alone (ceiling)", "ceiling_serve_20_vs_1", "x"),
    ("server, 1 stream of 300 tokens (batching path)", "serve_1_tok_s", "tok/s"),
    ("server, 20 concurrent streams of 300 tokens, in all", "serve_20_tok_s", "tok/s"),
    ("beam search, 8 beams", "beam8_steps_s", "steps/s"),
    ("prefill 1,000 tokens, full-sequence call", "prefill_1000_ms", "ms"),
    ("prefill 1,000 tokens, step calls", "prefill_1000_step_ms", "ms"),
    ("cold start, `studio sample --length 200`", "cold_start_s", "s"),
]


MAX_SECONDS = 60.0  # per figure: the whole run takes about 20 times this


def run_bench(model: str = "prose", json_out: bool = False, seconds: float = 3.0, shape: str | None = None) -> dict:
    """`studio bench`: measure, then print JSON or a table."""
    if not 0 < seconds <= MAX_SECONDS:
        raise StudioError(f"--seconds must be above 0 and at most {MAX_SECONDS:g} (got {seconds})")
    progress = None if json_out else (lambda message: print(f"  {message} ...", file=sys.stderr))
    result = measure(model, seconds, progress=progress, shape=shape)
    if json_out:
        print(json.dumps(result))
    else:
        print_table(result)
    return result


def print_table(result: dict) -> None:
    """The figures of :data:`ROWS` that ``result`` has, as a rich table on stdout."""
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=f"{result['model']} ({result['shape']}), {result['cpu_cores']} cores, "
        f"load {result['load_avg_before']} -> {result['load_avg_after']}"
    )
    table.add_column("measurement")
    table.add_column("value", justify="right")
    table.add_column("unit")
    for label, key, unit in ROWS:
        if key in result:
            value = result[key]
            table.add_row(label, f"{value:,.3f}" if unit in ("s", "x") else f"{value:,.1f}", unit)
    Console().print(table)
    if "int8_scheme" in result:
        variant = f" {result['int8_variant']}" if "int8_variant" in result else ""
        flags = " ".join(result["cpu_flags"])
        print(f"int8: {result['int8_scheme']}{variant}, batches {result['int8_batches']}; CPU {flags}")
