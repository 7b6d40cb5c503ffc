"""The bundles ``studio bench`` needs besides the one it is given: an fp32 graph for a
bundle shipped int8-only (exported from its run's ``best.pt``), an int8 graph for one
shipped without (quantised on the fly), and a randomly initialised model of any shape.
Each is written into a folder the caller owns and loaded from there."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from ..bundle import Bundle
from ..errors import StudioError
from ..formats import FP32_GRAPH, INT8_GRAPH

MAX_LAYERS = 8
HIDDEN_SIZES = (8, 4096)  # smallest and largest --shape hidden size


def int8_bundle(bundle: Bundle, folder: Path) -> Bundle:
    """The bundle itself if it has an int8 graph, else a copy quantised into ``folder``."""
    if "int8" in bundle.card["graphs"]:
        return bundle
    from ..export import INT8_GRAPH, quantize_int8

    shutil.copy(bundle.graph_path("fp32"), folder / "model.onnx")
    quantize_int8(folder / "model.onnx", folder / INT8_GRAPH)
    card = dict(bundle.card, graphs={"fp32": "model.onnx", "int8": INT8_GRAPH})
    (folder / "card.json").write_text(json.dumps(card))
    return Bundle.load(folder)


def fp32_bundle(bundle: Bundle, folder: Path, runs_dir: Path = Path("runs")) -> Bundle:
    """The bundle itself if it ships an fp32 graph; else one exported into ``folder`` from
    the run it came from (``runs/NAME/best.pt``), beside a copy of its int8 graph."""
    if "fp32" in bundle.card["graphs"]:
        return bundle
    best = Path(runs_dir) / bundle.name / "best.pt"
    if not best.exists():
        raise StudioError(
            f"{bundle.name} ships only an int8 graph and {best} is missing: bench "
            "needs the fp32 weights (re-export without --int8-only, or keep the run)"
        )
    import torch

    from ..config import ModelConfig
    from ..models.recurrent_lm import RecurrentLM

    saved = torch.load(best, map_location="cpu", weights_only=False)
    model = RecurrentLM(ModelConfig.from_dict(saved["model"]))
    model.load_state_dict(saved["model_state"])
    shutil.copy(bundle.graph_path("int8"), folder / INT8_GRAPH)
    return _export_fp32(model, bundle, folder, extra_graphs={"int8": INT8_GRAPH})


def shaped_bundle(like: Bundle, shape: str, folder: Path) -> Bundle:
    """A randomly initialised LSTM of ``shape`` ("LAYERSxHIDDEN") with ``like``'s vocabulary
    and embedding width, exported to ``folder``: speed does not depend on weight values,
    so any model size can be timed on any machine."""
    try:
        layers, hidden = (int(part) for part in shape.lower().split("x"))
    except ValueError:
        raise StudioError(f"--shape must look like 2x512 (layers x hidden size), got {shape!r}") from None
    if not (1 <= layers <= MAX_LAYERS and HIDDEN_SIZES[0] <= hidden <= HIDDEN_SIZES[1]):
        raise StudioError(
            f"--shape {shape}: layers must be 1-{MAX_LAYERS} and hidden size {HIDDEN_SIZES[0]}-{HIDDEN_SIZES[1]}"
        )
    import torch

    from ..config import ModelConfig
    from ..models.recurrent_lm import RecurrentLM

    config = like.card["model"]
    torch.manual_seed(0)
    model = RecurrentLM(
        ModelConfig(
            vocab_size=config["vocab_size"],
            cell=config["cell"],
            layers=layers,
            hidden_size=hidden,
            embedding_size=config["embedding_size"],
            dropout=0.0,
        )
    )
    return _export_fp32(model, like, folder)


def _export_fp32(model, like: Bundle, folder: Path, extra_graphs: dict | None = None) -> Bundle:
    """``model`` (a RecurrentLM) exported to ``folder`` as a bundle with ``like``'s card,
    through the one exporter's tracing and the categorical head's io spec."""
    from ..domains import CategoricalDomain
    from ..export import export_onnx
    from ..models import trainable_for

    head = trainable_for(like.head or CategoricalDomain.head)
    config = model.config.to_dict()
    io = head.io_spec(config)
    export_onnx(head.step_module(model), head.example_inputs(model, io), io, folder / FP32_GRAPH)
    card = dict(like.card, graphs={"fp32": FP32_GRAPH, **(extra_graphs or {})}, model=config, io=io)
    (folder / "card.json").write_text(json.dumps(card))
    return Bundle.load(folder)
