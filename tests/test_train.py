"""Trainer: exact resume, cells, forget-gate bias, run-folder contents."""

import csv
import json
import math

import pytest
import torch
from PIL import Image

from studio.config import ModelConfig, TrainConfig
from studio.errors import StudioError
from studio.models.recurrent_lm import RecurrentLM
from studio.train import CHECKPOINT_KEYS, AveragedWeights, lr_factor, train

MODEL = dict(hidden_size=24, layers=2, embedding_size=8, dropout=0.1)


def config(**changes):
    base = dict(batch_size=4, seq_len=16, max_steps=12, eval_every=4, seed=3, warmup_steps=3)
    return TrainConfig(**{**base, **changes})


def rows(run):
    with open(run.path / "metrics.csv") as handle:
        return {int(r["step"]): r for r in csv.DictReader(handle)}


def test_resume_is_exact(tiny_corpus, tmp_path):
    straight = train(
        tiny_corpus,
        tmp_path / "straight",
        domain_name="chars",
        model_overrides=MODEL,
        train_config=config(),
        quiet=True,
    )
    half = train(
        tiny_corpus,
        tmp_path / "halves",
        domain_name="chars",
        model_overrides=MODEL,
        train_config=config(),
        stop_after=6,
        quiet=True,
    )
    assert torch.load(half.checkpoint, weights_only=False)["step"] == 6
    resumed = train(None, tmp_path / "halves", resume=True, quiet=True)
    a, b = rows(straight), rows(resumed)
    assert set(a) == set(b) and 12 in a
    for step in a:
        assert abs(float(a[step]["train_loss"]) - float(b[step]["train_loss"])) < 1e-6
        if a[step]["val_loss"]:
            assert abs(float(a[step]["val_loss"]) - float(b[step]["val_loss"])) < 1e-6
    wa = torch.load(straight.checkpoint, weights_only=False)["model_state"]
    wb = torch.load(resumed.checkpoint, weights_only=False)["model_state"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert sorted(b) == [1, 4, 8, 10, 12]  # step 1, every --eval-every, every 10th; each once
    saved = json.loads((resumed.path / "config.json").read_text())
    assert (saved["domain"], saved["head"], saved["train"]["max_steps"]) == ("chars", "categorical", 12)
    checkpoint = torch.load(resumed.checkpoint, weights_only=False)
    assert set(checkpoint) == set(CHECKPOINT_KEYS) and checkpoint["step"] == 12
    validated = {step: float(row["val_loss"]) for step, row in b.items() if row["val_loss"]}
    best = torch.load(resumed.best, weights_only=False)
    assert best["step"] == min(validated, key=validated.get)
    assert best["val_nats"] == pytest.approx(min(validated.values()), abs=1e-6)
    summary = json.loads((resumed.path / "summary.json").read_text())
    assert (summary["stop_reason"], summary["step"]) == ("finished", 12)
    with Image.open(resumed.path / "loss.png") as plot:
        assert plot.format == "PNG" and plot.size == (770, 440)  # 7 x 4 inches at 110 dpi
    assert not list(resumed.path.glob("*.tmp"))


def straight_and_resumed(corpus, folder, settings: TrainConfig, stop_after: int):
    """The same run straight through and paused after ``stop_after`` steps, then resumed."""
    runs = []
    for name, pause in (("straight", None), ("halves", stop_after)):
        runs.append(
            train(
                corpus,
                folder / name,
                domain_name="chars",
                model_overrides=MODEL,
                train_config=settings,
                stop_after=pause,
                quiet=True,
            )
        )
    return runs[0], train(None, folder / "halves", resume=True, quiet=True)


def test_weight_averaging_resumes_exactly_and_is_what_validates(tiny_corpus, tmp_path):
    """--ema: the average is validated, saved as best.pt and carried by checkpoints, so a
    paused and resumed run ends with the same average as a straight one."""
    straight, resumed = straight_and_resumed(tiny_corpus, tmp_path, config(ema=0.9), stop_after=6)
    a = torch.load(straight.checkpoint, weights_only=False)
    b = torch.load(resumed.checkpoint, weights_only=False)
    assert all(torch.allclose(x, y, atol=1e-6) for x, y in zip(a["averaged_weights"], b["averaged_weights"]))
    best = torch.load(straight.best, weights_only=False)
    assert best["step"] == 12  # still improving at the last evaluation: best.pt is the final average
    saved = list(best["model_state"].values())
    assert len(saved) == len(a["averaged_weights"])
    assert all(torch.equal(x, y) for x, y in zip(saved, a["averaged_weights"]))
    assert any(not torch.equal(x, y) for x, y in zip(saved, a["model_state"].values()))  # not the live weights
    assert json.loads((straight.path / "config.json").read_text())["train"]["ema"] == 0.9
    plain = train(
        tiny_corpus, tmp_path / "plain", domain_name="chars", model_overrides=MODEL, train_config=config(), quiet=True
    )
    assert "averaged_weights" not in torch.load(plain.checkpoint, weights_only=False)


def test_ema_warmup_sets_how_fast_the_average_lengthens(tiny_corpus, tmp_path):
    """--ema-warmup W: the decay at step s is min(DECAY, (1 + s) / (W + s)); a resumed run
    keeps its W, so it ends with the same average as a straight one."""
    model = torch.nn.Linear(1, 1, bias=False)
    for warmup, step, decay in [(10.0, 5, 6 / 15), (10.0, 20, 21 / 30), (3.0, 10, 11 / 13), (3.0, 20, 0.9)]:
        with torch.no_grad():
            model.weight.fill_(0.0)
        average = AveragedWeights(model, decay=0.9, warmup=warmup)
        with torch.no_grad():
            model.weight.fill_(1.0)
        average.update(step)
        assert average.average[0].item() == pytest.approx(1.0 - decay)  # lerp from 0 toward 1
    short = dict(ema=0.999, ema_warmup=2.0)
    straight, resumed = straight_and_resumed(tiny_corpus, tmp_path, config(**short), stop_after=6)
    a = torch.load(straight.checkpoint, weights_only=False)["averaged_weights"]
    b = torch.load(resumed.checkpoint, weights_only=False)["averaged_weights"]
    assert all(torch.allclose(x, y, atol=1e-6) for x, y in zip(a, b))
    assert json.loads((straight.path / "config.json").read_text())["train"]["ema_warmup"] == 2.0
    default = train(
        tiny_corpus,
        tmp_path / "default",
        domain_name="chars",
        model_overrides=MODEL,
        train_config=config(ema=0.999),
        quiet=True,
    )
    c = torch.load(default.checkpoint, weights_only=False)["averaged_weights"]
    assert any(not torch.allclose(x, y, atol=1e-6) for x, y in zip(a, c))  # W changed the average


def test_a_time_limit_scores_the_last_weights(tiny_corpus, tmp_path):
    """A --max-minutes stop between two evaluations scores the weights it stops with
    (they have had the lowest learning rates) and keeps them when they are the best."""
    run = train(
        tiny_corpus,
        tmp_path / "timed",
        domain_name="chars",
        model_overrides=MODEL,
        train_config=config(max_steps=50, eval_every=100, max_minutes=1e-6),
        quiet=True,
    )
    summary = json.loads((run.path / "summary.json").read_text())
    assert summary["stop_reason"].startswith("time limit") and summary["step"] == 1
    scored = rows(run)[1]
    assert scored["val_loss"]
    best = torch.load(run.best, weights_only=False)
    assert best["step"] == 1 and best["val_nats"] == pytest.approx(float(scored["val_loss"]), abs=1e-6)
    assert summary["best_val_nats"] == pytest.approx(float(scored["val_loss"]), abs=1e-6)
    # resumed with no time left: the last weights are scored again, and nothing trains
    again = train(None, run.path, resume=True, quiet=True)
    summary = json.loads((again.path / "summary.json").read_text())
    assert "no time left" in summary["stop_reason"] and summary["step"] == 1
    assert torch.load(again.checkpoint, weights_only=False)["step"] == 1


@pytest.mark.parametrize("cell", ["gru", "rnn"])
def test_other_cells_train(tiny_corpus, tmp_path, cell):
    run = train(
        tiny_corpus,
        tmp_path / cell,
        domain_name="chars",
        model_overrides={**MODEL, "cell": cell},
        train_config=config(max_steps=4, learning_rate=1e-2),
        quiet=True,
    )
    checkpoint = torch.load(run.checkpoint, weights_only=False)
    gates = {"gru": 3, "rnn": 1}[cell]
    weights = checkpoint["model_state"]
    assert weights["rnn.weight_ih_l0"].shape == (gates * 24, 8)
    assert weights["rnn.weight_hh_l1"].shape == (gates * 24, 24)
    assert len(checkpoint["carried_state"]) == 1  # h alone: no LSTM cell state
    # four steps at lr 1e-2 already beat a uniform guess over the vocabulary
    assert 0 < float(rows(run)[4]["val_loss"]) < math.log(checkpoint["model"]["vocab_size"]) - 0.1


def test_refuses_to_overwrite_a_run(tiny_corpus, tmp_path):
    train(
        tiny_corpus,
        tmp_path / "r",
        domain_name="chars",
        model_overrides=MODEL,
        train_config=config(max_steps=2),
        quiet=True,
    )
    with pytest.raises(StudioError, match="--resume"):
        train(
            tiny_corpus,
            tmp_path / "r",
            domain_name="chars",
            model_overrides=MODEL,
            train_config=config(max_steps=2),
            quiet=True,
        )


def test_forget_gate_bias_is_one():
    model = RecurrentLM(ModelConfig(vocab_size=10, hidden_size=8, layers=2, embedding_size=4))
    for layer in range(2):
        total = getattr(model.rnn, f"bias_ih_l{layer}") + getattr(model.rnn, f"bias_hh_l{layer}")
        assert torch.allclose(total[8:16], torch.ones(8))


def test_weight_tying_shares_parameters():
    model = RecurrentLM(ModelConfig(vocab_size=10, hidden_size=8, embedding_size=8, tie_weights=True))
    assert model.head.weight is model.embedding.weight


def test_schedule_warms_up_then_decays():
    values = [lr_factor(s, 10, 100, 0.1) for s in range(100)]
    assert values[0] < values[9] == 1.0
    assert values[-1] == pytest.approx(0.1, abs=1e-3)
    assert all(a >= b for a, b in zip(values[10:], values[11:]))
    assert lr_factor(99, 10, 100, 0.02) == pytest.approx(0.02, abs=1e-3)  # --min-lr-ratio


@pytest.mark.parametrize(
    "bad",
    [
        dict(batch_size=0),
        dict(clip=0),
        dict(val_fraction=0.9),
        dict(max_steps=0),
        dict(seq_len=1),
        dict(min_lr_ratio=-0.1),
        dict(min_lr_ratio=1.5),
        dict(ema=1.0),
        dict(ema=-0.5),
        dict(ema_warmup=1.0),
    ],
)
def test_bad_train_settings(bad):
    with pytest.raises(StudioError):
        config(**bad)


def test_bad_model_settings():
    with pytest.raises(StudioError, match="--cell"):
        ModelConfig(vocab_size=10, cell="transformer")
    with pytest.raises(StudioError, match="--dropout"):
        ModelConfig(vocab_size=10, dropout=1.5)


def test_resume_device_is_the_runs_own_unless_given(tiny_corpus, tmp_path):
    """A run trained on a GPU continues on the CPU when --device cpu is given; without
    --device it keeps the run's device (here: a CUDA run on a machine without one)."""
    run = train(
        tiny_corpus,
        tmp_path / "r",
        domain_name="chars",
        model_overrides=MODEL,
        train_config=config(max_steps=4),
        stop_after=2,
        quiet=True,
    )
    saved = json.loads((run.path / "config.json").read_text())
    assert saved["train"]["device"] == "cpu"
    saved["train"]["device"] = "cuda"  # as if it had been started on a GPU
    (run.path / "config.json").write_text(json.dumps(saved))
    if not torch.cuda.is_available():
        with pytest.raises(StudioError, match="CUDA"):
            train(None, run.path, resume=True, train_config=TrainConfig(device=None), quiet=True)
    resumed = train(None, run.path, resume=True, train_config=TrainConfig(device="cpu"), quiet=True)
    assert torch.load(resumed.checkpoint, weights_only=False)["step"] == 4
