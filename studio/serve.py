"""Continuous batching for a server: concurrent requests share one model call per step.

:class:`Batcher` owns one background thread and one :class:`~studio.engine.Engine` per
loaded model (and per input shape a head declares, its job's ``key``).  A request's
settings become the head's :class:`~studio.engine.Job`; the job is primed and joins
its model's running batch before the next step, and leaves it when its rows end, so
20 users of one model cost one model call per step, not 20.  Every row keeps its own
seed, settings and rules: each request's events are exactly what
:func:`studio.api.sample_iter` yields for the same settings, streamed as they come.
Settings a head does not batch run in the caller's thread as before: beam search, and
pen strokes (the handwriting graph's fp32 batches are not row-exact: a line drawn beside
others scored 60.77833894 nats against 60.77833551 alone, so its recipe would not
reproduce it byte for byte).

    batcher = Batcher()
    for event in batcher.sample_iter(settings):   # Started, Token ..., Finished
        ...

Torch-free.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from .api import load
from .engine import Engine, Job
from .generate import Sample
from .heads import Event, Finished
from .sampling.settings import SampleSettings

IDLE_WAIT_S = 1.0  # the thread re-checks for work this often when none comes
# A requester's stream is handed its events at most this often while its rows go on (the
# first events and the last go at once): a reader thread woken at every step costs the
# stepping thread the GIL once per stream per step, which at 20 streams cost more than
# the model call itself.  20 ms is 50 updates a second, finer than a browser shows.
FLUSH_EVERY_S = 0.02


@dataclass
class _Ticket:
    """A job and the queue its requester reads (lists of events; an exception ends it)."""

    job: Job
    runtime: object
    inbox: queue.SimpleQueue = field(default_factory=queue.SimpleQueue)
    pending: list = field(default_factory=list)  # events not yet handed over
    handed: float = float("-inf")  # when events were last handed over (perf_counter)


class Batcher:
    """One thread stepping every batched request (see the module docstring); start it
    lazily with the first request, stop it with :meth:`close`."""

    def __init__(self):
        self._lock = threading.Condition()
        self._waiting: list[_Ticket] = []
        self._tickets: list[_Ticket] = []  # jobs in an engine (the thread's own list)
        self._engines: dict[tuple[int, object], Engine] = {}
        self._thread: threading.Thread | None = None
        self._closed = False
        self.steps = 0  # runtime calls made, for tests and benchmarks
        self.rows_stepped = 0  # rows summed over those calls
        self.widest = 0  # the most rows one call stepped
        self._delivered = float("-inf")  # when _deliver last ran (perf_counter)

    # --- requester side ----------------------------------------------------------------
    def sample_iter(self, settings: SampleSettings) -> Iterator[Event]:
        """The events of ``settings``'s generation, as :func:`studio.api.sample_iter`
        gives them; the rows step in the shared batch when the head batches them.
        Closing the iterator early (a user pressed Stop) takes the rows out."""
        loaded = load(settings.model, settings.device, settings.precision)
        job = loaded.head.job(loaded.runtime, loaded.domain, settings)
        if job is None:
            yield from loaded.head.generate(loaded.runtime, loaded.domain, settings)
            return
        ticket = _Ticket(job, loaded.runtime)
        self._submit(ticket)
        try:
            while True:
                events = ticket.inbox.get()
                if isinstance(events, BaseException):
                    raise events
                yield from events
                if events and isinstance(events[-1], Finished):
                    return
        finally:
            job.cancel()

    def sample(self, settings: SampleSettings) -> list[Sample]:
        """The finished samples of ``settings`` (as :func:`studio.api.sample`)."""
        results: list[Sample] = []
        for event in self.sample_iter(settings):
            if isinstance(event, Finished):
                results = event.samples
        return results

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._lock.notify_all()
        if self._thread is not None:
            self._thread.join()

    def _submit(self, ticket: _Ticket) -> None:
        with self._lock:
            if self._closed:
                raise RuntimeError("the batcher is closed")
            self._waiting.append(ticket)
            if self._thread is None:
                self._thread = threading.Thread(target=self._serve, name="studio-batcher", daemon=True)
                self._thread.start()
            self._lock.notify_all()

    # --- the stepping thread -----------------------------------------------------------
    def _serve(self) -> None:
        while True:
            with self._lock:
                while not self._waiting and not self._tickets and not self._closed:
                    self._lock.wait(IDLE_WAIT_S)
                if self._closed:
                    break
                joining, self._waiting = self._waiting, []
            for ticket in joining:
                self._join(ticket)
            before = sum(len(engine.jobs) for engine in self._engines.values())
            for engine in self._engines.values():
                if engine.jobs:
                    self.rows_stepped += engine.rows
                    self.widest = max(self.widest, engine.rows)
                    self.steps += 1
                    try:
                        engine.step()
                    except Exception as error:  # the runtime itself failed: every job in the call hears it
                        for job in engine.jobs:
                            job.error = job.error or error
                            job.cancel()
                        engine.step()  # drops them
            # hand events over when a job joined or left (ended, failed, cancelled), else
            # at most every FLUSH_EVERY_S: a pass over 20 tickets at every step costs time
            now = time.perf_counter()
            after = sum(len(engine.jobs) for engine in self._engines.values())
            if joining or after != before or now - self._delivered >= FLUSH_EVERY_S:
                self._deliver()
                self._delivered = now
        for ticket in self._tickets + self._waiting:
            ticket.inbox.put(RuntimeError("the server is shutting down"))

    def _join(self, ticket: _Ticket) -> None:
        job = ticket.job
        key = (id(ticket.runtime), job.key)
        engine = self._engines.get(key)
        if engine is None:
            engine = self._engines[key] = Engine(ticket.runtime)
        try:
            engine.add(job)  # primes it; a job that ends at once never joins the batch
        except Exception as error:
            ticket.inbox.put(error)
            return
        self._tickets.append(ticket)

    def _deliver(self) -> None:
        still = []
        now = time.perf_counter()
        for ticket in self._tickets:
            job = ticket.job
            if job.error is not None:
                ticket.inbox.put(job.error)
                continue
            ticket.pending += job.drain()
            going_on = not job.cancelled and job.live
            # a requester still busy with the last events, or served less than
            # FLUSH_EVERY_S ago, gets these with the next ones: fewer thread switches
            if ticket.pending and (not going_on or (ticket.inbox.empty() and now - ticket.handed >= FLUSH_EVERY_S)):
                ticket.inbox.put(ticket.pending)
                ticket.pending = []
                ticket.handed = now
            if going_on:
                still.append(ticket)
        self._tickets = still
        self._engines = {key: engine for key, engine in self._engines.items() if engine.jobs}
