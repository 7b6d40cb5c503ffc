"""Scheduled sampling: the schedule, the input mixing, P = 0 equals plain training, exact
resume and the card."""

import csv
import json

import pytest
import torch

from studio.config import ModelConfig, TrainConfig
from studio.errors import StudioError
from studio.export import export_run
from studio.models.categorical import scheduled_inputs
from studio.models.recurrent_lm import RecurrentLM
from studio.train import train

MODEL = dict(hidden_size=24, layers=1, embedding_size=8, dropout=0.0)
SETTINGS = dict(batch_size=4, seq_len=16, max_steps=8, eval_every=4, seed=3, warmup_steps=2, learning_rate=1e-2)


def losses(run) -> dict[int, float]:
    with open(run.path / "metrics.csv") as handle:
        return {int(r["step"]): float(r["train_loss"]) for r in csv.DictReader(handle)}


def test_schedule_rises_linearly_to_p():
    config = TrainConfig(scheduled_sampling=0.4)
    assert [config.sampling_probability(s, 100) for s in (0, 50, 100, 150)] == [0.0, 0.2, 0.4, 0.4]
    with pytest.raises(StudioError, match="--scheduled-sampling"):
        TrainConfig(scheduled_sampling=1.5)


def test_inputs_are_replaced_by_the_models_own_draws():
    torch.manual_seed(0)
    model = RecurrentLM(ModelConfig(vocab_size=7, **MODEL))
    with torch.no_grad():  # the model is sure the next token is 5
        model.head.bias.copy_(torch.tensor([-50.0] * 5 + [50.0, -50.0]))
    inputs = torch.randint(0, 5, (3, 12))
    state = model.init_state(3)
    assert torch.equal(scheduled_inputs(model, inputs, state, 0.0), inputs)
    always = scheduled_inputs(model, inputs, state, 1.0)
    assert torch.equal(always[:, 0], inputs[:, 0]) and (always[:, 1:] == 5).all()
    half = scheduled_inputs(model, inputs, state, 0.5)
    replaced = (half[:, 1:] == 5).float().mean().item()
    assert 0.2 < replaced < 0.8


def test_p_zero_equals_plain_training_and_p_changes_it(tiny_corpus, tmp_path):
    def run(name, **changes):
        return train(
            tiny_corpus,
            tmp_path / name,
            domain_name="chars",
            model_overrides=MODEL,
            train_config=TrainConfig(**SETTINGS, **changes),
            quiet=True,
        )

    plain, zero, sampled = run("plain"), run("zero", scheduled_sampling=0.0), run("sampled", scheduled_sampling=0.9)
    assert losses(plain) == losses(zero)
    assert losses(sampled)[1] == losses(plain)[1]  # probability 0 at step 0
    assert losses(sampled)[8] != losses(plain)[8]


def test_resumes_exactly_and_the_card_records_it(tiny_corpus, tmp_path):
    config = TrainConfig(**SETTINGS, scheduled_sampling=0.5)
    straight = train(
        tiny_corpus, tmp_path / "straight", domain_name="chars", model_overrides=MODEL, train_config=config, quiet=True
    )
    train(
        tiny_corpus,
        tmp_path / "halves",
        domain_name="chars",
        model_overrides=MODEL,
        train_config=config,
        stop_after=3,
        quiet=True,
    )
    resumed = train(None, tmp_path / "halves", resume=True, quiet=True)
    a, b = losses(straight), losses(resumed)
    assert set(a) == set(b) and all(abs(a[s] - b[s]) < 1e-6 for s in a)
    card = json.loads(export_run(straight.path, tmp_path / "export" / "ss", quiet=True).read_text())
    assert card["train"]["scheduled_sampling"] == 0.5
