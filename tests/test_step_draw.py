"""The plain draw (a row without rules): the Gumbel-max trick inside the step graph
(studio/step_draw.py) and in numpy (studio/sampling/rules.py) give the same tokens, and
they follow the model's distribution."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime
import pytest

from studio.bundle import Bundle
from studio.errors import StudioError
from studio.numeric import log_softmax
from studio.runtime import Runtime
from studio.sampling.rng import CounterRNG
from studio.sampling.rules import (
    GUMBEL_MAX_VOCAB,
    NOISE_BLOCK,
    GumbelNoise,
    Temperature,
    TopK,
    TopP,
    draws_by_gumbel,
    gumbel_max,
    next_noise,
    next_noise_together,
    plain_scores,
)
from studio.step_draw import NOISE, TOKEN, with_draw


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_the_appended_graph_is_the_bundles_plus_the_draw(tiny_bundle, precision):
    path = Bundle.load(tiny_bundle).graph_path(precision)
    plain = onnx.load(str(path))
    vocab = plain.graph.output[0].type.tensor_type.shape.dim[-1].dim_value
    patched = onnx.load_from_string(with_draw(path.read_bytes(), vocab))
    onnx.checker.check_model(patched)
    assert [n.op_type for n in patched.graph.node] == [n.op_type for n in plain.graph.node] + ["Add", "ArgMax"]
    assert [i.name for i in patched.graph.input] == [i.name for i in plain.graph.input] + [NOISE]
    assert [o.name for o in patched.graph.output] == [o.name for o in plain.graph.output] + [TOKEN]
    assert len(patched.graph.initializer) == len(plain.graph.initializer) + 1
    noise = onnx.numpy_helper.to_array(patched.graph.initializer[-1])
    assert patched.graph.initializer[-1].name == NOISE and noise.shape == (1, 1, vocab) and not noise.any()
    dims = patched.graph.input[-1].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in dims] == ["noise_batch", 1, vocab]
    argmax = patched.graph.node[-1]
    assert {a.name: a.i for a in argmax.attribute} == {"axis": -1, "keepdims": 0}


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_the_graphs_draw_is_numpys_to_the_bit(tiny_bundle, precision):
    """Three rows (temperatures 1, 0.8 and 1.3) stepped 200 times on their own drawn
    tokens: every token the graph draws is what gumbel_max draws from the same logits
    and scaled Gumbels, and the logits are those of the same call without noise (the
    zeros it defaults to) and of the bundle's graph as exported."""
    runtime = Runtime(Bundle.load(tiny_bundle), precision=precision, threads=1)
    exported = onnxruntime.InferenceSession(
        str(runtime.bundle.graph_path(precision)), providers=["CPUExecutionProvider"]
    )
    session, fetch = runtime.session, runtime.draw_fetch
    noises = [GumbelNoise(CounterRNG(5, row), t) for row, t in enumerate((1.0, 0.8, 1.3))]
    vocab = runtime.vocab_size
    state = runtime.init_state(3)
    feeds = {"tokens": np.array([[1], [2], [3]], dtype=np.int64), **state}
    drawn = []
    for _ in range(200):
        noise = np.concatenate([n.next(vocab) for n in noises])
        values = session.run(fetch, {**feeds, NOISE: noise})
        token, logits = values[0], values[1]
        assert token.shape == (3, 1) and token.dtype == np.int64
        assert np.array_equal(token[:, 0], gumbel_max(logits[:, 0], noise[:, 0]))
        assert session.run(runtime._fetch, feeds)[0].tobytes() == logits.tobytes()
        assert exported.run(runtime._fetch, feeds)[0].tobytes() == logits.tobytes()
        feeds = {"tokens": token, **dict(zip(runtime.state_names, values[2:]))}
        drawn.extend(token[:, 0].tolist())
    assert len(set(drawn)) > 5


def test_a_rows_gumbels_are_one_stream_across_blocks():
    vocab = 7
    noise = GumbelNoise(CounterRNG(9, 2))
    steps = [noise.next(vocab) for _ in range(2 * NOISE_BLOCK + 3)]
    assert all(step.shape == (1, 1, vocab) and step.dtype == np.float32 for step in steps)
    whole = CounterRNG(9, 2).gumbel((2 * NOISE_BLOCK + 3) * vocab).astype(np.float32)
    assert np.concatenate(steps).ravel().tobytes() == whole.tobytes()


def test_gumbel_max_draws_the_softmax_distribution():
    logits = np.array([2.0, 0.5, -1.0, 1.5, 0.0, -3.0], dtype=np.float32)
    draws = 40_000
    noise = CounterRNG(1).gumbel((draws, len(logits))).astype(np.float32)
    tokens = gumbel_max(np.tile(logits, (draws, 1)), noise)
    frequencies = np.bincount(tokens, minlength=len(logits)) / draws
    expected = np.exp(log_softmax(logits.astype(np.float64)))
    # four standard errors of a frequency, at most
    assert np.all(np.abs(frequencies - expected) <= 4 * np.sqrt(expected * (1 - expected) / draws) + 1e-9)
    assert gumbel_max(np.array([[0.0, 5.0, 5.0]], np.float32), np.zeros((1, 3), np.float32))[0] == 1  # first maximum
    cooled = gumbel_max(np.tile(logits, (draws, 1)), (0.5 * noise).astype(np.float32))  # softmax(logits / 0.5)
    frequencies = np.bincount(cooled, minlength=len(logits)) / draws
    expected = np.exp(log_softmax(logits.astype(np.float64) / 0.5))
    assert np.all(np.abs(frequencies - expected) <= 4 * np.sqrt(expected * (1 - expected) / draws) + 1e-9)


def test_plain_scores_are_the_models_log_probabilities_and_refuse_a_broken_row():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, (4, 30))
    tokens = rng.integers(0, 30, 4)
    expected = log_softmax(logits)[np.arange(4), tokens]
    np.testing.assert_allclose(plain_scores(logits, tokens), expected, rtol=0, atol=1e-12)
    single = [plain_scores(logits[i : i + 1], tokens[i : i + 1])[0] for i in range(4)]
    assert single == plain_scores(logits, tokens)  # a row's score does not depend on its batch
    broken = logits.copy()
    broken[2] = np.nan
    with pytest.raises(StudioError, match="re-export"):
        plain_scores(broken, tokens)
    assert np.isnan(plain_scores(broken, tokens, check=False)[2])


def test_the_rest_of_a_block_continues_the_stream():
    """The one-row loop takes what is left of a block after the first token's draw, then
    whole blocks: the same Gumbels as one ``next`` per token."""
    vocab = 5
    mixed = GumbelNoise(CounterRNG(4, 0), 0.8)
    taken = [mixed.next(vocab)] + list(mixed.rest(vocab)) + list(mixed.rest(vocab)) + [mixed.next(vocab)]
    assert len(taken) == 2 * NOISE_BLOCK + 1
    stepwise = GumbelNoise(CounterRNG(4, 0), 0.8)
    assert all(a.tobytes() == stepwise.next(vocab).tobytes() for a in taken)


def test_rows_drawn_together_get_each_rows_own_stream():
    """A job's rows draw their Gumbels from one stacked block (one view a token); each row
    still gets its own stream, whether rows leave on the way, the stack is dropped and
    rebuilt mid-block, or the last row goes on alone."""
    vocab, count = 6, 5
    temperatures = (1.0, 0.8, 1.3, 1.0, 0.5)

    def rows():
        return [GumbelNoise(CounterRNG(11, row), t) for row, t in enumerate(temperatures[:count])]

    together, alone = rows(), rows()
    stack, live = None, list(range(count))
    for step in range(3 * NOISE_BLOCK + 5):
        noise, stack = next_noise_together([together[r] for r in live], vocab, stack)
        assert noise.shape == (len(live), vocab) and noise.dtype == np.float32
        expected = next_noise([alone[r] for r in live], vocab)
        assert noise.tobytes() == np.ascontiguousarray(expected).tobytes(), step
        if step in (NOISE_BLOCK - 1, NOISE_BLOCK + 10):  # rows leave, the stack with them
            keep = [0, 2] if step < NOISE_BLOCK else [1]
            live, stack = [live[k] for k in keep], stack[keep]
        if step == 2 * NOISE_BLOCK + 7:
            stack = None  # a caller without the stack: rebuilt from the rows' own blocks
    # the last row goes on alone, one token at a time, from where the stack left it
    (row,) = live
    assert all(together[row].next(vocab).tobytes() == alone[row].next(vocab).tobytes() for _ in range(NOISE_BLOCK))


def test_only_a_temperature_and_a_small_vocabulary_draw_by_gumbel():
    """Gumbels cost a draw per vocabulary entry: words keep the inverse CDF."""
    assert draws_by_gumbel([], 66) and draws_by_gumbel([Temperature(0.8)], GUMBEL_MAX_VOCAB)
    assert not draws_by_gumbel([], GUMBEL_MAX_VOCAB + 1) and not draws_by_gumbel([], None)
    assert not draws_by_gumbel([Temperature(0.8), TopK(5)], 66) and not draws_by_gumbel([TopP(0.9)], 66)
