"""Training loop for the stroke models (torch).

``train_strokes(corpus, run_dir, conditional=...)`` trains a :class:`PredictionNetwork`
on Omniglot (``corpus="omniglot"`` or a path to a stroke npz) or a
:class:`SynthesisNetwork` on the synthetic Hershey corpus (``corpus="hershey"``), and
writes a run folder (``studio.runs`` layout): ``config.json``, ``metrics.csv``,
``loss.png`` and ``checkpoint.pt`` (model, optimiser, step, configs) saved atomically.
Batches are a pure function of ``(seed, step)``, so ``resume=True`` continues exactly
where the checkpoint stopped.  Losses are nats per point in normalised offset units.

    python -m studio.handwriting.train hershey runs/handwriting --conditional --max-minutes 20
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

from studio.errors import StudioError
from studio.handwriting import data as stroke_data
from studio.handwriting.model import build_model, mixture_log_likelihood, split_head
from studio.runs import RunDir, atomic_torch_save

VALIDATION_SEED = 2_000_000_000  # Hershey lines from here on are never trained on
STATISTICS_SEED = 1_900_000_000


@dataclass(frozen=True)
class StrokeTrainConfig:
    """Everything a stroke training run depends on (stored in the checkpoint)."""

    corpus: str = "hershey"  # "hershey", "omniglot" or a path to a stroke npz
    conditional: bool = True
    hidden_size: int = 256
    layers: int = 2
    mixtures: int = 20
    window_gaussians: int = 10
    batch_size: int = 32
    learning_rate: float = 2e-3
    final_learning_rate: float = 2e-4
    warmup_steps: int = 100
    clip: float = 3.0
    max_steps: int = 2000
    max_minutes: float = 20.0
    max_points: int = 240
    eval_every: int = 100
    validation_size: int = 256
    statistics_size: int = 2000  # Hershey lines that set the offset normalisation
    seed: int = 1
    threads: int = 1

    def __post_init__(self):
        if self.conditional and self.corpus != "hershey":
            raise StudioError("Text-conditioned training needs labelled strokes: use corpus 'hershey'.")
        if self.batch_size < 1 or self.max_steps < 1:
            raise StudioError("batch_size and max_steps must be at least 1.")


class StrokeStream:
    """Batches for step ``s`` as a pure function of ``(config.seed, s)``."""

    def __init__(self, config: StrokeTrainConfig, hershey: stroke_data.HersheyCorpusConfig):
        self.config, self.hershey = config, hershey
        if config.conditional:
            self.train = None
            self.validation_items = stroke_data.hershey_examples(
                hershey, range(VALIDATION_SEED, VALIDATION_SEED + config.validation_size))
            labelled = stroke_data.hershey_examples(hershey, range(STATISTICS_SEED, STATISTICS_SEED + config.statistics_size))
            sample = [s for _, s in labelled]
            self.corpus_sha256 = hershey.sha256()
        else:
            path = None if config.corpus == "omniglot" else Path(config.corpus)
            self.train = stroke_data.load_omniglot("train", path)
            self.validation_items = [("", s) for s in stroke_data.load_omniglot("valid", path)][: config.validation_size]
            sample = self.train
            self.corpus_sha256 = stroke_data.omniglot_sha256(path)
        self.mean, self.std = stroke_data.offset_statistics(sample)
        characters = sum(len(t) for t, _ in labelled) if config.conditional else 0
        self.characters_per_point = characters / sum(len(s) for s in sample)

    def items(self, step: int) -> list[tuple[str, np.ndarray]]:
        size = self.config.batch_size
        if self.config.conditional:
            # Lines longer than max_points are skipped (truncating would cut their text).
            seed = self.config.seed * 100_000_000 + step * size * 2
            items = []
            while len(items) < size:
                text, strokes = stroke_data.hershey_example(self.hershey, seed)
                seed += 1
                if len(strokes) <= self.config.max_points:
                    items.append((text, strokes))
            return items
        count = len(self.train)
        epoch, start = divmod(step * size, count)
        order = np.random.default_rng([self.config.seed, epoch]).permutation(count)
        picks = [order[(start + i) % count] for i in range(size)]
        return [("", self.train[i]) for i in picks]

    def tensors(self, items, alphabet: str):
        sequences = [stroke_data.normalise(s, self.mean, self.std) for _, s in items]
        inputs, targets, mask = stroke_data.pad_batch(sequences, self.config.max_points)
        batch = {"inputs": torch.from_numpy(inputs), "targets": torch.from_numpy(targets), "mask": torch.from_numpy(mask)}
        if self.config.conditional:
            batch["text"] = torch.from_numpy(stroke_data.encode_texts([t for t, _ in items], alphabet))
        return batch


def sequence_loss(model, batch, mixtures: int) -> torch.Tensor:
    """Mean negative log-likelihood per real point (nats)."""
    if "text" in batch:
        raw, _ = model(batch["inputs"], batch["text"])
    else:
        raw = model(batch["inputs"])
    log_likelihood = mixture_log_likelihood(split_head(raw, mixtures), batch["targets"])
    return -(log_likelihood * batch["mask"]).sum() / batch["mask"].sum()


def learning_rate(config: StrokeTrainConfig, step: int) -> float:
    if step < config.warmup_steps:
        return config.learning_rate * (step + 1) / config.warmup_steps
    progress = min(1.0, (step - config.warmup_steps) / max(1, config.max_steps - config.warmup_steps))
    cosine = 0.5 * (1 + math.cos(math.pi * progress))
    return config.final_learning_rate + (config.learning_rate - config.final_learning_rate) * cosine


@torch.no_grad()
def validation_loss(model, stream: StrokeStream, alphabet: str) -> float:
    model.eval()
    total, points = 0.0, 0.0
    items = stream.validation_items
    for start in range(0, len(items), 64):
        batch = stream.tensors(items[start : start + 64], alphabet)
        count = float(batch["mask"].sum())
        total += float(sequence_loss(model, batch, model.mixtures)) * count
        points += count
    model.train()
    return total / points


def domain_config(config: StrokeTrainConfig, stream: StrokeStream, hershey) -> dict:
    from studio.domains.strokes import StrokesDomain

    domain = StrokesDomain(
        alphabet=hershey.alphabet if config.conditional else "",
        mean=stream.mean, std=stream.std, conditional=config.conditional,
        source="hershey" if config.conditional else "omniglot",
        line_characters=hershey.max_characters if config.conditional else 0,
    )
    return domain.to_config()


def train_strokes(corpus: str | Path, run_dir: str | Path, *, conditional: bool, max_minutes: float = 20.0,
                  max_steps: int = 2000, seed: int = 1, resume: bool = False, progress: bool = True,
                  stop_after: int | None = None, **options) -> Path:
    """Train (or, with ``resume``, continue) a stroke model; returns the run folder.

    ``options`` are further :class:`StrokeTrainConfig` fields (``hidden_size``,
    ``layers``, ``batch_size``, ...).  Stops at ``max_steps`` or after ``max_minutes``
    of this call, whichever comes first, checkpointing at every evaluation.
    ``stop_after`` pauses after that many steps of this call without changing the
    schedule (continue with ``resume=True``).  ``summary.json`` says why it stopped.
    """
    run = RunDir(Path(run_dir)).create()
    hershey = stroke_data.HersheyCorpusConfig()
    if resume:
        if not run.checkpoint.exists():
            raise StudioError(f"No checkpoint in {run.path} to resume; train without --resume first.")
        checkpoint = torch.load(run.checkpoint, weights_only=False)
        config = StrokeTrainConfig(**checkpoint["train_config"])
        config = replace(config, max_minutes=max_minutes, max_steps=max(max_steps, config.max_steps))
    else:
        corpus_name = str(corpus)
        config = StrokeTrainConfig(corpus=corpus_name, conditional=conditional, max_minutes=max_minutes,
                                   max_steps=max_steps, seed=seed, **options)
        checkpoint = None
    torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    stream = StrokeStream(config, hershey)
    if checkpoint is None:
        model_options = {"hidden_size": config.hidden_size, "layers": config.layers, "mixtures": config.mixtures}
        if config.conditional:
            model_options.update(type="synthesis", window_gaussians=config.window_gaussians,
                                 alphabet_size=len(hershey.alphabet),
                                 characters_per_point=round(stream.characters_per_point, 4))
        else:
            model_options.update(type="mdn")
        model = build_model(model_options)
        domain = domain_config(config, stream, hershey)
        step = 0
    else:
        model = build_model(checkpoint["model_config"])
        model.load_state_dict(checkpoint["model"])
        domain = checkpoint["domain"]
        step = checkpoint["step"]
        run.truncate_metrics(step)
    optimiser = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    if checkpoint is not None:
        optimiser.load_state_dict(checkpoint["optimiser"])
        torch.set_rng_state(checkpoint["torch_rng"])
    alphabet = domain.get("alphabet", "")
    run.write_config({"train": asdict(config), "model": model.config, "domain": domain,
                      "corpus": {"name": config.corpus, "sha256": stream.corpus_sha256,
                                 "generator": hershey.to_json() if config.conditional else None}})
    elapsed_before = checkpoint["elapsed_s"] if checkpoint is not None else 0.0

    def save(val_loss):
        atomic_torch_save({
            "model": model.state_dict(), "optimiser": optimiser.state_dict(), "step": step,
            "model_config": model.config, "domain": domain, "train_config": asdict(config),
            "torch_rng": torch.get_rng_state(), "val_loss": val_loss,
            "elapsed_s": elapsed_before + time.time() - started,
            "corpus": {"name": config.corpus, "sha256": stream.corpus_sha256},
        }, run.checkpoint)

    started = time.time()
    running, running_points, window_start = 0.0, 0.0, time.time()
    val = None
    model.train()
    last_step = config.max_steps if stop_after is None else min(step + stop_after, config.max_steps)
    while step < last_step and (time.time() - started) < 60 * config.max_minutes:
        for group in optimiser.param_groups:
            group["lr"] = learning_rate(config, step)
        batch = stream.tensors(stream.items(step), alphabet)
        loss = sequence_loss(model, batch, config.mixtures)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.clip)
        optimiser.step()
        step += 1
        points = float(batch["mask"].sum())
        running += loss.item() * points
        running_points += points
        if step % config.eval_every == 0 or step == config.max_steps:
            val = validation_loss(model, stream, alphabet)
            rate = running_points / max(1e-9, time.time() - window_start)
            elapsed = elapsed_before + time.time() - started
            run.append_metrics({"step": step, "epoch": "", "train_loss": running / running_points, "val_loss": val,
                                "learning_rate": learning_rate(config, step - 1), "tokens_per_s": round(rate, 1),
                                "elapsed_s": round(elapsed, 1)})
            if progress:
                print(f"step {step:5d}  train {running / running_points:7.4f}  val {val:7.4f} nats/point  "
                      f"{rate:7.0f} points/s  {elapsed / 60:5.1f} min", flush=True)
            running, running_points, window_start = 0.0, 0.0, time.time()
            save(val)
    if val is None or step % config.eval_every != 0:
        val = validation_loss(model, stream, alphabet)
        save(val)
    if run.read_metrics():
        run.plot_loss(unit="nats/point")
    if step >= config.max_steps:
        reason = "finished"
    elif step >= last_step:
        reason = f"paused after {stop_after} steps (continue with --resume {run.path})"
    else:
        reason = f"time limit: {config.max_minutes:g} minutes"
    summary = {"stop_reason": reason, "step": step, "val_nats_per_point": val,
               "train_minutes": round((elapsed_before + time.time() - started) / 60, 2)}
    (run.path / "summary.json").write_text(json.dumps(summary, indent=2))
    return run.path


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="Train a Graves mixture-density stroke model.")
    parser.add_argument("corpus", help="'hershey' (text-conditioned), 'omniglot' or a stroke npz path")
    parser.add_argument("run_dir")
    parser.add_argument("--conditional", action="store_true", help="train the synthesis network")
    parser.add_argument("--max-minutes", type=float, default=20.0)
    parser.add_argument("--max-steps", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--hidden-size", type=int, default=256)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    parser.add_argument("--eval-every", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--export", help="also export the bundle to this folder")
    args = parser.parse_args(argv)
    run = train_strokes(args.corpus, args.run_dir, conditional=args.conditional, max_minutes=args.max_minutes,
                        max_steps=args.max_steps, seed=args.seed, resume=args.resume,
                        **({} if args.resume else dict(hidden_size=args.hidden_size, layers=args.layers,
                                                       batch_size=args.batch_size, learning_rate=args.learning_rate,
                                                       eval_every=args.eval_every, threads=args.threads)))
    if args.export:
        from studio.handwriting.export import export_strokes

        print(json.dumps(export_strokes(run, args.export), indent=2))


if __name__ == "__main__":
    main()
