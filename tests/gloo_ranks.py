"""Several ranks of one gloo process group on this machine, for the tests of data-parallel training."""

from __future__ import annotations

import os
from typing import Any, Callable

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from autowu_bench.platform.tracking.server import free_port


def on_gloo_ranks(worker: Callable[..., Any], world: int, *args: Any) -> dict[int, Any]:
    """``worker(rank, world, *args)`` on ``world`` spawned processes joined in one gloo process group (one
    torch thread each); what each returned, by rank. ``worker`` must be a module-level function."""
    with mp.Manager() as manager:
        out = manager.dict()
        mp.spawn(_rank, args=(world, free_port(), worker, args, out), nprocs=world, join=True)
        return dict(out)


def _rank(rank: int, world: int, port: int, worker: Callable[..., Any], args: tuple, out: dict) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        out[rank] = worker(rank, world, *args)
    finally:
        dist.destroy_process_group()
