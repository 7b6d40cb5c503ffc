"""The one training loop, for every domain and head, on one CPU, one GPU or many (DDP).

``train(...)`` reads a corpus through its domain (a categorical domain's through the
token cache, :mod:`studio.token_cache`: tokenised once, memory-mapped), asks the domain's head
(:data:`studio.models.TRAINABLES`) for the model, the data and the loss, and trains with
AdamW, warm-up then cosine decay, gradient clipping, periodic validation, early stopping,
time and step limits and exact resume, writing ``runs/<name>/``.  Categorical heads carry
their recurrent state across truncated-BPTT windows (detached between them); mixture
heads train on independent sequences.  Launch under ``torchrun`` for DDP: each rank
trains its own share of every batch and rank 0 alone writes files.

Every run, whatever its head, writes the same files: ``config.json`` (corpus, domain
name, head, model and train configs), ``metrics.csv``, ``loss.png``, ``summary.json``,
``checkpoint.pt`` (see :data:`CHECKPOINT_KEYS`) and ``best.pt`` (the best validated
weights).
"""

from __future__ import annotations

import json
import math
import os
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from .config import TrainConfig, check_model_options
from .corpus import fingerprint
from .devices import Distributed, InterruptFlag, lr_factor, resolve_device, rng_state, seed_everything, set_rng_state
from .domains import Domain, domain_class, domain_from_config, guess_domain, read_documents
from .errors import StudioError, require
from .formats import VERSION as __version__
from .models import Trainable, trainable_for
from .runs import RunDir, atomic_torch_save, training_progress
from .token_cache import CacheSettings, is_reference, notice, reopen
from .token_cache import load as load_token_cache

LN2 = math.log(2.0)
CHECKPOINT_KEYS = (
    "studio_version",
    "head",
    "domain",
    "model",
    "train",
    "model_state",
    "optimizer_state",
    "scheduler_state",
    "rng",
    "step",
    "best_val",
    "bad_evals",
    "elapsed_s",
    "carried_state",
    "corpus",
)
RESUME_OVERRIDES = ("max_steps", "max_minutes", "device", "epochs")  # what --resume may change

__all__ = ["CHECKPOINT_KEYS", "train", "load_corpus", "resolve_device"]


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@dataclass
class Corpus:
    """What a run keeps of its corpus: the domain built from it, the head's payload, and
    what the checkpoint stores of it (a token cache reference, or the payload itself)."""

    domain: Domain
    payload: Any
    facts: dict  # path, sha256, documents, units
    stored: Any
    head: str  # the head trained: the domain's own, or one of its other_heads (--model)


def choose_head(domain: type[Domain], model: str | None) -> str:
    """The head ``studio train --model`` names (None: the domain's own); StudioError
    lists the heads this domain can train."""
    known = (domain.head, *domain.other_heads)
    require(
        model is None or model in known,
        f"--model {model}: {domain.name} corpora train {' or '.join(known)} models (default {domain.head})",
    )
    return model or domain.head


def is_main_process() -> bool:
    """Rank 0 under torchrun, or a single process (before :class:`Distributed` exists)."""
    return os.environ.get("RANK", "0") == "0"


def load_corpus(
    corpus: Path,
    domain_name: str | None,
    domain_options: dict,
    cache: CacheSettings | None = None,
    *,
    val_fraction: float = 0.1,
    held_out: str = "tail",
    quiet: bool = False,
    model: str | None = None,
) -> Corpus:
    """Read ``corpus`` through its domain (guessed from file types unless named): through
    the token cache when the domain streams and ``cache`` is enabled, else whole.
    ``model`` chooses the head (see :func:`choose_head`)."""
    corpus = Path(corpus)
    if not corpus.exists():
        raise StudioError(f"corpus not found: {corpus} (give a file or a folder)")
    cls = domain_class(domain_name or guess_domain(corpus))
    require(
        not domain_options.get("beats") or cls.name == "music",
        f"--beats marks the beats of music; {corpus} is read as {cls.name}: leave out --beats",
    )
    head = choose_head(cls, model)
    if held_out == "random" and corpus.is_file() and not quiet and is_main_process():
        notice(f"--held-out random draws whole files, and {corpus} is one: its validation part is still its tail")
    cache = cache or CacheSettings()
    if cache.enabled and cls.streams_corpus:
        tokens = load_token_cache(
            corpus,
            cls,
            domain_options,
            cache,
            val_fraction=val_fraction,
            held_out=held_out,
            quiet=quiet or not is_main_process(),
        )
        return Corpus(tokens.domain, tokens.ids, tokens.facts(corpus), tokens.reference(), head)
    documents = read_documents(cls, corpus, held_out)
    domain = cls.from_documents(documents, **domain_options)
    payload, units = trainable_for(head).corpus_payload(domain, documents)
    facts = {
        "path": str(corpus),
        "sha256": fingerprint(cls.source_files(corpus)),
        "documents": len(documents),
        "tokens": int(units),
    }
    return Corpus(domain, payload, facts, payload, head)


def stored_payload(
    stored: Any,
    domain_config: dict,
    cache: CacheSettings | None = None,
    *,
    val_fraction: float = 0.1,
    quiet: bool = False,
) -> Any:
    """The payload a checkpoint's corpus entry stands for: the token cache it refers to
    (mapped again, or rebuilt from an unchanged corpus), or the payload itself."""
    if not is_reference(stored):
        return stored
    tokens = reopen(stored, cache or CacheSettings(), val_fraction=val_fraction, quiet=quiet or not is_main_process())
    require(
        tokens.meta["domain"] == domain_config,
        f"the token cache {tokens.key} does not hold this run's vocabulary: clear it "
        "(`studio cache clear`) and resume again",
    )
    return tokens.ids


def autocast_plan(device: torch.device, precision: str, tell: bool) -> tuple[torch.dtype | None, Any]:
    """(the forward pass's autocast dtype, or None for plain fp32; a grad scaler for fp16).
    ``auto``: bf16 on a CUDA device that has it, else fp16 with loss scaling; fp32 on CPU."""
    cuda = device.type == "cuda"
    if precision == "fp32":
        return None, None
    if precision == "bf16":
        native = torch.cuda.is_bf16_supported() if cuda else torch.cpu._is_avx512_bf16_supported()
        if tell and not native:
            print(f"note: this {device.type} has no native bf16: --precision bf16 is emulated and likely slower")
        return torch.bfloat16, None
    if not cuda:
        return None, None
    if torch.cuda.is_bf16_supported():
        return torch.bfloat16, None
    return torch.float16, torch.amp.GradScaler("cuda")


class AveragedWeights:
    """An exponential moving average of a model's parameters (``--ema DECAY``), updated
    after every optimiser step.  The decay starts low, ``min(decay, (1 + step) / (warmup +
    step))`` (``--ema-warmup``, 10 by default), so the first random weights fade at once;
    until the cap the average spans about the last ``step / (warmup - 1)`` steps.  :meth:`swapped_in` lends the
    average to the model (to validate it or save it) and puts the live weights back."""

    def __init__(
        self, model: torch.nn.Module, decay: float, state: list[torch.Tensor] | None = None, warmup: float = 10.0
    ):
        self.decay, self.warmup = decay, warmup
        self.params = [p for p in model.parameters() if p.dtype.is_floating_point]
        if state is None:
            self.average = [p.detach().clone() for p in self.params]
        else:
            require(len(state) == len(self.params), "the checkpoint's averaged weights do not fit this model")
            self.average = [a.to(p.device, p.dtype) for a, p in zip(state, self.params)]

    @torch.no_grad()
    def update(self, step: int) -> None:
        decay = min(self.decay, (1 + step) / (self.warmup + step))
        torch._foreach_lerp_(self.average, [p.detach() for p in self.params], 1.0 - decay)

    def state(self) -> list[torch.Tensor]:
        return [a.detach().cpu().clone() for a in self.average]

    @contextmanager
    def swapped_in(self):
        with torch.no_grad():
            live = [p.detach().clone() for p in self.params]
            for p, a in zip(self.params, self.average):
                p.copy_(a)
        try:
            yield
        finally:
            with torch.no_grad():
                for p, kept in zip(self.params, live):
                    p.copy_(kept)


class Trainer:
    """One run's model, optimiser, schedule and position; :meth:`run` trains it."""

    def __init__(
        self, run: RunDir, corpus: Corpus, model_config: dict, config: TrainConfig, checkpoint: dict | None, quiet: bool
    ):
        self.run, self.config, self.quiet = run, config, quiet
        self.domain, self.payload, self.stored_corpus = corpus.domain, corpus.payload, corpus.stored
        self.head: Trainable = trainable_for(corpus.head)
        self.model_config = model_config
        device = resolve_device(config.device)
        self.dist = Distributed(device)
        self.device = self.dist.device  # cuda:LOCAL_RANK under torchrun
        seed_everything(config.seed)  # the same initial weights on every rank
        torch.backends.mkldnn.enabled = True  # oneDNN: ~2x faster training windows on CPU
        require(
            config.scheduled_sampling == 0 or self.head.scheduled_sampling,
            f"--scheduled-sampling needs a token model; {self.domain.name} has a {self.head.name} head",
        )
        self.data = self.head.train_data(self.domain, self.payload, config, self.dist.rank, self.dist.world_size)
        self.total_steps = config.max_steps or max(1, int(config.epochs * self.data.steps_per_epoch))
        self.model = self.head.build_model(model_config).to(self.device)
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay, betas=(0.9, 0.99)
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: lr_factor(s, config.warmup_steps, self.total_steps, config.min_lr_ratio)
        )
        self.step, self.best_val, self.bad_evals, self.elapsed_before = 0, math.inf, 0, 0.0
        self.averaged = AveragedWeights(self.model, config.ema, warmup=config.ema_warmup) if config.ema > 0 else None
        self.carry = self.head.init_carry(self.model, config.batch_size, self.device)
        if checkpoint is not None:
            self._restore(checkpoint)
        elif self.dist.is_main:
            run.create()
            run.write_config(
                {
                    "studio_version": __version__,
                    "domain": self.domain.name,
                    "head": self.head.name,
                    "corpus": corpus.facts,
                    "model": model_config,
                    "train": config.to_dict(),
                    "parameters": count_parameters(self.model),
                }
            )
        self.trained = self.model
        if self.dist.enabled:
            self.trained = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )
        self.amp_dtype, self.scaler = autocast_plan(self.device, config.precision, self.dist.is_main and not quiet)
        self.started = time.time()

    def _restore(self, checkpoint: dict) -> None:
        self.model.load_state_dict(checkpoint["model_state"])
        if self.averaged is not None:
            saved_average = checkpoint.get("averaged_weights")
            require(saved_average is not None, "the checkpoint has no averaged weights (--ema): train it again")
            self.averaged = AveragedWeights(self.model, self.config.ema, saved_average, self.config.ema_warmup)
        self.optimizer.load_state_dict(checkpoint["optimizer_state"])
        self.scheduler.load_state_dict(checkpoint["scheduler_state"])
        self.step, self.best_val = checkpoint["step"], checkpoint["best_val"]
        self.bad_evals, self.elapsed_before = checkpoint["bad_evals"], checkpoint["elapsed_s"]
        saved = checkpoint["carried_state"]
        rows = self.config.batch_size * self.dist.world_size
        if saved is not None and saved[0].shape[1] == rows:
            mine = slice(self.dist.rank * self.config.batch_size, (self.dist.rank + 1) * self.config.batch_size)
            self.carry = tuple(s[:, mine].to(self.device) for s in saved)
        elif saved is not None and self.dist.is_main:
            print(
                f"note: the checkpoint carried {saved[0].shape[1]} streams, this run has {rows} "
                f"({self.dist.world_size} process(es) x batch {self.config.batch_size}); "
                "carried state starts from zeros"
            )
        set_rng_state(checkpoint["rng"])
        if self.dist.is_main:
            self.run.truncate_metrics(self.step)

    def elapsed(self) -> float:
        return self.elapsed_before + time.time() - self.started

    def save(self, tag_best: bool = False) -> None:
        """Checkpoint on rank 0 (every rank joins the gather of the carried state)."""
        carried = None if self.carry is None else tuple(self.dist.gather_rows(s.detach()) for s in self.carry)
        if not self.dist.is_main:
            return
        atomic_torch_save(
            {
                "studio_version": __version__,
                "head": self.head.name,
                "domain": self.domain.to_config(),
                "model": self.model_config,
                "train": self.config.to_dict(),
                "model_state": self.model.state_dict(),
                "optimizer_state": self.optimizer.state_dict(),
                "scheduler_state": self.scheduler.state_dict(),
                "rng": rng_state(),
                "step": self.step,
                "best_val": self.best_val,
                "bad_evals": self.bad_evals,
                "elapsed_s": self.elapsed(),
                "carried_state": None
                if carried is None
                else tuple(s.float().cpu() for s in carried),  # bf16 under autocast
                "corpus": self.stored_corpus,
                **({"averaged_weights": self.averaged.state()} if self.averaged is not None else {}),
            },
            self.run.checkpoint,
        )
        if tag_best:
            with self._averaged():
                best_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
            atomic_torch_save(
                {
                    "head": self.head.name,
                    "model": self.model_config,
                    "domain": self.domain.to_config(),
                    "model_state": best_state,
                    "step": self.step,
                    "val_nats": self.best_val,
                },
                self.run.best,
            )

    def train_step(self) -> float:
        """One optimiser step; returns its loss (nats per unit)."""
        if self.carry is not None:
            if self.step % self.data.steps_per_epoch == 0:  # a new epoch: the streams restart
                self.carry = self.head.init_carry(self.model, self.config.batch_size, self.device)
            self.carry = tuple(s.detach() for s in self.carry)  # truncated BPTT: stop gradients here
        batch = self.data.batch(self.step, self.device)
        if self.config.scheduled_sampling > 0:
            batch["sampling_probability"] = self.config.sampling_probability(self.step, self.total_steps)
        with torch.autocast(
            self.device.type, dtype=self.amp_dtype or torch.float32, enabled=self.amp_dtype is not None
        ):
            loss, self.carry = self.head.loss(self.trained, batch, self.carry)
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.clip)
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.clip)
            self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        if self.averaged is not None:
            self.averaged.update(self.step)
        return loss.item()

    def _averaged(self):
        """The averaged weights in the model for the ``with`` block (none: as they are)."""
        return self.averaged.swapped_in() if self.averaged is not None else nullcontext()

    def validate(self) -> tuple[float, bool]:
        with self._averaged():
            val = self.data.validation_nats(self.model, self.device, self.dist)
        improved = val < self.best_val - 1e-4
        self.best_val, self.bad_evals = (val, 0) if improved else (self.best_val, self.bad_evals + 1)
        return val, improved

    def _score_last_weights(self, last_loss: float | None) -> bool:
        """At a time limit the run ends between two evaluations: score the last weights
        (the schedule's lowest learning rates so far) and log them; True when they are
        the best yet.  The time the scoring takes is not training time."""
        started = time.time()
        val, improved = self.validate()
        self.elapsed_before -= time.time() - started
        if self.dist.is_main:
            self.run.append_metrics(self._metrics_row(last_loss, None, {"val_loss": f"{val:.6f}"}))
        return improved

    def _metrics_row(self, last_loss: float | None, rate: float | None, extra: dict | None) -> dict:
        """One row of metrics.csv at the current step (blank where a figure is missing)."""
        return {
            "step": self.step,
            "epoch": f"{self.step / self.data.steps_per_epoch:.4f}",
            "train_loss": "" if last_loss is None else f"{last_loss:.6f}",
            "learning_rate": f"{self.scheduler.get_last_lr()[0]:.6g}",
            "tokens_per_s": "" if rate is None else f"{rate:.0f}",
            "elapsed_s": f"{self.elapsed():.1f}",
            **(extra or {}),
        }

    def units_per_step(self) -> int:
        return self.config.batch_size * self.data.sequence_length

    def run_steps(self, stop_after: int | None, progress, task, interrupt) -> str:
        """Train until the schedule ends or a limit stops it; returns why it stopped."""
        config, dist, run = self.config, self.dist, self.run
        steps_this_call, last_val, tick = 0, "-", time.time()
        if self.step and config.max_minutes is not None and dist.decide(self.elapsed() / 60 >= config.max_minutes):
            # resumed with no time left (an older studio stopped it unscored): score, no step
            self.save(tag_best=self._score_last_weights(None))
            return f"time limit: {config.max_minutes:g} minutes (no time left to train; --max-minutes gives more)"
        while self.step < self.total_steps:
            last_loss = self.train_step()
            steps_this_call += 1
            now = time.time()
            rate = self.units_per_step() * dist.world_size / max(1e-9, now - tick)
            tick = now
            row, reason = None, None
            if self.step % config.eval_every == 0 or self.step == self.total_steps:
                val, improved = self.validate()
                last_val, row = f"{val:.3f}", {"val_loss": f"{val:.6f}"}
                self.save(tag_best=improved)
                if self.bad_evals >= config.patience:
                    reason = f"early stop: no validation gain in {config.patience} evaluations"
            if row is not None or self.step % 10 == 0 or self.step == 1:
                last_loss = dist.mean(last_loss)  # over the effective batch, on every rank
                if dist.is_main:
                    run.append_metrics(self._metrics_row(last_loss, rate, row))
            progress.update(task, completed=self.step, loss=last_loss, bits=last_loss / LN2, val=last_val, tok_s=rate)
            if reason is not None:
                return reason
            paused = f"(continue with --resume {run.path})"
            if dist.any(interrupt.raised):  # Ctrl-C lands between steps, never inside one
                self.save()
                return f"interrupted at step {self.step}; checkpoint saved {paused}"
            if config.max_minutes is not None and dist.decide(self.elapsed() / 60 >= config.max_minutes):
                self.save(tag_best=row is None and self._score_last_weights(last_loss))
                return f"time limit: {config.max_minutes:g} minutes"
            if stop_after is not None and steps_this_call >= stop_after and self.step < self.total_steps:
                self.save()
                return f"paused after {steps_this_call} steps {paused}"
        return "finished"

    def run_to_end(self, stop_after: int | None) -> None:
        dist, run = self.dist, self.run
        if dist.is_main and not self.quiet:
            print(
                f"{self.domain.name} ({self.head.name} head), {count_parameters(self.model):,} parameters; "
                f"effective batch {self.config.batch_size * dist.world_size} x {self.data.sequence_length}; "
                f"lr {self.config.learning_rate:g}; "
                f"device {self.device}"
            )
        progress = training_progress(disable=self.quiet or not dist.is_main, unit=self.head.unit)
        reason = "finished"
        with progress, InterruptFlag(active=True) as interrupt:
            task = progress.add_task(
                run.path.name, total=self.total_steps, completed=self.step, loss=0.0, bits=0.0, val="-", tok_s=0.0
            )
            self.trained.train()
            try:
                reason = self.run_steps(stop_after, progress, task, interrupt)
            except KeyboardInterrupt:
                self.save()
                reason = f"interrupted at step {self.step}; checkpoint saved (continue with --resume {run.path})"
        if reason == "finished" and self.step >= self.total_steps and dist.decide(not run.best.exists()):
            self.save(tag_best=True)
        if dist.is_main:
            run.plot_loss(unit=f"nats/{self.head.unit}")
            summary = {
                "stop_reason": reason,
                "step": self.step,
                "best_val_nats": self.best_val,
                "unit": self.head.unit,
                "world_size": dist.world_size,
                "effective_batch": self.config.batch_size * dist.world_size,
                "train_minutes": round(self.elapsed() / 60, 2),
            }
            (run.path / "summary.json").write_text(json.dumps(summary, indent=2))
            if not self.quiet:
                print(
                    f"{reason}; step {self.step}; best validation {self.best_val:.4f} nats/{self.head.unit} "
                    f"({self.best_val / LN2:.4f} bits); run folder {run.path}"
                )
        dist.barrier()
        dist.close()


def _resume_config(saved: dict, given: TrainConfig | None) -> TrainConfig:
    """The run's own config with what ``--resume`` may change (steps, minutes, epochs, device)."""
    base = TrainConfig.from_dict(saved)
    defaults = TrainConfig()
    overrides = {
        k: v
        for k, v in (given.to_dict() if given else {}).items()
        if k in RESUME_OVERRIDES and v is not None and (k == "device" or v != getattr(defaults, k))
    }
    return replace(base, **overrides)


def train(
    corpus: Path | None,
    run_dir: Path,
    *,
    domain_name: str | None = None,
    domain_options: dict | None = None,
    model_overrides: dict | None = None,
    train_config: TrainConfig | None = None,
    resume: bool = False,
    stop_after: int | None = None,
    quiet: bool = False,
    cache: CacheSettings | None = None,
    model: str | None = None,
) -> RunDir:
    """Train (or, with ``resume``, continue) the run in ``run_dir``; returns the run.

    ``stop_after`` pauses after that many steps of this invocation (the schedule still
    spans the whole run), so a later ``resume`` continues exactly where this stopped.
    ``cache`` chooses the token cache (default: on, in the default folder); a resumed run
    keeps the choice it started with.  ``model`` chooses the head of a new run (see
    :func:`choose_head`); a resumed run keeps its own.
    """
    run = RunDir(run_dir)
    checkpoint = None
    if resume:
        require(run.checkpoint.exists(), f"nothing to resume in {run.path}: no {run.checkpoint.name}")
        checkpoint = torch.load(run.checkpoint, map_location="cpu", weights_only=False)
        missing = [key for key in CHECKPOINT_KEYS if key not in checkpoint]
        require(not missing, f"{run.checkpoint} is from an older studio (no {', '.join(missing)}): train it again")
        saved = run.read_config()
        config = _resume_config(saved["train"], train_config)
        resolve_device(config.device)  # a wrong --device fails before any corpus work
        payload = stored_payload(
            checkpoint["corpus"], checkpoint["domain"], cache, val_fraction=config.val_fraction, quiet=quiet
        )
        domain = domain_from_config(checkpoint["domain"])
        corpus_data = Corpus(domain, payload, saved["corpus"], checkpoint["corpus"], checkpoint["head"])
        model_config = checkpoint["model"]
    else:
        require(corpus is not None, "give a corpus to train on")
        if run.checkpoint.exists():
            raise StudioError(
                f"{run.path} already holds a run: continue it with --resume {run.path}, or pick another --name"
            )
        config = train_config or TrainConfig()
        config = replace(config, device=config.device or "cpu")  # None: not given
        resolve_device(config.device)  # a wrong --device fails before the corpus is tokenised
        check_model_options(model_overrides or {})  # and so does a model option out of range
        corpus_data = load_corpus(
            Path(corpus),
            domain_name,
            domain_options or {},
            cache,
            val_fraction=config.val_fraction,
            held_out=config.held_out,
            quiet=quiet,
            model=model,
        )
        model_config = trainable_for(corpus_data.head).model_config(corpus_data.domain, model_overrides or {})
    Trainer(run, corpus_data, model_config, config, checkpoint, quiet).run_to_end(stop_after)
    return run
