"""``--shift-windows``: each pass over the training text starts its truncated-BPTT windows
at a seeded offset, so the gradient stops between different tokens from pass to pass;
within a pass the windows stay contiguous (the carried state stays right), every rank
agrees, resume is exact and the card records the option."""

import numpy as np

from studio.bundle import Bundle
from studio.data import StreamBatches
from studio.export import export_run

ROWS, SEQ = 4, 16


def test_without_shifting_the_windows_are_as_before():
    ids = np.arange(10_000)
    plain = StreamBatches(ids, ROWS, SEQ)
    row_len = len(ids) // ROWS
    assert plain.windows_per_epoch == (row_len - 1) // SEQ and plain.max_offset == 0
    x, y = plain.window(plain.windows_per_epoch + 3)  # the second pass repeats the first
    assert (x[:, 0] == np.arange(ROWS) * row_len + 3 * SEQ).all() and (y == x + 1).all()


def test_each_pass_starts_at_its_own_offset_and_stays_contiguous():
    ids = np.arange(10_000)
    row_len = len(ids) // ROWS
    batches = StreamBatches(ids, ROWS, SEQ, shift_seed=7)
    per_pass = batches.windows_per_epoch
    assert batches.max_offset == SEQ - 1
    offsets = [batches.offset(epoch) for epoch in range(12)]
    assert all(0 <= o <= SEQ - 1 for o in offsets) and len(set(offsets)) > 3
    assert offsets == [StreamBatches(ids, ROWS, SEQ, shift_seed=7).offset(e) for e in range(12)]  # seeded
    assert offsets != [StreamBatches(ids, ROWS, SEQ, shift_seed=8).offset(e) for e in range(12)]
    for epoch in range(12):
        first, _ = batches.window(epoch * per_pass)
        assert (first[:, 0] == np.arange(ROWS) * row_len + offsets[epoch]).all()
        last_x, last_y = batches.window((epoch + 1) * per_pass - 1)
        assert (last_y == last_x + 1).all() and (last_y[:, -1] < (np.arange(ROWS) + 1) * row_len).all()
        for within in range(per_pass - 1):  # each window goes on where the one before ended
            x0, _ = batches.window(epoch * per_pass + within)
            x1, _ = batches.window(epoch * per_pass + within + 1)
            assert (x1[:, 0] == x0[:, -1] + 1).all()


def test_every_rank_shifts_its_rows_alike():
    ids = np.arange(12_000)
    whole = StreamBatches(ids, 2 * ROWS, SEQ, shift_seed=5)
    parts = [StreamBatches(ids, ROWS, SEQ, rank, 2, shift_seed=5) for rank in range(2)]
    for index in (0, 7, whole.windows_per_epoch + 1, 3 * whole.windows_per_epoch + 2):
        x, _ = whole.window(index)
        assert np.array_equal(np.concatenate([p.window(index)[0] for p in parts]), x)


def test_streams_too_short_to_shift_keep_every_window():
    ids = np.arange(4 * 17)  # one window of 16 per row, nothing to spare
    batches = StreamBatches(ids, ROWS, SEQ, shift_seed=1)
    assert batches.windows_per_epoch == 1 and batches.max_offset == 0
    x, y = batches.window(5)
    assert (y == x + 1).all()


def test_shifted_training_resumes_exactly_and_the_card_records_it(straight_and_resumed, tmp_path):
    # 64 rows of 16 over the tiny corpus: about 25 windows a pass, so 60 steps cross two passes
    settings = dict(
        batch_size=64,
        seq_len=16,
        max_steps=60,
        eval_every=30,
        seed=3,
        warmup_steps=2,
        learning_rate=1e-2,
        shift_windows=True,
    )
    straight = straight_and_resumed(dict(hidden_size=16, layers=1, embedding_size=8), settings)
    card_path = export_run(straight.path, tmp_path / "export", quiet=True)
    card = Bundle.load(card_path.parent).card
    assert card["train"]["shift_windows"] is True
    assert card["parity"]["max_abs_diff"] < 1e-4
