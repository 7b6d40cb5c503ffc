"""The one exporter: a trained run of any head becomes a bundle (ONNX graph(s) + card).

The head (:data:`studio.models.TRAINABLES`) supplies the step module, its io spec and
example inputs, and its parity check; everything else is here, once: tracing with named
inputs and outputs and dynamic symbolic axes, ``onnx.checker``, the parity gate
(:data:`studio.formats.PARITY_TOLERANCE` over every output, batch 1 and 3), an optional
int8 graph with its cost measured on held-out data, and ``card.json`` with everything
sampling needs.  The bundle is written to a temporary folder and renamed into place, so
a failed export never leaves a half-written bundle.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import shutil
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .corpus import held_out_of
from .domains import domain_from_config, read_documents
from .errors import StudioError, require
from .formats import CARD, FP32_GRAPH, INT8_GRAPH, MC_GRAPH, OPSET, PARITY_TOLERANCE, float64_parity_limit
from .formats import VERSION as __version__
from .half_weights import expanded, has_stored_weights, round_weights_fp16, store_weights_fp16
from .models import Trainable, trainable_for
from .runs import RunDir
from .train import CHECKPOINT_KEYS, count_parameters, stored_payload

__all__ = ["export_onnx", "export_run", "quantize_int8"]


def export_onnx(module: torch.nn.Module, example_inputs: dict[str, torch.Tensor], io: dict, path: Path) -> None:
    """Trace ``module(*example_inputs.values())`` to ONNX with the io spec's names and
    symbolic axes, then run onnx.checker on the result."""
    import onnx

    output_names = list(io["outputs"]) + [f"{name}_out" for name in io["state"]]
    axes: dict[str, dict[int, str]] = {}
    for group in ("inputs", "state", "outputs"):
        for name, spec in io[group].items():
            dims = {i: d for i, d in enumerate(spec["shape"]) if isinstance(d, str)}
            axes[name] = dims
            if group == "state":
                axes[f"{name}_out"] = dims
    module.eval()  # the exporter keeps the module's mode: dropout must be off
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            tuple(example_inputs.values()),
            str(path),
            input_names=list(example_inputs),
            output_names=output_names,
            dynamic_axes=axes,
            opset_version=OPSET,
            dynamo=False,
        )
    onnx.checker.check_model(onnx.load(str(path)))


def session_for(path: Path) -> Any:
    """A plain CPU onnxruntime session (the exporter's own; sampling uses studio.runtime)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def quantize_int8(fp32_path: Path, int8_path: Path) -> None:
    """onnxruntime dynamic int8 quantisation of MatMul/Gemm/LSTM/Gather weights."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    logging.getLogger().setLevel(logging.ERROR)  # its pre-processing advice is for CNNs
    quantize_dynamic(
        str(fp32_path),
        str(int8_path),
        weight_type=QuantType.QInt8,
        op_types_to_quantize=["MatMul", "Gemm", "LSTM", "Gather"],
    )


def _load(run: RunDir) -> tuple[dict, dict]:
    """(the best weights' record, the last checkpoint) of a run."""
    require(
        run.checkpoint.exists() or run.best.exists(),
        f"{run.path} is not a training run (no checkpoint.pt): train one with `studio train`",
    )
    checkpoint = torch.load(
        run.checkpoint if run.checkpoint.exists() else run.best, map_location="cpu", weights_only=False
    )
    missing = [key for key in CHECKPOINT_KEYS if key not in checkpoint]
    require(not missing, f"{run.checkpoint} is from an older studio (no {', '.join(missing)}): train it again")
    best = torch.load(run.best, map_location="cpu", weights_only=False) if run.best.exists() else checkpoint
    return best, checkpoint


def _quantize(
    head: Trainable, model, domain, checkpoint: dict, payload, folder: Path, fp32: dict, corpus: str, half: bool
) -> dict:
    """Write the int8 graph and measure what it costs against fp32 on held-out data:
    row-exact static int8 where :mod:`studio.quantize` can rewrite the graph and it holds
    quality, else onnxruntime's dynamic int8 (run row by row)."""

    def score(session) -> tuple[float, np.ndarray]:
        measured = head.metrics(model, session, domain, payload, checkpoint["train"])
        return measured["held_out_nats"], measured["predictions"]

    train_ids = _train_ids(payload, checkpoint["train"]["val_fraction"]) if "held_out_nats" in fp32 else None
    return quantize_bundle_graph(
        folder / FP32_GRAPH, folder / INT8_GRAPH, train_ids, score, fp32, corpus, half_weights=half
    )


def _train_ids(payload, val_fraction: float) -> np.ndarray | None:
    from .data import split_ids

    try:
        return split_ids(np.asarray(payload), val_fraction)[0]
    except (TypeError, ValueError):  # not token ids (a stroke payload)
        return None


def quantize_bundle_graph(
    fp32_path: Path,
    int8_path: Path,
    train_ids: np.ndarray | None,
    score: Callable[[Any], tuple[float, np.ndarray]],
    fp32: dict,
    corpus: str,
    say: Callable[[str], None] = lambda message: None,
    half_weights: bool = False,
) -> dict:
    """int8_path from fp32_path (static if possible, else dynamic) and its card record;
    ``score(session) -> (held-out nats/token, argmax per position)``.  When the weights
    are float16 values (``half_weights``, or a graph stored so), the float weights the
    int8 graph keeps (the head, the embedding) are stored as float16 too, as
    :func:`studio.half_weights.store_weights_fp16` does: the same numbers, fewer bytes."""
    with _float32_source(fp32_path) as (source, stored):
        report = _quantize_graph(source, int8_path, train_ids, score, fp32, corpus, say)
    if half_weights or stored:
        report["float16_stored_initializers"] = store_weights_fp16(int8_path)
    return report


@contextmanager
def _float32_source(fp32_path: Path) -> Iterator[tuple[Path, bool]]:
    """The graph to quantise from and whether its weights are stored as float16:
    ``fp32_path`` itself, or for a graph with float16-stored weights a float32 copy
    beside it for the quantisers (which read weights from initializers), removed
    afterwards."""
    import onnx

    model = onnx.load(str(fp32_path))
    if not has_stored_weights(model):
        yield fp32_path, False
        return
    path = fp32_path.with_name(fp32_path.name + ".float32")
    try:
        onnx.save(expanded(model), str(path))
        yield path, True
    finally:
        path.unlink(missing_ok=True)


def _quantize_graph(fp32_path: Path, int8_path: Path, train_ids, score, fp32: dict, corpus: str, say) -> dict:
    from .quantize import NotStaticQuantizable, quantize_static

    say("dynamic int8 (the fallback, and the baseline static int8 must match)")
    quantize_int8(fp32_path, int8_path)
    dynamic = {"type": "int8", "scheme": "dynamic", "row_exact": False}
    if "held_out_nats" in fp32:
        nats, predictions = score(session_for(int8_path))
        dynamic.update(
            delta_nats_per_token=round(nats - fp32["held_out_nats"], 5),
            top1_agreement=round(float(np.mean(predictions == fp32["predictions"])), 5),
            held_out_tokens=fp32["held_out_tokens"],
        )
    if train_ids is None or "held_out_nats" not in fp32:
        return {**dynamic, "static_refused": "no training text to calibrate on"}
    baseline = {key: dynamic[key] for key in ("delta_nats_per_token", "top1_agreement")}
    static_path = int8_path.with_name(int8_path.name + ".static")
    try:
        report = quantize_static(
            fp32_path,
            static_path,
            train_ids,
            score,
            corpus=corpus,
            opset=OPSET,
            parity_tolerance=PARITY_TOLERANCE,
            baseline=baseline,
            say=say,
        )
    except NotStaticQuantizable as reason:
        return {**dynamic, "static_refused": str(reason)}
    static_path.replace(int8_path)
    return {**report, "held_out_tokens": fp32["held_out_tokens"], "dynamic": baseline}


def export_run(
    run_dir: Path,
    out_dir: Path,
    *,
    quantize: str | None = None,
    drop_fp32: bool = False,
    drop_int8: bool = False,
    fp16_weights: bool = False,
    mc_dropout: bool = True,
    quiet: bool = False,
) -> Path:
    """Write a bundle for the run's best weights to ``out_dir``; returns the card path.
    ``drop_fp32`` ships only the int8 graph; ``drop_int8`` measures int8 (in the card)
    but ships only fp32.  ``fp16_weights`` rounds the weights to float16 before export
    and stores the fp32 graph's weights so (:mod:`studio.half_weights`): the graph still
    computes in float32, from a file half the size; the card's ``fp32_weights`` records
    the rounding's cost on held-out text.  ``mc_dropout`` False leaves out the
    MC-dropout graph (room for a wider model within a bundle's size)."""
    run = RunDir(run_dir)
    require(quantize in (None, "int8"), f"--quantize must be int8 (got {quantize!r})")
    best, checkpoint = _load(run)
    head = trainable_for(checkpoint["head"])
    require(quantize is None or head.quantizable(), f"{checkpoint['head']} models have no int8 export: drop --quantize")
    domain = domain_from_config(best["domain"])
    model = head.build_model(best["model"])
    model.load_state_dict(best["model_state"])
    model.eval()
    io = head.io_spec(best["model"])

    out_dir = Path(out_dir)
    folder = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    try:
        session, worst, checked = _export_checked(head, model, domain, io, folder / FP32_GRAPH)
        # the run's corpus (a token cache is mapped again, or rebuilt from an unchanged corpus)
        payload = stored_payload(
            checkpoint["corpus"], checkpoint["domain"], val_fraction=checkpoint["train"]["val_fraction"], quiet=True
        )
        fp32 = head.metrics(model, session, domain, payload, checkpoint["train"])
        fp32_weights = None
        if fp16_weights:
            unrounded = fp32
            round_weights_fp16(model)
            session, worst, checked = _export_checked(head, model, domain, io, folder / FP32_GRAPH)
            fp32 = head.metrics(model, session, domain, payload, checkpoint["train"])
            fp32_weights = {"stored": "float16", **_rounding_cost(fp32, unrounded)}
        graphs = {"fp32": FP32_GRAPH}
        quantization = None
        if quantize == "int8":
            corpus = str(run.read_config().get("corpus", {}).get("path", "the run's corpus"))
            quantization = _quantize(head, model, domain, checkpoint, payload, folder, fp32, corpus, fp16_weights)
            graphs["int8"] = INT8_GRAPH
            if drop_fp32:
                (folder / FP32_GRAPH).unlink()
                del graphs["fp32"]
            elif drop_int8:  # measured and recorded in the card, but not shipped
                (folder / INT8_GRAPH).unlink()
                del graphs["int8"]
        mc_record = export_mc_dropout(head, model, folder, int8=quantize == "int8") if mc_dropout else None
        if fp32_weights is not None and "fp32" in graphs:
            fp32_weights["initializers"] = store_weights_fp16(folder / FP32_GRAPH)
            stored_worst, _ = head.parity(model, session_for(folder / FP32_GRAPH), domain, io)
            require(
                stored_worst == worst,
                f"the float16-stored graph computes differently ({stored_worst:.3g} against {worst:.3g}): "
                "export without --fp16-weights and please report this model config",
            )
        card = _card(
            run,
            out_dir.name,
            head,
            domain,
            best,
            checkpoint,
            fp32,
            graphs,
            io,
            worst,
            checked,
            quantization,
            count_parameters(model),
        )
        if mc_record is not None:
            card["mc_dropout"] = mc_record
        if fp32_weights is not None:
            card["fp32_weights"] = fp32_weights
        (folder / CARD).write_text(json.dumps(card, indent=1, ensure_ascii=False))
        shutil.rmtree(out_dir, ignore_errors=True)
        folder.rename(out_dir)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    if not quiet:
        size = sum(f.stat().st_size for f in out_dir.iterdir()) / 1e6
        extra = ""
        if quantization and "delta_nats_per_token" in quantization:
            extra = (
                f", int8 Δ {quantization['delta_nats_per_token']:+.4f} nats/token, "
                f"top-1 agreement {quantization['top1_agreement']:.3f}"
            )
        print(f"exported {out_dir} ({size:.1f} MB): parity {worst:.1e}{extra}")
    return out_dir / CARD


def _export_checked(head: Trainable, model, domain, io: dict, path: Path) -> tuple[Any, float, dict]:
    """Export ``model``'s step graph to ``path`` and check it against torch: (its
    session, the largest difference, the parity record)."""
    export_onnx(head.step_module(model), head.example_inputs(model, io), io, path)
    session = session_for(path)
    worst, checked = head.parity(model, session, domain, io)
    limit = checked.get("limit", PARITY_TOLERANCE)
    if not worst < limit:
        against = "a float64 run of the same weights" if checked.get("against") == "float64" else "torch"
        raise StudioError(
            f"export drifted: onnxruntime differs from {against} by {worst:.2e} "
            f"(limit {limit:.2g}); please report this model config"
        )
    return session, worst, checked


def _rounding_cost(rounded: dict, unrounded: dict) -> dict:
    """What rounding the weights to float16 cost on the held-out text (heads that score one)."""
    if "held_out_nats" not in rounded:
        return {}
    return {
        "delta_nats_per_token": round(rounded["held_out_nats"] - unrounded["held_out_nats"], 6),
        "top1_agreement": round(float(np.mean(rounded["predictions"] == unrounded["predictions"])), 5),
        "held_out_tokens": rounded["held_out_tokens"],
    }


MC_PARITY_TOKENS = 40


def export_mc_dropout(head: Trainable, model: torch.nn.Module, folder: Path, int8: bool = False) -> dict | None:
    """Write the MC-dropout graph (:data:`MC_GRAPH`: dropout masks as inputs) beside the
    step graph when the head and model have dropout; checks it against torch with random
    masks at batch 1 and 3 and returns the card's ``mc_dropout`` record, else None.  With
    ``int8`` its weights are then quantised (dynamic int8, as small as the int8 step
    graph) and the record gives the largest logit change that made on the same check."""
    found = head.mc_dropout(model)
    if found is None:
        return None
    module, io, masks = found
    module.eval()
    time = io["inputs"]["tokens"]["shape"][1]
    generator = torch.Generator().manual_seed(0)

    def example(batch: int, steps: int) -> dict[str, torch.Tensor]:
        feeds = {"tokens": torch.randint(0, model.config.vocab_size, (batch, steps), generator=generator)}
        feeds.update(zip(io["state"], model.init_state(batch)))
        for name, mask in masks.items():
            shape = (batch, steps, mask["width"]) if mask["per"] == "time" else (batch, mask["width"])
            feeds[name] = torch.bernoulli(torch.full(shape, mask["keep"]), generator=generator) / mask["keep"]
        return feeds

    path = folder / MC_GRAPH
    export_onnx(module, example(2, 3 if time == "time" else 1), io, path)
    checks = [example(batch, MC_PARITY_TOKENS) for batch in (1, 3)]
    session = session_for(path)
    worst = 0.0
    for feeds in checks:
        with torch.no_grad():
            expected = module(*feeds.values())[0].numpy()
        worst = max(worst, float(np.abs(_mc_ort_logits(session, feeds, masks, time) - expected).max()))
    parity = {"parity_max_abs_diff": worst}
    if not worst < PARITY_TOLERANCE:
        parity = _mc_float64_parity(module, session, checks, masks, time)
        if not parity["parity_max_abs_diff"] < parity["limit"]:
            raise StudioError(
                f"export drifted: the MC-dropout graph differs from a float64 run of the same weights "
                f"by {parity['parity_max_abs_diff']:.2e} (limit {parity['limit']:.2g}); "
                "please report this model config"
            )
    inputs = {name: io["inputs"][name] for name in masks}
    record = {"graph": MC_GRAPH, "masks": masks, "inputs": inputs, **parity, "precision": "fp32"}
    if int8:
        quantized = folder / (MC_GRAPH + ".int8")
        quantize_int8(path, quantized)
        fp32_logits = [_mc_ort_logits(session, feeds, masks, time) for feeds in checks]
        int8_session = session_for(quantized)
        change = max(
            float(np.abs(_mc_ort_logits(int8_session, feeds, masks, time) - logits).max())
            for feeds, logits in zip(checks, fp32_logits)
        )
        quantized.replace(path)
        record.update(precision="int8", int8_max_abs_logit_change=round(change, 5))
    return record


def _mc_float64_parity(module: torch.nn.Module, session: Any, checks: list[dict], masks: dict, time: Any) -> dict:
    """The MC-dropout graph measured as the step graph is when fp32 strays by more than
    the tolerance (a wide trained recurrence, masks scaled by 1/keep): both onnxruntime and
    torch's fp32 against the same weights and masks in float64; onnxruntime passes when
    it is no further from float64 than twice torch's own fp32."""
    exact = copy.deepcopy(module).double()
    torch_error = ort_error = 0.0
    for feeds in checks:
        doubled = {n: v if n == "tokens" else v.double() for n, v in feeds.items()}
        with torch.no_grad():
            reference = exact(*doubled.values())[0].numpy()
            ours = module(*feeds.values())[0].double().numpy()
        torch_error = max(torch_error, float(np.abs(ours - reference).max()))
        ort_error = max(ort_error, float(np.abs(_mc_ort_logits(session, feeds, masks, time) - reference).max()))
    return {
        "parity_max_abs_diff": ort_error,
        "against": "float64",
        "torch_fp32_vs_float64": torch_error,
        "limit": float64_parity_limit(torch_error),
    }


def _mc_ort_logits(session: Any, feeds: dict[str, torch.Tensor], masks: dict, time: Any) -> np.ndarray:
    """logits (batch, T, vocab) of the MC-dropout graph; a one-step graph is stepped."""
    arrays = {name: value.numpy() for name, value in feeds.items()}
    names = [i.name for i in session.get_inputs()]
    states = [n for n in names if n != "tokens" and n not in masks]
    if time == "time":
        return session.run(["logits"], {n: arrays[n] for n in names})[0]
    state = {n: arrays[n] for n in states}
    steps = []
    for t in range(arrays["tokens"].shape[1]):
        feed = {"tokens": arrays["tokens"][:, t : t + 1], **state}
        for name, mask in masks.items():
            feed[name] = arrays[name][:, t : t + 1] if mask["per"] == "time" else arrays[name]
        values = session.run(None, feed)
        steps.append(values[0])
        state = dict(zip(states, values[1:]))
    return np.concatenate(steps, 1)


def _card(
    run: RunDir,
    name: str,
    head: Trainable,
    domain,
    best: dict,
    checkpoint: dict,
    fp32: dict,
    graphs: dict,
    io: dict,
    worst: float,
    checked: dict,
    quantization: dict | None,
    parameters: int,
) -> dict:
    run_config = run.read_config()
    summary_file = run.path / "summary.json"
    summary = json.loads(summary_file.read_text()) if summary_file.exists() else {}
    val = float(best.get("val_nats", checkpoint["best_val"]))
    metrics = {
        "val_nats": round(val, 5),
        "unit": head.unit,
        f"val_nats_per_{head.unit}": round(val, 5),
        f"val_bits_per_{head.unit}": round(val / math.log(2), 5),
        "steps": int(checkpoint["step"]),
        "train_minutes": summary.get("train_minutes", round(checkpoint["elapsed_s"] / 60, 2)),
        "parameters": parameters,
    }
    if "held_out_nats" in fp32:
        metrics["held_out_nats_fp32"] = round(fp32["held_out_nats"], 5)
    return {
        "studio_version": __version__,
        "name": name,
        "head": head.name,
        "domain": domain.to_config(),
        "model": best["model"],
        "train": run_config["train"],
        "corpus": run_config["corpus"],
        "metrics": metrics,
        "graphs": graphs,
        "io": io,
        "opset": OPSET,
        "parity": {"max_abs_diff": worst, **checked},
        "quantization": quantization,
        **head.card_extras(domain),
    }


def requantize_bundle(folder: Path, corpus: Path | None = None, say: Callable[[str], None] = print) -> dict:
    """Re-quantise the int8 graph of the bundle in ``folder`` in place from its fp32 graph (``studio quantize``):
    calibrated on the training split of ``corpus`` (default: the card's corpus path), scored
    against fp32 on its held-out tail; the card's ``quantization`` record is replaced.
    Returns that record."""
    from .data import split_ids

    folder = Path(folder)
    card = json.loads((folder / CARD).read_text(encoding="utf-8"))
    name = folder.name
    require("fp32" in card["graphs"], f"{name} ships no fp32 graph to quantise from: export it again")
    head = trainable_for(card.get("head") or "categorical")
    require(head.quantizable(), f"{name} is a {head.name} model: it has no int8 export")
    path = Path(corpus) if corpus is not None else Path(card.get("corpus", {}).get("path", ""))
    require(
        path != Path("") and path.exists(),
        f"corpus {path} not found: pass the folder {name} was trained on with --corpus DIR",
    )
    domain = domain_from_config(card["domain"])
    # in the trainer's file order, so the same tail is held out
    ids = np.asarray(domain.corpus_ids(read_documents(type(domain), path, held_out_of(card))))
    trained_on = card.get("corpus", {}).get("tokens")
    require(
        trained_on in (None, len(ids)) or corpus is not None,
        f"{path} now has {len(ids)} tokens but {name} trained on {trained_on}: its held-out split "
        "would differ; pass --corpus DIR explicitly to quantise against it anyway",
    )
    val_fraction = card["train"]["val_fraction"]
    fp32_path = folder / card["graphs"]["fp32"]
    fp32 = head.metrics(None, session_for(fp32_path), domain, ids, card["train"])

    def score(session) -> tuple[float, np.ndarray]:
        measured = head.metrics(None, session, domain, ids, card["train"])
        return measured["held_out_nats"], measured["predictions"]

    int8_name = card["graphs"].get("int8", INT8_GRAPH)
    partial = folder / (int8_name + ".partial")
    card_partial = folder / (CARD + ".partial")
    try:
        report = quantize_bundle_graph(
            fp32_path, partial, split_ids(ids, val_fraction)[0], score, fp32, str(path), say=say
        )
        card = dict(card, graphs={**card["graphs"], "int8": int8_name}, quantization=report)
        card["metrics"] = {**card.get("metrics", {}), "held_out_nats_fp32": round(fp32["held_out_nats"], 5)}
        card_partial.write_text(json.dumps(card, indent=1, ensure_ascii=False))
        partial.replace(folder / int8_name)
        card_partial.replace(folder / CARD)
    finally:
        partial.unlink(missing_ok=True)
        card_partial.unlink(missing_ok=True)
    return report
