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

from .errors import StudioError
from .numeric import log_softmax, softmax_weights, teacher_forced_nats
from .runtime import Runtime
from .sampling.beam import beam_search, selection_for
from .sampling.rng import CounterRNG
from .sampling.rules import apply_rules, build_rules, draw, draw_weights
from .sampling.settings import SampleSettings, command_line


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


class Generation:
    def __init__(self, runtime: Runtime, domain, settings: SampleSettings):
        self.runtime, self.domain, self.settings = runtime, domain, settings
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
        """State after the prime (one row) and the next-token logits there."""
        state = self.runtime.init_state(1)
        logits, state = self.runtime.logits(np.asarray([self.prime]), state)
        return state, logits[:, -1].astype(np.float64)

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
        else:
            yield from self._sample()

    def _sample(self) -> Iterator[tuple[int, int]]:
        settings, rows = self.settings, self.settings.num
        state, last = self._prefill()
        state = Runtime.select(state, np.zeros(rows, dtype=np.int64))
        last = np.repeat(last, rows, axis=0)
        rules = build_rules(settings, self.mask, self.constraints)
        generators = [CounterRNG(settings.seed, row) for row in range(rows)]
        # one buffer for the whole run: growing an array every step costs O(length^2)
        history = np.empty((rows, len(self.prime) + settings.length), dtype=np.int64)
        history[:, : len(self.prime)] = self.prime
        filled = len(self.prime)
        generated: list[list[int]] = [[] for _ in range(rows)]
        tails = [""] * rows
        logprob = [0.0] * rows
        live = list(range(rows))  # rows still generating
        longest_stop = max((len(s) for s in settings.stop), default=0)
        separator = self.domain.separator_id
        step = self.runtime.step_logits
        arange = np.arange(rows)
        for _ in range(settings.length):
            # the model's own distribution scores every sample: log p = x - logsumexp(x)
            weights, log_total = softmax_weights(last)
            if rules:
                shaped = apply_rules(rules, history[:, :filled], last)
                tokens = shaped.argmax(-1) if settings.is_greedy else draw(shaped, generators)
            else:  # no rule reshapes the logits: draw from the weights just computed
                tokens = last.argmax(-1) if settings.is_greedy else draw_weights(weights, generators)
            model_lp = (last[arange, tokens] - log_total).tolist()
            ended = []
            for row in live:
                token = int(tokens[row])
                generated[row].append(token)
                logprob[row] += model_lp[row]
                if token != separator:
                    yield row, token
                if self._is_final(generated[row]):
                    ended.append(row)
                elif settings.stop:
                    tails[row] = (tails[row] + self.domain.token_text(token))[-(longest_stop + 64) :]
                    if self._hits_stop(tails[row]):
                        ended.append(row)
            if ended:
                live = [row for row in live if row not in ended]
                if not live:
                    break
            history[:, filled] = tokens
            filled += 1
            last, state = step(tokens[:, None], state)
        for row in range(rows):
            self.results.append(self._finish(generated[row], logprob[row]))

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
            logits, beam_state = self.runtime.logits(tokens[:, None], beam_state)
            return log_softmax(logits[:, 0]), beam_state

        def is_final(sequence: list[int]) -> bool:
            generated = sequence[len(self.prime) :]
            if self._is_final(generated):
                return True
            if settings.stop:
                text = "".join(self.domain.token_text(t) for t in generated[-64:])
                return self._hits_stop(text)
            return False

        streamed = 0
        progress = None
        for progress in beam_search(
            step,
            Runtime.select,
            state,
            self.prime,
            log_softmax(last)[0],
            selection,
            max_length=settings.length,
            is_final=is_final,
            seed=settings.seed,
            rules=(lambda h, lp: apply_rules(rules, h, lp)) if rules else None,
        ):
            committed = progress.committed
            for token in committed[streamed:]:
                if token != self.domain.separator_id:
                    yield 0, int(token)
            streamed = max(streamed, len(committed))
        for hypothesis in progress.results[: settings.num]:
            sample = self._finish(hypothesis.tokens, hypothesis.score)
            self.results.append(sample)

    def run(self) -> list[Sample]:
        for _ in self:
            pass
        return self.results


def nats_per_token(runtime: Runtime, ids: np.ndarray, window: int = 4096) -> tuple[float, int]:
    """Mean nats/token of ``ids`` (teacher forced, state carried across windows)."""
    if len(ids) < 2:
        raise StudioError("the evaluation text is too short (needs at least 2 tokens)")
    nats, count, _ = teacher_forced_nats(runtime.logits, runtime.init_state(1), ids, window)
    return nats, count
