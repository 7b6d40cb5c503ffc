"""Tiny train -> export (with its parity check) -> sample -> evaluate, both model kinds."""

import json
import sys

import numpy as np
import pytest
import torch

from studio.handwriting.export import export_strokes
from studio.handwriting.model import PredictionNetwork, SynthesisNetwork
from studio.handwriting.train import train_strokes

TINY = dict(hidden_size=16, layers=2, mixtures=3, batch_size=4, validation_size=8, statistics_size=32,
            eval_every=100, window_gaussians=2)


@pytest.fixture(scope="module")
def handwriting_bundle(tmp_path_factory):
    root = tmp_path_factory.mktemp("handwriting")
    run = train_strokes("hershey", root / "run", conditional=True, max_steps=2, seed=3, progress=False, **TINY)
    card = export_strokes(run, root / "bundle", quiet=True, parity_points=24)
    return root / "bundle", card


def test_export_card_and_parity(handwriting_bundle):
    path, card = handwriting_bundle
    assert card["parity"]["max_abs_diff"] < 1e-4
    assert set(card["io"]["state"]) == {"h", "c", "kappa", "w"}
    assert set(card["io"]["inputs"]) == {"points", "text"}
    assert card["domain"]["name"] == "strokes" and card["domain"]["conditional"]
    assert len(card["corpus"]["sha256"]) == 64 and card["styles"]
    assert json.loads((path / "card.json").read_text())["model"]["type"] == "synthesis"


def test_sample_writes_svg_png_gif_without_torch(handwriting_bundle, tmp_path, monkeypatch):
    path, _ = handwriting_bundle
    monkeypatch.setitem(sys.modules, "torch", None)
    from studio.bundle import Bundle
    from studio.handwriting.evaluate import evaluate_strokes
    from studio.runtime import Runtime
    from studio.sampling.settings import SampleSettings

    bundle = Bundle.load(path)
    runtime = Runtime(bundle, threads=1)
    rendered = bundle.domain.generate(runtime, SampleSettings(model=str(path), text="Hi there", bias=1.0, seed=1,
                                                              style=0))
    for suffix in (".svg", ".png", ".gif"):
        assert rendered.save(tmp_path / f"hello{suffix}").stat().st_size > 100
    rendered.save_attention_plot(tmp_path / "attention.png")
    again = bundle.domain.generate(runtime, SampleSettings(model=str(path), text="Hi there", bias=1.0, seed=1,
                                                           style=0))
    assert all(np.array_equal(a, b) for a, b in zip(rendered.page, again.page))
    result = evaluate_strokes(bundle, count=4, runtime=runtime)
    assert 0 < result["nats_per_point"] < 10 and result["sequences"] == 4


def test_resume_continues_exactly(tmp_path):
    options = dict(TINY)
    straight = train_strokes("omniglot", tmp_path / "straight", conditional=False, max_steps=4, seed=5,
                             progress=False, **options)
    paused = train_strokes("omniglot", tmp_path / "paused", conditional=False, max_steps=4, seed=5,
                           progress=False, stop_after=2, **options)
    train_strokes("omniglot", paused, conditional=False, max_steps=4, resume=True, progress=False)
    a = torch.load(straight / "checkpoint.pt", weights_only=False)
    b = torch.load(paused / "checkpoint.pt", weights_only=False)
    assert a["step"] == b["step"] == 4
    assert abs(a["val_loss"] - b["val_loss"]) < 1e-6
    for name, tensor in a["model"].items():
        torch.testing.assert_close(tensor, b["model"][name], rtol=0, atol=1e-6)


def test_doodle_export_and_sample(tmp_path):
    run = train_strokes("omniglot", tmp_path / "run", conditional=False, max_steps=1, seed=2, progress=False,
                        **TINY)
    card = export_strokes(run, tmp_path / "doodle", quiet=True, parity_points=24)
    assert card["parity"]["max_abs_diff"] < 1e-4 and set(card["io"]["state"]) == {"h", "c"}
    from studio.bundle import Bundle
    from studio.runtime import Runtime
    from studio.sampling.settings import SampleSettings

    bundle = Bundle.load(tmp_path / "doodle")
    rendered = bundle.domain.generate(Runtime(bundle, threads=1), SampleSettings(model="doodle", num=3, seed=4))
    assert len(rendered.page) == 3 and rendered.save(tmp_path / "d.svg").exists()


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
