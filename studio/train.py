"""Training loop for every categorical domain, on one CPU, one GPU or many (DDP).

``train(...)`` reads a corpus through its domain, trains a :class:`RecurrentLM` with
truncated BPTT (state carried across windows, detached between them), AdamW with
warm-up then cosine decay, gradient clipping, periodic validation, early stopping and
exact resume, and writes ``runs/<name>/``.  Launch under ``torchrun`` for DDP: each rank
owns a block of streams and rank 0 alone writes files.
"""

from __future__ import annotations

import json
import math
import os
import random
import signal
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from . import __version__
from .config import ModelConfig, TrainConfig
from .corpus import corpus_files, fingerprint
from .data import StreamBatches, eval_streams, split_ids
from .domains import domain_class, domain_from_config, guess_domain
from .errors import StudioError, require
from .model import RecurrentLM, count_parameters
from .runs import RunDir, atomic_torch_save, training_progress

LN2 = math.log(2.0)


# --- devices and distribution -------------------------------------------------------

def resolve_device(name: str) -> torch.device:
    """"cpu", "cuda", "cuda:N" or "auto" (CUDA when present)."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise StudioError("--device cuda asked for, but no CUDA GPU is visible: use --device cpu")
    require(name == "cpu" or name.startswith("cuda"), f"unknown --device {name!r}: use cpu, cuda or auto")
    return torch.device(name)


class Distributed:
    """Rank facts from torchrun's environment; a no-op for a single process.

    ``device`` is the one this rank trains on: under torchrun with CUDA, GPU
    ``LOCAL_RANK`` of this machine.  Every collective here must be called by all ranks.
    """

    def __init__(self, device: torch.device):
        self.world_size = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.enabled = self.world_size > 1
        self.device = device
        if device.type == "cuda":
            index = self.local_rank if self.enabled else (device.index or 0)
            if index >= torch.cuda.device_count():
                raise StudioError(f"no GPU {index} here ({torch.cuda.device_count()} visible): "
                                  "start at most one process per GPU (--nproc-per-node)")
            self.device = torch.device("cuda", index)
            torch.cuda.set_device(self.device)  # the current device is the one RNG state and nccl use
        if self.enabled and not torch.distributed.is_initialized():
            backend = "nccl" if device.type == "cuda" else "gloo"
            torch.distributed.init_process_group(backend=backend)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def sum(self, value: float) -> float:
        if not self.enabled:
            return value
        tensor = torch.tensor([value], dtype=torch.float64, device=self.device)  # nccl: GPU tensors only
        torch.distributed.all_reduce(tensor)
        return float(tensor.item())

    def mean(self, value: float) -> float:
        return self.sum(value) / self.world_size

    def any(self, flag: bool) -> bool:
        """True on every rank when ``flag`` is true on at least one."""
        if not self.enabled:
            return flag
        tensor = torch.tensor([int(flag)], dtype=torch.int32, device=self.device)
        torch.distributed.all_reduce(tensor, op=torch.distributed.ReduceOp.MAX)
        return bool(tensor.item())

    def decide(self, flag: bool) -> bool:
        """Rank 0's ``flag`` on every rank, so all ranks take the same branch (clocks and
        file systems differ between ranks; a rank that breaks alone deadlocks the rest)."""
        if not self.enabled:
            return flag
        tensor = torch.tensor([int(flag)], dtype=torch.int32, device=self.device)
        torch.distributed.broadcast(tensor, src=0)
        return bool(tensor.item())

    def gather_rows(self, tensor: torch.Tensor) -> torch.Tensor:
        """Concatenate each rank's [layers, batch, hidden] state along the batch axis."""
        if not self.enabled:
            return tensor
        parts = [torch.empty_like(tensor) for _ in range(self.world_size)]
        torch.distributed.all_gather(parts, tensor.contiguous())
        return torch.cat(parts, dim=1)

    def barrier(self) -> None:
        if self.enabled:
            torch.distributed.barrier()

    def close(self) -> None:
        if self.enabled and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


class InterruptFlag:
    """Under DDP, Ctrl-C (SIGINT, which torchrun also forwards to every worker) only raises
    this flag; the ranks agree on it at the end of a step and stop there together, with a
    checkpoint.  A KeyboardInterrupt would leave each rank at a different point, some of
    them inside a collective that never completes."""

    def __init__(self, active: bool):
        self.active = active and threading.current_thread() is threading.main_thread()
        self.raised = False
        self._previous = None

    def _raise(self, signum, frame) -> None:
        self.raised = True

    def __enter__(self) -> "InterruptFlag":
        if self.active:
            self._previous = signal.signal(signal.SIGINT, self._raise)
        return self

    def __exit__(self, *exc) -> None:
        if self.active:
            signal.signal(signal.SIGINT, self._previous)


def to_device(array: np.ndarray, device: torch.device) -> torch.Tensor:
    """A host array as a tensor on ``device``; to CUDA through pinned memory, so the copy
    runs asynchronously instead of through a pageable staging buffer."""
    tensor = torch.from_numpy(np.ascontiguousarray(array))
    if device.type != "cuda":
        return tensor
    return tensor.pin_memory().to(device, non_blocking=True)


# --- schedule and RNG -----------------------------------------------------------------

def lr_factor(step: int, warmup: int, total: int, min_ratio: float) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine decay to ``min_ratio``."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(),
             "torch": torch.get_rng_state()}
    if torch.cuda.is_initialized():
        # this rank's GPU only: *_all would wake a CUDA context on every visible GPU
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_initialized():
        cuda = state["cuda"]
        torch.cuda.set_rng_state(cuda[0] if isinstance(cuda, (list, tuple)) else cuda)


# --- evaluation -------------------------------------------------------------------------

@torch.no_grad()
def evaluate(model: RecurrentLM, ids: np.ndarray, device: torch.device, seq_len: int = 256,
             dist: Distributed | None = None) -> float:
    """Mean nats per token over ``ids`` with state carried through the whole text.

    With ``dist``, each rank scores every ``world_size``-th validation stream and the
    sums are combined, so all ranks return the same figure for 1/N of the work.
    """
    was_training = model.training
    model.eval()
    streams = eval_streams(ids)
    if dist is not None:
        streams = streams[dist.rank::dist.world_size]
    streams = torch.from_numpy(streams).to(device)
    state = model.init_state(streams.shape[0], device)
    total, count = 0.0, 0
    for start in range(0, streams.shape[1] - 1 if len(streams) else 0, seq_len):
        x = streams[:, start:start + seq_len]
        y = streams[:, start + 1:start + 1 + seq_len]
        x = x[:, : y.shape[1]]
        logits, state = model(x, state)
        total += F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), y.reshape(-1),
                                 reduction="sum").item()
        count += y.numel()
    model.train(was_training)
    if dist is not None:
        total, count = dist.sum(total), dist.sum(count)
    return total / max(1, count)


# --- the loop -----------------------------------------------------------------------

def load_corpus(corpus: Path, domain_name: str | None, domain_options: dict):
    """(domain, all ids, fingerprint, number of documents) for a corpus path."""
    corpus = Path(corpus)
    if not corpus.exists():
        raise StudioError(f"corpus not found: {corpus} (give a file or a folder)")
    name = domain_name or guess_domain(corpus)
    cls = domain_class(name)
    documents = cls.read_corpus(corpus)
    domain = cls.from_documents(documents, **domain_options)
    ids = domain.corpus_ids(documents)
    files = corpus_files(corpus, getattr(cls, "suffixes", None) or None)
    return domain, ids, fingerprint(files), len(documents)


def train(corpus: Path | None, run_dir: Path, *, domain_name: str | None = None,
          domain_options: dict | None = None, model_overrides: dict | None = None,
          train_config: TrainConfig | None = None, resume: bool = False,
          stop_after: int | None = None, quiet: bool = False) -> RunDir:
    """Train (or, with ``resume``, continue) the run in ``run_dir``; returns the run.

    ``stop_after`` pauses after that many steps of this invocation (the schedule still
    spans the whole run), so a later ``resume`` continues exactly where this stopped.
    """
    run = RunDir(run_dir)
    checkpoint = None
    if resume:
        require(run.checkpoint.exists(), f"nothing to resume in {run.path}: no {run.checkpoint.name}")
        checkpoint = torch.load(run.checkpoint, map_location="cpu", weights_only=False)
        saved = run.read_config()
        domain = domain_from_config(checkpoint["domain"])
        model_config = ModelConfig.from_dict(checkpoint["model"])
        base = TrainConfig.from_dict(saved["train"])
        overrides = {k: v for k, v in (train_config.to_dict() if train_config else {}).items()
                     if k in ("max_steps", "max_minutes", "device", "epochs")
                     and v is not None and (k == "device" or v != getattr(TrainConfig(), k))}
        config = replace(base, **overrides)
        corpus = Path(saved["corpus"]["path"])
        ids = np.asarray(checkpoint["corpus_ids"], dtype=np.int64)
        corpus_sha, documents = saved["corpus"]["sha256"], saved["corpus"]["documents"]
    else:
        require(corpus is not None, "give a corpus to train on")
        if run.checkpoint.exists():
            raise StudioError(f"{run.path} already holds a run: continue it with --resume "
                              f"{run.path}, or pick another --name")
        config = train_config or TrainConfig()
        config = replace(config, device=config.device or "cpu")  # None: not given
        domain, ids, corpus_sha, documents = load_corpus(Path(corpus), domain_name, domain_options or {})
        model_config = ModelConfig(vocab_size=domain.vocab_size, **(model_overrides or {}))

    device = resolve_device(config.device)
    dist = Distributed(device)
    device = dist.device  # cuda:LOCAL_RANK under torchrun
    seed_everything(config.seed + dist.rank * 0)  # same init on every rank
    torch.backends.mkldnn.enabled = True  # oneDNN: ~2x faster training windows on CPU

    train_ids, val_ids = split_ids(ids, config.val_fraction)
    if hasattr(domain, "augment") and config.transpose:
        train_ids = domain.augment(train_ids, config.transpose)
    batches = StreamBatches(train_ids, config.batch_size, config.seq_len, dist.rank, dist.world_size)
    per_epoch = batches.windows_per_epoch
    total_steps = config.max_steps or max(1, int(config.epochs * per_epoch))

    model = RecurrentLM(model_config).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate,
                                  weight_decay=config.weight_decay, betas=(0.9, 0.99))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, config.warmup_steps, total_steps, config.min_lr_ratio))
    step, best_val, bad_evals, elapsed_before = 0, math.inf, 0, 0.0
    state = model.init_state(config.batch_size, device)
    if checkpoint is not None:
        model.load_state_dict(checkpoint["model_state"])
        optimizer.load_state_dict(checkpoint["optimizer_state"])
        scheduler.load_state_dict(checkpoint["scheduler_state"])
        step, best_val = checkpoint["step"], checkpoint["best_val"]
        bad_evals, elapsed_before = checkpoint["bad_evals"], checkpoint["elapsed_s"]
        saved_state = checkpoint["carried_state"]
        if saved_state[0].shape[1] == config.batch_size * dist.world_size:
            rows = slice(dist.rank * config.batch_size, (dist.rank + 1) * config.batch_size)
            state = tuple(s[:, rows].to(device) for s in saved_state)
        elif dist.is_main:
            print(f"note: the checkpoint carried {saved_state[0].shape[1]} streams, this run has "
                  f"{config.batch_size * dist.world_size} ({dist.world_size} process(es) x batch "
                  f"{config.batch_size}); carried state starts from zeros")
        set_rng_state(checkpoint["rng"])
        if dist.is_main:
            run.truncate_metrics(step)
    elif dist.is_main:
        run.create()
        run.write_config({
            "studio_version": __version__, "domain": domain.name,
            "corpus": {"path": str(corpus), "sha256": corpus_sha, "documents": documents,
                       "tokens": int(len(ids))},
            "model": model_config.to_dict(), "train": config.to_dict(),
            "parameters": count_parameters(model)})

    trained = model
    if dist.enabled:
        trained = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    use_bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
    amp_dtype = torch.bfloat16 if use_bf16 else torch.float16  # fp16 needs the grad scaler
    scaler = torch.amp.GradScaler("cuda") if device.type == "cuda" and not use_bf16 else None

    def save(tag_best: bool = False) -> None:
        full_state = tuple(dist.gather_rows(s.detach()) for s in state)
        if not dist.is_main:
            return
        atomic_torch_save({
            "studio_version": __version__, "domain": domain.to_config(),
            "model": model_config.to_dict(), "model_state": model.state_dict(),
            "optimizer_state": optimizer.state_dict(), "scheduler_state": scheduler.state_dict(),
            "rng": rng_state(), "step": step, "data_position": step % per_epoch,
            "best_val": best_val, "bad_evals": bad_evals,
            "elapsed_s": elapsed_before + (time.time() - started),
            "carried_state": tuple(s.float().cpu() for s in full_state),  # bf16 under autocast
            "corpus_ids": ids.astype(np.int32)}, run.checkpoint)
        if tag_best:
            atomic_torch_save({"model": model_config.to_dict(), "domain": domain.to_config(),
                               "model_state": model.state_dict(), "step": step,
                               "val_nats": best_val}, run.best)

    started = time.time()
    window_tokens = config.batch_size * batches.seq_len * dist.world_size
    steps_this_call = 0
    stop_reason = "finished"
    if dist.is_main and not quiet:
        print(f"{model_config.cell} {model_config.layers}x{model_config.hidden_size}, "
              f"{count_parameters(model):,} parameters; {len(train_ids):,} training tokens; "
              f"effective batch {config.batch_size * dist.world_size} x {batches.seq_len}; "
              f"lr {config.learning_rate:g}; device {device}")
    progress = training_progress(disable=quiet or not dist.is_main)
    last_loss, last_val, rate = math.nan, "-", 0.0
    with progress, InterruptFlag(active=dist.enabled) as interrupt:
        task = progress.add_task(run.path.name, total=total_steps, completed=step,
                                 loss=0.0, bits=0.0, val="-", tok_s=0.0)
        trained.train()
        tick = time.time()
        try:
            while step < total_steps:
                if step % per_epoch == 0:
                    state = model.init_state(config.batch_size, device)  # new epoch, streams restart
                x, y = batches.window(step)
                x, y = to_device(x, device), to_device(y, device)
                state = tuple(s.detach() for s in state)  # truncated BPTT: stop gradients here
                with torch.autocast(device.type, dtype=amp_dtype, enabled=device.type == "cuda"):
                    logits, state = trained(x, state)
                    loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), y.reshape(-1))
                optimizer.zero_grad(set_to_none=True)
                if scaler is not None:
                    scaler.scale(loss).backward()
                    scaler.unscale_(optimizer)
                    torch.nn.utils.clip_grad_norm_(model.parameters(), config.clip)
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(model.parameters(), config.clip)
                    optimizer.step()
                scheduler.step()
                step += 1
                steps_this_call += 1
                last_loss = loss.item()
                now = time.time()
                rate = window_tokens / max(1e-9, now - tick)
                tick = now
                row = None
                if step % config.eval_every == 0 or step == total_steps:
                    val = evaluate(model, val_ids, device, dist=dist)
                    improved = val < best_val - 1e-4
                    best_val, bad_evals = (val, 0) if improved else (best_val, bad_evals + 1)
                    last_val = f"{val:.3f}"
                    row = {"val_loss": f"{val:.6f}"}
                    save(tag_best=improved)
                    if bad_evals >= config.patience:
                        stop_reason = f"early stop: no validation gain in {config.patience} evaluations"
                logged = row is not None or step % 10 == 0 or step == 1
                if logged:
                    last_loss = dist.mean(last_loss)  # over the effective batch, on every rank
                if dist.is_main and logged:
                    run.append_metrics({"step": step, "epoch": f"{step / per_epoch:.4f}",
                                        "train_loss": f"{last_loss:.6f}",
                                        "learning_rate": f"{scheduler.get_last_lr()[0]:.6g}",
                                        "tokens_per_s": f"{rate:.0f}",
                                        "elapsed_s": f"{elapsed_before + now - started:.1f}",
                                        **(row or {})})
                progress.update(task, completed=step, loss=last_loss, bits=last_loss / LN2,
                                val=last_val, tok_s=rate)
                if stop_reason != "finished":
                    break
                if dist.enabled and dist.any(interrupt.raised):
                    stop_reason = f"interrupted at step {step}; checkpoint saved (continue with --resume {run.path})"
                    save()
                    break
                minutes = (elapsed_before + time.time() - started) / 60
                if config.max_minutes is not None and dist.decide(minutes >= config.max_minutes):
                    stop_reason = f"time limit: {config.max_minutes:g} minutes"
                    save()
                    break
                if stop_after is not None and steps_this_call >= stop_after and step < total_steps:
                    stop_reason = f"paused after {steps_this_call} steps (continue with --resume {run.path})"
                    save()
                    break
        except KeyboardInterrupt:
            save()
            stop_reason = f"interrupted at step {step}; checkpoint saved (continue with --resume {run.path})"
    finished = step >= total_steps and stop_reason == "finished"
    if finished and dist.decide(not run.best.exists()):
        save(tag_best=True)
    if dist.is_main:
        run.plot_loss()
        summary = {"stop_reason": stop_reason, "step": step, "best_val_nats": best_val,
                   "world_size": dist.world_size, "effective_batch": config.batch_size * dist.world_size,
                   "train_minutes": round((elapsed_before + time.time() - started) / 60, 2)}
        (run.path / "summary.json").write_text(json.dumps(summary, indent=2))
        if not quiet:
            print(f"{stop_reason}; step {step}; best validation {best_val:.4f} nats/token "
                  f"({best_val / LN2:.4f} bits); run folder {run.path}")
    dist.barrier()
    dist.close()
    return run
