"""The browser's sampler (web/static/studio-sampler.js) against the Python one, in node:
the same random stream bit for bit, numpy's sums, the same rules on the same logits, the
same draws, the same prime handling."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from studio.domains.chars import CharsDomain
from studio.numeric import softmax_weights
from studio.sampling.rng import CounterRNG, mix64, stream_key
from studio.sampling.rules import NOISE_BLOCK, GumbelNoise, apply_rules, build_rules, draw, draw_weights, gumbel_max
from studio.sampling.settings import SampleSettings

ROOT = Path(__file__).resolve().parent.parent
HARNESS = ROOT / "tests" / "js" / "sampler_harness.js"
NODE = shutil.which("node")

needs_node = pytest.mark.skipif(NODE is None, reason="node is not installed (make install adds Debian's nodejs)")


def as_bytes(values) -> str:
    return base64.b64encode(np.asarray(values, dtype="<f8").tobytes()).decode()


def from_bytes(text: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype="<f8")


def in_node(jobs: list[dict]) -> list[dict]:
    done = subprocess.run([NODE, str(HARNESS)], input=json.dumps(jobs), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


# --- the Python stream on its own -------------------------------------------------------
def test_splitmix64_matches_the_published_reference():
    """SplitMix64 begun at state 0 (Vigna's splitmix64.c): its first outputs."""
    state, outputs = 0, []
    for _ in range(3):
        state = (state + 0x9E3779B97F4A7C15) % 2**64
        outputs.append(mix64(state))
    assert outputs == [0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4, 0x06C45D188009454F]


def test_scalar_and_array_draws_are_one_stream():
    one, many = CounterRNG(7, 3), CounterRNG(7, 3)
    scalars = [one.random() for _ in range(50)]
    assert np.array_equal(np.asarray(scalars), many.random(50))
    assert one.counter == many.counter == 50
    assert min(scalars) >= 0.0 and max(scalars) < 1.0


def test_streams_differ_by_seed_and_row_and_do_not_depend_on_batching():
    assert len({stream_key(seed, row) for seed in range(20) for row in range(20)}) == 400
    rng = CounterRNG(5)
    first = rng.random((2, 3))
    rest = rng.random(4)
    assert np.array_equal(np.concatenate([first.ravel(), rest]), CounterRNG(5).random(10))


def test_normals_and_gumbels_have_their_moments():
    normals = CounterRNG(11).standard_normal((20000, 2))
    assert abs(normals.mean()) < 0.02 and abs(normals.std() - 1) < 0.02
    assert abs(np.corrcoef(normals[:, 0], normals[:, 1])[0, 1]) < 0.03
    gumbels = CounterRNG(12).gumbel(20000)
    assert np.isfinite(gumbels).all()
    assert abs(gumbels.mean() - np.euler_gamma) < 0.03  # a standard Gumbel's mean


def test_the_counter_is_the_position_in_the_stream():
    rng = CounterRNG(3, 1)
    rng.random(7)
    later = CounterRNG(3, 1)
    later.counter = 7
    assert rng.random() == later.random()


# --- numpy against JavaScript -------------------------------------------------------------
@needs_node
def test_js_stream_is_bit_identical_to_numpy():
    cases = [(0, 0), (1, 0), (1, 1), (42, 7), (2**53 - 1, 3), (123456789, 0)]
    results = in_node(
        [{"kind": "stream", "seed": s, "stream": r, "words": 5, "uniforms": 300, "normals": 9} for s, r in cases]
    )
    for (seed, stream), result in zip(cases, results):
        rng = CounterRNG(seed, stream)
        assert [int(w) for w in result["words"]] == [int(w) for w in rng.words(5)]
        assert from_bytes(result["uniforms"]).tobytes() == rng.random(300).tobytes()
        # Box-Muller goes through log1p/cos/sin: equal to the last bit or one ulp apart
        np.testing.assert_array_max_ulp(from_bytes(result["normals"]), rng.standard_normal(9), maxulp=2)


@needs_node
def test_js_pairwise_sum_is_numpys_sum():
    rng = np.random.default_rng(0)
    jobs, arrays = [], []
    for count in [1, 2, 7, 8, 9, 15, 16, 17, 66, 127, 128, 129, 255, 256, 300, 466, 1000, 5003]:
        values = rng.random(count) ** 7  # spread over many exponents: round-off matters
        arrays.append(values)
        jobs.append({"kind": "sum", "values": as_bytes(values), "count": count})
    for values, result in zip(arrays, in_node(jobs)):
        assert from_bytes(result["total"])[0] == values[None, :].sum(-1)[0]


def _logits(rng: np.random.Generator, vocab: int) -> np.ndarray:
    logits = rng.normal(0, 3, vocab)
    logits[rng.integers(0, vocab, 3)] = -np.inf  # banned tokens
    logits[rng.integers(0, vocab, 4)] = logits[0]  # ties, which the sorts must break alike
    return logits


SETTINGS = [
    {},
    {"temperature": 0.7},
    {"temperature": 0.8, "top_k": 5},
    {"temperature": 1.3, "top_p": 0.9},
    {"top_k": 12, "top_p": 0.5, "temperature": 0.6},
    {"repetition_penalty": 1.3, "temperature": 0.9},
    {"no_repeat_ngram_size": 2},
    {"no_repeat_ngram_size": 3, "repetition_penalty": 0.8, "top_p": 0.95},
    {"top_k": 1},
    {"top_p": 1e-9},
    {"temperature": 0},
    {"temperature": 0, "repetition_penalty": 2.0},
]


@needs_node
@pytest.mark.parametrize("vocab", [66, 98, 466])
def test_js_rules_and_draw_agree_with_numpy(vocab):
    """Every rule and the draw on the same logits: shaped logits equal to the bit, the
    same token from the same seed."""
    rng = np.random.default_rng(vocab)
    jobs, expected = [], []
    for index, options in enumerate(SETTINGS * 4):
        seed = index * 7919 + vocab
        settings = SampleSettings(seed=seed, **options)
        logits = _logits(rng, vocab)
        history = rng.integers(0, vocab, int(rng.integers(1, 40))).tolist()
        history += history[-3:]  # a repeated n-gram for the ban to find
        rules = build_rules(settings)
        shaped = apply_rules(rules, np.asarray([history]), logits[None, :])[0]
        generator = CounterRNG(seed, 0)
        if settings.is_greedy:
            token = int(shaped.argmax())
        elif rules:
            token = int(draw(shaped[None, :], [generator])[0])
        else:
            token = int(draw_weights(softmax_weights(logits[None, :])[0], [generator])[0])
        expected.append((shaped, token))
        js_settings = {**options, "seed": seed}
        jobs.append({"kind": "rules", "settings": js_settings, "history": history, "logits": as_bytes(logits)})
    for (shaped, token), result, options in zip(expected, in_node(jobs), SETTINGS * 4):
        assert result["error"] is None, (options, result["error"])
        assert from_bytes(result["shaped"]).tobytes() == shaped.tobytes(), options
        assert result["token"] == token, options


@needs_node
def test_js_plain_draw_is_numpys_gumbel_max():
    """A row without rules but a temperature draws by the Gumbel-max trick, vocab words of
    the stream a token:
    the same Gumbels (to round-off: Math.log) and the same tokens as GumbelNoise and
    gumbel_max, over more than one of Python's blocks."""
    rng = np.random.default_rng(4)
    jobs, expected = [], []
    for seed, vocab, temperature in ((0, 66, 1.0), (17, 98, 0.8), (2**40, 5, 1.3), (3, 66, 0.7)):
        logits = rng.normal(0, 2, vocab).astype(np.float32)
        logits[rng.integers(0, vocab, 2)] = logits[0]  # ties: the first maximum wins
        draws = 2 * NOISE_BLOCK + 9
        noise = GumbelNoise(CounterRNG(seed, 0), temperature)
        tokens = [int(gumbel_max(logits[None], noise.next(vocab)[0])[0]) for _ in range(draws)]
        expected.append((tokens, seed))
        jobs.append(
            {
                "kind": "plain",
                "seed": seed,
                "logits": as_bytes(logits),
                "draws": draws,
                "gumbels": 500,
                "temperature": temperature,
            }
        )
    for (tokens, seed), result in zip(expected, in_node(jobs)):
        # Math.log may round apart from numpy's in the last bit, which -log(-log u)
        # magnifies near u = 1/e (Gumbels near 0): equal far below float32's resolution
        np.testing.assert_allclose(
            from_bytes(result["gumbels"]), CounterRNG(seed, 0).gumbel(500), rtol=1e-13, atol=1e-14
        )
        assert result["tokens"] == tokens


@needs_node
def test_js_refuses_a_row_with_every_token_banned():
    logits = np.full(10, -np.inf)
    (result,) = in_node([{"kind": "rules", "settings": {"seed": 1}, "history": [1], "logits": as_bytes(logits)}])
    assert "ban every token" in result["error"]


@needs_node
def test_js_prime_handling_is_the_text_domains():
    card = json.loads((ROOT / "export" / "prose" / "card.json").read_text())
    domain = CharsDomain.from_config(card["domain"])
    primes = ["", "ROMEO:", "\nJULIET:", "a b", "caf\u00e9"]
    results = in_node([{"kind": "prime", "domain": card["domain"], "prime": prime} for prime in primes])
    for prime, result in zip(primes, results):
        settings = SampleSettings(prime=prime or None)
        if "\u00e9" in prime:
            assert "not in the model's vocabulary" in result["error"]
            continue
        assert result["ids"] == domain.prime_ids(settings)
        assert result["hidden"] == domain.hidden_prefix(domain.prime_ids(settings), settings)


@needs_node
def test_js_line_wrapping_is_pythons_textwrap():
    from studio.handwriting.sample import wrap_lines

    rng = np.random.default_rng(3)
    words = ["a", "pen", "Sequence", "Studio", "x" * 17, "y" * 40, "hello,", "world!", "it's"]
    texts = ["", "   ", "one", "a b\n\nc  d", "Sequence Studio writes by hand"]
    for _ in range(60):
        count = int(rng.integers(1, 12))
        texts.append(
            " ".join(words[int(i)] for i in rng.integers(0, len(words), count)) + " \n" * int(rng.integers(0, 2))
        )
    jobs = [{"kind": "wrap", "text": text, "width": width} for text in texts for width in (1, 5, 16)]
    for job, result in zip(jobs, in_node(jobs)):
        assert result["lines"] == wrap_lines(job["text"], job["width"]), job


@needs_node
def test_js_number_format_and_repr_are_pythons():
    values = [0.0, -0.0, 0.25, 0.75, 1.25, 2.5, -0.25, -0.04, 12.05, 77.15, 1e-9, 123.456, -7.95, 0.35, 2.675]
    values += list(np.random.default_rng(4).uniform(-500, 500, 200))
    values += [k / 4 for k in range(-40, 40)]
    texts = ["Hello world", "it's", 'say "hi"', "both ' and \"", "back\\slash", "tab\there"]
    jobs = [{"kind": "format", "values": as_bytes(values), "text": text} for text in texts]
    for text, result in zip(texts, in_node(jobs)):
        assert result["texts"] == [f"{v:.1f}" for v in values]
        assert result["repr"] == repr(text)
