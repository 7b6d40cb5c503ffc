"""Export a trained run to a bundle: ONNX graph(s) plus ``card.json``.

The graph takes ``tokens`` (batch, time) and one input per state tensor (``h``, ``c``:
[layers, batch, hidden]) and returns ``logits`` (batch, time, vocab) and ``h_out``,
``c_out``.  Batch and time are dynamic: time = 1 is the step graph used while
sampling, time = T primes or evaluates a whole sequence in one call.  Export checks
itself (onnx.checker, onnxruntime vs torch parity) and refuses a bundle that drifts.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import torch

from . import __version__
from .config import ModelConfig
from .data import split_ids
from .errors import StudioError, require
from .model import RecurrentLM, StepGraph, count_parameters
from .runs import RunDir

OPSET = 17
PARITY_TOLERANCE = 1e-4
CARD = "card.json"
FP32_GRAPH = "model.onnx"
INT8_GRAPH = "model.int8.onnx"


def export_onnx(module: torch.nn.Module, example_inputs: dict[str, torch.Tensor],
                output_names: list[str], dynamic_axes: dict[str, dict[int, str]], path: Path) -> None:
    """Trace ``module(*example_inputs.values())`` to ONNX with named inputs and outputs,
    then run onnx.checker on the result."""
    import onnx

    module.eval()  # the exporter keeps the module's mode: dropout must be off
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, tuple(example_inputs.values()), str(path),
                          input_names=list(example_inputs), output_names=output_names,
                          dynamic_axes=dynamic_axes, opset_version=OPSET, dynamo=False)
    onnx.checker.check_model(onnx.load(str(path)))


def export_graph(model: RecurrentLM, path: Path) -> None:
    """The model's graph (see the module docstring) with dynamic batch and time, checked."""
    config = model.config
    examples = {"tokens": torch.zeros(2, 3, dtype=torch.long),
                **{n: torch.zeros(config.layers, 2, config.hidden_size) for n in config.state_names}}
    axes = {"tokens": {0: "batch", 1: "time"}, "logits": {0: "batch", 1: "time"}}
    for name in config.state_names:
        axes[name] = axes[f"{name}_out"] = {1: "batch"}
    export_onnx(StepGraph(model).eval(), examples,
                ["logits", *[f"{n}_out" for n in config.state_names]], axes, path)


def io_spec(config: ModelConfig) -> dict:
    """The card's description of the graph's inputs, state and outputs."""
    state_shape = [config.layers, "batch", config.hidden_size]
    return {"inputs": {"tokens": {"dtype": "int64", "shape": ["batch", "time"]}},
            "state": {name: {"dtype": "float32", "shape": state_shape} for name in config.state_names},
            "outputs": {"logits": {"dtype": "float32", "shape": ["batch", "time", config.vocab_size]}}}


def _session(path: Path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _ort_run(session, config: ModelConfig, tokens: np.ndarray, state: dict | None = None):
    batch = tokens.shape[0]
    if state is None:
        state = {n: np.zeros((config.layers, batch, config.hidden_size), np.float32)
                 for n in config.state_names}
    outputs = session.run(None, {"tokens": tokens.astype(np.int64), **state})
    return outputs[0], dict(zip(config.state_names, outputs[1:]))


def parity(model: RecurrentLM, session, tokens: np.ndarray) -> float:
    """Max |logit difference| between torch and onnxruntime for ``tokens`` (batch, T),
    through the whole-sequence call and through T single-token steps."""
    config = model.config
    with torch.no_grad():
        expected, _ = model(torch.from_numpy(tokens), model.init_state(tokens.shape[0]))
    expected = expected.numpy()
    full, _ = _ort_run(session, config, tokens)
    worst = float(np.abs(full - expected).max())
    state = None
    for t in range(tokens.shape[1]):
        logits, state = _ort_run(session, config, tokens[:, t:t + 1], state)
        worst = max(worst, float(np.abs(logits[:, 0] - expected[:, t]).max()))
    return worst


def held_out_nats(session, config: ModelConfig, ids: np.ndarray, limit: int = 20_000):
    """(mean nats/token, argmax per position) over the first ``limit`` held-out tokens."""
    ids = ids[: limit + 1]
    logits, _ = _ort_run(session, config, ids[None, :-1])
    logits = logits[0].astype(np.float64)
    log_z = np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1)) + logits.max(-1)
    nats = float(np.mean(log_z - logits[np.arange(len(ids) - 1), ids[1:]]))
    return nats, logits.argmax(-1)


def quantize_int8(fp32_path: Path, int8_path: Path) -> None:
    """onnxruntime dynamic int8 quantisation of MatMul/Gemm/LSTM weights."""
    import logging

    from onnxruntime.quantization import QuantType, quantize_dynamic

    logging.getLogger().setLevel(logging.ERROR)  # its pre-processing advice is for CNNs
    quantize_dynamic(str(fp32_path), str(int8_path), weight_type=QuantType.QInt8,
                     op_types_to_quantize=["MatMul", "Gemm", "LSTM", "Gather"])


def export_run(run_dir: Path, out_dir: Path, *, quantize: str | None = None,
               drop_fp32: bool = False, drop_int8: bool = False, quiet: bool = False) -> Path:
    """Write a bundle for the run's best weights to ``out_dir``; returns the card path."""
    run = RunDir(run_dir)
    require(run.checkpoint.exists() or run.best.exists(),
            f"{run.path} is not a training run (no checkpoint.pt): train one with `studio train`")
    require(quantize in (None, "int8"), f"--quantize must be int8 (got {quantize!r})")
    source = run.best if run.best.exists() else run.checkpoint
    saved = torch.load(source, map_location="cpu", weights_only=False)
    checkpoint = torch.load(run.checkpoint, map_location="cpu", weights_only=False) \
        if run.checkpoint.exists() else saved
    config = ModelConfig.from_dict(saved["model"])
    model = RecurrentLM(config)
    model.load_state_dict(saved["model_state"])
    model.eval()
    run_config = run.read_config()
    summary_file = run.path / "summary.json"
    summary = json.loads(summary_file.read_text()) if summary_file.exists() else {}

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    fp32_path = out_dir / FP32_GRAPH
    export_graph(model, fp32_path)

    generator = np.random.default_rng(0)
    session = _session(fp32_path)
    worst = max(parity(model, session, generator.integers(0, config.vocab_size, (b, 200)))
                for b in (1, 3))
    if worst >= PARITY_TOLERANCE:
        raise StudioError(f"export drifted: onnxruntime differs from torch by {worst:.2e} "
                          f"(limit {PARITY_TOLERANCE:g}); please report this model config")

    ids = np.asarray(checkpoint["corpus_ids"], dtype=np.int64)
    _, val_ids = split_ids(ids, run_config["train"]["val_fraction"])
    fp32_nats, fp32_top1 = held_out_nats(session, config, val_ids)
    graphs = {"fp32": FP32_GRAPH}
    quantization = None
    if quantize == "int8":
        int8_path = out_dir / INT8_GRAPH
        quantize_int8(fp32_path, int8_path)
        int8_nats, int8_top1 = held_out_nats(_session(int8_path), config, val_ids)
        quantization = {"type": "int8", "delta_nats_per_token": round(int8_nats - fp32_nats, 5),
                        "top1_agreement": round(float(np.mean(int8_top1 == fp32_top1)), 5),
                        "held_out_tokens": int(min(len(val_ids) - 1, 20_000))}
        graphs["int8"] = INT8_GRAPH
        if drop_fp32:
            fp32_path.unlink()
            del graphs["fp32"]
        elif drop_int8:  # measured and recorded in the card, but not shipped
            int8_path.unlink()
            del graphs["int8"]

    card = {
        "studio_version": __version__,
        "name": out_dir.name,
        "domain": saved["domain"],
        "model": config.to_dict(),
        "train": run_config["train"],
        "corpus": run_config["corpus"],
        "metrics": {"val_nats_per_token": round(float(saved.get("val_nats", checkpoint["best_val"])), 5),
                    "val_bits_per_token": round(float(saved.get("val_nats", checkpoint["best_val"])) / math.log(2), 5),
                    "held_out_nats_fp32": round(fp32_nats, 5),
                    "steps": int(checkpoint["step"]),
                    "train_minutes": summary.get("train_minutes",
                                                 round(checkpoint["elapsed_s"] / 60, 2)),
                    "parameters": count_parameters(model)},
        "graphs": graphs,
        "io": io_spec(config),
        "opset": OPSET,
        "parity": {"max_abs_logit_diff": worst, "tokens": 200, "batches": [1, 3]},
        "quantization": quantization,
    }
    card_path = out_dir / CARD
    card_path.write_text(json.dumps(card, indent=1, ensure_ascii=False))
    if not quiet:
        size = sum(f.stat().st_size for f in out_dir.iterdir()) / 1e6
        print(f"exported {out_dir} ({size:.1f} MB): parity {worst:.1e}"
              + (f", int8 Δ {quantization['delta_nats_per_token']:+.4f} nats/token, "
                 f"top-1 agreement {quantization['top1_agreement']:.3f}" if quantization else ""))
    return card_path
