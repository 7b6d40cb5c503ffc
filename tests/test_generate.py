"""Generation on a real (tiny) bundle: beams vs greedy, stochastic beams, streaming,
one-batch sampling, and the runtime's fast path against plain ``session.run``."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from studio.api import load, sample, sample_iter
from studio.bundle import Bundle
from studio.cli import app
from studio.generate import Generation, TokenRows
from studio.heads import Finished, Started, Token
from studio.runtime import Runtime
from studio.sampling.rules import NOISE_BLOCK
from studio.sampling.settings import SampleSettings

runner = CliRunner()


def cli_json(*args) -> list[dict]:
    result = runner.invoke(app, ["sample", *args, "--json"])
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.strip().splitlines()]


@pytest.mark.parametrize("prime", ["ROMEO:", "First Citizen:\n", "the "])
def test_beam_logprob_is_at_least_greedy(tiny_bundle, prime):
    common = ["--model", str(tiny_bundle), "--prime", prime, "--length", "30"]
    [greedy] = cli_json(*common, "--greedy")
    [beam] = cli_json(*common, "--beam", "4")
    [flat] = cli_json(*common, "--beam", "4", "--length-penalty", "0")
    assert beam["logprob"] >= greedy["logprob"] - 1e-6
    assert flat["logprob"] >= greedy["logprob"] - 1e-6
    assert beam["text"].startswith(prime)


def test_beam_num_returns_the_best_distinct(tiny_bundle):
    results = sample(str(tiny_bundle), prime="MEN", length=20, num_beams=4, num=3)
    assert len(results) == 3 and len({tuple(r.tokens) for r in results}) == 3
    scores = [r.logprob / max(1, len(r.tokens)) for r in results]
    assert scores == sorted(scores, reverse=True)  # ranked by logprob / length (no rules here)


def test_stochastic_beams_distinct_and_seeded(tiny_bundle):
    options = ["--model", str(tiny_bundle), "--prime", "A", "--length", "25", "--beam", "4", "--sample", "--num", "4"]
    first = cli_json(*options, "--seed", "1")
    again = cli_json(*options, "--seed", "1")
    other = cli_json(*options, "--seed", "2")
    assert len(first) == 4 and len({item["text"] for item in first}) == 4
    assert [item["text"] for item in first] == [item["text"] for item in again]
    assert [item["text"] for item in first] != [item["text"] for item in other]


def test_magenta_beams_through_the_api(tiny_bundle):
    options = dict(
        prime="A", length=24, num_beams=2, num=2, branch_factor=3, steps_per_iteration=4, seed=5, temperature=0.9
    )
    first = sample(str(tiny_bundle), **options)
    assert len(first) == 2 and first[0].text != first[1].text
    assert [r.tokens for r in first] == [r.tokens for r in sample(str(tiny_bundle), **options)]


def test_sample_and_branch_factor_together_is_a_one_line_error(tiny_bundle):
    result = runner.invoke(
        app, ["sample", "--model", str(tiny_bundle), "--beam", "2", "--sample", "--branch-factor", "2", "--length", "5"]
    )
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "alternatives" in lines[0] and "Traceback" not in result.output


def test_beam_streams_the_committed_prefix(tiny_bundle):
    loaded = load(str(tiny_bundle))
    settings = SampleSettings(model=str(tiny_bundle), prime="The ", length=60, num_beams=3)
    generation = Generation(loaded.runtime, loaded.domain, settings)
    streamed, finished_when_first_token_came = [], None
    for row, token in generation:
        if finished_when_first_token_came is None:
            finished_when_first_token_came = bool(generation.results)
        assert row == 0
        streamed.append(token)
    assert finished_when_first_token_came is False  # tokens came before the search ended
    assert streamed == generation.results[0].tokens


def test_sampling_streams_every_row_and_rows_do_not_depend_on_num(tiny_bundle):
    events = list(sample_iter(str(tiny_bundle), prime="W", length=40, seed=3, num=3, temperature=0.8))
    assert isinstance(events[0], Started) and events[0].shown_prime == "W"
    assert isinstance(events[-1], Finished) and all(isinstance(e, Token) for e in events[1:-1])
    results = events[-1].samples
    for row in range(3):
        tokens = [e for e in events[1:-1] if e.row == row]
        assert [e.token_id for e in tokens] == results[row].tokens
        assert "".join(e.text for e in tokens) == results[row].text[len("W") :]
    [alone] = sample(str(tiny_bundle), prime="W", length=40, seed=3, num=1, temperature=0.8)
    assert alone.tokens == results[0].tokens


@pytest.mark.parametrize("precision, temperature", [("fp32", 1.0), ("int8", 1.0), ("int8", 0.8)])
def test_the_single_row_loop_draws_the_engines_numbers(tiny_bundle, precision, temperature, monkeypatch):
    """One row without rules steps in ``TokenRows.stream_alone``, the draw inside the
    step graph and the scores a block at a time: every token and the log-probability
    must be the engine's, which draws the same row of a batch with numpy
    (``gumbel_max``, ``plain_scores``).  Rows run past a block of Gumbels
    (``NOISE_BLOCK``) and some end early on the separator."""
    settings = dict(prime="W", length=300, temperature=temperature, precision=precision)
    seeds = range(12)
    alone = [sample(str(tiny_bundle), seed=seed, **settings)[0] for seed in seeds]
    in_batches = [sample(str(tiny_bundle), seed=seed, num=3, **settings)[0] for seed in seeds]
    monkeypatch.setattr(TokenRows, "alone", property(lambda self: False))
    through_engine = [sample(str(tiny_bundle), seed=seed, **settings)[0] for seed in seeds]
    for mine, batched, engine in zip(alone, in_batches, through_engine):
        assert mine.tokens == batched.tokens == engine.tokens
        assert mine.logprob == batched.logprob == engine.logprob
    lengths = [len(s.tokens) for s in alone]
    assert max(lengths) == 300 and sum(length > 2 * NOISE_BLOCK for length in lengths) >= 3, lengths
    assert len({tuple(s.tokens) for s in alone}) == len(seeds)  # the seeds matter


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_runtime_fast_path_is_byte_identical(tiny_bundle, precision, monkeypatch):
    monkeypatch.setattr(Runtime, "use_binding", True)
    runtime = Runtime(Bundle.load(tiny_bundle), precision=precision, threads=1)
    vocab = runtime.bundle.card["model"]["vocab_size"]
    rng = np.random.default_rng(0)
    for batch, time in ((1, 1), (3, 1), (2, 40)):
        calls = [rng.integers(0, vocab, (batch, time)) for _ in range(4)]
        fast, state = [], runtime.init_state(batch)
        for tokens in calls:
            logits, state = runtime.logits(tokens, state)
            fast.append((logits, state))
        monkeypatch.setattr(Runtime, "use_binding", False)
        state = runtime.init_state(batch)  # the plain session.run path
        for tokens, (logits, fast_state) in zip(calls, fast):
            expected, state = runtime.logits(tokens, state)
            assert logits.tobytes() == expected.tobytes()
            assert all(fast_state[k].tobytes() == state[k].tobytes() for k in state)
        monkeypatch.setattr(Runtime, "use_binding", True)


@pytest.mark.parametrize("use_binding", [False, True])
def test_runtime_returns_fresh_arrays(tiny_bundle, use_binding, monkeypatch):
    """Stepping twice from one state (as a branching search does) gives the same answer."""
    monkeypatch.setattr(Runtime, "use_binding", use_binding)
    runtime = Runtime(Bundle.load(tiny_bundle), precision="fp32")
    _, state = runtime.logits(np.array([[1, 2, 3]]), runtime.init_state(1))
    first_logits, first_state = runtime.logits(np.array([[4]]), state)
    kept = {k: v.copy() for k, v in first_state.items()}
    runtime.logits(np.array([[5]]), state)
    second_logits, _ = runtime.logits(np.array([[4]]), state)
    assert first_logits.tobytes() == second_logits.tobytes()
    assert all(np.array_equal(kept[k], first_state[k]) for k in kept)


def test_a_prime_starts_on_a_fresh_line():
    """A hidden newline goes before a prime (unless it begins with one); the output
    shows the prime exactly as given."""
    from studio.domains.base import Document
    from studio.domains.chars import CharsDomain
    from studio.domains.words import WordsDomain

    chars = CharsDomain.from_documents([Document("a", "AB\nC")])
    newline = chars.encode("\n")[0]
    for domain in (chars, WordsDomain.from_documents([Document("a", "to be\nor not")])):
        settings = SampleSettings(prime="AB" if domain is chars else "to be")
        ids = domain.prime_ids(settings)
        assert ids[0] == domain.encode("\n")[0] and domain.hidden_prefix(ids, settings) == 1
        assert domain.decode(ids[1:]) == settings.prime
    led = SampleSettings(prime="\nAB")
    ids = chars.prime_ids(led)
    assert ids == chars.encode("\nAB") and chars.hidden_prefix(ids, led) == 0
    no_prime = SampleSettings()  # a document's start (see tests/test_text_priming.py)
    assert chars.prime_ids(no_prime) == [newline, newline, chars.separator_id]
    assert chars.hidden_prefix(chars.prime_ids(no_prime), no_prime) == 3
    # a words prime opening with a blank line ("\n\n" is its own token) still gets the
    # hidden newline, and shows exactly as typed
    words = WordsDomain.from_documents([Document("a", "to be\nor not\n\nto")])
    blank = SampleSettings(prime="\n\nto be")
    ids = words.prime_ids(blank)
    hidden = words.hidden_prefix(ids, blank)
    assert hidden == 1 and words.decode(ids[hidden:]) == blank.prime
    flat = CharsDomain.from_documents([Document("a", "ABC")])  # no newline in the vocabulary
    assert flat.prime_ids(SampleSettings(prime="AB")) == flat.encode("AB")
    assert newline != chars.separator_id


def test_direct_call_is_session_run_without_the_wrapper(tiny_bundle):
    """The sampling loop's call (the C binding's run on a CPU session) gives byte-identical
    outputs to ``session.run``; a session without the binding keeps its own run."""
    from studio.runtime import direct_call

    runtime = Runtime(Bundle.load(tiny_bundle), precision="fp32")
    assert runtime.call is not runtime.session.run  # the CPU session has the binding
    feeds = {"tokens": np.array([[3]], dtype=np.int64), **runtime.init_state(1)}
    for _ in range(3):
        direct = runtime.call(runtime._fetch, feeds)
        plain = runtime.session.run(runtime._fetch, feeds)
        assert [a.tobytes() for a in direct] == [b.tobytes() for b in plain]
        feeds.update(zip(runtime.state_names, direct[1:]))

    class Wrapped:
        def run(self, fetch, feeds):
            return ["wrapped"]

        def get_providers(self):
            return ["CPUExecutionProvider"]

    wrapped = Wrapped()
    assert direct_call(wrapped)(["x"], {}) == ["wrapped"]
