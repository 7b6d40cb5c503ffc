"""Stroke models through the one CLI: train -> export (parity-checked) -> sample -> eval,
resume, for the text-conditioned and the unconditional model."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from studio.cli import app
from studio.config import TrainConfig
from studio.handwriting.model import PredictionNetwork, SynthesisNetwork
from studio.train import CHECKPOINT_KEYS, train

runner = CliRunner()
ROOT = Path(__file__).resolve().parent.parent
HANDWRITING = ROOT / "corpora" / "handwriting"
OMNIGLOT = HANDWRITING / "omniglot_strokes.npz"
TINY = [
    "--hidden-size",
    "16",
    "--layers",
    "2",
    "--mixtures",
    "3",
    "--window-gaussians",
    "2",
    "--batch-size",
    "4",
    "--val-sequences",
    "8",
    "--quiet",
]


def invoke(*args):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture(scope="module")
def handwriting_bundle(tmp_path_factory):
    """A text-conditioned synthesis net trained 2 steps through `studio train`."""
    root = tmp_path_factory.mktemp("handwriting")
    invoke(
        "train",
        HANDWRITING,
        "--domain",
        "strokes",
        "--name",
        "hand",
        "--runs-dir",
        root / "runs",
        "--out",
        root / "bundle",
        "--max-steps",
        "2",
        "--eval-every",
        "2",
        "--seed",
        "3",
        *TINY,
    )
    return root


def test_train_writes_one_run_schema_and_exports_with_parity(handwriting_bundle):
    card = json.loads((handwriting_bundle / "bundle" / "card.json").read_text())
    assert card["head"] == "mixture" and card["parity"]["max_abs_diff"] < 1e-4
    assert set(card["io"]["state"]) == {"h", "c", "kappa", "w"}
    assert set(card["io"]["inputs"]) == {"points", "text"}
    assert card["domain"]["name"] == "strokes" and card["domain"]["conditional"]
    assert card["model"]["type"] == "synthesis" and card["model"]["mixtures"] == 3
    assert len(card["corpus"]["sha256"]) == 64 and len(card["styles"]) == 6
    assert card["metrics"]["unit"] == "point" and card["metrics"]["steps"] == 2
    checkpoint = torch.load(handwriting_bundle / "runs" / "hand" / "checkpoint.pt", weights_only=False)
    assert set(CHECKPOINT_KEYS) <= set(checkpoint) and checkpoint["head"] == "mixture"
    config = json.loads((handwriting_bundle / "runs" / "hand" / "config.json").read_text())
    assert config["head"] == "mixture" and config["domain"] == "strokes"


def test_sample_and_eval_through_the_cli(handwriting_bundle, tmp_path):
    bundle = handwriting_bundle / "bundle"
    out, plot = tmp_path / "hi.svg", tmp_path / "attention.png"
    first = invoke(
        "sample",
        "--model",
        bundle,
        "--text",
        "Hi there",
        "--seed",
        "1",
        "--style",
        "0",
        "--out",
        out,
        "--attention-plot",
        plot,
        "--json",
    )
    record = json.loads(first.output.splitlines()[0])
    assert record["text"].startswith("handwriting 'Hi there': 1 line(s)")
    assert out.read_text().startswith("<svg") and plot.read_bytes()[:4] == b"\x89PNG"
    again = invoke(
        "sample",
        "--model",
        bundle,
        "--text",
        "Hi there",
        "--seed",
        "1",
        "--style",
        "0",
        "--out",
        tmp_path / "again.svg",
        "--json",
    )
    assert (tmp_path / "again.svg").read_text() == out.read_text()
    report = json.loads(invoke("eval", bundle, HANDWRITING, "--json").output)
    assert report["points"] > 1000 and np.isfinite(report["nats_per_point"])
    assert abs(report["bits_per_point"] * np.log(2) - report["nats_per_point"]) < 1e-4
    assert json.loads(again.output.splitlines()[0])["logprob"] == record["logprob"]


def test_sampling_strokes_needs_no_torch(handwriting_bundle, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)
    from studio.api import sample

    [drawing] = sample(str(handwriting_bundle / "bundle"), text="Hi", seed=2)
    for suffix in (".svg", ".png", ".gif"):
        path = drawing.output.save(tmp_path / f"hello{suffix}")
        assert path.stat().st_size > 100
    assert drawing.output.points == sum(len(stroke) for stroke in drawing.output.page)


def test_attention_plot_refused_for_an_unconditional_model(tmp_path):
    result = runner.invoke(app, ["sample", "--model", "doodle", "--attention-plot", str(tmp_path / "a.png")])
    assert result.exit_code == 1 and "text-conditioned" in result.output
    assert not (tmp_path / "a.png").exists()


def test_unconditional_resume_continues_exactly(tmp_path):
    common = ["--domain", "strokes", "--max-steps", "4", "--eval-every", "2", "--seed", "5", "--no-export", *TINY]
    invoke("train", OMNIGLOT, "--name", "straight", "--runs-dir", tmp_path, *common)
    invoke("train", OMNIGLOT, "--name", "paused", "--runs-dir", tmp_path, "--stop-after", "2", *common)
    assert "paused" in json.loads((tmp_path / "paused" / "summary.json").read_text())["stop_reason"]
    invoke("train", "--resume", tmp_path / "paused", "--no-export", "--quiet")
    a = torch.load(tmp_path / "straight" / "checkpoint.pt", weights_only=False)
    b = torch.load(tmp_path / "paused" / "checkpoint.pt", weights_only=False)
    assert a["step"] == b["step"] == 4 and a["head"] == "mixture"
    assert abs(a["best_val"] - b["best_val"]) < 1e-6
    for name, tensor in a["model_state"].items():
        torch.testing.assert_close(tensor, b["model_state"][name], rtol=0, atol=1e-6)


def test_doodle_export_and_sample(tmp_path):
    invoke(
        "train",
        OMNIGLOT,
        "--domain",
        "strokes",
        "--name",
        "d",
        "--runs-dir",
        tmp_path / "runs",
        "--out",
        tmp_path / "doodle",
        "--max-steps",
        "1",
        "--eval-every",
        "1",
        "--seed",
        "2",
        *TINY,
    )
    invoke("export", tmp_path / "runs" / "d", "--out", tmp_path / "again")
    card = json.loads((tmp_path / "again" / "card.json").read_text())
    assert card["parity"]["max_abs_diff"] < 1e-4 and set(card["io"]["state"]) == {"h", "c"}
    assert card["model"]["type"] == "mdn" and len(card["styles"]) == 5
    from studio.api import sample

    [drawing] = sample(str(tmp_path / "doodle"), num=3, seed=4)
    assert len(drawing.output.page) == 3 and drawing.output.save(tmp_path / "d.svg").exists()


def test_stroke_int8_is_refused_in_one_line(tmp_path):
    run = train(
        OMNIGLOT,
        tmp_path / "r",
        domain_name="strokes",
        model_overrides={"hidden_size": 8, "layers": 1, "mixtures": 2},
        train_config=TrainConfig(batch_size=2, max_steps=1, eval_every=1, val_sequences=2),
        quiet=True,
    )
    result = runner.invoke(app, ["export", str(run.path), "--out", str(tmp_path / "b"), "--quantize", "int8"])
    assert result.exit_code == 1 and "no int8 export" in result.output
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize("model", ["mdn", "synthesis"])
def test_step_matches_full_sequence_forward(model):
    """The step function (what is exported) equals the training forward pass."""
    torch.manual_seed(0)
    points = torch.randn(2, 7, 3)
    if model == "mdn":
        net = PredictionNetwork(hidden_size=8, layers=3, mixtures=2)
        full = net(points)
    else:
        net = SynthesisNetwork(alphabet_size=5, hidden_size=8, layers=2, mixtures=2, window_gaussians=2)
        text = torch.tensor([[1, 2, 3], [4, 5, 0]])
        full, _ = net(points, text)
    state = net.init_state(2)
    with torch.no_grad():
        for t in range(7):
            if model == "mdn":
                head, state = net.step(points[:, t], state)
            else:
                head, state, _ = net.step(points[:, t], state, text)
            torch.testing.assert_close(head["mixture_logits"], full[:, t, 1:3], atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(head["pen_logit"], full[:, t, 0], atol=1e-5, rtol=1e-5)
