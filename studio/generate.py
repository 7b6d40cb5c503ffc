"""The sampling loop for every categorical domain, on onnxruntime.  Torch-free.

:class:`Generation` primes the model with one full-sequence call, then either samples
``num`` rows as one batch (each row with its own seeded generator, so sample *i* is the
same whatever ``num`` is) or runs beam search.  Iterating it yields
``(row, token_id)`` as tokens are committed (for streaming); ``results`` holds the
finished :class:`Sample` objects afterwards.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .engine import Engine, Job, StepRows
from .errors import StudioError
from .numeric import softmax_weights, teacher_forced_nats
from .runtime import Runtime
from .sampling.beam import beam_search, selection_for
from .sampling.rules import (
    GumbelNoise,
    apply_rules,
    build_rules,
    draw,
    draws_by_gumbel,
    gumbel_max,
    next_noise,
    next_noise_together,
    plain_scores,
    row_generator,
)
from .sampling.settings import SampleSettings, command_line, require_pitched
from .step_draw import NOISE

HISTORY_START = 1024  # tokens of history room at first (it doubles as tokens come)


@dataclass
class Sample:
    """One generated item.  ``logprob`` is the sum of the model's log-probabilities of
    the generated ``tokens`` (raw model, before any sampling rule)."""

    text: str
    tokens: list[int]
    logprob: float
    settings: SampleSettings
    output: Any = None
    extra: dict = field(default_factory=dict)

    @property
    def command(self) -> str:
        return command_line(self.settings)

    def to_json(self) -> dict:
        logprob = round(self.logprob, 6) if math.isfinite(self.logprob) else None  # JSON has no NaN
        return {
            "text": self.text,
            "tokens": self.tokens,
            "logprob": logprob,
            "settings": self.settings.to_dict(),
            "command": self.command,
            **self.extra,
        }


def mean_logprob(sample: Sample) -> float:
    """The raw model's mean log-probability per token of ``sample`` (-inf when it has
    none, or when a token was impossible)."""
    value = sample.logprob / len(sample.tokens) if sample.tokens else -math.inf
    return value if math.isfinite(value) else -math.inf


class Generation:
    def __init__(self, runtime: Runtime, domain, settings: SampleSettings):
        self.runtime, self.domain, self.settings = runtime, domain, settings
        require_pitched(settings, domain)
        self.prime = list(domain.prime_ids(settings))
        if not self.prime:
            raise StudioError("nothing to start from: give a prime")
        # context the domain puts before the prime (a separator, a newline): fed, never shown
        self.hidden = domain.hidden_prefix(self.prime, settings)
        self.mask = domain.logits_mask(settings)
        self.constraints = domain.constraints(settings)
        self.results: list[Sample] = []

    # --- helpers ----------------------------------------------------------------------
    def _prefill(self):
        """State after the prime (one row) and the next-token logits there
        (:meth:`Runtime.prefill`, which keeps recent primes' results)."""
        return self.runtime.prefill(self.prime)

    def _is_final(self, generated: list[int]) -> bool:
        return bool(generated) and (
            generated[-1] == self.domain.separator_id or self.domain.is_finished(generated, self.settings)
        )

    def _hits_stop(self, text_tail: str) -> bool:
        return any(stop in text_tail for stop in self.settings.stop)

    def _finish(self, generated: list[int], logprob: float) -> Sample:
        body = generated[:-1] if generated and generated[-1] == self.domain.separator_id else generated
        output = self.domain.render(self.prime[self.hidden :] + body, self.settings)
        return Sample(output.text, [int(t) for t in body], float(logprob), self.settings, output)

    # --- sampling -----------------------------------------------------------------------
    def __iter__(self) -> Iterator[tuple[int, int]]:
        if self.settings.num_beams > 1:
            yield from self._beams()
        elif self.settings.best_of > 1:
            yield from self._best_of()
        else:
            yield from self._sample()

    def _best_of(self) -> Iterator[tuple[int, int]]:
        """``num`` samples, each the likeliest of ``best_of`` drawn for it: sample *i* is
        chosen among rows ``i * best_of`` to ``(i + 1) * best_of - 1`` of one batch (so it
        is the same whatever ``num`` is), by the mean log-probability per token the raw
        model gave its tokens (a sample that wanders onto unlikely tokens loses to one the
        model writes with conviction; the mean, not the sum, so a longer one is not
        penalised for its length).  Its tokens stream once it is chosen."""
        k = self.settings.best_of
        candidates = Generation(self.runtime, self.domain, self.settings.with_(num=self.settings.num * k, best_of=1))
        drawn = candidates.run()
        for index in range(self.settings.num):
            group = drawn[index * k : (index + 1) * k]
            means = [mean_logprob(sample) for sample in group]
            best = int(np.argmax(means))
            chosen = group[best]
            extra = {**chosen.extra, "best_of": k, "candidate": best + 1, "mean_logprob": round(means[best], 6)}
            sample = Sample(chosen.text, chosen.tokens, chosen.logprob, self.settings, chosen.output, extra)
            for token in chosen.tokens:
                yield index, int(token)
            self.results.append(sample)

    def _sample(self) -> Iterator[tuple[int, int]]:
        """``num`` rows stepped by the same :class:`~studio.engine.Engine` the server
        batches its users with: this generation is its only job (one row without rules,
        the usual command line, steps in :meth:`TokenRows.stream_alone`: the engine's
        numbers with less around each model call)."""
        rows = TokenRows(self)
        if rows.alone and self.runtime.draw_fetch is not None:
            yield from rows.stream_alone(self.runtime)
            self.results.extend(rows.samples())
            return
        engine = Engine(self.runtime)
        engine.add(rows)
        yield from rows.drain()
        while engine.jobs:
            engine.step()
            yield from rows.drain()
        if rows.error is not None:
            raise rows.error
        self.results.extend(rows.samples())

    def _beams(self) -> Iterator[tuple[int, int]]:
        settings = self.settings
        state, last = self._prefill()
        selection = selection_for(
            settings.num_beams,
            length_penalty=settings.length_penalty,
            sample=settings.stochastic_beams,
            branch_factor=settings.branch_factor,
            steps_per_iteration=settings.steps_per_iteration,
        )
        # deterministic beams rank by the model's own scores: the distribution-shaping
        # rules (temperature, top-k, top-p) apply only when beams are sampled
        rules = build_rules(settings, self.mask, self.constraints, shape=selection.sampled)

        def step(tokens, beam_state):
            return self.runtime.step_logits(tokens[:, None], beam_state)  # the search normalises

        track = _BeamTrack(self, rules)
        progress = None
        for progress in beam_search(
            step,
            Runtime.select,
            state,
            self.prime,
            last[0],
            selection,
            max_length=settings.length,
            seed=settings.seed,
            track=track,
        ):
            for token in progress.fresh:
                if token != self.domain.separator_id:
                    yield 0, int(token)
        for hypothesis in progress.results[: settings.num]:
            sample = self._finish(hypothesis.tokens, hypothesis.score)
            self.results.append(sample)

    def run(self) -> list[Sample]:
        for _ in self:
            pass
        return self.results


class _BeamTrack:
    """Beam search's per-hypothesis bookkeeping for a :class:`Generation`, O(1) per
    token: the trace is (rule states, the domain's finish state, the text tail for stop
    strings, the last id).  Rules with an incremental form (``initial``/``advance``/
    ``apply``) and stateless ones need no history; any other rule (repetition penalty,
    no-repeat n-grams) gets the whole history rebuilt at each step."""

    def __init__(self, generation: Generation, rules: list):
        self.domain, self.settings = generation.domain, generation.settings
        self.prime = list(generation.prime)
        self.rules = rules
        self.stateful = [i for i, rule in enumerate(rules) if hasattr(rule, "advance")]
        self.needs_history = any(
            not hasattr(rule, "advance") and not getattr(rule, "stateless", False) for rule in rules
        )
        self.finish = generation.domain.finish_tracker(generation.settings)
        self.longest_stop = max((len(stop) for stop in self.settings.stop), default=0)
        self.separator = generation.domain.separator_id

    def start(self):
        row = np.asarray(self.prime, dtype=np.int64)
        states = tuple(self.rules[i].initial(row) for i in self.stateful)
        return states, self.finish.start() if self.finish else None, "", None

    def advance(self, trace, token):
        states, finish, tail, _ = trace
        if states:
            states = tuple(self.rules[i].advance(s, token) for i, s in zip(self.stateful, states))
        if self.finish is not None:
            finish = self.finish.advance(finish, token)
        if self.longest_stop:
            tail = (tail + self.domain.token_text(token))[-(self.longest_stop + 64) :]
        return states, finish, tail, token

    def is_final(self, trace):
        _, finish, tail, token = trace
        if token == self.separator or (self.finish is not None and self.finish.finished(finish)):
            return True
        return bool(self.longest_stop) and any(stop in tail for stop in self.settings.stop)

    def remaining(self, trace):
        return self.finish.remaining(trace[1]) if self.finish is not None else None

    def shape(self, traces, hypotheses, log_probs):
        if not self.rules:
            return log_probs
        history = None
        if self.needs_history:
            history = np.array([self.prime + h.tokens for h in hypotheses], dtype=np.int64)
        stateful = {i: k for k, i in enumerate(self.stateful)}
        for i, rule in enumerate(self.rules):
            if i in stateful:
                log_probs = rule.apply([trace[0][stateful[i]] for trace in traces], log_probs)
            else:
                log_probs = rule(history, log_probs)
        return log_probs


class TokenRows(Job):
    """The ``num`` sampled rows of one :class:`Generation` as a job of an
    :class:`~studio.engine.Engine`: each row draws its next token from its own row of
    the logits with the generation's rules and its own generator
    (:func:`~studio.sampling.rules.row_generator`), and leaves the batch when it ends
    (separator, the domain's end, a stop string) or after ``length`` tokens.

    Memory grows with the tokens drawn, never with ``length`` ahead of them: the history
    the rules read (prime included) is kept only when there are rules, for the live rows,
    and doubles when full."""

    def __init__(self, generation: Generation):
        self.generation = generation
        settings = generation.settings
        count = settings.num
        rules = build_rules(settings, generation.mask, generation.constraints)
        self.greedy = settings.is_greedy
        # no rule but a temperature, a small vocabulary: the Gumbel-max draw (inside the
        # step graph when alone)
        self.plain = not self.greedy and draws_by_gumbel(rules, generation.runtime.vocab_size)
        self.rules = [] if self.plain else rules
        self.length = settings.length
        self.separator = generation.domain.separator_id
        self._is_finished = generation.domain.is_finished  # bound once: it runs per token
        self.stops = settings.stop
        self.longest_stop = max((len(stop) for stop in self.stops), default=0)
        self.generators = [row_generator(settings.seed, row) for row in range(count)]
        temperature = settings.temperature if self.plain else 1.0
        self.noises = [GumbelNoise(generator, temperature) for generator in self.generators] if self.plain else []
        self._noise_stack: np.ndarray | None = None  # the live rows' Gumbel blocks (next_noise_together)
        # whether a row can end other than on the separator or the length: the domain's
        # own end (music's --bars) or a stop string; if not, a step's rows are checked at once
        self._ends = bool(self.stops) or generation.domain.finish_tracker(settings) is not None
        self.generated: list[list[int]] = [[] for _ in range(count)]
        self.logprob = [0.0] * count
        self.tails = [""] * count
        self.rows = list(range(count))  # each live row's sample number
        self.drawn = 0
        self.error: Exception | None = None
        self._events: list[tuple[int, int]] = []
        self._next = np.zeros((count, 1), dtype=np.int64)
        prime = generation.prime
        self.filled = len(prime)
        if self.rules:
            capacity = len(prime) + min(settings.length, HISTORY_START)
            self.history = np.empty((count, capacity), dtype=np.int64)
            self.history[:, : len(prime)] = prime
        else:
            self.history = None

    @property
    def finished(self) -> bool:
        return self.live == 0

    @property
    def alone(self) -> bool:
        """One row drawn by the Gumbel-max trick (no rule but a temperature, not greedy)."""
        return self.plain and len(self.rows) == 1

    def stream_alone(self, runtime: Runtime) -> Iterator[tuple[int, int]]:
        """The whole loop of an :attr:`alone` job without an engine, with the draw inside
        the step graph (:attr:`Runtime.draw_fetch`): each call takes the row's Gumbels
        and returns the token, which goes straight back in as the next input, so between
        two calls there is only the bookkeeping.  Each token is the engine's
        (:func:`~studio.sampling.rules.gumbel_max` gives the graph's numbers bit for bit),
        and the log-probabilities are scored a block of Gumbels at a time with
        the engine's numpy calls (:func:`~studio.sampling.rules.plain_scores`);
        ``tests/test_generate.py`` compares both.  The job's fields hold the row's tokens
        and score whenever the loop stops (ended, or closed by its reader)."""
        run, fetch = runtime.call, runtime.draw_fetch
        state = self.start(runtime)
        yield from self.drain()
        if not self.live:
            return
        feeds = {"tokens": self._next, **state}
        slots = list(enumerate(runtime.state_names, 2))
        noise, vocab = self.noises[0], runtime.vocab_size
        row = self.rows[0]
        generated = self.generated[row]
        append = generated.append
        separator, length, stops = self.separator, self.length, self.stops
        is_finished, settings = self._is_finished, self.generation.settings
        drawn = self.drawn
        pending: list[np.ndarray] = []  # the logits of the tokens not yet scored
        keep = pending.append
        try:
            ended = False
            while not ended:
                for noise_row in noise.rest(vocab):  # the block's Gumbels not yet used
                    feeds[NOISE] = noise_row
                    values = run(fetch, feeds)
                    feeds["tokens"] = token_array = values[0]
                    for index, state_name in slots:
                        feeds[state_name] = values[index]
                    keep(values[1])
                    token = int(token_array[0, 0])
                    drawn += 1
                    append(token)
                    if token == separator:
                        ended = True
                        break
                    yield row, token
                    if drawn >= length or is_finished(generated, settings) or (stops and self._stop_hit(row, token)):
                        ended = True
                        break
                self._score_pending(row, pending, generated)  # a broken model's logits raise here
        finally:
            self._score_pending(row, pending, generated, check=False)  # closed by its reader
            self.drawn = drawn
            self.rows, self.generators, self.noises, self.live = [], [], [], 0

    def _score_pending(self, row: int, pending: list[np.ndarray], generated: list[int], check: bool = True) -> None:
        """Add the log-probabilities of the last ``len(pending)`` tokens of ``generated``
        (``pending``: their float32 logits, (1, 1, vocab) each) to row ``row``'s score,
        one token at a time as the engine does, and empty ``pending``."""
        if pending:
            count = len(pending)
            logits = np.concatenate(pending).reshape(count, -1).astype(np.float64)
            logprob = self.logprob[row]
            for score in plain_scores(logits, np.asarray(generated[-count:]), check):
                logprob += score
            self.logprob[row] = logprob
            pending.clear()

    def start(self, runtime: Runtime) -> dict[str, np.ndarray]:
        state, last = self.generation._prefill()
        self.live = len(self.rows)
        self._draw(np.repeat(last, self.live, axis=0))
        if self.live:
            state = {name: np.repeat(value, self.live, axis=runtime.batch_axes[name]) for name, value in state.items()}
        return state

    def inputs(self) -> list[np.ndarray]:
        return [self._next]

    def advance(self, outputs: list[np.ndarray]) -> np.ndarray | None:
        return self._draw(outputs[0][:, 0])

    @classmethod
    def advance_together(cls, jobs: list[Job], step: StepRows, indices: list[int]) -> list[np.ndarray | None]:
        """Jobs of one row without rules but a temperature (one request, the server's
        usual case) draw in one set of numpy calls; the numbers are those each would draw alone
        (:func:`~studio.sampling.rules.gumbel_max` and
        :func:`~studio.sampling.rules.plain_scores` on its row).  The others advance one
        by one."""
        plain = [k for k, job in enumerate(jobs) if job.plain and job.live == 1 and not job.cancelled]
        results: list[np.ndarray | None] = [None] * len(jobs)
        drawn = set()
        if len(plain) > 1:
            logits, axis = step.outputs[0], step.axes[0]
            rows = [step.starts[indices[k]] for k in plain]
            if axis == 0 and len(rows) == len(logits):  # every row of the step, in order: no gather
                last = logits.reshape(len(plain), -1)
            else:
                last = np.take(logits, rows, axis=axis).reshape(len(plain), -1)
            last = np.asarray(last, dtype=np.float32)
            if np.isfinite(last.max(-1)).all():  # else each job's own draw says what went wrong
                noises = [jobs[k].noises[0] for k in plain]
                chosen = gumbel_max(last, next_noise(noises, last.shape[-1]))
                scores = plain_scores(last.astype(np.float64), chosen)
                for k, token, score in zip(plain, chosen.tolist(), scores):
                    results[k] = _one_row_result(jobs[k], token, score)
                drawn = set(plain)
        others = [k for k in range(len(jobs)) if k not in drawn]
        alone = super().advance_together([jobs[k] for k in others], step, [indices[k] for k in others])
        for k, result in zip(others, alone):
            results[k] = result
        return results

    def drain(self) -> list[tuple[int, int]]:
        """``(row, token)`` of every token committed since the last drain (separators
        are not shown), in row order within a step."""
        events, self._events = self._events, []
        return events

    def samples(self) -> list[Sample]:
        return [self.generation._finish(tokens, logprob) for tokens, logprob in zip(self.generated, self.logprob)]

    def _draw(self, logits: np.ndarray) -> np.ndarray | None:
        """Draw one token per live row from ``logits`` (live rows, vocab); returns the
        positions of the rows that go on, or None when all do.  Rows without rules but a
        temperature draw by :func:`~studio.sampling.rules.gumbel_max` from their float32
        logits (a step graph's own numbers, exact in float64 too), the others by their
        rules."""
        count = len(logits)
        generators = self.generators
        if self.plain:
            last32 = np.asarray(logits, dtype=np.float32)
            if count == 1:
                noise = next_noise(self.noises, last32.shape[-1])
            else:
                noise, self._noise_stack = next_noise_together(self.noises, last32.shape[-1], self._noise_stack)
            tokens = gumbel_max(last32, noise)
            scores = plain_scores(last32.astype(np.float64), tokens)
            if count == 1:
                return self._one_row(int(tokens[0]), scores[0])
        else:
            last = logits.astype(np.float64)
            # the model's own distribution scores every sample: log p = x - logsumexp(x)
            _, log_total = softmax_weights(last)
            if self.rules:
                shaped = apply_rules(self.rules, self.history[:, : self.filled], last)
                tokens = shaped.argmax(-1) if self.greedy else draw(shaped, generators)
            else:  # greedy without rules
                tokens = last.argmax(-1)
            scores = (last[np.arange(count), tokens] - log_total).tolist()
        drawn = tokens.tolist()
        self.drawn += 1
        out_of_length = self.drawn >= self.length
        ended = []
        rows, every, logprob = self.rows, self.generated, self.logprob
        generation, events, separator = self.generation, self._events, self.separator
        for row, token, score in zip(rows, drawn, scores):
            every[row].append(token)
            logprob[row] += score
        if out_of_length or self._ends or separator in drawn:
            for position, (row, token) in enumerate(zip(rows, drawn)):
                if token != separator:
                    events.append((row, token))
                if out_of_length or generation._is_final(every[row]) or (self.stops and self._stop_hit(row, token)):
                    ended.append(position)
        else:  # no row can end here: only the separator ends a row, and none drew it
            events.extend(zip(rows, drawn))
        keep = None
        if ended:
            keep = np.asarray([p for p in range(count) if p not in ended], dtype=np.int64)
            self.rows = [rows[p] for p in keep]
            self.generators = [generators[p] for p in keep]
            if self.noises:
                self.noises = [self.noises[p] for p in keep]
                if self._noise_stack is not None:
                    self._noise_stack = self._noise_stack[keep]
            tokens = tokens[keep]
            if self.history is not None:
                self.history = self.history[keep]
        self.live = len(self.rows)
        if self.live:
            if self.history is not None:
                self._remember(tokens)
            if len(tokens) == len(self._next):
                self._next[:, 0] = tokens
            else:
                self._next = tokens.astype(np.int64).reshape(-1, 1)
        return keep

    def _one_row(self, token: int, score: float) -> np.ndarray | None:
        """:meth:`_draw`'s bookkeeping for one live row without rules (so no history)."""
        self.drawn += 1
        row = self.rows[0]
        generated = self.generated[row]
        generated.append(token)
        self.logprob[row] += score
        if token != self.separator:
            self._events.append((row, token))
            ended = self.drawn >= self.length or self._is_finished(generated, self.generation.settings)
        else:
            ended = True
        if not ended and self.stops:
            ended = self._stop_hit(row, token)
        if ended:
            self.rows, self.generators, self.noises, self.live = [], [], [], 0
            return np.arange(0)
        self._next[0, 0] = token
        return None

    def _stop_hit(self, row: int, token: int) -> bool:
        """Whether sample ``row``'s text, ``token`` added, now holds a stop string."""
        tail = (self.tails[row] + self.generation.domain.token_text(token))[-(self.longest_stop + 64) :]
        self.tails[row] = tail
        return self.generation._hits_stop(tail)

    def _remember(self, tokens: np.ndarray) -> None:
        if self.filled == self.history.shape[1]:  # full: double it, so appends stay O(1) on average
            grown = np.empty((len(self.history), 2 * self.filled), dtype=np.int64)
            grown[:, : self.filled] = self.history
            self.history = grown
        self.history[:, self.filled] = tokens
        self.filled += 1


def _one_row_result(job: TokenRows, token: int, score: float) -> np.ndarray | None:
    try:
        return job._one_row(token, score)
    except Exception as error:  # a domain's end test failed: this job alone leaves
        job.error, job.live = error, 0
        return np.arange(0)


def nats_per_token(
    runtime: Runtime, ids: np.ndarray, window: int = 4096, restart: int | None = None
) -> tuple[float, int]:
    """Mean nats/token of ``ids`` (teacher forced, state carried across windows; with
    ``restart``, a fresh state at each of those ids)."""
    if len(ids) < 2:
        raise StudioError("the evaluation text is too short (needs at least 2 tokens)")
    nats, count, _ = teacher_forced_nats(runtime.logits, runtime.init_state(1), ids, window, restart)
    return nats, count
