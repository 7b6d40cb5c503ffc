"""Cell ablation: the same corpus, model size, settings and wall-clock budget for each cell.

    PYTHONPATH=. python scripts/ablation_cells.py --minutes 3 --runs-dir runs/ablation [cells...]

Each cell trains one run (no evaluation during training, so the budget is all training),
then its last weights are scored on the start of the held-out 10% with state carried
through, as the trainer's validation does.  Prints one markdown table row per cell:
median training tokens/s and held-out nats/char.  Run one at a time: cells share cores.
"""

from __future__ import annotations

import argparse
import csv
import statistics
from pathlib import Path

import torch

from studio.config import CELLS, TrainConfig
from studio.devices import Distributed
from studio.models import trainable_for
from studio.train import load_corpus, train

CORPUS = Path("corpora/shakespeare")
MODEL = dict(hidden_size=192, layers=2, embedding_size=64, dropout=0.1)
SETTINGS = dict(
    batch_size=32, seq_len=64, learning_rate=3e-3, warmup_steps=20, eval_every=10**6, patience=10**6, seed=1337
)
HELD_OUT_CHARS = 30_000  # the first 30k characters of the held-out 10%: the same for every cell


def held_out_nats(run_path: Path, chars: int | None = HELD_OUT_CHARS) -> float:
    """Nats/char of the run's last weights on the first ``chars`` of the held-out 10% of
    tinyshakespeare (None: all of it), state carried through as the trainer validates."""
    checkpoint = torch.load(run_path / "checkpoint.pt", map_location="cpu", weights_only=False)
    head = trainable_for(checkpoint["head"])
    model = head.build_model(checkpoint["model"])
    model.load_state_dict(checkpoint["model_state"])
    corpus = load_corpus(CORPUS, "chars", {})
    data = head.train_data(corpus.domain, corpus.payload, TrainConfig(**SETTINGS), 0, 1)
    data.val_ids = data.val_ids[:chars]
    return data.validation_nats(model, torch.device("cpu"), Distributed(torch.device("cpu")))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "cells", nargs="*", default=["lstm", "lnlstm", "sru", "qrnn", "rwa"], help=f"any of {', '.join(CELLS)}"
    )
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--runs-dir", type=Path, default=Path("runs/ablation"))
    parser.add_argument("--recurrent-dropout", type=float, default=0.0)
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (1: no oversubscription on a shared machine)"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    unknown = sorted(set(args.cells) - set(CELLS))
    if unknown:
        parser.error(f"unknown cells {', '.join(unknown)}: choose from {', '.join(CELLS)}")
    print("| cell | steps | train tokens/s (median) | held-out nats/char |")
    print("|---|---|---|---|")
    for cell in args.cells:
        model = {**MODEL, "cell": cell, "recurrent_dropout": args.recurrent_dropout}
        run = train(
            CORPUS,
            args.runs_dir / cell,
            domain_name="chars",
            model_overrides=model,
            train_config=TrainConfig(**SETTINGS, max_minutes=args.minutes),
            quiet=True,
        )
        with open(run.path / "metrics.csv") as handle:
            rows = list(csv.DictReader(handle))
        rate = statistics.median(float(r["tokens_per_s"]) for r in rows[1:] or rows)
        print(f"| {cell} | {rows[-1]['step']} | {rate:,.0f} | {held_out_nats(run.path):.4f} |", flush=True)


if __name__ == "__main__":
    main()
