"""PyTorch DDP under torchrun: the same `mtlhar train` on many GPUs (or CPU processes with gloo).

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK; `setup()` joins the process group once. Each rank reads
its share of every global batch (the global order is the same on every rank), labelled counts are
all-reduced so losses are means over every labelled sample, and only rank 0 writes files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def launched() -> DistInfo:
    """The ranks torchrun gave this process (from its environment); joins nothing."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    return DistInfo(
        rank=int(os.environ["RANK"]), world=world, local_rank=int(os.environ.get("LOCAL_RANK", "0"))
    )


def setup() -> DistInfo:
    info = launched()
    if info.world <= 1:
        return info
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(info.local_rank)
        dist.init_process_group(backend=backend)
    return info


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    if active():
        t = t.clone().to(_device())
        dist.all_reduce(t)
    return t


def broadcast_flag(flag: bool) -> bool:
    """Rank 0's value of `flag` on every rank (a decision all ranks must take together)."""
    if not active():
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=_device())
    dist.broadcast(t, src=0)
    return bool(t.item())


def all_gather_objects(obj) -> list:
    """[obj of rank 0, obj of rank 1, ...] (tensors moved to the CPU first)."""
    if not active():
        return [obj]
    out: list = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def _device() -> torch.device:
    return (
        torch.device("cuda", torch.cuda.current_device())
        if dist.get_backend() == "nccl"
        else torch.device("cpu")
    )
