"""--precision: the autocast plan per device, the check of the value, and a bf16 CPU run
that trains, records its precision and exports an fp32 graph with parity."""

import math

import pytest
import torch

from studio.bundle import Bundle
from studio.config import TrainConfig
from studio.errors import StudioError
from studio.export import export_run
from studio.train import autocast_plan, train


def test_plan_per_device_and_precision():
    cpu = torch.device("cpu")
    assert autocast_plan(cpu, "auto", tell=False) == (None, None)
    assert autocast_plan(cpu, "fp32", tell=False) == (None, None)
    assert autocast_plan(cpu, "bf16", tell=False) == (torch.bfloat16, None)


def test_unknown_precision_is_refused():
    with pytest.raises(StudioError, match="--precision must be one of auto | fp32 | bf16"):
        TrainConfig(precision="fp16")


def test_bf16_run_trains_and_exports(tiny_corpus, tmp_path):
    run = train(
        tiny_corpus,
        tmp_path / "run",
        domain_name="chars",
        model_overrides=dict(hidden_size=32, layers=1, embedding_size=16, dropout=0.0),
        train_config=TrainConfig(batch_size=8, seq_len=32, max_steps=12, eval_every=6, seed=2, precision="bf16"),
        quiet=True,
    )
    assert run.read_config()["train"]["precision"] == "bf16"
    card = Bundle.load(export_run(run.path, tmp_path / "bundle", quiet=True).parent).card
    assert card["train"]["precision"] == "bf16"
    assert card["parity"]["max_abs_diff"] < 1e-4  # weights stay fp32: the graph is exact
    assert math.isfinite(card["metrics"]["val_nats"]) and card["metrics"]["val_nats"] < math.log(65)
