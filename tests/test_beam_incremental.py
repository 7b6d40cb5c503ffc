"""Beams as cheap as batches: the incremental bookkeeping equals a naive recomputation,
the early stop fires on long caps, small searches equal brute force, and a music beam
ends as a real piece."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from studio.domains.music import MusicDomain
from studio.music.bars import BarGrid, NoEndBeforeBars
from studio.music.grammar import InstantOrder, NoteGrammar, events_per_instant
from studio.sampling.beam import Deterministic, Hypothesis, Node, _Committed, beam_search
from studio.sampling.settings import SampleSettings

ROOT = Path(__file__).resolve().parent.parent
SONGS = ROOT / "export" / "songs"
DOMAIN = MusicDomain(max_note_ticks=24, max_voices=4)
CODEC = DOMAIN.codec
V = CODEC.vocab_size


def common_prefix(sequences: list[list[int]]) -> list[int]:
    n = 0
    while all(len(s) > n for s in sequences) and len({s[n] for s in sequences}) == 1:
        n += 1
    return sequences[0][:n]


@pytest.mark.parametrize("seed", range(20))
def test_committed_prefix_equals_the_naive_common_prefix(seed):
    rng = np.random.default_rng(seed)
    committed = _Committed()
    kept = [Hypothesis()]
    for _ in range(60):
        children = []
        for _ in range(int(rng.integers(1, 5))):
            parent = kept[int(rng.integers(len(kept)))]
            child = Hypothesis(node=Node(int(rng.integers(3)), parent.node))
            child.branch = parent.branch
            children.append(child)
        if rng.random() < 0.3:  # a finished hypothesis, kept beside the live ones
            children.append(kept[int(rng.integers(len(kept)))])
        kept = children
        committed.grow(kept)
        assert committed.tokens == common_prefix([h.tokens for h in kept])


class Table:
    """A toy model: next-token log-probabilities a fixed function of the sequence."""

    def __init__(self, vocab, seed, end=0.0):
        self.vocab, self.seed, self.end = vocab, seed, end  # end: extra weight on token 0

    def log_probs(self, sequence):
        p = np.random.default_rng([self.seed, *[t + 1 for t in sequence]]).dirichlet(np.ones(self.vocab))
        p[0] += self.end
        return np.log(np.maximum(p / p.sum(), 1e-6))

    def step(self, tokens, state):
        state = [s + [int(t)] for s, t in zip(state, tokens)]
        return np.stack([self.log_probs(s) for s in state]), state

    def search(self, selection, max_length, track):
        return list(
            beam_search(
                self.step,
                lambda s, r: [list(s[i]) for i in r],
                [[]],
                [],
                self.log_probs([]),
                selection,
                max_length=max_length,
                track=track,
            )
        )


class EndsAt:
    """A track: token 0 ends a sequence, token 1 is banned after token 2 (a rule with
    state), and at most ``budget`` tokens fit in any sequence."""

    def __init__(self, budget=None):
        self.budget = budget

    def start(self):
        return (None, 0)

    def advance(self, trace, token):
        return (token, trace[1] + 1)

    def is_final(self, trace):
        return trace[0] == 0 or (self.budget is not None and trace[1] >= self.budget)

    def shape(self, traces, hypotheses, log_probs):
        out = log_probs.copy()
        for row, (last, _) in enumerate(traces):
            if last == 2:
                out[row, 1] = -np.inf
        return out

    def remaining(self, trace):
        return None if self.budget is None else self.budget - trace[1]


def brute_force(model, vocab, length, track, penalty):
    best, best_value = None, -np.inf
    for sequence in itertools.product(range(vocab), repeat=length):
        trace, rank = track.start(), 0.0
        for n, token in enumerate(sequence):
            lp = model.log_probs(list(sequence[:n]))
            shaped = track.shape([trace], None, lp[None])[0]
            shaped = shaped - np.logaddexp.reduce(shaped)
            rank += shaped[token]
            trace = track.advance(trace, token)
            if not np.isfinite(rank):
                break
            if track.is_final(trace) or n == length - 1:
                value = rank / (n + 1) ** penalty
                if value > best_value + 1e-12:
                    best, best_value = list(sequence[: n + 1]), value
                break
    return best


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("penalty", [0.0, 1.0])
def test_small_searches_with_a_track_equal_brute_force(seed, penalty):
    vocab, length = 3, 4
    model = Table(vocab, seed)
    results = model.search(Deterministic(vocab**length, penalty), length, EndsAt())[-1].results
    assert results[0].tokens == brute_force(model, vocab, length, EndsAt(), penalty)


class Exhaustive(Deterministic):
    """Deterministic beams that stop only when no beam is live (no early stop)."""

    def survivors(self, live, rows, done, position, max_length):
        live, rows, done, _ = super().survivors(live, rows, done, position, max_length)
        return live, rows, done, not live


def test_early_stop_fires_under_a_long_cap_when_the_reachable_length_is_known():
    model = Table(4, 3, end=1.0)  # endings are likely: finished hypotheses come early
    budget = 40
    steps = model.search(Deterministic(3, 1.0), 20_000, EndsAt(budget=budget))
    full = model.search(Exhaustive(3, 1.0), 20_000, EndsAt(budget=budget))
    assert steps[-1].finished and len(steps) < len(full) <= budget
    assert [h.tokens for h in steps[-1].results] == [h.tokens for h in full[-1].results]
    # with only the cap to bound a live beam's length, the search could not stop early
    capped = model.search(Deterministic(3, 1.0), 2 * budget, EndsAt())
    assert len(capped) > len(steps)


def random_events(rng, n):
    """Random histories that follow the music rules (drawn under them)."""
    rules = [InstantOrder(CODEC), NoteGrammar(CODEC, 24, 4), BarGrid(CODEC, start=1), NoEndBeforeBars(CODEC, 3, 1)]
    ids = [CODEC.separator_id]
    for _ in range(n):
        logits = rng.normal(size=(1, V))
        for rule in rules:
            logits = rule(np.asarray([ids]), logits)
        allowed = np.flatnonzero(np.isfinite(logits[0]))
        assert allowed.size, "the rules left nothing allowed"
        ids.append(int(rng.choice(allowed)))
        if ids[-1] == CODEC.separator_id:
            break
    return ids, rules


@pytest.mark.parametrize("seed", range(6))
def test_incremental_rules_and_bar_counter_equal_the_history_forms(seed):
    rng = np.random.default_rng(seed)
    ids, rules = random_events(rng, 300)
    settings = SampleSettings(bars=3)
    tracker = DOMAIN.finish_tracker(settings)
    states = [rule.initial(np.asarray(ids[:1])) for rule in rules]
    finish = tracker.start()
    for t in range(1, len(ids)):
        logits = rng.normal(size=(1, V))
        for rule, state in zip(rules, states):
            np.testing.assert_array_equal(rule.apply([state], logits), rule(np.asarray([ids[:t]]), logits))
        states = [rule.advance(state, ids[t]) for rule, state in zip(rules, states)]
        finish = tracker.advance(finish, ids[t])
        generated = ids[1 : t + 1]
        assert tracker.finished(finish) == (DOMAIN.completed_bars(generated) >= 3)


@pytest.mark.parametrize("seed", range(4))
def test_time_moves_on_within_a_bounded_number_of_events(seed):
    rng = np.random.default_rng(seed)
    ids, _ = random_events(rng, 400)
    is_shift = [CODEC.shift_offset <= i < CODEC.program_offset for i in ids]
    runs = [len(list(g)) for shift, g in itertools.groupby(is_shift) if not shift]
    assert max(runs) <= events_per_instant(4) + 1  # + the separator that opens the stream


@pytest.mark.skipif(not (SONGS / "card.json").is_file(), reason="needs export/songs")
def test_a_music_beam_ends_as_a_piece_of_real_notes():
    from studio.api import sample

    for bars in (2, 4):
        [piece] = sample(str(SONGS), seed=1, bars=bars, num_beams=4, tempo=100)
        notes = piece.output.piece.notes
        assert notes and all(note.end > note.start for note in notes)
        assert DOMAIN.completed_bars(piece.tokens) == bars
        assert piece.tokens[-1] == CODEC.bar_id  # ended by the bar line that completes the last bar


PROSE = ROOT / "export" / "prose"


def naive_beams(model, **options):
    """The product's search with the plain history track: whole-history rules and a
    finish test over the whole generated sequence (the bookkeeping before traces)."""
    from studio.api import bundle_domain, load_bundle
    from studio.generate import Generation
    from studio.runtime import Runtime
    from studio.sampling.beam import selection_for
    from studio.sampling.rules import apply_rules, build_rules

    bundle = load_bundle(str(model))
    runtime, domain = Runtime(bundle), bundle_domain(bundle)
    settings = SampleSettings(model=str(model), **options)
    generation = Generation(runtime, domain, settings)
    state, last = generation._prefill()
    selection = selection_for(settings.num_beams, length_penalty=settings.length_penalty)
    rules = build_rules(settings, generation.mask, generation.constraints, shape=False)

    def is_final(sequence):
        generated = sequence[len(generation.prime) :]
        if generation._is_final(generated):
            return True
        text = "".join(domain.token_text(t) for t in generated)
        return any(stop in text for stop in settings.stop)

    *_, final = beam_search(
        lambda tokens, s: runtime.step_logits(tokens[:, None], s),
        Runtime.select,
        state,
        generation.prime,
        last[0],
        selection,
        max_length=settings.length,
        is_final=is_final,
        rules=(lambda h, lp: apply_rules(rules, h, lp)) if rules else None,
    )
    return final.results[0].tokens


@pytest.mark.skipif(not (SONGS / "card.json").is_file(), reason="needs export/songs")
def test_music_beams_with_traces_equal_the_history_search():
    from studio.api import sample

    options = dict(seed=1, bars=2, num_beams=3)
    [piece] = sample(str(SONGS), **options)
    assert piece.tokens == naive_beams(SONGS, **options)


@pytest.mark.skipif(not (PROSE / "card.json").is_file(), reason="needs export/prose")
def test_text_beams_with_stop_strings_equal_the_history_search():
    from studio.api import sample

    options = dict(seed=1, num_beams=3, length=120, prime="The ", stop=["."])
    [text] = sample(str(PROSE), **options)
    reference = naive_beams(PROSE, **options)
    assert text.tokens == reference
    assert "." in text.text or len(text.tokens) == 120
