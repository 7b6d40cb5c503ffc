"""`--pitch-temp T`: the choice among note-ons alone sharpened (T < 1) or flattened, their
share of the probability and every other event left as the model gave them; and
`--lockstep`: no note starts while an earlier one sounds.  The same through the API, the
CLI and the eval, bounds-checked, and refused where nothing has a pitch."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from studio.api import evaluate, load, sample
from studio.cli import app
from studio.errors import StudioError
from studio.music.events import PITCH_COUNT
from studio.music.shaping import PitchTemperature
from studio.sampling.settings import SampleSettings, command_line

ROOT = Path(__file__).resolve().parent.parent
FOLK = ROOT / "export" / "folk"
needs_folk = pytest.mark.skipif(not (FOLK / "card.json").is_file(), reason="needs export/folk")
START = 5  # where the note-ons start in the made-up vocabularies below


def _logsumexp(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(finite.max() + np.log(np.exp(finite - finite.max()).sum()))


def test_the_note_ons_keep_their_share_and_sharpen_within_it():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, size=(3, START + PITCH_COUNT + 7))
    logits[1, START + 10 : START + 90] = -np.inf  # the grammar or the key banned most notes
    rule = PitchTemperature(START, 0.5)
    out = rule(None, logits)
    notes = slice(START, START + PITCH_COUNT)
    others = np.r_[0:START, START + PITCH_COUNT : logits.shape[1]]
    np.testing.assert_array_equal(out[:, others], logits[:, others])
    for row in range(3):
        assert _logsumexp(out[row, notes]) == pytest.approx(_logsumexp(logits[row, notes]), abs=1e-9)
        allowed = np.isfinite(logits[row, notes])
        np.testing.assert_array_equal(np.isfinite(out[row, notes]), allowed)
        # within the note-ons, p ** 2: log-probability differences double
        before, after = logits[row, notes][allowed], out[row, notes][allowed]
        np.testing.assert_allclose(after - after.max(), 2 * (before - before.max()), atol=1e-9)
    # the likeliest note gains, the unlikeliest loses
    row = out[0, notes]
    assert row.max() > logits[0, notes].max() and row.min() < logits[0, notes].min()


def test_one_is_no_change_and_a_row_without_notes_is_left_alone():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(2, START + PITCH_COUNT))
    np.testing.assert_allclose(PitchTemperature(START, 1.0)(None, logits), logits, atol=1e-12)
    logits[1, START:] = -np.inf  # time must move: no note may start
    out = PitchTemperature(START, 0.7)(None, logits)
    np.testing.assert_array_equal(out[1], logits[1])
    assert out.dtype == np.float64


@pytest.mark.parametrize("value", [0.0, -0.5, 10.5, float("nan"), float("inf")])
def test_out_of_range_pitch_temperatures_are_one_line_errors(value):
    with pytest.raises(StudioError, match=re.escape("pitch") + ".*(above 0 and at most 10|finite)"):
        SampleSettings(pitch_temperature=value)


def test_text_models_refuse_it(tiny_bundle):
    with pytest.raises(StudioError, match="--pitch-temp shapes the notes of music models"):
        sample(str(tiny_bundle), prime="W", length=5, pitch_temperature=0.8)
    with pytest.raises(StudioError, match="--lockstep shapes the notes of music models"):
        sample(str(tiny_bundle), prime="W", length=5, lockstep=True)


def test_the_recipe_spells_it():
    settings = SampleSettings(model="folk", bars=8, pitch_temperature=0.8, seed=3)
    assert "--pitch-temp 0.8" in command_line(settings)
    assert "--pitch-temp" not in command_line(settings.with_(pitch_temperature=1.0))
    assert "lockstep" not in command_line(settings)
    assert command_line(settings.with_(lockstep=True)).endswith("--lockstep")


@needs_folk
def test_the_music_domain_applies_it_only_when_sampling():
    domain = load(FOLK).domain
    kinds = lambda settings: [type(rule).__name__ for rule in domain.constraints(settings)]  # noqa: E731
    assert "PitchTemperature" in kinds(SampleSettings(pitch_temperature=0.8))
    assert "PitchTemperature" in kinds(SampleSettings(pitch_temperature=0.8, num_beams=2, stochastic_beams=True))
    assert "PitchTemperature" not in kinds(SampleSettings(pitch_temperature=0.8, greedy=True))
    assert "PitchTemperature" not in kinds(SampleSettings(pitch_temperature=0.8, num_beams=2))
    assert "PitchTemperature" not in kinds(SampleSettings())


@needs_folk
def test_lockstep_is_asked_for_and_then_no_note_starts_over_a_held_one():
    from studio.music.grammar import NoteGrammar

    domain = load(FOLK).domain
    assert domain.lockstep  # O'Neill's tunes are: measured, recorded in the card

    def grammar(settings):
        return next(rule for rule in domain.constraints(settings) if isinstance(rule, NoteGrammar))

    assert not grammar(SampleSettings()).lockstep and grammar(SampleSettings(lockstep=True)).lockstep

    def overlaps(samples):
        return [
            sum(o.start < n.start < o.end for n in s.output.piece.notes for o in s.output.piece.notes) for s in samples
        ]

    # a forgotten note-off is rare and comes in runs (one tune may drone on): two batches
    plain = [overlaps(sample(str(FOLK), bars=8, num=8, seed=seed, precision="fp32")) for seed in (5, 6)]
    ruled = [overlaps(sample(str(FOLK), bars=8, num=8, seed=seed, precision="fp32", lockstep=True)) for seed in (5, 6)]
    assert sum(map(sum, plain)) > 0  # the model alone leaves some note-offs out
    assert sum(map(sum, ruled)) == 0


@needs_folk
def test_a_cool_pitch_temperature_narrows_the_notes_played():
    common = dict(bars=4, num=24, seed=7, precision="fp32")
    plain = sample(str(FOLK), **common)
    cool = sample(str(FOLK), pitch_temperature=0.3, **common)
    again = sample(str(FOLK), pitch_temperature=0.3, **common)
    assert [s.tokens for s in cool] == [s.tokens for s in again]  # seeded
    assert [s.tokens for s in cool] != [s.tokens for s in plain]

    def pitch_entropy(samples) -> float:  # nats, over every note of the batch
        _, counts = np.unique([n.pitch for s in samples for n in s.output.piece.notes], return_counts=True)
        shares = counts / counts.sum()
        return float(-(shares * np.log(shares)).sum())

    assert pitch_entropy(cool) < pitch_entropy(plain) - 0.05  # 2.35 against 2.46 here
    for piece in cool:
        assert len(piece.output.piece.bar_lines()) >= 5 and piece.output.piece.notes


@needs_folk
def test_the_cli_recipe_and_the_api_agree(studio_env, monkeypatch, tmp_path):
    for name, value in studio_env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    args = ["sample", "--model", str(FOLK), "--bars", "3", "--seed", "4", "--pitch-temp", "0.7", "--lockstep"]
    result = CliRunner().invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    line = json.loads(result.output.strip().splitlines()[-1])
    assert "--pitch-temp 0.7" in line["command"] and "--lockstep" in line["command"]
    [api] = sample(str(FOLK), bars=3, seed=4, pitch_temperature=0.7, lockstep=True)
    assert line["tokens"] == api.tokens
    bad = CliRunner().invoke(app, ["sample", "--model", str(FOLK), "--bars", "2", "--pitch-temp", "0"])
    assert bad.exit_code == 1 and "Traceback" not in bad.output
    assert bad.output.strip() == "error: pitch temperature must be above 0 and at most 10; 1 is off (got 0.0)"


@needs_folk
def test_the_eval_checks_it_first_and_records_it():
    corpus = ROOT / "corpora" / "songs" / "oneills1850"
    with pytest.raises(StudioError, match="pitch temperature must be above 0"):
        evaluate(FOLK, corpus, samples=3, bars=2, pitch_temperature=0)
    with pytest.raises(StudioError, match="top-p must be in"):
        evaluate(FOLK, corpus, samples=3, bars=2, top_p=1.5)
    one = corpus / "0000-the-supple-dancer.mid"
    report = evaluate(FOLK, one, samples=3, bars=2, pitch_temperature=0.8, top_p=0.95)
    assert report["pitch_temperature"] == 0.8 and report["top_p"] == 0.95 and report["samples"] == 3
    assert "lockstep" not in report
    assert evaluate(FOLK, one, samples=3, bars=2, lockstep=True)["lockstep"] is True
