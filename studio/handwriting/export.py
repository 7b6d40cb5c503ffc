"""Export a stroke run to a bundle: ``model.onnx`` (one step) plus ``card.json``.

The step graph takes ``points (batch, 3)`` (the previous pen offset, normalised) and,
for synthesis, ``text (batch, chars)`` int64 (1-based alphabet ids, 0 = padding), plus
the whole recurrent state as named inputs: ``h``, ``c`` ``(layers, batch, hidden)`` and,
for synthesis, ``kappa (batch, K)`` and ``w (batch, alphabet)``.  It returns the mixture
head (``pen_logit``, ``mixture_logits``, ``means``, ``log_scales``, ``correlations``),
for synthesis the window weights ``phi (batch, chars + 1)``, and each state's next
value as ``NAME_out``.  Export checks itself: onnx.checker and a 200-point
teacher-forced run at batch 1 and 3 where every output of onnxruntime must match torch
within 1e-4.  The card also stores a few style sequences (real strokes and their text)
for priming with ``--style``.
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import torch

from studio.errors import StudioError
from studio.handwriting import data as stroke_data
from studio.handwriting.model import HEAD_NAMES, build_model
from studio.runs import RunDir

OPSET = 17
PARITY_TOLERANCE = 1e-4
GRAPH = "model.onnx"
STYLE_COUNT = 5
PARITY_POINTS = 200


class StepGraph(torch.nn.Module):
    """Flat-argument wrapper around ``model.step`` for tracing."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.conditional = model.config["type"] == "synthesis"

    def forward(self, points, *rest):
        if self.conditional:
            text, h, c, kappa, w = rest
            head, state, phi = self.model.step(points, {"h": h, "c": c, "kappa": kappa, "w": w}, text)
            return (*[head[n] for n in HEAD_NAMES], phi, state["h"], state["c"], state["kappa"], state["w"])
        h, c = rest
        head, state = self.model.step(points, {"h": h, "c": c})
        return (*[head[n] for n in HEAD_NAMES], state["h"], state["c"])


def io_spec(model_config: dict) -> dict:
    """The card's ``io``: inputs, state and outputs with symbolic dimensions."""
    layers, hidden, mixtures = model_config["layers"], model_config["hidden_size"], model_config["mixtures"]
    conditional = model_config["type"] == "synthesis"
    inputs = {"points": {"dtype": "float32", "shape": ["batch", 3]}}
    state = {"h": {"dtype": "float32", "shape": [layers, "batch", hidden]},
             "c": {"dtype": "float32", "shape": [layers, "batch", hidden]}}
    outputs = {"pen_logit": {"dtype": "float32", "shape": ["batch"]},
               "mixture_logits": {"dtype": "float32", "shape": ["batch", mixtures]},
               "means": {"dtype": "float32", "shape": ["batch", mixtures, 2]},
               "log_scales": {"dtype": "float32", "shape": ["batch", mixtures, 2]},
               "correlations": {"dtype": "float32", "shape": ["batch", mixtures]}}
    if conditional:
        inputs["text"] = {"dtype": "int64", "shape": ["batch", "chars"]}
        state["kappa"] = {"dtype": "float32", "shape": ["batch", model_config["window_gaussians"]]}
        state["w"] = {"dtype": "float32", "shape": ["batch", model_config["alphabet_size"]]}
        outputs["phi"] = {"dtype": "float32", "shape": ["batch", "chars_plus_one"]}
    return {"inputs": inputs, "state": state, "outputs": outputs}


def _dynamic_axes(io: dict) -> dict:
    axes = {}
    for group in ("inputs", "state", "outputs"):
        for name, spec in io[group].items():
            dims = {i: d for i, d in enumerate(spec["shape"]) if isinstance(d, str)}
            axes[name] = dims
            if group == "state":
                axes[f"{name}_out"] = dims
    return axes


def _example(model, io: dict, batch: int, chars: int) -> dict[str, torch.Tensor]:
    example = {"points": torch.zeros(batch, 3)}
    if "text" in io["inputs"]:
        example["text"] = torch.ones(batch, chars, dtype=torch.int64)
    example.update(model.init_state(batch))
    return example


def _parity(model, session, io: dict, sequences: list[np.ndarray], texts: np.ndarray | None, batch: int,
            length: int = PARITY_POINTS) -> float:
    """Teacher-force ``length`` steps through torch and onnxruntime; max |diff|."""
    rows = [sequences[i % len(sequences)] for i in range(batch)]
    inputs, _, _ = stroke_data.pad_batch(rows)
    inputs = np.concatenate([inputs, np.zeros((batch, max(0, length - inputs.shape[1]), 3), np.float32)], 1)
    torch_state = model.init_state(batch)
    ort_state = {k: v.numpy() for k, v in torch_state.items()}
    state_names = list(io["state"])
    output_names = list(io["outputs"])
    worst = 0.0
    text = None if texts is None else np.ascontiguousarray(texts[[i % len(texts) for i in range(batch)]])
    with torch.no_grad():
        for t in range(length):
            points = torch.from_numpy(inputs[:, t])
            if text is None:
                head, torch_state = model.step(points, torch_state)
                expected = [head[n] for n in HEAD_NAMES]
                feed = {"points": points.numpy()}
            else:
                head, torch_state, phi = model.step(points, torch_state, torch.from_numpy(text))
                expected = [head[n] for n in HEAD_NAMES] + [phi]
                feed = {"points": points.numpy(), "text": text}
            values = session.run(output_names + [f"{n}_out" for n in state_names], {**feed, **ort_state})
            ort_state = dict(zip(state_names, values[len(output_names):]))
            expected += [torch_state[n] for n in state_names]
            for mine, theirs in zip(values, expected):
                worst = max(worst, float(np.abs(mine - theirs.numpy()).max()))
    return worst


def _styles(domain: dict, conditional: bool) -> list[dict]:
    """A few real sequences (raw units) to prime with: Hershey lines or Omniglot characters."""
    styles = []
    if conditional:
        hershey = stroke_data.HersheyCorpusConfig()
        for index, font in enumerate(list(hershey.fonts) * 2):
            rng = np.random.default_rng(7000 + index)
            text = ["the quick", "brown fox", "jumps over", "a lazy dog", "sphinx of", "black quartz"][index % 6]
            strokes = stroke_data.render_hershey(text, font, rng, hershey)
            styles.append({"text": text, "font": font, "strokes": np.round(strokes, 2).tolist()})
    else:
        for strokes in stroke_data.load_omniglot("test")[:STYLE_COUNT]:
            styles.append({"text": "", "strokes": np.round(strokes, 2).tolist()})
    return styles[:STYLE_COUNT + 1]


def export_strokes(run_dir: str | Path, out_dir: str | Path, *, quiet: bool = False,
                   parity_points: int = PARITY_POINTS) -> dict:
    """Export ``run_dir``'s checkpoint to the bundle folder ``out_dir``; returns the card.
    ``parity_points`` shortens the parity run (tests only)."""
    import onnx
    import onnxruntime as ort

    from studio import __version__

    run = RunDir(Path(run_dir))
    if not run.checkpoint.exists():
        raise StudioError(f"No checkpoint in {run.path}: train it first.")
    checkpoint = torch.load(run.checkpoint, weights_only=False)
    model = build_model(checkpoint["model_config"])
    model.load_state_dict(checkpoint["model"])
    model.eval()
    domain = checkpoint["domain"]
    io = io_spec(model.config)
    out_dir = Path(out_dir)
    tmp_dir = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp_dir, ignore_errors=True)
    tmp_dir.mkdir(parents=True)
    path = tmp_dir / GRAPH
    example = _example(model, io, batch=2, chars=5)
    output_names = list(io["outputs"]) + [f"{n}_out" for n in io["state"]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(StepGraph(model), tuple(example.values()), str(path), input_names=list(example),
                          output_names=output_names, dynamic_axes=_dynamic_axes(io), opset_version=OPSET,
                          dynamo=False)
    onnx.checker.check_model(onnx.load(str(path)))
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    conditional = model.config["type"] == "synthesis"
    if conditional:
        items = stroke_data.hershey_examples(stroke_data.HersheyCorpusConfig(), range(2_000_000_000, 2_000_000_003))
        texts = stroke_data.encode_texts([t for t, _ in items], domain["alphabet"])
    else:
        items = [("", s) for s in stroke_data.load_omniglot("valid")[:3]]
        texts = None
    sequences = [stroke_data.normalise(s, domain["mean"], domain["std"]) for _, s in items]
    worst = max(_parity(model, session, io, sequences, texts, batch, parity_points) for batch in (1, 3))
    if not worst < PARITY_TOLERANCE:
        raise StudioError(f"Export parity failed: onnxruntime differs from torch by {worst:.2e} (limit 1e-4).")
    parameters = sum(p.numel() for p in model.parameters())
    card = {
        "studio_version": __version__,
        "name": out_dir.name,
        "domain": domain,
        "model": model.config,
        "train": checkpoint["train_config"],
        "corpus": checkpoint["corpus"],
        "metrics": {"val_nats_per_point": round(float(checkpoint["val_loss"]), 5),
                    "steps": int(checkpoint["step"]),
                    "train_minutes": round(checkpoint["elapsed_s"] / 60, 2),
                    "parameters": parameters},
        "graphs": {"fp32": GRAPH},
        "io": io,
        "opset": OPSET,
        "parity": {"max_abs_diff": worst, "points": parity_points, "batches": [1, 3]},
        "styles": _styles(domain, conditional),
    }
    (tmp_dir / "card.json").write_text(json.dumps(card, indent=1))
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp_dir.rename(out_dir)
    if not quiet:
        size = sum(f.stat().st_size for f in out_dir.iterdir()) / 1e6
        print(f"exported {out_dir} ({size:.1f} MB): parity {worst:.1e}")
    return card
