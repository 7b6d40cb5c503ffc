"""The 30-minute prose ablation (issue 13): one row per call, the same corpus, model size,
batch, schedule and wall-clock budget for every row.

    PYTHONPATH=. python scripts/ablation_prose.py ROW --runs-dir runs/ablation30   # ROW: see --list

A row trains a 2x448 model on tinyshakespeare (batch 32 x 128, AdamW 3e-3, 100 warm-up
steps, cosine decay to 10%, seed 1337) with no validation inside the budget.  After its
first 30 steps the row's own speed sizes the schedule so that it ends at 30 minutes;
then it trains to 10, 20 and 30 minutes of training time, and after each mark its last
weights are scored on the whole held-out 10% (state carried through, as the trainer's
validation does; scoring is not counted in the budget).  Prints one JSON line:
validation nats/char at each mark, steps, median training tokens/s.

Rows are meant to run side by side with one torch thread each (four on the 2-core
machine, scripts/ablation_prose.sh), so that every row gets the same share of it.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
from pathlib import Path

import torch
from ablation_cells import CORPUS, held_out_nats  # scripts/ is on the path when a script runs

from studio.config import TrainConfig
from studio.train import train

BASE_MODEL = dict(hidden_size=448, layers=2, embedding_size=64, dropout=0.25)
BASE_TRAIN = dict(
    batch_size=32, seq_len=128, learning_rate=3e-3, warmup_steps=100, eval_every=10**6, patience=10**6, seed=1337
)
PROBE_STEPS = 30
ROWS: dict[str, tuple[dict, dict]] = {
    "lstm": ({"cell": "lstm"}, {}),  # the recipe shipped before this issue (fp32)
    "lnlstm": ({"cell": "lnlstm"}, {}),
    "sru": ({"cell": "sru"}, {}),
    "qrnn": ({"cell": "qrnn"}, {}),
    "rwa": ({"cell": "rwa"}, {}),
    "lnlstm-rd": ({"cell": "lnlstm", "recurrent_dropout": 0.1}, {}),
    "lnlstm-rd-ss": ({"cell": "lnlstm", "recurrent_dropout": 0.1}, {"scheduled_sampling": 0.1}),
    "lstm-ss": ({"cell": "lstm"}, {"scheduled_sampling": 0.1}),
    "shipped": ({"cell": "lstm", "dropout": 0.3}, {"precision": "bf16"}),  # export/prose's recipe
}


def metrics(run_path: Path) -> list[dict]:
    with open(run_path / "metrics.csv") as handle:
        return list(csv.DictReader(handle))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("row", nargs="?", choices=sorted(ROWS))
    parser.add_argument("--list", action="store_true", help="print the rows and exit")
    parser.add_argument("--marks", type=float, nargs="+", default=[10.0, 20.0, 30.0], help="minutes")
    parser.add_argument("--runs-dir", type=Path, default=Path("runs/ablation30"))
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    if args.list or args.row is None:
        for name, (model, extra) in ROWS.items():
            print(name, json.dumps({**BASE_MODEL, **model, **extra}))
        return
    torch.set_num_threads(args.threads)
    model, extra = ROWS[args.row]
    model = {**BASE_MODEL, **model}
    path = args.runs_dir / args.row
    budget = max(args.marks)
    settings = dict(BASE_TRAIN, **extra)
    run = train(
        CORPUS,
        path,
        domain_name="chars",
        model_overrides=model,
        train_config=TrainConfig(**settings, max_steps=10**6, max_minutes=budget),
        stop_after=PROBE_STEPS,
        quiet=True,
    )
    probe = metrics(run.path)
    rate = statistics.median(float(r["tokens_per_s"]) for r in probe[1:] or probe)
    spent = float(probe[-1]["elapsed_s"])
    tokens_per_step = settings["batch_size"] * settings["seq_len"]
    max_steps = PROBE_STEPS + int(rate * (budget * 60 - spent) / tokens_per_step)
    marks = {}
    for minutes in sorted(args.marks):
        train(
            None,
            path,
            resume=True,
            train_config=TrainConfig(**settings, max_steps=max_steps, max_minutes=minutes),
            quiet=True,
        )
        marks[f"{minutes:g}"] = round(held_out_nats(path, chars=None), 4)
        print(json.dumps({"row": args.row, "minutes": minutes, "nats": marks[f"{minutes:g}"]}), flush=True)
    rows = metrics(path)
    speed = statistics.median(float(r["tokens_per_s"]) for r in rows[1:] or rows)
    result = {
        "row": args.row,
        "config": {**model, **extra},
        "val_nats_at_minutes": marks,
        "steps": int(rows[-1]["step"]),
        "scheduled_steps": max_steps,
        "tokens_per_s": round(speed),
        "train_minutes": round(float(rows[-1]["elapsed_s"]) / 60, 2),
    }
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
