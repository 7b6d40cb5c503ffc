"""Devices, distribution and RNG state for the trainer (torch).

``resolve_device`` picks CPU or CUDA; :class:`Distributed` holds torchrun's rank facts
and the few collectives the trainer needs (a no-op for one process);
:class:`InterruptFlag` lets DDP ranks stop together on Ctrl-C; the RNG helpers save and
restore every generator a run draws from, so ``--resume`` continues exactly.
"""

from __future__ import annotations

import math
import os
import random
import signal
import threading

import numpy as np
import torch

from .errors import StudioError, require

# --- devices and distribution -------------------------------------------------------


def resolve_device(name: str) -> torch.device:
    """ "cpu", "cuda", "cuda:N" or "auto" (CUDA when present)."""
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
                raise StudioError(
                    f"no GPU {index} here ({torch.cuda.device_count()} visible): "
                    "start at most one process per GPU (--nproc-per-node)"
                )
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
    """Ctrl-C (SIGINT, which torchrun also forwards to every worker) only raises this
    flag; the trainer checks it at the end of a step and stops there with a checkpoint,
    so the saved weights always match the saved step.  Under DDP the ranks agree on it
    first: a KeyboardInterrupt would leave each rank at a different point, some of them
    inside a collective that never completes."""

    def __init__(self, active: bool):
        self.active = active and threading.current_thread() is threading.main_thread()
        self.raised = False
        self._previous = None

    def _raise(self, signum, frame) -> None:
        self.raised = True

    def __enter__(self) -> InterruptFlag:
        if self.active:
            self._previous = signal.signal(signal.SIGINT, self._raise)
        return self

    def __exit__(self, *exc) -> None:
        if self.active:
            signal.signal(signal.SIGINT, self._previous)


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
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
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
