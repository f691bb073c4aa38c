"""Which samples each rank sees, in which order: shared by the in-memory and the ImageNet loaders."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch


def mix_seed(*parts: int) -> int:
    """A 63-bit seed from several integers (seed, epoch, rank, ...), well mixed and deterministic."""
    return int(np.random.SeedSequence([int(p) & 0xFFFFFFFF for p in parts]).generate_state(2, np.uint64)[0] >> 1)


def train_steps(n: int, *, batch_size: int, world_size: int) -> int:
    """Whole batches of ``batch_size`` that every rank gets per training epoch from ``n`` samples."""
    return (n // world_size) // batch_size


def batch_split_problem(batch_size: int, workers: int, micro_batch: int | None = None) -> str | None:
    """Why a global batch cannot be split into ``workers`` equal per-rank batches, each a whole number of
    ``micro_batch``-sized accumulation steps (None: no accumulation); None when it can."""
    unit = workers * (micro_batch or 1)
    if batch_size % unit == 0:
        return None
    what = f"{workers} workers" + (f" x micro_batch {micro_batch}" if micro_batch else "")
    change = "the number of workers" + (" or micro_batch" if micro_batch else "")
    return f"batch size {batch_size} is not divisible by {what} = {unit}; use a multiple of {unit} or change {change}"


def train_batches(n: int, *, batch_size: int, rank: int, world_size: int, seed: int, epoch: int) -> torch.Tensor:
    """Index batches ``[num_batches, batch_size]`` of rank ``rank`` for one training epoch.

    One permutation of all ``n`` samples per (seed, epoch), identical on every rank; rank r takes every
    world_size-th index from position r (disjoint parts), each rank keeps the same number of whole
    batches and drops the rest.
    """
    check_rank(rank, world_size)
    num_batches = train_steps(n, batch_size=batch_size, world_size=world_size)
    if num_batches == 0:
        raise ValueError(
            f"batch_size={batch_size} x world_size={world_size} exceeds the {n} training samples: "
            "lower the batch size (or use gradient accumulation over smaller micro-batches)"
        )
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(mix_seed(seed, epoch)))
    mine = perm[rank::world_size][: num_batches * batch_size]
    return mine.view(num_batches, batch_size)


def check_rank(rank: int, world_size: int) -> None:
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank={rank} must be in [0, world_size={world_size})")


@dataclass(frozen=True)
class Sharding:
    """Which batches a loader gives, and where (``Workload.loader`` builds it from its arguments).

    Attributes:
        batch_size: samples per batch on this rank (the global batch is batch_size x world_size).
        train: augment and shard/shuffle (True) or evaluate (False).
        rank, world_size: this rank's share. train=True: disjoint parts, the same number of whole
            batches on every rank, order reshuffled per (seed, epoch) (see :func:`train_batches`).
            train=False: the whole split on every rank, in order, last batch kept.
        seed: seeds the shuffle (with the epoch) and the augmentation (with the epoch and the rank).
        device: where the batches are produced.
    """

    batch_size: int
    train: bool
    rank: int = 0
    world_size: int = 1
    seed: int = 0
    device: torch.device | str = "cpu"


class ShardedLoader:
    """What the in-memory and the ImageNet loaders share: rank ``rank``'s share of a split, per epoch,
    as ``sharding`` says."""

    def __init__(
        self,
        split: Any,
        sharding: Sharding,
        *,
        normalize: Callable[[torch.Tensor], torch.Tensor],
        channels_last: bool,
    ) -> None:
        if sharding.batch_size < 1:
            raise ValueError(f"batch_size={sharding.batch_size} must be at least 1")
        check_rank(sharding.rank, sharding.world_size)
        self.split = split
        self.batch_size = sharding.batch_size
        self.rank = sharding.rank
        self.world_size = sharding.world_size
        self.train = sharding.train
        self.seed = sharding.seed
        self.device = torch.device(sharding.device)
        self.normalize = normalize
        self.channels_last = channels_last
        self.epoch = 0
        if self.train:  # fail now, not at the first epoch, when the batch does not fit
            train_batches(len(split), batch_size=self.batch_size, rank=self.rank, world_size=self.world_size,
                          seed=self.seed, epoch=0)

    def set_epoch(self, epoch: int) -> None:
        """Select the shuffle (and augmentation) stream of ``epoch``: deterministic per (seed, epoch)."""
        self.epoch = epoch

    def __len__(self) -> int:
        n = len(self.split)
        if self.train:
            return train_steps(n, batch_size=self.batch_size, world_size=self.world_size)
        return -(-n // self.batch_size)
