"""The collectives a trial's workers use, each a no-op without a process group of more than one rank."""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def all_reduce_mean_(value: torch.Tensor) -> torch.Tensor:
    """In-place mean over all ranks (SUM then divide: gloo has no AVG)."""
    if is_distributed():
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
        value.div_(dist.get_world_size())
    return value


def all_reduce_sum_(value: torch.Tensor) -> torch.Tensor:
    if is_distributed():
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value


def broadcast_object(obj: Any, rank: int) -> Any:
    """Rank 0's ``obj`` on every rank (other ranks pass anything, e.g. None)."""
    if not is_distributed():
        return obj
    box = [obj if rank == 0 else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order, on every rank."""
    if not is_distributed():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out
