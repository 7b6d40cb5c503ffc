"""Token streams for truncated BPTT.

The training ids are cut into ``rows`` equal contiguous streams (one per batch row,
as char-rnn and word_language_model do), so the state a row ends a window with is
the right state to start its next window.  Under DDP each rank owns a block of rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import require


def split_point(tokens: int, val_fraction: float) -> int:
    """Where the validation tail of ``tokens`` ids starts."""
    return int(tokens * (1.0 - val_fraction))


def split_ids(ids: np.ndarray, val_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """First ``1 - val_fraction`` of the tokens for training, the rest for validation
    (views: a memory-mapped corpus stays on disk)."""
    cut = split_point(len(ids), val_fraction)
    train, val = ids[:cut], ids[cut:]
    require(len(train) >= 4 and len(val) >= 2, f"the corpus is too small ({len(ids)} tokens): add more text")
    return train, val


@dataclass
class StreamBatches:
    """Windows of ``seq_len`` over ``rows`` parallel streams; this rank sees rows
    ``[rank * batch, (rank + 1) * batch)``.  The streams are views of ``ids`` (a memory
    map stays on disk: only the windows read are copied, by the caller)."""

    ids: np.ndarray
    batch_size: int
    seq_len: int
    rank: int = 0
    world_size: int = 1
    shift_seed: int | None = None  # set: each pass starts its windows at a seeded offset

    def __post_init__(self) -> None:
        rows = self.batch_size * self.world_size
        row_len = len(self.ids) // rows
        seq_len = min(self.seq_len, max(1, row_len - 1))
        require(
            row_len >= 2,
            f"the training text ({len(self.ids)} tokens) is too short for {rows} streams: lower --batch-size",
        )
        self.seq_len = seq_len
        streams = self.ids[: rows * row_len].reshape(rows, row_len)
        self.streams = streams[self.rank * self.batch_size : (self.rank + 1) * self.batch_size]
        self.windows_per_epoch = (row_len - 1) // seq_len
        self.max_offset = 0
        if self.shift_seed is not None and self.windows_per_epoch > 1:
            # one window fewer per pass leaves room to start the pass up to a window later
            self.windows_per_epoch -= 1
            self.max_offset = min(seq_len - 1, row_len - 1 - self.windows_per_epoch * seq_len)

    def offset(self, epoch: int) -> int:
        """Where pass ``epoch`` starts its first window (0 unless shifting): seeded by the
        run's seed and the pass, the same on every rank and on resume."""
        if not self.max_offset:
            return 0
        return int(np.random.default_rng([self.shift_seed, epoch]).integers(self.max_offset + 1))

    def window(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Inputs and next-token targets, each (batch, seq_len), for window ``index``
        (counted from the start of training).  With ``shift_seed`` the windows of each
        pass start at :meth:`offset`, so the truncated-BPTT boundaries, the places where
        the gradient stops, fall between different tokens from pass to pass (the purpose
        AWD-LSTM's random window lengths serve); within a pass they stay contiguous, so
        the carried state stays right."""
        epoch, within = divmod(index, self.windows_per_epoch)
        start = self.offset(epoch) + within * self.seq_len
        x = self.streams[:, start : start + self.seq_len]
        y = self.streams[:, start + 1 : start + 1 + self.seq_len]
        return x, y


def eval_streams(ids: np.ndarray, rows: int = 16) -> np.ndarray:
    """Validation ids as ``rows`` contiguous streams (fewer if the text is short); a view."""
    rows = max(1, min(rows, len(ids) // 64))
    row_len = len(ids) // rows
    return ids[: rows * row_len].reshape(rows, row_len)
