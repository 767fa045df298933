"""Process-group helpers (torchrun + DistributedDataParallel) and the resumable data order.

One process and a torchrun job run the same code: when ``WORLD_SIZE`` is unset (or 1) every
helper here degrades to the single-process answer (rank 0, world 1, reductions are identities).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in the job."""

    rank: int = 0
    """Global rank of this process."""
    world_size: int = 1
    """Number of processes."""
    local_rank: int = 0
    """Rank on this machine (selects the CUDA device)."""

    @property
    def is_main(self) -> bool:
        """True on rank 0 (the process that writes logs, samples and checkpoints)."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        """True when a process group with more than one process is in use."""
        return self.world_size > 1


def init_distributed(device: torch.device) -> DistInfo:
    """Join the torchrun process group named by the environment, if any.

    Uses NCCL for CUDA devices and gloo otherwise. Returns ``DistInfo()`` when ``WORLD_SIZE``
    is unset or 1. An already initialised default group is reused.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", str(rank)))
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, rank=rank, world_size=world)
    return DistInfo(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local)


def cleanup_distributed() -> None:
    """Destroy the default process group if this process created one."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_mean(tensor: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Mean of ``tensor`` over processes (a new tensor; identity with one process)."""
    if not info.enabled:
        return tensor
    out = tensor.detach().clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out / info.world_size


def barrier(info: DistInfo) -> None:
    """Wait for every process (no-op with one process)."""
    if info.enabled:
        dist.barrier()


def broadcast_object(obj: object, info: DistInfo) -> object:
    """Rank 0's ``obj`` on every process."""
    if not info.enabled:
        return obj
    holder = [obj]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


class ResumableBatchSampler:
    """Seeded infinite data order whose position is a pure function of the step.

    The index stream is the concatenation of seeded permutations of ``range(num_samples)``
    (epoch e uses seed ``seed * 1_000_003 + e``); global batch k is stream[k B : (k + 1) B] and
    process r takes the r-th of ``world_size`` equal slices of it. So the global batches are the
    same for any number of processes, and resuming at step k only needs k.
    """

    def __init__(self, num_samples: int, global_batch: int, seed: int, start_step: int = 0,
                 rank: int = 0, world_size: int = 1) -> None:
        if num_samples < 1:
            raise ValueError(f"the dataset is empty (num_samples={num_samples})")
        if global_batch < 1 or global_batch % world_size:
            raise ValueError(
                f"global batch {global_batch} must be a positive multiple of world size "
                f"{world_size}")
        if start_step < 0 or not 0 <= rank < world_size:
            raise ValueError(f"bad start_step={start_step} or rank={rank}/{world_size}")
        self.num_samples = num_samples
        self.global_batch = global_batch
        self.local_batch = global_batch // world_size
        self.seed = seed
        self.start_step = start_step
        self.rank = rank
        self.world_size = world_size

    def _perm(self, epoch: int) -> list[int]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(self.num_samples, generator=g).tolist()

    def global_batch_at(self, step: int) -> list[int]:
        """Sample indices of global batch ``step`` (all processes)."""
        start = step * self.global_batch
        out: list[int] = []
        epoch, offset = divmod(start, self.num_samples)
        while len(out) < self.global_batch:
            perm = self._perm(epoch)
            take = perm[offset: offset + self.global_batch - len(out)]
            out.extend(take)
            epoch, offset = epoch + 1, 0
        return out

    def __iter__(self) -> Iterator[list[int]]:
        """Yield this process's index lists from ``start_step`` on, forever."""
        step = self.start_step
        while True:
            batch = self.global_batch_at(step)
            lo = self.rank * self.local_batch
            yield batch[lo: lo + self.local_batch]
            step += 1

    def __len__(self) -> int:
        """Batches per epoch (informational; the iterator is infinite)."""
        return max(1, self.num_samples // self.global_batch)
