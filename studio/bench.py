"""`studio bench`: sampling speed of one bundle, PyTorch against onnxruntime, in one run.

Every figure comes from the same weights: the PyTorch model is rebuilt from the
bundle's fp32 ONNX initialisers (ONNX LSTM gates are i, o, f, c; PyTorch's i, f, g, o)
and checked against onnxruntime before anything is timed.  A bundle shipped int8-only
gets its fp32 graph exported into a temporary folder from ``runs/NAME/best.pt``; one
without an int8 graph gets it quantised on the fly; ``int8_top1_agreement`` confirms
the two graphs hold the same weights.

What is timed (tokens per second are generated tokens over wall time; each figure is
the median over short chunks inside ``seconds``, so a burst of load elsewhere moves
it less):

* ``torch_naive_tok_s``: a PyTorch step loop as a user would write it (``no_grad``,
  default threads and backends), sampling with ``torch.multinomial``, batch 1;
* ``torch_best_tok_s``: the same loop with oneDNN off, ``inference_mode`` and the
  best thread count (``torch_best_threads``);
* ``ort_fp32_tok_s`` / ``ort_int8_tok_s``: the product's sampling loop
  (:class:`studio.generate.Generation`, default settings, batch 1) on onnxruntime;
* ``ort_{fp32,int8}_graph_only_tok_s``: the bare step graph at batch 1 (no sampling,
  no Python bookkeeping): the ceiling for the two figures above;
* ``ort_{fp32,int8}_b{8,64}_tok_s``: the same with ``--num 8`` / ``--num 64`` (one batch;
  int8 runs it row by row so every row is exact, see :mod:`studio.runtime`;
  ``ort_int8_b64_one_call_tok_s`` is the single-call figure for comparison);
* ``beam8_steps_s``: ``--beam 8`` search steps per second (default precision);
* ``prefill_1000_ms``: priming with 1,000 tokens through the full-sequence call
  (``prefill_1000_step_ms``: the same through 1,000 step calls, for comparison);
* ``reference_gemv_us``: a numpy matrix-vector product the size of one LSTM layer's
  recurrent weights, so that figures from a busy or slow machine can be recognised;
* ``cold_start_s``: wall time of ``studio sample --length 200`` in a fresh process
  (median of 3 after one warm-up run).

Generation stops at a document separator; here the separator does not end a sample, so
every run generates exactly the tokens asked for.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np

from .bundle import Bundle
from .errors import StudioError
from .generate import Generation
from .runtime import Runtime
from .sampling.settings import SampleSettings

PREFILL_TOKENS = 1000
COLD_START_LENGTH = 200
KEYS = ("ort_fp32_tok_s", "ort_int8_tok_s", "torch_naive_tok_s", "torch_best_tok_s",
        "beam8_steps_s", "prefill_1000_ms", "cold_start_s")


# --- timing helpers ----------------------------------------------------------------------

def rate(work: Callable[[], int], seconds: float, chunks: int = 7) -> float:
    """Median units/second of ``work()`` (which returns the units it did) over ``chunks``
    timed calls after one warm-up call; stops early once ``seconds`` are spent."""
    work()
    rates, spent = [], 0.0
    for _ in range(chunks):
        start = time.perf_counter()
        units = work()
        elapsed = time.perf_counter() - start
        rates.append(units / elapsed)
        spent += elapsed
        if spent > seconds and len(rates) >= 3:
            break
    return statistics.median(rates)


def chunk_length(step_seconds: float, seconds: float, chunks: int = 7) -> int:
    """Steps per chunk so that ``chunks`` chunks take about ``seconds``."""
    return int(max(20, min(20_000, seconds / chunks / max(step_seconds, 1e-7))))


def probe(step: Callable[[], None], tries: int = 20) -> float:
    """Rough seconds per call of ``step`` (to size the chunks)."""
    step()
    start = time.perf_counter()
    for _ in range(tries):
        step()
    return (time.perf_counter() - start) / tries


def reference_gemv_us(repeats: int = 2000) -> float:
    """Median microseconds of a (2048 x 512) @ (512,) float32 product in numpy: one LSTM
    layer's recurrent matrix, to tell a slow or busy machine from a slow runtime."""
    matrix = np.random.default_rng(0).random((2048, 512), dtype=np.float32)
    vector = matrix[0].copy()
    times = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(repeats // 5):
            matrix @ vector
        times.append((time.perf_counter() - start) / (repeats // 5) * 1e6)
    return statistics.median(times)


# --- the product's sampling loop, separator ignored ---------------------------------------

class _Endless:
    """A domain whose samples never end early (for timing a fixed number of tokens)."""

    separator_id = -1

    def __init__(self, domain):
        self._domain = domain

    def __getattr__(self, name):
        return getattr(self._domain, name)

    def is_finished(self, generated, settings) -> bool:
        return False


def generation_rate(runtime: Runtime, settings: SampleSettings, seconds: float,
                    per_step: Callable[[SampleSettings], int]) -> float:
    domain = _Endless(runtime.bundle.domain)
    prime = settings.prime

    def run(length: int) -> int:
        generation = Generation(runtime, domain, settings.with_(length=length, prime=prime))
        for _ in generation:
            pass
        return length * per_step(settings)

    start = time.perf_counter()
    run(20)
    step_seconds = (time.perf_counter() - start) / 20
    length = chunk_length(step_seconds, seconds)
    return rate(lambda: run(length), seconds)


def graph_rate(runtime: Runtime, seconds: float) -> float:
    """Steps per second of the bare step graph at batch 1 (state fed back, always the same
    token, no sampling): the ceiling the sampling loop approaches as its own work shrinks."""
    feeds = {"tokens": np.zeros((1, 1), dtype=np.int64), **runtime.init_state(1)}
    fetch = runtime._fetch
    names = runtime.state_names

    def steps(count: int) -> int:
        for _ in range(count):
            values = runtime.session.run(fetch, feeds)
            for i, name in enumerate(names):
                feeds[name] = values[i + 1]
        return count

    length = chunk_length(probe(lambda: steps(1)), seconds)
    return rate(lambda: steps(length), seconds)


# --- PyTorch from the ONNX graph ---------------------------------------------------------

ONNX_TO_TORCH_GATES = {"LSTM": [0, 2, 3, 1], "GRU": [1, 0, 2], "RNN": [0]}  # torch block <- onnx block


def torch_model_from_onnx(bundle: Bundle):
    """A :class:`studio.model.RecurrentLM` holding the bundle's fp32 ONNX weights."""
    import onnx
    import torch
    from onnx import numpy_helper

    from .config import ModelConfig
    from .model import RecurrentLM

    if "fp32" not in bundle.card["graphs"]:
        raise StudioError(f"{bundle.name} ships no fp32 graph to rebuild PyTorch from; "
                          "re-export it without --int8-only")
    config = ModelConfig.from_dict(bundle.card["model"])
    if config.tie_weights:
        raise StudioError("bench rebuilds PyTorch models from untied graphs only")
    graph = onnx.load(str(bundle.graph_path("fp32"))).graph
    weights = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    recurrent = [node for node in graph.node if node.op_type in ONNX_TO_TORCH_GATES]
    gathers = [node for node in graph.node if node.op_type == "Gather" and node.input[0] in weights]
    heads = [node for node in graph.node if node.op_type in ("MatMul", "Gemm") and node.input[1] in weights]
    if len(recurrent) != config.layers or len(gathers) != 1 or len(heads) != 1:
        raise StudioError(f"cannot map {bundle.graph_path('fp32')} back to PyTorch "
                          "(unexpected graph layout)")
    model = RecurrentLM(config).eval()
    state = {"embedding.weight": weights[gathers[0].input[0]]}
    head = heads[0]
    head_weight = weights[head.input[1]]
    transposed = head.op_type == "Gemm" and any(a.name == "transB" and a.i for a in head.attribute)
    state["head.weight"] = head_weight if transposed else head_weight.T
    bias_nodes = [node for node in graph.node if node.op_type == "Add"
                  and head.output[0] in node.input]
    bias_name = head.input[2] if head.op_type == "Gemm" and len(head.input) > 2 else \
        next((name for node in bias_nodes for name in node.input if name in weights), None)
    if bias_name is None:
        raise StudioError("cannot find the output layer's bias in the ONNX graph")
    state["head.bias"] = weights[bias_name]
    hidden = config.hidden_size
    for layer, node in enumerate(recurrent):
        order = ONNX_TO_TORCH_GATES[node.op_type]

        def regate(matrix: np.ndarray) -> np.ndarray:
            blocks = [matrix[i * hidden:(i + 1) * hidden] for i in range(len(order))]
            return np.concatenate([blocks[i] for i in order])

        w, r, b = (weights[name][0] for name in node.input[1:4])
        state[f"rnn.weight_ih_l{layer}"] = regate(w)
        state[f"rnn.weight_hh_l{layer}"] = regate(r)
        state[f"rnn.bias_ih_l{layer}"] = regate(b[: len(order) * hidden])
        state[f"rnn.bias_hh_l{layer}"] = regate(b[len(order) * hidden:])
    model.load_state_dict({k: torch.from_numpy(np.array(v, dtype=np.float32)) for k, v in state.items()})
    return model


def check_parity(model, runtime: Runtime, tokens: int = 64) -> float:
    """Max |logit difference| between the rebuilt PyTorch model and onnxruntime fp32."""
    import torch

    ids = np.random.default_rng(0).integers(0, model.config.vocab_size, (2, tokens))
    with torch.no_grad():
        expected, _ = model(torch.from_numpy(ids), model.init_state(2))
    got, _ = runtime.logits(ids, runtime.init_state(2))
    return float(np.abs(got - expected.numpy()).max())


def torch_rate(model, seconds: float, best: bool) -> float:
    """Batch-1 sampling loop in PyTorch: naive (as a user writes it) or tuned."""
    import torch

    if best:
        torch.backends.mkldnn.enabled = False  # oneDNN's RNN is slow for single steps
        context = torch.inference_mode
    else:
        context = torch.no_grad
    generator = torch.Generator().manual_seed(0)

    def loop(steps: int) -> int:
        with context():
            state = model.init_state(1)
            token = torch.zeros(1, 1, dtype=torch.long)
            for _ in range(steps):
                logits, state = model(token, state)
                token = torch.multinomial(torch.softmax(logits[:, -1], -1), 1, generator=generator)
        return steps

    try:
        step_seconds = probe(lambda: loop(1), tries=5)
        return rate(lambda: loop(chunk_length(step_seconds, seconds)), seconds)
    finally:
        torch.backends.mkldnn.enabled = True


# --- the benchmark -------------------------------------------------------------------------

def _int8_bundle(bundle: Bundle, folder: Path) -> Bundle:
    """The bundle itself if it has an int8 graph, else a copy quantised into ``folder``."""
    if "int8" in bundle.card["graphs"]:
        return bundle
    from .export import INT8_GRAPH, quantize_int8

    shutil.copy(bundle.graph_path("fp32"), folder / "model.onnx")
    quantize_int8(folder / "model.onnx", folder / INT8_GRAPH)
    card = dict(bundle.card, graphs={"fp32": "model.onnx", "int8": INT8_GRAPH})
    (folder / "card.json").write_text(json.dumps(card))
    return Bundle.load(folder)


def _fp32_bundle(bundle: Bundle, folder: Path, runs_dir: Path = Path("runs")) -> Bundle:
    """The bundle itself if it ships an fp32 graph; else one exported into ``folder`` from
    the run it came from (``runs/NAME/best.pt``), beside a copy of its int8 graph."""
    if "fp32" in bundle.card["graphs"]:
        return bundle
    best = Path(runs_dir) / bundle.name / "best.pt"
    if not best.exists():
        raise StudioError(f"{bundle.name} ships only an int8 graph and {best} is missing: bench "
                          "needs the fp32 weights (re-export without --int8-only, or keep the run)")
    import torch

    from .config import ModelConfig
    from .export import INT8_GRAPH
    from .model import RecurrentLM

    saved = torch.load(best, map_location="cpu", weights_only=False)
    model = RecurrentLM(ModelConfig.from_dict(saved["model"]))
    model.load_state_dict(saved["model_state"])
    shutil.copy(bundle.graph_path("int8"), folder / INT8_GRAPH)
    return _export_fp32(model, bundle, folder, extra_graphs={"int8": INT8_GRAPH})


def _export_fp32(model, like: Bundle, folder: Path, extra_graphs: dict | None = None) -> Bundle:
    """``model`` (a RecurrentLM) exported to ``folder`` as a bundle with ``like``'s card."""
    from .export import FP32_GRAPH, export_graph, io_spec

    config = model.config
    export_graph(model, folder / FP32_GRAPH)
    card = dict(like.card, graphs={"fp32": FP32_GRAPH, **(extra_graphs or {})},
                model=config.to_dict(), io=io_spec(config))
    (folder / "card.json").write_text(json.dumps(card))
    return Bundle.load(folder)


def _shaped_bundle(like: Bundle, shape: str, folder: Path) -> Bundle:
    """A randomly initialised LSTM of ``shape`` ("LAYERSxHIDDEN") with ``like``'s vocabulary
    and embedding width, exported to ``folder``: speed does not depend on weight values,
    so any model size can be timed on any machine."""
    try:
        layers, hidden = (int(part) for part in shape.lower().split("x"))
    except ValueError:
        raise StudioError(f"--shape must look like 2x512 (layers x hidden size), got {shape!r}") from None
    if not (1 <= layers <= 8 and 8 <= hidden <= 4096):
        raise StudioError(f"--shape {shape}: layers must be 1-8 and hidden size 8-4096")
    import torch

    from .config import ModelConfig
    from .model import RecurrentLM

    config = like.card["model"]
    torch.manual_seed(0)
    model = RecurrentLM(ModelConfig(vocab_size=config["vocab_size"], cell=config["cell"],
                                    layers=layers, hidden_size=hidden,
                                    embedding_size=config["embedding_size"], dropout=0.0))
    return _export_fp32(model, like, folder)


def cold_start(model_path: Path, runs: int = 3) -> float:
    """Median wall time of `studio sample --length 200` in a fresh process."""
    script = Path(sys.executable).with_name("studio")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "studio"]
    command += ["sample", "--model", str(model_path), "--length", str(COLD_START_LENGTH),
                "--seed", "1"]
    times = []
    for attempt in range(runs + 1):
        start = time.perf_counter()
        result = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                text=True, timeout=120)
        elapsed = time.perf_counter() - start
        if result.returncode != 0:
            raise StudioError(f"cold-start run failed: {result.stderr.strip()[-200:]}")
        if attempt:  # the first run only warms the page cache
            times.append(elapsed)
    return statistics.median(times)


def measure(model: str | Path = "prose", seconds: float = 3.0, *, torch: bool = True,
            cold: bool = True, progress: Callable[[str], None] | None = None,
            shape: str | None = None) -> dict:
    """All figures for one bundle, as a dict (the keys of ``studio bench --json``).  With
    ``shape`` ("2x512"), a randomly initialised LSTM of that shape with the bundle's
    vocabulary stands in for the bundle's weights (``weights: random``)."""
    say = progress or (lambda message: None)
    bundle = Bundle.load(model)
    if bundle.domain.head != "categorical":
        raise StudioError(f"bench measures categorical (token) models; {bundle.name} is "
                          f"{bundle.domain.head}")
    stand_in = tempfile.TemporaryDirectory(prefix="studio-bench-shape-") if shape else None
    if shape:
        say(f"exporting a random {shape} LSTM")
        bundle = _shaped_bundle(bundle, shape, Path(stand_in.name))
    try:
        return _measure(bundle, seconds, torch=torch, cold=cold, say=say, shaped=bool(shape))
    finally:
        if stand_in is not None:
            stand_in.cleanup()


def _measure(bundle: Bundle, seconds: float, *, torch: bool, cold: bool,
             say: Callable[[str], None], shaped: bool) -> dict:
    config = bundle.card["model"]
    result: dict = {
        "model": bundle.name, "path": str(bundle.path),
        "shape": f"{config['layers']}x{config['hidden_size']} {config['cell']}, "
                 f"vocab {config['vocab_size']}",
        "cpu_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "load_avg_before": round(os.getloadavg()[0], 2), "python": platform.python_version(),
        "weights": "random (--shape)" if shaped else "trained",
    }
    import onnxruntime

    result["onnxruntime"] = onnxruntime.__version__
    result["reference_gemv_us"] = round(reference_gemv_us(), 1)
    vocab = config["vocab_size"]
    prime_ids = np.random.default_rng(1).integers(0, vocab, PREFILL_TOKENS)
    with tempfile.TemporaryDirectory(prefix="studio-bench-") as tmp:
        shipped = bundle
        (Path(tmp) / "fp32").mkdir()
        (Path(tmp) / "int8").mkdir()
        bundle = _fp32_bundle(shipped, Path(tmp) / "fp32")
        result["fp32_exported_here_from"] = None if bundle is shipped else \
            str(Path("runs") / shipped.name / "best.pt")
        int8_bundle = _int8_bundle(bundle, Path(tmp) / "int8")
        result["int8_quantised_here"] = int8_bundle is not bundle
        runtimes = {"fp32": Runtime(bundle, precision="fp32"),
                    "int8": Runtime(int8_bundle, precision="int8")}
        # same weights: int8 must track fp32 closely (different weights would not)
        check = np.random.default_rng(2).integers(0, vocab, (1, 200))
        fp32_logits, _ = runtimes["fp32"].logits(check, runtimes["fp32"].init_state(1))
        int8_logits, _ = runtimes["int8"].logits(check, runtimes["int8"].init_state(1))
        result["int8_top1_agreement"] = round(float(np.mean(
            fp32_logits.argmax(-1) == int8_logits.argmax(-1))), 3)
        result["ort_threads"] = runtimes["fp32"].threads
        prime = bundle.domain.decode([int(i) for i in prime_ids[:8]])
        base = SampleSettings(model=str(bundle.path), prime=prime, seed=0)
        for precision, runtime in runtimes.items():
            say(f"onnxruntime {precision}, batch 1")
            result[f"ort_{precision}_tok_s"] = round(generation_rate(
                runtime, base, seconds, lambda s: s.num), 1)
            say(f"onnxruntime {precision}, the step graph alone")
            result[f"ort_{precision}_graph_only_tok_s"] = round(graph_rate(runtime, seconds), 1)
            if precision == "fp32":  # the IOBinding path, to re-check the default
                runtime.use_binding = True
                try:
                    result["ort_fp32_iobinding_tok_s"] = round(generation_rate(
                        runtime, base, seconds, lambda s: s.num), 1)
                finally:
                    del runtime.use_binding
            for batch in (8, 64):
                say(f"onnxruntime {precision}, batch {batch}")
                result[f"ort_{precision}_b{batch}_tok_s"] = round(generation_rate(
                    runtime, base.with_(num=batch), seconds, lambda s: s.num), 1)
            if runtime.row_exact:  # what one int8 call per batch would give (rows not exact)
                say(f"onnxruntime {precision}, batch 64 as one call")
                runtime.row_exact = False
                try:
                    result[f"ort_{precision}_b64_one_call_tok_s"] = round(generation_rate(
                        runtime, base.with_(num=64), seconds, lambda s: s.num), 1)
                finally:
                    runtime.row_exact = True
            say(f"onnxruntime {precision}, prefill")
            ids = prime_ids[None, :]
            result[f"prefill_1000_{precision}_ms"] = round(1000 / rate(
                lambda: (runtime.logits(ids, runtime.init_state(1)), 1)[1], seconds / 3), 2)
        default = "int8" if "int8" in shipped.card["graphs"] else "fp32"
        result["default_precision"] = default
        result["prefill_1000_ms"] = result[f"prefill_1000_{default}_ms"]
        runtime = runtimes[default]

        def stepwise() -> int:
            state = runtime.init_state(1)
            for t in range(PREFILL_TOKENS):
                _, state = runtime.logits(prime_ids[None, t:t + 1], state)
            return 1

        say("prefill through step calls")
        result["prefill_1000_step_ms"] = round(1000 / rate(stepwise, seconds / 3, chunks=3), 2)
        say("beam search, 8 beams")
        result["beam8_steps_s"] = round(generation_rate(
            runtime, base.with_(num_beams=8), seconds, lambda s: 1), 1)
        if cold:
            say("cold start")
            result["cold_start_s"] = round(cold_start(shipped.path), 3)
        if torch:
            say("PyTorch")
            result.update(_torch_figures(bundle, runtimes["fp32"], seconds))
    if "torch_best_tok_s" in result:
        for precision in ("fp32", "int8"):
            result[f"ort_{precision}_vs_torch_best"] = round(
                result[f"ort_{precision}_tok_s"] / result["torch_best_tok_s"], 2)
    result["load_avg_after"] = round(os.getloadavg()[0], 2)
    return result


def _torch_figures(bundle: Bundle, runtime: Runtime, seconds: float) -> dict:
    import torch

    model = torch_model_from_onnx(bundle)
    drift = check_parity(model, runtime)
    if drift > 1e-3:
        raise StudioError(f"the PyTorch model rebuilt from {bundle.name} differs from onnxruntime "
                          f"by {drift:.1e}: cannot compare like with like")
    figures = {"torch": torch.__version__, "torch_parity_max_abs": float(f"{drift:.2e}")}
    figures["torch_naive_tok_s"] = round(torch_rate(model, seconds, best=False), 1)
    default_threads = torch.get_num_threads()
    best = {}
    try:
        for threads in sorted({1, default_threads}):
            torch.set_num_threads(threads)
            best[threads] = torch_rate(model, seconds, best=True)
    finally:
        torch.set_num_threads(default_threads)
    threads = max(best, key=best.get)
    figures["torch_best_tok_s"] = round(best[threads], 1)
    figures["torch_best_threads"] = threads
    return figures


ROWS = [("PyTorch step loop, default settings", "torch_naive_tok_s", "tok/s"),
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
        ("beam search, 8 beams", "beam8_steps_s", "steps/s"),
        ("prefill 1,000 tokens, full-sequence call", "prefill_1000_ms", "ms"),
        ("prefill 1,000 tokens, step calls", "prefill_1000_step_ms", "ms"),
        ("cold start, `studio sample --length 200`", "cold_start_s", "s")]


def run_bench(model: str = "prose", json_out: bool = False, seconds: float = 3.0,
              shape: str | None = None) -> dict:
    """`studio bench`: measure, then print JSON or a table."""
    if seconds <= 0:
        raise StudioError(f"--seconds must be positive (got {seconds})")
    progress = None if json_out else (lambda message: print(f"  {message} ...", file=sys.stderr))
    result = measure(model, seconds, progress=progress, shape=shape)
    if json_out:
        print(json.dumps(result))
        return result
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{result['model']} ({result['shape']}), {result['cpu_cores']} cores, "
                        f"load {result['load_avg_before']} -> {result['load_avg_after']}")
    table.add_column("measurement")
    table.add_column("value", justify="right")
    table.add_column("unit")
    for label, key, unit in ROWS:
        if key in result:
            value = result[key]
            table.add_row(label, f"{value:,.3f}" if unit == "s" else f"{value:,.1f}", unit)
    Console().print(table)
    return result
