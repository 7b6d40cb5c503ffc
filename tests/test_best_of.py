"""`--best-of K`: each sample is the one of K drawn for it that the model finds likeliest
(mean log-probability per token), the same through the API, the CLI and the web's
Compose endpoint, and bounds-checked."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from studio.api import sample, sample_iter
from studio.cli import app
from studio.errors import StudioError
from studio.generate import mean_logprob
from studio.heads import Finished, Token
from studio.limits import SampleLimits
from studio.sampling.settings import SampleSettings

ROOT = Path(__file__).resolve().parent.parent
SONGS = ROOT / "export" / "songs"


def test_each_sample_is_the_likeliest_of_its_own_candidates(tiny_bundle):
    """Sample i of ``--num 2 --best-of 3`` is the candidate with the highest mean
    log-probability among rows 3i..3i+2 of the plain batch of 6, whatever ``num`` is."""
    common = dict(prime="W", length=30, seed=5, temperature=1.2)
    plain = sample(str(tiny_bundle), num=6, **common)
    chosen = sample(str(tiny_bundle), num=2, best_of=3, **common)
    assert len(chosen) == 2
    for index, result in enumerate(chosen):
        group = plain[3 * index : 3 * index + 3]
        means = [sample.logprob / len(sample.tokens) for sample in group]
        best = int(np.argmax(means))
        assert result.tokens == group[best].tokens and result.text == group[best].text
        assert result.extra["candidate"] == best + 1 and result.extra["best_of"] == 3
        assert math.isclose(result.extra["mean_logprob"], max(means), abs_tol=1e-6)
        assert result.settings.best_of == 3 and result.settings.num == 2
    assert len({tuple(s.tokens) for s in plain[:3]}) > 1  # the candidates differ: the choice is a real one
    [first] = sample(str(tiny_bundle), num=1, best_of=3, **common)
    assert first.tokens == chosen[0].tokens  # sample 0 does not depend on --num


def test_the_chosen_sample_streams_once_chosen(tiny_bundle):
    events = list(sample_iter(str(tiny_bundle), prime="W", length=25, seed=2, num=2, best_of=4))
    finished = events[-1]
    assert isinstance(finished, Finished)
    for row, result in enumerate(finished.samples):
        assert [e.token_id for e in events if isinstance(e, Token) and e.row == row] == result.tokens


def test_the_mean_ignores_length_and_ranks_impossible_samples_last(tiny_bundle):
    [one] = sample(str(tiny_bundle), prime="W", length=10, seed=1)
    assert math.isclose(mean_logprob(one), one.logprob / len(one.tokens))
    assert mean_logprob(type(one)("", [], 0.0, one.settings)) == -math.inf
    assert mean_logprob(type(one)("x", [1], float("nan"), one.settings)) == -math.inf


def test_the_cli_recipe_reproduces_the_choice(tiny_bundle, studio_env, monkeypatch):
    for name, value in studio_env.items():
        monkeypatch.setenv(name, value)
    runner = CliRunner()
    args = ["sample", "--model", "tiny", "--prime", "W", "--length", "30", "--seed", "4", "--best-of", "5", "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    line = json.loads(result.output.strip().splitlines()[-1])
    assert "--best-of 5" in line["command"] and line["best_of"] == 5
    [api] = sample("tiny", prime="W", length=30, seed=4, best_of=5)
    assert line["tokens"] == api.tokens


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(best_of=0), "best-of must be 1 (off) to 64"),
        (dict(best_of=65), "best-of must be 1 (off) to 64"),
        (dict(best_of=4, num=2000), "--num times --best-of must be at most 4,096 rows"),
        (dict(best_of=2, greedy=True), "--best-of draws several samples"),
        (dict(best_of=2, temperature=0.0), "--best-of draws several samples"),
        (dict(best_of=2, num_beams=4), "--best-of draws several samples"),
    ],
)
def test_out_of_range_best_of_is_a_one_line_error(options, message):
    with pytest.raises(StudioError, match=re.escape(message)):
        SampleSettings(**options)


def test_the_cli_refuses_a_bad_best_of_in_one_line(tiny_bundle, studio_env, monkeypatch):
    for name, value in studio_env.items():
        monkeypatch.setenv(name, value)
    result = CliRunner().invoke(app, ["sample", "--model", "tiny", "--best-of", "0"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output.strip() == "error: best-of must be 1 (off) to 64 candidates (got 0)"


def test_the_web_caps_candidates():
    limits = SampleLimits(max_length=2000, max_beams=8, max_bars=64, max_text=200, max_best_of=16)
    from studio.domains.chars import CharsDomain

    domain = CharsDomain(["\x00", "a", "b"])
    limits.check(SampleSettings(best_of=16), domain)
    with pytest.raises(StudioError, match="candidates .best of. must be 1 to 16 here"):
        limits.check(SampleSettings(best_of=17), domain)


@pytest.mark.skipif(not (SONGS / "card.json").is_file(), reason="needs export/songs")
def test_a_music_piece_keeps_its_bars_and_the_eval_records_the_setting():
    [piece] = sample(str(SONGS), seed=1, bars=4, best_of=3)
    assert piece.extra["best_of"] == 3 and 1 <= piece.extra["candidate"] <= 3
    assert len(piece.output.piece.bar_lines()) >= 5 and piece.output.piece.notes
    from studio.api import evaluate

    report = evaluate(SONGS, ROOT / "corpora" / "songs" / "bach", split="val", samples=3, bars=2, best_of=2)
    assert report["best_of"] == 2 and report["samples"] == 3
    with pytest.raises(StudioError, match="--best-of must be 1"):
        evaluate(SONGS, ROOT / "corpora" / "songs" / "bach", samples=3, bars=2, best_of=0)


def test_the_browser_sampler_leaves_candidates_to_the_server(tiny_bundle):
    from web.browser import browser_plan

    with pytest.raises(StudioError, match="choosing among candidates runs on the server"):
        browser_plan(SampleSettings(model=str(tiny_bundle), best_of=2), None)
