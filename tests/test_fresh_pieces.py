"""Independent pieces start from a fresh state: in training (the torch forward with
``restart``), in validation and in `studio eval`'s teacher-forced scores, as the sampler
starts every piece."""

import numpy as np
import pytest
import torch

from studio.config import ModelConfig
from studio.domains.chars import CharsDomain
from studio.domains.music import MusicDomain
from studio.models.recurrent_lm import RecurrentLM
from studio.numeric import log_softmax, teacher_forced_log_probs, teacher_forced_nats

SEPARATOR = 0


def small_model(cell: str) -> RecurrentLM:
    torch.manual_seed(3)
    config = ModelConfig(vocab_size=11, hidden_size=12, layers=2, embedding_size=6, dropout=0.0, cell=cell)
    return RecurrentLM(config).eval()


def random_state(model: RecurrentLM, batch: int) -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(5)
    config = model.config
    return tuple(
        torch.rand((config.layers, batch, config.state_width(name)), generator=generator) + 0.1
        for name in config.state_names
    )


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn", "lnlstm", "qrnn"])
def test_a_row_restarts_at_its_separator_and_only_there(cell):
    """Row 0 holds a separator at column 4, row 1 at column 9, row 2 none: each row's
    logits equal running it by hand, its carried state up to the separator and zeros
    from it on; row 2 keeps its state throughout."""
    model = small_model(cell)
    generator = np.random.default_rng(1)
    tokens = torch.from_numpy(generator.integers(1, 11, (3, 14)))
    tokens[0, 4] = SEPARATOR
    tokens[1, 9] = SEPARATOR
    state = random_state(model, 3)
    with torch.no_grad():
        logits, end_state = model(tokens, state, SEPARATOR)
        for row, cut in ((0, 4), (1, 9), (2, 14)):
            own = tuple(s[:, row : row + 1] for s in state)
            before, carried = model(tokens[row : row + 1, :cut], own)
            expected = [before]
            if cut < 14:
                fresh = model.init_state(1)
                after, carried = model(tokens[row : row + 1, cut:], fresh)
                expected.append(after)
            torch.testing.assert_close(logits[row : row + 1], torch.cat(expected, 1), rtol=1e-5, atol=1e-5)
            for got, want in zip(end_state, carried):
                torch.testing.assert_close(got[:, row : row + 1], want, rtol=1e-5, atol=1e-5)
        # with the separator not restarting, row 0 keeps what it carried, so it differs
        carried_logits, _ = model(tokens, state)
    assert not torch.allclose(carried_logits[0, 4:], logits[0, 4:], atol=1e-4)
    torch.testing.assert_close(carried_logits[2], logits[2])


def test_a_window_without_a_separator_is_one_plain_call():
    model = small_model("lstm")
    tokens = torch.randint(1, 11, (2, 9), generator=torch.Generator().manual_seed(0))
    state = random_state(model, 2)
    with torch.no_grad():
        plain, plain_state = model(tokens, state)
        fresh, fresh_state = model(tokens, state, SEPARATOR)
    assert torch.equal(plain, fresh)
    assert all(torch.equal(a, b) for a, b in zip(plain_state, fresh_state))


def test_the_restart_gets_gradients_to_both_pieces():
    """Training through a restart: both sides of the cut reach the weights, and the loss
    of the piece after the cut does not reach the state carried in."""
    model = small_model("lstm").train()
    tokens = torch.randint(1, 11, (1, 10), generator=torch.Generator().manual_seed(2))
    tokens[0, 5] = SEPARATOR
    state = tuple(s.requires_grad_(True) for s in random_state(model, 1))
    logits, _ = model(tokens, state, SEPARATOR)
    logits[0, 5:].sum().backward()
    assert all(s.grad is None or float(s.grad.abs().max()) == 0.0 for s in state)
    assert model.embedding.weight.grad is not None and float(model.embedding.weight.grad.abs().sum()) > 0


def counting_step(tokens: np.ndarray, state):
    """A toy recurrent scorer: the state counts the tokens seen, and the logits favour the
    token equal to that count (mod 5), so every score depends on the state."""
    seen = 0 if state is None else state
    logits = np.zeros((1, tokens.shape[1], 5))
    for t in range(tokens.shape[1]):
        seen += 1
        logits[0, t, seen % 5] = 3.0
    return logits, seen


def test_teacher_forced_scores_restart_at_each_piece():
    ids = [0, 1, 2, 3, 4, 0, 2, 3, 0, 1, 1, 4, 2]
    pieces = [[0, 1, 2, 3, 4, 0], [0, 2, 3, 0], [0, 1, 1, 4, 2]]  # each scored up to the next start
    expected = []
    for piece in pieces:
        logits, _ = counting_step(np.array([piece[:-1]]), None)
        log_probs = log_softmax(logits[0])
        expected.extend(log_probs[np.arange(len(piece) - 1), piece[1:]])
    for window in (3, 4, 100):
        got = teacher_forced_log_probs(counting_step, None, ids, window=window, restart=0)
        np.testing.assert_allclose(got, expected)
    carried = teacher_forced_log_probs(counting_step, None, ids, window=100)
    assert not np.allclose(carried, expected)
    nats, count, _ = teacher_forced_nats(counting_step, None, ids, window=4, restart=0)
    assert count == len(ids) - 1
    assert nats == pytest.approx(-np.mean(expected))


def test_music_pieces_start_fresh_and_text_carries_on():
    music = MusicDomain()
    assert music.restart_id == music.separator_id
    assert CharsDomain.fresh_pieces is False
