"""Data-parallel distillation on torch.distributed: every rank holds a shard of the real data.

Why this scheme: the coreset is small and identical on every rank, the real data is what grows.
Each rank keeps only the rows ``index % world == rank`` of the real training set. A step's real
batch is drawn from the *global* index set with a generator that every rank seeds identically,
so all ranks agree on the batch; each rank then computes on the members it owns. Methods add up
their rank-local contributions in one of two exact ways:

* a loss that is a sum over real samples (RFAD's cross-entropy over the real batch) is divided
  by the *global* batch size, and the coreset gradients are summed over ranks
  (``all_reduce_grads``);
* a loss built from real-data statistics (DM's class-mean embeddings, DC's real-batch gradient)
  sums those statistics over ranks first (``all_reduce_sum``); the synthetic side is then the
  same on every rank, so every rank takes the same step without a gradient exchange.

Either way a run with N processes takes the same steps as one process with the same seed and
total batch, up to the order of floating-point summation. Works with gloo (CPU) and NCCL (GPUs),
under ``torchrun`` on one machine or several; one process needs no process group at all.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterable

import numpy as np
import torch
import torch.distributed as dist


@dataclass(frozen=True)
class ProcessGroup:
    """This process's place in the run: ``rank`` of ``world`` (1 when not distributed)."""

    rank: int = 0
    world: int = 1

    @property
    def is_main(self) -> bool:
        """Rank 0 writes checkpoints, outputs and progress bars."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1

    # sharding -----------------------------------------------------------------------------------
    def shard_indices(self, n: int) -> np.ndarray:
        """Global row indices this rank holds: ``rank, rank + world, ...``."""
        return np.arange(self.rank, n, self.world)

    def owned(self, global_idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mask over ``global_idx`` of the rows this rank owns, their positions in the local shard)."""
        mask = (global_idx % self.world) == self.rank
        return mask, torch.div(global_idx[mask], self.world, rounding_mode="floor")

    # collectives --------------------------------------------------------------------------------
    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum ``tensor`` over ranks in place (no-op for one process); returns it."""
        if self.distributed:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def all_reduce_grads(self, params: Iterable[torch.Tensor]) -> None:
        """Sum the gradients of ``params`` over ranks (a missing gradient counts as zero)."""
        if not self.distributed:
            return
        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)

    def any(self, flag: bool, device: torch.device | str = "cpu") -> bool:
        """True on every rank when ``flag`` is true on any rank (stop decisions must agree)."""
        if not self.distributed:
            return bool(flag)
        t = torch.tensor([1.0 if flag else 0.0], device=device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item() > 0)

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()


def current_group() -> ProcessGroup:
    """The process group torchrun set up, or a single-process group."""
    if dist.is_available() and dist.is_initialized():
        return ProcessGroup(dist.get_rank(), dist.get_world_size())
    return ProcessGroup()


def init_from_environment(device: str = "auto") -> ProcessGroup:
    """Join the process group described by torchrun's environment (``WORLD_SIZE`` > 1).

    Backend: NCCL when CUDA is used, gloo otherwise. Each rank on a GPU machine takes the GPU
    ``LOCAL_RANK``. Without torchrun's variables this returns a single-process group.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 or not dist.is_available():
        return ProcessGroup()
    if not dist.is_initialized():
        use_cuda = torch.cuda.is_available() and device != "cpu"
        if use_cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return current_group()


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
