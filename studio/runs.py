"""Run folders: ``runs/<name>/`` with config, metrics.csv, loss.png and checkpoints.

Checkpoints are written atomically (temp file + rename) so a crash or Ctrl-C never
leaves a half-written file behind.  Only this module knows the folder layout.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any

CHECKPOINT = "checkpoint.pt"
BEST = "best.pt"
METRICS = "metrics.csv"
CONFIG = "config.json"
LOSS_PLOT = "loss.png"
METRIC_FIELDS = ("step", "epoch", "train_loss", "val_loss", "learning_rate", "tokens_per_s", "elapsed_s")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def atomic_torch_save(obj: Any, path: Path) -> None:
    """torch.save to a temp file, then rename over ``path``."""
    import torch

    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


class RunDir:
    """One training run's folder."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def create(self) -> RunDir:
        self.path.mkdir(parents=True, exist_ok=True)
        return self

    @property
    def checkpoint(self) -> Path:
        return self.path / CHECKPOINT

    @property
    def best(self) -> Path:
        return self.path / BEST

    def write_config(self, config: dict) -> None:
        atomic_write_bytes(self.path / CONFIG, json.dumps(config, indent=2).encode())

    def read_config(self) -> dict:
        return json.loads((self.path / CONFIG).read_text())

    def append_metrics(self, row: dict) -> None:
        file = self.path / METRICS
        new = not file.exists()
        with open(file, "a", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=METRIC_FIELDS, extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in METRIC_FIELDS})

    def truncate_metrics(self, after_step: int) -> None:
        """Drop rows newer than ``after_step`` (they belong to work a resume will redo)."""
        rows = self.read_metrics()
        kept = [r for r in rows if int(float(r["step"])) <= after_step]
        if len(kept) != len(rows):
            (self.path / METRICS).unlink()
            for row in kept:
                self.append_metrics(row)

    def read_metrics(self) -> list[dict]:
        file = self.path / METRICS
        if not file.exists():
            return []
        with open(file, newline="") as handle:
            return list(csv.DictReader(handle))

    def plot_loss(self, unit: str = "nats/token") -> Path:
        """loss.png: training and validation curves against step."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        rows = self.read_metrics()
        figure, axis = plt.subplots(figsize=(7, 4), dpi=110)
        for key, label, style in (("train_loss", "train", "-"), ("val_loss", "validation", "o-")):
            points = [(float(r["step"]), float(r[key])) for r in rows if r.get(key)]
            if points:
                xs, ys = zip(*points)
                axis.plot(xs, ys, style, label=label, markersize=3)
        axis.set_xlabel("step")
        axis.set_ylabel(f"loss ({unit})")
        axis.set_title(self.path.name)
        axis.grid(alpha=0.3)
        axis.legend()
        figure.tight_layout()
        out = self.path / LOSS_PLOT
        figure.savefig(out)
        plt.close(figure)
        return out


def training_progress(disable: bool = False, unit: str = "token"):
    """A rich progress bar showing loss, bits per unit, units/s, rate and ETA."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    short = {"token": "tok", "point": "pt"}.get(unit, unit)

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(
            "loss {task.fields[loss]:.3f}  {task.fields[bits]:.3f} bits/"
            + short
            + "  val {task.fields[val]}  {task.fields[tok_s]:,.0f} "
            + short
            + "/s"
        ),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        disable=disable,
        transient=False,
    )
