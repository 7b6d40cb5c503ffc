"""The variational RNN against the MDN-LSTM on held-out Omniglot strokes (README, "Variational RNN").

    PYTHONPATH=. python scripts/compare_vrnn.py --mdn export/mdn [--mdn ...] --vrnn export/vrnn [--vrnn ...] \
        [--importance-samples 16] [--picture web/assets/vrnn-vs-mdn.png]

For every bundle, on the first 256 sequences of the Omniglot test split (the ones
`studio eval` scores), in normalised offset units: the MDN's exact negative
log-likelihood per point; the VRNN's negative ELBO (what `studio eval` reports, split
into reconstruction and KL) and its importance-weighted bound with K latent sequences
per stroke sequence, which is tighter and still never below the VRNN's exact figure.
Then samples side by side, same seeds and bias, beside real test characters, as one
PNG.  Torch-free (onnxruntime).  Prints one JSON object per bundle.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from studio.api import load, sample
from studio.handwriting import data as stroke_data
from studio.handwriting import latent
from studio.handwriting.evaluate import evaluate_strokes
from studio.handwriting.render import pen_runs

OMNIGLOT = Path(__file__).resolve().parent.parent / "corpora" / "handwriting" / "omniglot_strokes.npz"


def figures(bundle: str, importance_samples: int) -> dict:
    loaded = load(bundle)
    report = {"model": bundle, "head": loaded.head.name}
    if loaded.head.name == "vrnn":
        elbo = latent.evaluate_bound(loaded.runtime, loaded.domain, OMNIGLOT)
        iwae = latent.importance_bound(loaded.runtime, loaded.domain, OMNIGLOT, samples=importance_samples)
        report.update(
            elbo_nats_per_point=round(elbo["nats_per_point"], 4),
            reconstruction_nats_per_point=round(elbo["reconstruction_nats_per_point"], 4),
            kl_nats_per_point=round(elbo["kl_nats_per_point"], 4),
            **{f"iwae{importance_samples}_nats_per_point": round(iwae["nats_per_point"], 4)},
            points=elbo["points"],
        )
    else:
        exact = evaluate_strokes(loaded.runtime, loaded.domain, OMNIGLOT)
        report.update(exact_nats_per_point=round(exact["nats_per_point"], 4), points=exact["points"])
    card = loaded.bundle.card
    report.update(
        steps=card["metrics"]["steps"],
        train_minutes=card["metrics"]["train_minutes"],
        parameters=card["metrics"]["parameters"],
    )
    return report


def _absolute(offsets: np.ndarray) -> np.ndarray:
    points = offsets.astype(np.float64).copy()
    points[:, :2] = np.cumsum(points[:, :2], 0)
    return points


def picture(rows: list[tuple[str, list[np.ndarray]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = max(len(doodles) for _, doodles in rows)
    figure, axes = plt.subplots(len(rows), columns, figsize=(1.3 * columns, 1.45 * len(rows)), squeeze=False)
    for row, (label, doodles) in enumerate(rows):
        for column in range(columns):
            axis = axes[row, column]
            axis.set_xticks([])
            axis.set_yticks([])
            for spine in axis.spines.values():
                spine.set_color("#dddddd")
            if column < len(doodles):
                for run in pen_runs(doodles[column]):
                    axis.plot(run[:, 0], run[:, 1], color="#1a1a2e", linewidth=1.4, solid_capstyle="round")
                axis.set_aspect("equal", adjustable="datalim")
        axes[row, 0].set_ylabel(label, fontsize=7, rotation=0, ha="right", va="center")
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def doodles_of(bundle: str, seeds: range, bias: float) -> list[np.ndarray]:
    """One doodle per seed (each sample places its doodle at the origin)."""
    return [sample(bundle, num=1, seed=seed, bias=bias)[0].output.page[0] for seed in seeds]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mdn", action="append", required=True, help="an MDN-LSTM bundle (repeatable)")
    parser.add_argument("--vrnn", action="append", required=True, help="a VRNN bundle (repeatable)")
    parser.add_argument("--importance-samples", type=int, default=16)
    parser.add_argument("--picture", type=Path, default=None)
    parser.add_argument("--bias", type=float, default=1.0)
    parser.add_argument("--columns", type=int, default=8)
    args = parser.parse_args()
    for bundle in [*args.mdn, *args.vrnn]:
        print(json.dumps(figures(bundle, args.importance_samples)), flush=True)
    if args.picture is not None:
        seeds = range(1, args.columns + 1)
        real = [_absolute(s) for s in stroke_data.load_omniglot("test", OMNIGLOT)[: args.columns]]
        rows = [("Omniglot test\n(real)", real)]
        rows += [(f"MDN-LSTM\n{Path(m).name}", doodles_of(m, seeds, args.bias)) for m in args.mdn]
        rows += [(f"VRNN\n{Path(v).name}", doodles_of(v, seeds, args.bias)) for v in args.vrnn]
        picture(rows, args.picture)
        print(f"wrote {args.picture} (seeds {seeds.start}-{seeds.stop - 1}, bias {args.bias})")


if __name__ == "__main__":
    main()
