"""One batched step loop for every sampling request: rows join and leave between steps.

A recurrent model's whole memory of a row is a fixed-size slice of its state tensors, so
rows of different requests can share one runtime call: the :class:`Engine` keeps the
state of every live row stacked along the batch axis, feeds each step's inputs of all
rows in one call, hands every :class:`Job` the output rows that are its own, and drops
the rows a job says are done (or adds a new job's rows) between two steps.

A job is one request (``--num`` rows of a text, one drawing ...): it primes its rows
itself, says what each of its live rows feeds next, and reads its rows of the outputs
with its own settings, rules, random generators and stop tests.  So a row's result
depends on nothing but its own job: the same bytes alone, with ``--num``, or beside 19
other users, as long as the runtime's batches are row-exact (fp32 is; an int8 runtime
that is not runs a batch row by row, :class:`studio.runtime.Runtime`).

Jobs in one engine must feed inputs of the same shape but for the batch axis: their
``key`` says which engine a job may join (every categorical job feeds (rows, 1) tokens).
Torch-free.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Hashable
from itertools import accumulate

import numpy as np

from .runtime import Runtime


class Job(ABC):
    """One request's rows in an :class:`Engine`.  ``live`` counts its rows still being
    stepped, in a fixed order that :meth:`advance` keeps."""

    key: Hashable = None
    live: int = 0
    cancelled: bool = False
    error: Exception | None = None  # what ended the job early, for its requester

    @abstractmethod
    def start(self, runtime: Runtime) -> dict[str, np.ndarray]:
        """Prime the rows; returns their state (card names, batch axis = ``live`` rows)."""

    @abstractmethod
    def inputs(self) -> list[np.ndarray]:
        """The next step's inputs of the live rows, in the card's input order."""

    @abstractmethod
    def advance(self, outputs: list[np.ndarray]) -> np.ndarray | None:
        """Read this job's rows of one step's outputs (card order, batch axis = live rows).
        Returns the positions (among the live rows) of the rows that go on, or None when
        all of them do; ``live`` is then the new count."""

    @classmethod
    def advance_together(cls, jobs: list[Job], step: StepRows, indices: list[int]) -> list[np.ndarray | None]:
        """:meth:`advance` for several jobs of this class after one step (``jobs[k]`` is
        the step's job ``indices[k]``; ``step.own(indices[k])`` its rows of the outputs); a
        class may do the same work for all of them in fewer calls.  A job that fails keeps
        its error and leaves, the others go on."""
        return [_advance(job, step.own(index)) for job, index in zip(jobs, indices)]

    def drain(self) -> list:
        """What the job has to tell its requester since the last drain, in order."""
        return []

    def cancel(self) -> None:
        """Stop stepping (safe from another thread): the engine drops every row of this
        job before its next step."""
        self.cancelled = True


class StepRows:
    """One step's outputs (card order) for every live row, and which rows are whose: job
    ``i`` of the step owns ``rows[i]`` rows from ``starts[i]`` along each output's batch
    axis."""

    def __init__(self, outputs: list[np.ndarray], axes: list[int], rows: list[int]):
        self.outputs, self.axes, self.rows = outputs, axes, rows
        self.starts = list(accumulate(rows[:-1], initial=0))

    def own(self, index: int) -> list[np.ndarray]:
        """Job ``index``'s rows of every output."""
        start = self.starts[index]
        stop = start + self.rows[index]
        return [_rows_of(value, axis, start, stop) for value, axis in zip(self.outputs, self.axes)]


class Engine:
    """The live rows of any number of jobs, stepped together through ``runtime``."""

    def __init__(self, runtime: Runtime):
        self.runtime = runtime
        self.jobs: list[Job] = []
        self._rows: list[int] = []  # live rows of each job, as the state holds them
        self._state: dict[str, np.ndarray] | None = None
        names = runtime.input_names + runtime.state_names
        self._feeds: dict[str, np.ndarray] = {}
        self._input_names = runtime.input_names
        self._state_names = runtime.state_names
        self._outputs = len(runtime.output_names)
        axes = runtime.batch_axes
        self._input_axes = [axes[name] for name in runtime.input_names]
        self._state_axes = [axes[name] for name in runtime.state_names]
        self._output_axes = runtime.output_batch_axes
        assert all(axis is not None for axis in self._state_axes + self._output_axes), names

    @property
    def rows(self) -> int:
        return sum(self._rows)

    def add(self, job: Job) -> None:
        """Prime ``job`` and let its rows join the batch at the next step."""
        state = job.start(self.runtime)
        if job.live <= 0:
            return
        if not self.jobs:
            for name in self._state_names:
                self._feeds[name] = state[name]
        else:
            for name, axis in zip(self._state_names, self._state_axes):
                self._feeds[name] = np.concatenate([self._feeds[name], state[name]], axis=axis)
        self.jobs.append(job)
        self._rows.append(job.live)

    def step(self) -> None:
        """One runtime call for every live row; then each job reads its rows and the
        rows that ended (or whose job was cancelled) leave the state."""
        jobs, feeds = self.jobs, self._feeds
        if len(jobs) == 1 and not jobs[0].cancelled:  # the CLI's case: as little as possible around the call
            job = jobs[0]
            for name, value in zip(self._input_names, job.inputs()):
                feeds[name] = value
            values = self.runtime.run_values(feeds, self._rows[0])
            for index, name in enumerate(self._state_names, self._outputs):
                feeds[name] = values[index]
            kept = _advance(job, values[: self._outputs])
            if kept is not None:
                self._keep([kept])
            return
        self._drop_cancelled()
        if not self.jobs:
            return
        jobs = self.jobs
        if len(jobs) == 1:
            for name, value in zip(self._input_names, jobs[0].inputs()):
                feeds[name] = value
        else:
            per_job = [job.inputs() for job in jobs]
            for index, (name, axis) in enumerate(zip(self._input_names, self._input_axes)):
                feeds[name] = np.concatenate([values[index] for values in per_job], axis=axis or 0)
        values = self.runtime.run_values(feeds, self.rows)
        for index, name in enumerate(self._state_names):
            feeds[name] = values[self._outputs + index]
        outputs = values[: self._outputs]
        if len(jobs) == 1:
            kept = _advance(jobs[0], outputs)
            if kept is not None:
                self._keep([kept])
            return
        step = StepRows(outputs, self._output_axes, self._rows)
        kinds: dict[type, list[int]] = {}
        for index, job in enumerate(jobs):
            kinds.setdefault(type(job), []).append(index)
        kept: list[np.ndarray | None] = [None] * len(jobs)
        for kind, indices in kinds.items():
            results = kind.advance_together([jobs[i] for i in indices], step, indices)
            for index, result in zip(indices, results):
                kept[index] = result
        if any(result is not None for result in kept):
            self._keep(
                [np.arange(rows) if k is None else np.asarray(k, dtype=np.int64) for k, rows in zip(kept, self._rows)]
            )

    def _keep(self, keeps: list[np.ndarray]) -> None:
        """Keep, of each job's live rows, the positions in ``keeps`` (same job order)."""
        starts = np.cumsum([0, *self._rows[:-1]])
        rows = np.concatenate([start + np.asarray(kept, dtype=np.int64) for start, kept in zip(starts, keeps)])
        for name, axis in zip(self._state_names, self._state_axes):
            self._feeds[name] = np.take(self._feeds[name], rows, axis=axis)
        self._rows = [len(kept) for kept in keeps]
        self._forget_empty()

    def _drop_cancelled(self) -> None:
        if any(job.cancelled for job in self.jobs):
            self._keep([np.arange(0 if job.cancelled else rows) for job, rows in zip(self.jobs, self._rows)])

    def _forget_empty(self) -> None:
        if all(self._rows):
            return
        self.jobs = [job for job, rows in zip(self.jobs, self._rows) if rows]
        self._rows = [rows for rows in self._rows if rows]
        if not self.jobs:
            for name in self._state_names:
                self._feeds.pop(name, None)

    def run(self) -> None:
        """Step until every job has ended."""
        while self.jobs:
            self.step()


def _advance(job: Job, outputs: list[np.ndarray]) -> np.ndarray | None:
    """``job.advance``; a job that fails (its rules ban every token ...) keeps the error
    for its requester and leaves, and the other jobs go on."""
    try:
        return job.advance(outputs)
    except Exception as error:
        job.error, job.live = error, 0
        return np.arange(0)


def _rows_of(value: np.ndarray, axis: int, start: int, stop: int) -> np.ndarray:
    if axis == 0:
        return value[start:stop]
    index = [slice(None)] * value.ndim
    index[axis] = slice(start, stop)
    return value[tuple(index)]
