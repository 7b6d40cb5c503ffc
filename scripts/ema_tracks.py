"""Several weight averages of one training run, scored side by side (issue 13).

    PYTHONPATH=. .venv/bin/python scripts/ema_tracks.py NAME [--tracks DECAY:WARMUP ...]

``--ema``'s average never changes the weights that train, so one run can carry any number
of averages: this runs ``studio train`` with the shipped prose recipe and the wider
embedding (run ``prose23`` of the README) as ``runs/NAME``, and keeps, beside the run's own ``--ema 0.999 --ema-warmup
10``, one extra average per ``DECAY:WARMUP`` track.  At every evaluation each track is
scored on the whole held-out text exactly as the trainer scores its own average; the time
that takes is not counted in the run's budget.  Rows go to ``runs/NAME/tracks.csv``:

    step,track,val_nats
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import studio.train as training
from studio.cli import app

# scripts/train_models.sh's prose line with --embedding-size 256 --dropout 0.25
RECIPE = (
    "train corpora/shakespeare --hidden-size 448 --layers 2 --embedding-size 256 --dropout 0.25 --lr 3e-3 "
    "--warmup-steps 100 --batch-size 32 --seq-len 128 --max-steps 6500 --ema 0.999 --eval-every 500 "
    "--patience 100 --max-minutes 30 --seed 1337 --precision bf16 --no-export"
)


def tracked_trainer(tracks: list[tuple[float, float]], out: Path) -> type:
    class Tracked(training.Trainer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.tracks = {
                f"{decay}:{warmup:g}": training.AveragedWeights(self.model, decay, warmup=warmup)
                for decay, warmup in tracks
            }

        def train_step(self) -> float:
            loss = super().train_step()
            for average in self.tracks.values():
                average.update(self.step)
            return loss

        def validate(self):
            val, improved = super().validate()
            started = time.time()
            rows = [(self.step, f"{self.config.ema}:{self.config.ema_warmup:g}", val)]
            for name, average in self.tracks.items():
                with average.swapped_in():
                    rows.append((self.step, name, self.data.validation_nats(self.model, self.device, self.dist)))
            self.elapsed_before -= time.time() - started  # scoring the tracks is not training time
            with open(out, "a", newline="") as handle:
                csv.writer(handle).writerows((step, name, f"{nats:.6f}") for step, name, nats in rows)
            print(" ".join(f"{name}={nats:.4f}" for _, name, nats in rows), flush=True)
            return val, improved

    return Tracked


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name")
    parser.add_argument("--tracks", nargs="+", default=["0.999:4", "0.9995:3", "0.9995:6", "0.9998:3"])
    args = parser.parse_args()
    tracks = [(float(d), float(w)) for d, w in (t.split(":") for t in args.tracks)]
    out = Path("runs") / args.name / "tracks.csv"
    training.Trainer = tracked_trainer(tracks, out)  # studio.train.train builds its trainer from here
    app([*RECIPE.split(), "--name", args.name], standalone_mode=False)
    print(f"tracks in {out}")


if __name__ == "__main__":
    main()
