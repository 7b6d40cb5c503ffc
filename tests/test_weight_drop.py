"""``--weight-drop``: DropConnect on the hidden-to-hidden weights of a fused cell (AWD-LSTM
style), training only: it masks the recurrent matrices, its gradient reaches the real
weights, P = 0 is plain training, and the bundle (card, parity, resume, sampling) is as
for any fused model."""

import csv

import numpy as np
import pytest
import torch

from studio import api
from studio.bundle import Bundle
from studio.config import ModelConfig, TrainConfig
from studio.errors import StudioError
from studio.export import export_run
from studio.models.recurrent_lm import RecurrentLM
from studio.runtime import Runtime
from studio.sampling.settings import SampleSettings
from studio.train import train

MODEL = dict(hidden_size=16, layers=2, embedding_size=8, dropout=0.0)
SETTINGS = dict(batch_size=4, seq_len=16, max_steps=8, eval_every=4, seed=3, warmup_steps=2, learning_rate=1e-2)


def rows(run):
    with open(run.path / "metrics.csv") as handle:
        return {int(r["step"]): r for r in csv.DictReader(handle)}


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_weight_drop_masks_the_recurrent_matrices_in_training_only(cell):
    torch.manual_seed(0)
    model = RecurrentLM(ModelConfig(vocab_size=9, cell=cell, weight_drop=0.5, **MODEL))
    tokens = torch.randint(0, 9, (2, 10))
    model.train()
    a, _ = model(tokens, model.init_state(2))
    b, _ = model(tokens, model.init_state(2))
    assert (a - b).abs().max() > 1e-3  # a fresh mask at each call
    a.sum().backward()
    grads = {name: p.grad for name, p in model.rnn.named_parameters()}
    assert all(g is not None and g.abs().sum() > 0 for g in grads.values())
    # the mask zeroes whole entries of the matrix: their gradient is exactly zero
    assert (grads["weight_hh_l0"] == 0).float().mean() > 0.2
    model.eval()
    with torch.no_grad():
        c, _ = model(tokens, model.init_state(2))
        plain = RecurrentLM(ModelConfig(vocab_size=9, cell=cell, **MODEL))
        plain.load_state_dict(model.state_dict())
        d, _ = plain.eval()(tokens, plain.init_state(2))
    assert torch.equal(c, d)  # evaluation runs the weights as they are


def test_weight_drop_zero_is_plain_training(tiny_corpus, tmp_path):
    """P = 0 takes the plain path: the same losses as a run without the option."""
    runs = {}
    for name, overrides in (("plain", MODEL), ("zero", {**MODEL, "weight_drop": 0.0})):
        runs[name] = train(
            tiny_corpus,
            tmp_path / name,
            domain_name="chars",
            model_overrides=overrides,
            train_config=TrainConfig(**{**SETTINGS, "max_steps": 4}),
            quiet=True,
        )
    plain, zero = rows(runs["plain"]), rows(runs["zero"])
    assert set(plain) == set(zero) and 4 in plain
    for step in plain:
        for column in ("train_loss", "val_loss"):
            assert plain[step][column] == zero[step][column]


def test_weight_drop_trains_resumes_exports_and_samples(straight_and_resumed, tmp_path):
    model = {**MODEL, "weight_drop": 0.3}
    straight = straight_and_resumed(model, SETTINGS)
    card_path = export_run(straight.path, tmp_path / "export", quiet=True)
    bundle = Bundle.load(card_path.parent)
    assert bundle.card["model"]["weight_drop"] == 0.3
    assert bundle.card["parity"]["max_abs_diff"] < 1e-4
    runtime = Runtime(bundle, precision="fp32")
    best = torch.load(straight.best, weights_only=False)
    reference = RecurrentLM(ModelConfig.from_dict(best["model"]))
    reference.load_state_dict(best["model_state"])
    tokens = np.random.default_rng(1).integers(0, bundle.card["model"]["vocab_size"], (2, 12))
    full, _ = runtime.logits(tokens, runtime.init_state(2))
    with torch.no_grad():
        expected, _ = reference.eval()(torch.from_numpy(tokens), reference.init_state(2))
    assert np.abs(full - expected.numpy()).max() < 1e-4
    settings = SampleSettings(model=str(bundle.path), prime="The ", length=40, seed=5)
    first, again = api.sample(bundle.path, settings), api.sample(bundle.path, settings)
    assert first[0].text == again[0].text and len(first[0].tokens) == 40


def test_weight_drop_is_bounded_and_needs_a_fused_cell():
    with pytest.raises(StudioError, match="fused cell"):
        ModelConfig(vocab_size=9, cell="lnlstm", weight_drop=0.2)
    with pytest.raises(StudioError, match=r"\[0, 1\)"):
        ModelConfig(vocab_size=9, cell="lstm", weight_drop=1.0)
