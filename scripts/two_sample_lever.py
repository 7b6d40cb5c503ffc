"""One row of the README's two-sample ablation: a music bundle's samples against a corpus.

What ``studio eval MODEL CORPUS --two-sample`` reports, without its teacher-forced scoring
(the sampling levers leave the weights, hence nats/event, alone), through the fp32 graph,
plus two levers `studio eval` does not expose: ``--top-p`` and ``--no-metre`` (the card's
metre grid and long-note cap removed, as bundles had them before); ``--match-lengths`` as
on `studio eval`; ``--key-bias S``, an experiment not in the product: once a piece has its
``KEY`` event, note-ons outside that key's scale (major; for minor keys the natural,
harmonic and melodic minor together) lose ``S`` from their logits; ``--pitch-temp T``,
another: the choice among note-ons alone is sharpened (T < 1), their share of the
probability left as the model gave it; ``--key-prior``, another: each piece opens with a
``KEY`` drawn from the training pieces' keys (transposition made every key about as
likely to the model); ``--best-of K`` as `studio sample --best-of K`: each piece is the one
of K drawn for it whose events the model finds likeliest on average.  ``--split
val`` compares with the pieces the trainer held out.  One JSON line:

    .venv/bin/python scripts/two_sample_lever.py songs corpora/songs/bach --temp 0.85 [--no-metre]
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from studio.api import load
from studio.bundle import resolve
from studio.corpus import held_out_of
from studio.domains import read_documents
from studio.evaluation import comparison_samples, split_documents
from studio.music.scales import MODES as SCALES


class KeyBias:
    """Lowers the logits of note-ons outside the scale of the piece's ``KEY`` event."""

    def __init__(self, codec, strength: float):
        self.codec, self.strength = codec, strength
        self.in_scale = np.zeros((2, 12, 12), dtype=bool)  # [mode, tonic, pitch class]
        minor = set(SCALES["minor"]) | set(SCALES["harmonic minor"]) | set(SCALES["melodic minor"])
        for mode, steps in enumerate((SCALES["major"], sorted(minor))):
            for tonic in range(12):
                self.in_scale[mode, tonic, [(tonic + step) % 12 for step in steps]] = True

    def __call__(self, history: np.ndarray, logits: np.ndarray) -> np.ndarray:
        codec, out = self.codec, np.array(logits, dtype=np.float64, copy=True)
        for row in range(out.shape[0]):
            ids = history[row]
            separators = np.flatnonzero(ids == codec.separator_id)
            ids = ids[separators[-1] + 1 :] if separators.size else ids
            keys = ids[ids >= codec.key_offset]
            if keys.size:
                mode, tonic = divmod(int(keys[-1]) - codec.key_offset, 12)
                outside = ~self.in_scale[mode, tonic][np.arange(128) % 12]
                out[row, codec.note_on_offset + np.flatnonzero(outside)] -= self.strength
        return out


class PitchTemperature:
    """Sharpens (T < 1) the choice among note-ons alone: their share of the probability
    stays as the model gave it, and within it each note's probability goes as p ** (1/T)."""

    def __init__(self, codec, temperature: float):
        self.notes = slice(codec.note_on_offset, codec.note_on_offset + 128)
        self.inverse = 1.0 / temperature

    def __call__(self, history: np.ndarray, logits: np.ndarray) -> np.ndarray:
        out = np.array(logits, dtype=np.float64, copy=True)
        notes = out[:, self.notes]
        finite = np.isfinite(notes)
        if not finite.any():
            return out
        before = np.logaddexp.reduce(np.where(finite, notes, -np.inf), axis=1, keepdims=True)
        scaled = np.where(finite, notes * self.inverse, -np.inf)
        after = np.logaddexp.reduce(scaled, axis=1, keepdims=True)
        ok = np.isfinite(before)
        out[:, self.notes] = np.where(ok, scaled - after + before, notes)
        return out


class KeyPrior:
    """The first event of a piece is a ``KEY``, drawn from the keys of ``pieces`` (the
    training chorales) as often as they occur there: transposition augmentation has made
    every key about as likely to the model."""

    def __init__(self, codec, pieces):
        counts = np.zeros(codec.vocab_size)
        for piece in pieces:
            if piece.key:
                counts[codec.key_id(*piece.key)] += 1
        self.separator = codec.separator_id
        with np.errstate(divide="ignore"):
            self.opening = np.log(counts / counts.sum())

    def __call__(self, history: np.ndarray, logits: np.ndarray) -> np.ndarray:
        out = np.array(logits, dtype=np.float64, copy=True)
        for row in range(out.shape[0]):
            if history[row, -1] == self.separator:  # nothing written yet
                out[row] = self.opening
        return out


def with_rules(domain, *rules) -> None:
    """``domain`` (music) with ``rules(codec)`` after its own."""
    base = type(domain)

    class Ruled(base):
        def constraints(self, settings):
            return [*base.constraints(self, settings), *(rule(self.codec) for rule in rules)]

    domain.__class__ = Ruled


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("corpus", type=Path)
    parser.add_argument("--temp", type=float, default=1.0)
    parser.add_argument("--top-p", type=float, default=1.0)
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--bars", type=int, default=16)
    parser.add_argument("--split", choices=("all", "val"), default="all")
    parser.add_argument("--no-metre", action="store_true")
    parser.add_argument("--match-lengths", action="store_true")
    parser.add_argument("--key-bias", type=float, default=0.0)
    parser.add_argument("--pitch-temp", type=float, default=1.0)
    parser.add_argument("--key-prior", action="store_true", help="open each piece with a training piece's key")
    parser.add_argument("--best-of", type=int, default=1, help="keep the likeliest of K pieces drawn for each")
    parser.add_argument("--seeds", default="0", help="a seed, or a range like 0-9: a row each, then the mean")
    parser.add_argument("--precision", choices=("fp32", "int8", "auto"), default="fp32")
    args = parser.parse_args()
    first, _, last = args.seeds.partition("-")
    seeds = list(range(int(first), int(last or first) + 1))
    with tempfile.TemporaryDirectory() as scratch:
        bundle = resolve(args.model)
        if args.no_metre:
            copy = Path(scratch) / bundle.name
            shutil.copytree(bundle, copy)
            card = json.loads((copy / "card.json").read_text())
            for key in ("grid_positions", "long_note_ticks"):
                card["domain"].pop(key, None)
            (copy / "card.json").write_text(json.dumps(card))
            bundle = copy
        loaded = load(str(bundle), "cpu", args.precision)
        rules = []
        if args.key_bias:
            rules.append(lambda codec: KeyBias(codec, args.key_bias))
        if args.pitch_temp != 1.0:
            rules.append(lambda codec: PitchTemperature(codec, args.pitch_temp))
        documents = read_documents(type(loaded.domain), args.corpus, held_out_of(loaded.runtime.bundle.card))
        trained = documents
        if args.split == "val":  # as `studio eval --split val`: the pieces the trainer held out
            trained, documents = split_documents(loaded.domain, documents, 0.1)
        if args.key_prior:
            rules.append(lambda codec: KeyPrior(codec, [d.content for d in trained]))
        if rules:
            with_rules(loaded.domain, *rules)
        accuracies = []
        for seed in seeds:
            start = time.time()
            outputs, compared = comparison_samples(
                loaded.runtime,
                loaded.domain,
                documents,
                samples=args.n,
                bars=args.bars,
                seed=seed,
                match_lengths=args.match_lengths,
                temperature=args.temp,
                top_p=args.top_p,
                best_of=args.best_of,
            )
            report = {"model": args.model, "seed": seed, "temp": args.temp, "top_p": args.top_p}
            report.update(metre=not args.no_metre, match_lengths=args.match_lengths, precision=args.precision)
            report.update(key_bias=args.key_bias, pitch_temp=args.pitch_temp, key_prior=args.key_prior)
            report["best_of"] = args.best_of
            report["generate_s"] = round(time.time() - start, 1)
            report.update(loaded.domain.sample_report(outputs, compared))
            report.update(loaded.domain.two_sample_report(outputs, compared, length=48, seed=seed))
            accuracies.append(report["two_sample_accuracy"])
            print(json.dumps(report), flush=True)
    if len(seeds) > 1:
        mean, sd = float(np.mean(accuracies)), float(np.std(accuracies, ddof=1))
        summary = {"seeds": args.seeds, "mean_accuracy": round(mean, 4), "sd_over_seeds": round(sd, 4)}
        summary["standard_error"] = round(sd / np.sqrt(len(seeds)), 4)
        print(json.dumps(summary))


if __name__ == "__main__":
    main()
