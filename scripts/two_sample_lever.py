"""One row of the README's two-sample ablation: a music bundle's samples against a corpus.

What ``studio eval MODEL CORPUS --two-sample`` reports, without its teacher-forced scoring
(the sampling levers leave the weights, hence nats/event, alone), through the fp32 graph,
plus two levers `studio eval` does not expose: ``--top-p`` and ``--no-metre`` (the card's
metre grid and long-note cap removed, as bundles had them before); ``--match-lengths`` as
on `studio eval`.  One JSON line:

    .venv/bin/python scripts/two_sample_lever.py songs corpora/songs/bach --temp 0.85 [--no-metre]
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

from studio.api import load
from studio.bundle import resolve
from studio.evaluation import comparison_samples


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
    args = parser.parse_args()
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
        loaded = load(str(bundle), "cpu", "fp32")
        documents = loaded.domain.read_corpus(args.corpus)
        if args.split == "val":  # as `studio eval --split val`: the last tenth of the pieces
            documents = documents[int(len(documents) * 0.9) :]
        start = time.time()
        outputs, documents = comparison_samples(
            loaded.runtime,
            loaded.domain,
            documents,
            samples=args.n,
            bars=args.bars,
            seed=0,
            match_lengths=args.match_lengths,
            temperature=args.temp,
            top_p=args.top_p,
        )
        report = {"model": args.model, "temp": args.temp, "top_p": args.top_p, "metre": not args.no_metre}
        report["match_lengths"] = args.match_lengths
        report["generate_s"] = round(time.time() - start, 1)
        report.update(loaded.domain.sample_report(outputs, documents))
        report.update(loaded.domain.two_sample_report(outputs, documents, length=48, seed=0))
    print(json.dumps(report))


if __name__ == "__main__":
    main()
