"""The variational RNN for strokes (``studio train --model vrnn``): one head in the shared
trainer, exporter, sampler and scorer.  Tiny models, a few steps."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from studio.cli import app
from studio.handwriting.model import mixture_log_likelihood
from studio.handwriting.vrnn import VariationalRNN, gaussian_kl
from studio.heads import HEADS
from studio.heads.base import Score
from studio.models import TRAINABLES
from studio.train import CHECKPOINT_KEYS

runner = CliRunner()
ROOT = Path(__file__).resolve().parent.parent
HANDWRITING = ROOT / "corpora" / "handwriting"
OMNIGLOT = HANDWRITING / "omniglot_strokes.npz"
TINY = [
    "--domain",
    "strokes",
    "--model",
    "vrnn",
    "--hidden-size",
    "12",
    "--layers",
    "2",
    "--mixtures",
    "3",
    "--latent-size",
    "4",
    "--feature-size",
    "8",
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
def vrnn_bundle(tmp_path_factory):
    """A VRNN trained 3 steps (KL warm-up over 2) through `studio train`, then exported."""
    root = tmp_path_factory.mktemp("vrnn")
    invoke(
        "train",
        OMNIGLOT,
        "--name",
        "v",
        "--runs-dir",
        root / "runs",
        "--out",
        root / "bundle",
        "--max-steps",
        "3",
        "--eval-every",
        "3",
        "--kl-warmup",
        "2",
        "--seed",
        "3",
        *TINY,
    )
    return root


def test_one_head_in_both_registries():
    assert TRAINABLES["vrnn"].name == HEADS["vrnn"].name == "vrnn"
    assert TRAINABLES["vrnn"].unit == HEADS["vrnn"].unit == "point"


def test_step_equals_the_training_pass():
    """Naive vs fast: stepping the exported step function with the encoder's ``z`` gives
    the training pass's reconstruction and KL at every point."""
    torch.manual_seed(0)
    model = VariationalRNN(hidden_size=8, layers=2, mixtures=3, latent_size=4, feature_size=6).eval()
    inputs, targets, noise = torch.randn(2, 7, 3), torch.randn(2, 7, 3), torch.randn(2, 7, 4)
    targets[..., 2] = (targets[..., 2] > 0).float()
    with torch.no_grad():
        log_likelihood, kl = model(inputs, targets, noise)
        state = model.init_state(2)
        for t in range(7):
            head, step_kl, _, state = model.step(inputs[:, t], targets[:, t], torch.ones(2), noise[:, t], state)
            torch.testing.assert_close(mixture_log_likelihood(head, targets[:, t]), log_likelihood[:, t])
            torch.testing.assert_close(step_kl, kl[:, t])


def test_kl_of_equal_gaussians_is_zero_and_positive_otherwise():
    mean, log_scale = torch.randn(5, 4), torch.randn(5, 4) * 0.3
    assert gaussian_kl(mean, log_scale, mean, log_scale).abs().max() < 1e-6
    assert (gaussian_kl(mean, log_scale, mean + 0.5, log_scale - 0.2) > 0).all()


def test_train_writes_a_vrnn_bundle_with_parity(vrnn_bundle):
    card = json.loads((vrnn_bundle / "bundle" / "card.json").read_text())
    assert card["head"] == "vrnn" and card["model"]["type"] == "vrnn" and card["bound"] == "elbo"
    assert card["parity"]["max_abs_diff"] < 1e-4 and card["parity"]["posterior_rows"] == [[0], [1, 0, 1]]
    assert set(card["io"]["inputs"]) == {"points", "target", "posterior", "noise"}
    assert card["io"]["inputs"]["noise"]["shape"] == ["batch", 4]
    assert set(card["io"]["state"]) == {"h", "c", "z"} and {"kl", "log_ratio"} <= set(card["io"]["outputs"])
    assert card["train"]["kl_warmup"] == 2 and len(card["styles"]) == 5
    checkpoint = torch.load(vrnn_bundle / "runs" / "v" / "checkpoint.pt", weights_only=False)
    assert set(CHECKPOINT_KEYS) <= set(checkpoint) and checkpoint["head"] == "vrnn"
    assert json.loads((vrnn_bundle / "runs" / "v" / "config.json").read_text())["head"] == "vrnn"


def test_parity_check_fails_when_the_graph_differs(vrnn_bundle):
    """The exporter's gate can fail: a changed weight shows up as a large difference."""
    import onnxruntime as ort

    from studio.domains import domain_from_config
    from studio.models.vrnn import latent_parity

    best = torch.load(vrnn_bundle / "runs" / "v" / "best.pt", weights_only=False)
    trainable = TRAINABLES["vrnn"]
    model = trainable.build_model(best["model"])
    model.load_state_dict(best["model_state"])
    model.eval()
    card = json.loads((vrnn_bundle / "bundle" / "card.json").read_text())
    session = ort.InferenceSession(str(vrnn_bundle / "bundle" / "model.onnx"), providers=["CPUExecutionProvider"])
    domain = domain_from_config(card["domain"])
    sequences = [domain.normalise(np.asarray(s["strokes"], np.float32)) for s in card["styles"][:3]]
    flags = np.asarray([1.0, 0.0, 1.0], np.float32)
    assert latent_parity(model, session, card["io"], sequences, flags, length=20) < 1e-4
    with torch.no_grad():
        model.prior_gaussian.linear.bias.add_(0.5)
    assert latent_parity(model, session, card["io"], sequences, flags, length=20) > 1e-2


def test_sample_is_seeded_through_the_one_cli(vrnn_bundle, tmp_path):
    bundle = vrnn_bundle / "bundle"
    first = invoke("sample", "--model", bundle, "--num", "3", "--seed", "4", "--out", tmp_path / "a.svg", "--json")
    invoke("sample", "--model", bundle, "--num", "3", "--seed", "4", "--out", tmp_path / "b.svg")
    invoke("sample", "--model", bundle, "--num", "3", "--seed", "5", "--out", tmp_path / "c.svg")
    assert (tmp_path / "a.svg").read_text() == (tmp_path / "b.svg").read_text()
    assert (tmp_path / "a.svg").read_text() != (tmp_path / "c.svg").read_text()
    record = json.loads(first.output.splitlines()[0])
    assert record["text"].startswith("3 doodle(s) from the variational RNN") and np.isfinite(record["logprob"])
    invoke("sample", "--model", bundle, "--style", "1", "--seed", "4", "--out", tmp_path / "styled.png")
    assert (tmp_path / "styled.png").read_bytes()[:4] == b"\x89PNG"


def test_the_noise_input_drives_the_latent(vrnn_bundle, monkeypatch):
    """Torch-free: the same noise gives the same step outputs, other noise other ones, so
    the seeded generator that draws the noise fixes a sample."""
    monkeypatch.setitem(sys.modules, "torch", None)
    from studio.api import load, sample
    from studio.handwriting import latent

    runtime = load(str(vrnn_bundle / "bundle")).runtime
    size = latent.latent_size(runtime)
    start = latent._start_point(2)
    noise = np.random.default_rng(1).standard_normal((2, size))

    def step(noise):
        outputs, state = runtime.run(latent._feed(start, np.zeros_like(start), 0.0, noise), runtime.init_state(2))
        return outputs["means"], state["z"]

    means, z = step(noise)
    again, z_again = step(noise.copy())
    other, z_other = step(noise + 1.0)
    assert np.array_equal(means, again) and np.array_equal(z, z_again)
    assert np.abs(z - z_other).max() > 1e-3 and np.abs(means - other).max() > 1e-6
    [a] = sample(str(vrnn_bundle / "bundle"), num=2, seed=9)
    [b] = sample(str(vrnn_bundle / "bundle"), num=2, seed=9)
    assert all(np.array_equal(x, y) for x, y in zip(a.output.page, b.output.page)) and a.logprob == b.logprob


def test_eval_reports_the_bound_and_says_so(vrnn_bundle):
    report = json.loads(invoke("eval", vrnn_bundle / "bundle", OMNIGLOT, "--json").output)
    assert report["bound"] == "elbo" and report["points"] > 1000 and np.isfinite(report["nats_per_point"])
    again = json.loads(invoke("eval", vrnn_bundle / "bundle", OMNIGLOT, "--json").output)
    assert again == report  # the encoder's noise is seeded


def test_importance_bound_is_tighter_than_the_elbo(vrnn_bundle):
    from studio.api import load
    from studio.handwriting import latent

    loaded = load(str(vrnn_bundle / "bundle"))
    elbo = latent.evaluate_bound(loaded.runtime, loaded.domain, OMNIGLOT, count=16)
    iwae = latent.importance_bound(loaded.runtime, loaded.domain, OMNIGLOT, samples=8, count=16)
    assert iwae["points"] == elbo["points"]
    assert iwae["nats_per_point"] <= elbo["nats_per_point"]
    assert abs(elbo["reconstruction_nats_per_point"] + elbo["kl_nats_per_point"] - elbo["nats_per_point"]) < 1e-9


def test_exact_heads_mark_no_bound():
    assert "bound" not in Score(1.0, 3, "point").to_json()
    assert Score(1.0, 3, "point", bound="elbo").to_json()["bound"] == "elbo"


def test_resume_continues_exactly(tmp_path):
    """4 steps straight equal 2 + resume + 2: weights, optimiser and the noise generator."""
    common = ["--max-steps", "4", "--eval-every", "2", "--kl-warmup", "3", "--seed", "5", "--no-export", *TINY]
    invoke("train", OMNIGLOT, "--name", "straight", "--runs-dir", tmp_path, *common)
    invoke("train", OMNIGLOT, "--name", "paused", "--runs-dir", tmp_path, "--stop-after", "2", *common)
    assert "paused" in json.loads((tmp_path / "paused" / "summary.json").read_text())["stop_reason"]
    invoke("train", "--resume", tmp_path / "paused", "--no-export", "--quiet")
    a = torch.load(tmp_path / "straight" / "checkpoint.pt", weights_only=False)
    b = torch.load(tmp_path / "paused" / "checkpoint.pt", weights_only=False)
    assert a["step"] == b["step"] == 4 and b["head"] == "vrnn"
    assert abs(a["best_val"] - b["best_val"]) < 1e-6
    for name, tensor in a["model_state"].items():
        torch.testing.assert_close(tensor, b["model_state"][name], rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    ("corpus", "model", "message"),
    [
        (HANDWRITING, "vrnn", "unconditional"),
        (OMNIGLOT, "transformer", "strokes corpora train mixture or vrnn"),
        (ROOT / "corpora" / "shakespeare", "vrnn", "chars corpora train categorical"),
    ],
)
def test_a_model_the_domain_cannot_train_is_one_line(tmp_path, corpus, model, message):
    domain = "chars" if "shakespeare" in str(corpus) else "strokes"
    args = ["train", corpus, "--domain", domain, "--model", model, "--runs-dir", tmp_path, "--max-steps", "1"]
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 1 and result.output.startswith("error:") and message in result.output
    assert len(result.output.strip().splitlines()) == 1 and not list(tmp_path.iterdir())


def test_web_handwrite_and_model_card_take_a_vrnn_bundle(vrnn_bundle, tmp_path, monkeypatch):
    """The web tab and the Models view reach the head through the registry, unchanged."""
    monkeypatch.setenv("GRADIO_ANALYTICS_ENABLED", "False")
    monkeypatch.setenv("STUDIO_MODELS", str(vrnn_bundle))
    from studio.bundle import Bundle
    from studio.previews import quality
    from studio.serve import Batcher
    from web.common import OutputFolders
    from web.handwrite import make_handwrite

    batcher = Batcher()
    try:
        handwrite = make_handwrite(OutputFolders(tmp_path), batcher)
        summary, recipe, svg, png, gif, files = handwrite("bundle", bias=1.0, seed=3)
    finally:
        batcher.close()
    assert summary.startswith("1 doodle(s) from the variational RNN") and svg.startswith("<svg")
    assert "studio sample --model bundle" in recipe and "--seed 3" in recipe and len(files) == 3
    cli = invoke(
        "sample",
        "--model",
        vrnn_bundle / "bundle",
        "--seed",
        "3",
        "--bias",
        "1.0",
        "--out",
        tmp_path / "c.svg",
        "--json",
    )
    assert json.loads(cli.output.splitlines()[0])["text"] == summary
    shown = quality(Bundle.load(vrnn_bundle / "bundle"))
    assert shown.figure.startswith("at most") and "bound" in shown.gloss


def test_the_shipped_vrnn_bundle(monkeypatch, tmp_path):
    """`doodle-vrnn` is listed, small, parity-checked, and previews like any doodle model."""
    from studio.bundle import Bundle
    from studio.previews import preview

    monkeypatch.delenv("STUDIO_MODELS", raising=False)
    monkeypatch.chdir(tmp_path)  # only the shipped export/ folder
    rows = {row["name"]: row for row in json.loads(invoke("models", "--json").stdout)}
    row = rows["doodle-vrnn"]
    assert (row["domain"], row["head"], row["unit"]) == ("strokes", "vrnn", "nats/point") and row["size_mb"] <= 16
    card = Bundle.load("doodle-vrnn").card
    assert card["bound"] == "elbo" and card["parity"]["max_abs_diff"] < 1e-4
    shown = preview("doodle-vrnn", tmp_path)
    assert shown.image.read_bytes()[:4] == b"\x89PNG" and "studio sample --model doodle-vrnn" in shown.command
