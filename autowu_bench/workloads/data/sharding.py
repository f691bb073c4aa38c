"""Which samples each rank sees, in which order: shared by the in-memory and the ImageNet loaders."""

from __future__ import annotations

import numpy as np
import torch


def mix_seed(*parts: int) -> int:
    """A 63-bit seed from several integers (seed, epoch, rank, ...), well mixed and deterministic."""
    return int(np.random.SeedSequence([int(p) & 0xFFFFFFFF for p in parts]).generate_state(2, np.uint64)[0] >> 1)


def train_batches(n: int, *, batch_size: int, rank: int, world_size: int, seed: int, epoch: int) -> torch.Tensor:
    """Index batches ``[num_batches, batch_size]`` of rank ``rank`` for one training epoch.

    One permutation of all ``n`` samples per (seed, epoch), identical on every rank; rank r takes every
    world_size-th index from position r (disjoint parts), each rank keeps the same number of whole
    batches and drops the rest.
    """
    check_rank(rank, world_size)
    per_rank = n // world_size
    num_batches = per_rank // batch_size
    if num_batches == 0:
        raise ValueError(
            f"batch_size={batch_size} x world_size={world_size} exceeds the {n} training samples: "
            "lower the batch size (or use gradient accumulation over smaller micro-batches)"
        )
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(mix_seed(seed, epoch)))
    mine = perm[rank::world_size][: num_batches * batch_size]
    return mine.view(num_batches, batch_size)


def num_train_batches(n: int, *, batch_size: int, world_size: int) -> int:
    return (n // world_size) // batch_size


def check_rank(rank: int, world_size: int) -> None:
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank={rank} must be in [0, world_size={world_size})")
