"""Devices and distributed data-parallel training: where a run trains and which rank it is.

Under ``torchrun --nproc_per_node N`` (``WORLD_SIZE`` > 1; one process per GPU or CPU
worker) or with a process group already initialised, :func:`firereg.pipelines.training.train`
trains with ``DistributedDataParallel``: :func:`setup_distributed` initialises the process
group if needed (``nccl`` on CUDA, ``gloo`` on the CPU) and :meth:`Ranks.close` destroys only
a group it created. Every rank takes its share of the seeded epoch order
(:class:`firereg.pipelines.training.sampling.EpochOrder`); only rank 0 writes checkpoints,
logs and TensorBoard scalars and validates, the other ranks wait at a barrier.
"""

from __future__ import annotations

import datetime
import logging
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = ["DISTRIBUTED_TIMEOUT_MINUTES", "Ranks", "resolve_device", "setup_distributed", "default_threads"]

#: how long ranks wait for each other (rank 0 validates while the others wait), minutes
DISTRIBUTED_TIMEOUT_MINUTES = 60

logger = logging.getLogger(__name__)


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """The device a run trains on: ``device`` if given, else the CPU — or, in a
    ``torchrun`` process (``WORLD_SIZE`` > 1) on a machine with CUDA, ``cuda:LOCAL_RANK``.
    A bare ``cuda`` becomes ``cuda:LOCAL_RANK`` under ``torchrun``."""
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    launched = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if device is None:
        return torch.device("cuda", local_rank) if launched and torch.cuda.is_available() else torch.device("cpu")
    device = torch.device(device)
    if device.type == "cuda" and device.index is None and launched:
        return torch.device("cuda", local_rank)
    return device


@dataclass
class Ranks:
    """This process's place in distributed training (rank 0 of 1 without it).

    Attributes:
        rank: this process's rank.
        world_size: processes in the group.
        owned: the process group was initialised by :func:`setup_distributed` (and is
            destroyed by :meth:`close`).
    """

    rank: int = 0
    world_size: int = 1
    owned: bool = False

    @property
    def enabled(self) -> bool:
        """Whether training is distributed (more than one rank)."""
        return self.world_size > 1

    @property
    def main(self) -> bool:
        """Whether this is rank 0 (the one that writes and validates)."""
        return self.rank == 0

    def barrier(self) -> None:
        """Wait for every rank (nothing without distribution)."""
        if self.enabled:
            dist.barrier()

    def any(self, flag: bool, device: torch.device) -> bool:
        """``flag`` of any rank (all ranks take the same decision)."""
        if not self.enabled:
            return bool(flag)
        value = torch.tensor([1.0 if flag else 0.0], device=device)
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item() > 0)

    def share(self, values: list) -> list:
        """Rank 0's ``values`` on every rank (picklable objects)."""
        if self.enabled:
            dist.broadcast_object_list(values, src=0)
        return values

    def close(self) -> None:
        """Destroy the process group if :func:`setup_distributed` created it."""
        if self.owned and dist.is_initialized():
            dist.destroy_process_group()


def setup_distributed(device: torch.device) -> Ranks:
    """Join (or, under ``torchrun`` with ``WORLD_SIZE`` > 1, create) the process group.

    Raises:
        RuntimeError: if ``WORLD_SIZE`` > 1 but this PyTorch has no ``torch.distributed``.
    """
    if dist.is_available() and dist.is_initialized():
        return Ranks(dist.get_rank(), dist.get_world_size(), owned=False)
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return Ranks()
    if not dist.is_available():
        raise RuntimeError("WORLD_SIZE > 1 asks for distributed training, but this PyTorch has no torch.distributed")
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend=backend, timeout=datetime.timedelta(minutes=DISTRIBUTED_TIMEOUT_MINUTES))
    logger.info("rank %d of %d joined the %s process group", dist.get_rank(), dist.get_world_size(), backend)
    return Ranks(dist.get_rank(), dist.get_world_size(), owned=True)


def default_threads(ranks: Ranks) -> int:
    """``torch.set_num_threads`` default: all cores, shared by the ranks of a node under ``torchrun``."""
    cores = os.cpu_count() or 1
    return max(1, cores // int(os.environ.get("LOCAL_WORLD_SIZE", "1"))) if ranks.enabled else cores
