"""Data-parallel training across processes: ``torch.distributed`` + DistributedDataParallel.

mripkg launches nothing itself:
``torchrun --standalone --nproc_per_node=N -m mripkg.training.train ...`` starts N processes
and sets ``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK``; :func:`init_from_env` joins them into one
process group (NCCL when CUDA is available, else gloo).  Tests spawn ranks with
``torch.multiprocessing`` and call ``torch.distributed.init_process_group`` themselves.

What the training loops need from it is in :class:`Ranks`:

* the **share** of the global batch a rank computes (a contiguous block of rows; every rank
  draws the whole global batch from the same seeded generator, so the split does not depend
  on the number of ranks, and one process takes all rows);
* the **mean** of a value over ranks (the logged loss) and **any** (a stop decision that one
  rank made, e.g. on its wall clock, taken by all ranks together);
* **wrap**: DistributedDataParallel around the network (gradients averaged over ranks, so a
  step on N shares equals a step on the whole batch up to float rounding), with BatchNorm
  layers converted to SyncBatchNorm on GPUs.  On CPUs PyTorch has no SyncBatchNorm: there a
  network with BatchNorm (ResUNet++) normalises each rank's share by its own statistics, and
  N ranks differ from one process by more than rounding (a warning says so).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

__all__ = ["Ranks", "current", "init_from_env", "shutdown", "wrap", "default_device"]


@dataclass(frozen=True)
class Ranks:
    """This process's place in the process group (``world == 1``: a single process)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that validates and writes checkpoints."""
        return self.rank == 0

    def share(self, batch: int, what: str = "batch") -> slice:
        """Rows ``[r * batch / world, (r + 1) * batch / world)`` of a global batch of ``batch``
        rows (all rows in one process).  The batch must split evenly, so that the mean of the
        per-rank means is the global mean."""
        if batch % self.world:
            raise ValueError(
                f"the global {what} of {batch} does not split evenly over {self.world} ranks; "
                f"use a number of ranks that divides {batch}"
            )
        n = batch // self.world
        return slice(self.rank * n, (self.rank + 1) * n)

    def mean(self, value: Tensor) -> Tensor:
        """``value`` averaged over ranks (a copy; the value itself in one process)."""
        if not self.distributed:
            return value
        out = value.detach().clone()
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        return out / self.world

    def any(self, flag: bool, device: torch.device | str = "cpu") -> bool:
        """Whether ``flag`` is true on any rank (every rank must call this together)."""
        if not self.distributed:
            return bool(flag)
        t = torch.tensor([1.0 if flag else 0.0], device=device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item() > 0)

    def barrier(self) -> None:
        """Wait until every rank gets here (nothing in one process)."""
        if self.distributed:
            dist.barrier()


def current() -> Ranks:
    """The running process group's ranks (a single process when there is none)."""
    if not (dist.is_available() and dist.is_initialized()):
        return Ranks()
    return Ranks(
        rank=dist.get_rank(),
        world=dist.get_world_size(),
        local_rank=int(os.environ.get("LOCAL_RANK", dist.get_rank())),
    )


def launched_by_torchrun() -> bool:
    """Whether torchrun (or another launcher using its variables) started this process."""
    return "WORLD_SIZE" in os.environ and "RANK" in os.environ


def init_from_env(backend: str | None = None) -> Ranks:
    """Join the process group torchrun describes in the environment (a no-op in a process
    started without it).  ``backend``: NCCL when CUDA is available, else gloo."""
    if not launched_by_torchrun() or (dist.is_available() and dist.is_initialized()):
        return current()
    if backend is None:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if backend == "nccl":
        torch.cuda.set_device(local_rank)
        dist.init_process_group(backend, device_id=torch.device("cuda", local_rank))
    else:
        dist.init_process_group(backend)
    return current()


def shutdown() -> None:
    """Leave the process group (if this process is in one)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def default_device(ranks: Ranks) -> torch.device:
    """Where a rank trains by default: its own GPU (``cuda:LOCAL_RANK``) when the group runs on
    NCCL, else the CPU (the default of a single process too)."""
    if ranks.distributed and dist.get_backend() == "nccl":
        return torch.device("cuda", ranks.local_rank)
    return torch.device("cpu")


def wrap(net: nn.Module, ranks: Ranks, device: torch.device, name: str = "network") -> nn.Module:
    """``net`` itself in one process; else DistributedDataParallel around it (SyncBatchNorm on
    GPUs).  Keep a reference to ``net``: checkpoints are written from it, not from the wrapper."""
    if not ranks.distributed:
        return net
    has_bn = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in net.modules())
    if has_bn and device.type == "cuda":
        net = nn.SyncBatchNorm.convert_sync_batchnorm(net)
    elif has_bn:
        warnings.warn(
            f"{name}: BatchNorm on {ranks.world} CPU ranks uses each rank's share of the batch "
            "(PyTorch's SyncBatchNorm needs GPUs); the result differs from one process by "
            "more than float rounding",
            stacklevel=2,
        )
    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(net, device_ids=ids)
