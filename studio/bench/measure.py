"""All of ``studio bench``'s figures for one bundle, as one dict (the keys of
``studio bench --json``; the package docstring says what each one times)."""

from __future__ import annotations

import os
import platform
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..api import bundle_domain
from ..bundle import Bundle
from ..config import FUSED_CELLS
from ..domains import CategoricalDomain
from ..errors import StudioError
from ..quantize import cpu_flags
from ..runtime import Runtime
from ..sampling.settings import SampleSettings
from . import timing
from .bundles import fp32_bundle, int8_bundle, shaped_bundle
from .runtime_rates import precision_figures, prefill_step_ms, rate_against_single
from .serve_rates import serve_figures
from .torch_rates import torch_figures

PREFILL_TOKENS = 1000
AGREEMENT_TOKENS = 200  # tokens over which int8 and fp32 top-1 predictions are compared
PRIME_TOKENS = 8
KEYS = (
    "ort_fp32_tok_s",
    "ort_int8_tok_s",
    "torch_naive_tok_s",
    "torch_best_tok_s",
    "beam8_steps_s",
    "serve_1_tok_s",
    "serve_20_tok_s",
    "prefill_1000_ms",
    "cold_start_s",
)


def measure(
    model: str | Path = "prose",
    seconds: float = 3.0,
    *,
    torch: bool = True,
    cold: bool = True,
    progress: Callable[[str], None] | None = None,
    shape: str | None = None,
) -> dict:
    """All figures for one bundle, as a dict (the keys of ``studio bench --json``).  With
    ``shape`` ("2x512"), a randomly initialised LSTM of that shape with the bundle's
    vocabulary stands in for the bundle's weights (``weights: random``)."""
    say = progress or (lambda message: None)
    bundle = Bundle.load(model)
    domain = bundle_domain(bundle)  # stand-ins below keep the bundle's card, so its domain too
    if not isinstance(domain, CategoricalDomain):
        raise StudioError(f"bench measures token models (text, music); {bundle.name} is a {domain.name} model")
    stand_in = tempfile.TemporaryDirectory(prefix="studio-bench-shape-") if shape else None
    if shape:
        say(f"exporting a random {shape} LSTM")
        bundle = shaped_bundle(bundle, shape, Path(stand_in.name))
    try:
        return _measure(bundle, domain, seconds, torch=torch, cold=cold, say=say, shaped=bool(shape))
    finally:
        if stand_in is not None:
            stand_in.cleanup()


def _measure(
    bundle: Bundle, domain, seconds: float, *, torch: bool, cold: bool, say: Callable[[str], None], shaped: bool
) -> dict:
    result = _facts(bundle, shaped)
    prime_ids = np.random.default_rng(1).integers(0, bundle.card["model"]["vocab_size"], PREFILL_TOKENS)
    with tempfile.TemporaryDirectory(prefix="studio-bench-") as tmp:
        shipped = bundle
        bundle, runtimes, prepared = _runtimes(shipped, Path(tmp))
        result.update(prepared)
        prime = domain.decode([int(i) for i in prime_ids[:PRIME_TOKENS]])
        base = SampleSettings(model=str(bundle.path), prime=prime, seed=0)
        for precision, runtime in runtimes.items():
            result.update(precision_figures(precision, runtime, domain, base, prime_ids, seconds, say))
        default = "int8" if "int8" in shipped.card["graphs"] else "fp32"
        result["default_precision"] = default
        result["prefill_1000_ms"] = result[f"prefill_1000_{default}_ms"]
        say("prefill through step calls")
        result["prefill_1000_step_ms"] = prefill_step_ms(runtimes[default], prime_ids, seconds / 3)
        say("serving: 1 and 20 concurrent streams through the batcher")
        # the precision `studio web` serves (the bundle's default) when its batches are
        # row-exact in one call; a dynamic int8 graph runs a batch row by row, so fp32
        serving = "fp32" if runtimes[default].row_by_row else default
        result.update(serve_figures(runtimes[serving].bundle.path, serving, prime))
        say("beam search, 8 beams, alternating with int8 batch 1")
        beam, paired = rate_against_single(
            runtimes[default], domain, base.with_(num_beams=8), runtimes["int8"], base, seconds, lambda s: 1
        )
        result["beam8_steps_s"], result["beam8_vs_int8"] = round(beam, 1), round(paired, 3)
        if cold:
            say("cold start")
            result["cold_start_s"] = round(timing.cold_start(shipped.path), 3)
        if torch and bundle.card["model"].get("cell", "lstm") in FUSED_CELLS:  # rebuilt from ONNX LSTM/GRU/RNN ops
            say("PyTorch")
            result.update(torch_figures(bundle, runtimes["fp32"], seconds))
    result.update(_against_torch(result))
    result.update(_ratios(result))
    result["load_avg_after"] = round(os.getloadavg()[0], 2)
    return result


def _facts(bundle: Bundle, shaped: bool) -> dict:
    """The model, the machine and the versions, before anything is timed."""
    import onnxruntime

    config = bundle.card["model"]
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "model": bundle.name,
        "path": str(bundle.path),
        "shape": f"{config['layers']}x{config['hidden_size']} {config['cell']}, vocab {config['vocab_size']}",
        "cpu_cores": cores,
        "load_avg_before": round(os.getloadavg()[0], 2),
        "python": platform.python_version(),
        "weights": "random (--shape)" if shaped else "trained",
        "onnxruntime": onnxruntime.__version__,
        "cpu_flags": cpu_flags(),
        "reference_gemv_us": round(timing.reference_gemv_us(), 1),
    }


def _runtimes(shipped: Bundle, folder: Path) -> tuple[Bundle, dict[str, Runtime], dict]:
    """(the fp32 bundle, an fp32 and an int8 runtime on the same weights, the figures that
    say how they were made and that they agree), exporting or quantising into ``folder``."""
    (folder / "fp32").mkdir()
    (folder / "int8").mkdir()
    bundle = fp32_bundle(shipped, folder / "fp32")
    quantised = int8_bundle(bundle, folder / "int8")
    runtimes = {"fp32": Runtime(bundle, precision="fp32"), "int8": Runtime(quantised, precision="int8")}
    figures = {
        "fp32_exported_here_from": None if bundle is shipped else str(Path("runs") / shipped.name / "best.pt"),
        "int8_quantised_here": quantised is not bundle,
        "int8_top1_agreement": _top1_agreement(runtimes, bundle.card["model"]["vocab_size"]),
        "ort_threads": runtimes["fp32"].threads,
        **_int8_facts(quantised, runtimes["int8"]),
    }
    return bundle, runtimes, figures


def _int8_facts(quantised: Bundle, runtime: Runtime) -> dict:
    """How the int8 graph was made (the card's record from `studio quantize` / export):
    static (row-exact, batches in one call) or dynamic (row by row), the variant chosen
    and every variant's speed and quality where they were measured."""
    record = quantised.card.get("quantization") or {}
    facts = {
        "int8_scheme": record.get("scheme", "dynamic"),
        "int8_batches": "row by row" if runtime.row_by_row else "one call",
    }
    if "variant" in record:
        facts["int8_variant"] = record["variant"]
        facts["int8_variants_at_quantize"] = record.get("variants", {})
    return facts


def _top1_agreement(runtimes: dict[str, Runtime], vocab: int) -> float:
    """How often int8 and fp32 predict the same next token: same weights must track
    closely (different weights would not)."""
    check = np.random.default_rng(2).integers(0, vocab, (1, AGREEMENT_TOKENS))
    fp32_logits, _ = runtimes["fp32"].logits(check, runtimes["fp32"].init_state(1))
    int8_logits, _ = runtimes["int8"].logits(check, runtimes["int8"].init_state(1))
    return round(float(np.mean(fp32_logits.argmax(-1) == int8_logits.argmax(-1))), 3)


def _ratios(result: dict) -> dict:
    """The ratios issue 19 sets targets on, from this run's figures, and beside each batch
    target its ceiling: the same ratio for the bare step graph, with no sampling work on
    either side (what the CPU's batched kernels give; no loop can beat it)."""
    # loop ÷ graph, int8 b64 ÷ b1, beam8 ÷ int8 and serve 20 ÷ 1 come with their rates:
    # medians over chunk pairs or turns timed alternately with their baseline
    # (precision_figures, _measure, serve_figures)
    ratios = {}
    if result.get("ort_fp32_tok_s"):
        ratios["int8_vs_fp32"] = round(result["ort_int8_tok_s"] / result["ort_fp32_tok_s"], 2)
    graph = {b: result.get(f"ort_int8_b{b}_graph_only_tok_s") for b in (8, 20, 64)}
    single = result.get("ort_int8_graph_only_tok_s")
    if single and all(graph.values()):
        ratios["ceiling_int8_b64_vs_b1"] = round(graph[64] / single, 2)
        ratios["ceiling_beam8_vs_int8"] = round(graph[8] / 8 / single, 3)
        ratios["ceiling_serve_20_vs_1"] = round(graph[20] / single, 2)
    return ratios


def _against_torch(result: dict) -> dict:
    """``ort_{fp32,int8}_vs_torch_best``: onnxruntime's speed over tuned PyTorch's."""
    if "torch_best_tok_s" not in result:
        return {}
    return {
        f"ort_{precision}_vs_torch_best": round(result[f"ort_{precision}_tok_s"] / result["torch_best_tok_s"], 2)
        for precision in ("fp32", "int8")
    }
