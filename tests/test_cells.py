"""Explicit cells (lnlstm, sru, qrnn, rwa): naive-vs-fast, export parity, resume, sampling,
and variational recurrent dropout."""

import numpy as np
import pytest
import torch

from studio.bundle import Bundle
from studio.config import EXPLICIT_CELLS, ModelConfig
from studio.errors import StudioError
from studio.export import export_onnx, export_run, session_for
from studio.models import TRAINABLES
from studio.models.categorical import token_parity
from studio.models.cells import EXPLICIT_CELL_CLASSES, ExplicitStack
from studio.models.recurrent_lm import RecurrentLM
from studio.runtime import Runtime

MODEL = dict(hidden_size=16, layers=2, embedding_size=8, dropout=0.0)
SHAPES = {
    "lnlstm": {"h": 16, "c": 16},
    "sru": {"c": 16},
    "qrnn": {"c": 16, "last_input": 48},
    "rwa": {"h": 16, "numerator": 16, "denominator": 16, "max_score": 16},
}


def random_state(config: ModelConfig, batch: int, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
    """A non-zero state (RWA's denominator kept positive, as every stepped state has it)."""
    return tuple(
        torch.rand((config.layers, batch, config.state_width(name)), generator=generator)
        + (0.5 if name == "denominator" else -0.5)
        for name in config.state_names
    )


@pytest.mark.parametrize("cell", EXPLICIT_CELLS)
@pytest.mark.parametrize("input_size", [8, 16])  # SRU's highway: projected, then identity
def test_window_equals_step_by_step(cell, input_size):
    """The fast path (input products for the whole window in one call) equals calling the
    same cell one time step at a time, state carried by hand."""
    torch.manual_seed(0)
    layer = EXPLICIT_CELL_CLASSES[cell](input_size, 16)
    config = ModelConfig(vocab_size=5, cell=cell, layers=1, hidden_size=16)
    state = [s[0] for s in random_state(config, 3, torch.Generator().manual_seed(1))]
    x = torch.randn(3, 20, input_size)
    mask = torch.bernoulli(torch.full((3, 16), 0.7)) / 0.7
    with torch.no_grad():
        fast, fast_state = layer(x, state, mask)
        steps, step_state = [], state
        for t in range(20):
            y, step_state = layer(x[:, t : t + 1], step_state, mask)
            steps.append(y)
    assert torch.allclose(fast, torch.cat(steps, 1), atol=1e-5)
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(fast_state, step_state))
    assert fast.shape == (3, 20, 16) and fast.abs().max() > 0.05


@pytest.mark.parametrize("cell", EXPLICIT_CELLS)
def test_explicit_cell_exports_with_parity(cell, tmp_path):
    head = TRAINABLES["categorical"]
    config = ModelConfig(vocab_size=12, cell=cell, **MODEL).to_dict()
    torch.manual_seed(0)
    model = head.build_model(config).eval()
    io = head.io_spec(config)
    assert io["inputs"]["tokens"]["shape"] == ["batch", 1]
    assert {name: spec["shape"] for name, spec in io["state"].items()} == {
        name: [2, "batch", width] for name, width in SHAPES[cell].items()
    }
    export_onnx(head.step_module(model), head.example_inputs(model, io), io, tmp_path / "m.onnx")
    session = session_for(tmp_path / "m.onnx")
    tokens = np.random.default_rng(0).integers(0, 12, (3, 40))
    assert token_parity(model, session, io, tokens) < 1e-5
    with torch.no_grad():  # not vacuous: other weights drift
        model.head.bias.add_(0.5)
    assert token_parity(model, session, io, tokens) > 0.4


@pytest.mark.parametrize("cell", EXPLICIT_CELLS)
def test_cell_trains_resumes_exports_and_samples(cell, straight_and_resumed, tmp_path):
    model = {**MODEL, "cell": cell, "recurrent_dropout": 0.2}
    settings = dict(batch_size=4, seq_len=16, max_steps=8, eval_every=4, seed=3, warmup_steps=2, learning_rate=1e-2)
    straight = straight_and_resumed(model, settings)
    card_path = export_run(straight.path, tmp_path / "export" / cell, quiet=True)
    bundle = Bundle.load(card_path.parent)
    assert bundle.card["model"]["cell"] == cell and bundle.card["model"]["recurrent_dropout"] == 0.2
    assert bundle.card["parity"]["max_abs_diff"] < 1e-4
    assert list(bundle.card["io"]["state"]) == list(SHAPES[cell])
    runtime = Runtime(bundle, precision="fp32")
    tokens = np.random.default_rng(1).integers(0, bundle.card["model"]["vocab_size"], (3, 12))
    full, _ = runtime.logits(tokens, runtime.init_state(3))
    # rows are independent: row 2 alone (selected out of the batch state) gives its logits
    state = Runtime.select(runtime.init_state(3), np.array([2, 2]))
    alone, _ = runtime.logits(tokens[[2, 2]], state)
    assert full.shape == (3, 12, bundle.card["model"]["vocab_size"])
    best = torch.load(straight.best, weights_only=False)  # the runtime's stepped window equals torch's
    reference = RecurrentLM(ModelConfig.from_dict(best["model"]))
    reference.load_state_dict(best["model_state"])
    with torch.no_grad():
        expected, _ = reference.eval()(torch.from_numpy(tokens), reference.init_state(3))
    assert np.abs(full - expected.numpy()).max() < 1e-4
    assert np.abs(alone[0] - full[2]).max() < 1e-4


def test_recurrent_mask_is_one_per_window_and_off_in_eval():
    stack = ExplicitStack(ModelConfig(vocab_size=5, cell="lnlstm", recurrent_dropout=0.5, **MODEL))
    torch.manual_seed(0)
    masks = stack.recurrent_masks(4, "cpu")
    assert len(masks) == 2 and masks[0].shape == (4, 16)
    assert set(masks[0].unique().tolist()) == {0.0, 2.0}  # kept units scaled by 1 / (1 - p)
    stack.eval()
    assert stack.recurrent_masks(4, "cpu") == [None, None]


def test_recurrent_dropout_changes_training_forward_only():
    torch.manual_seed(0)
    config = ModelConfig(vocab_size=9, cell="rwa", recurrent_dropout=0.5, **MODEL)
    model = RecurrentLM(config)
    tokens = torch.randint(0, 9, (2, 10))
    model.train()
    a, _ = model(tokens, model.init_state(2))
    b, _ = model(tokens, model.init_state(2))
    assert (a - b).abs().max() > 1e-3  # fresh masks per window
    model.eval()
    c, _ = model(tokens, model.init_state(2))
    d, _ = model(tokens, model.init_state(2))
    assert torch.equal(c, d)


def test_recurrent_dropout_needs_an_explicit_cell():
    with pytest.raises(StudioError, match="explicit cell"):
        ModelConfig(vocab_size=9, cell="lstm", recurrent_dropout=0.3)
    with pytest.raises(StudioError, match=r"\[0, 1\)"):
        ModelConfig(vocab_size=9, cell="sru", recurrent_dropout=1.0)
