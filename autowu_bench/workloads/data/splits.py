"""Split containers and the seeded train/validation split."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import torch

S = TypeVar("S")


@dataclass(frozen=True)
class Splits(Generic[S]):
    """The three splits of a workload: ``val`` is held out of the official training set, ``test`` is the
    official test set."""

    train: S
    val: S
    test: S


class TensorSplit:
    """A whole split held as tensors: ``images`` uint8 ``[N, C, H, W]``, ``labels`` int64 ``[N]``.

    Small data sets (Fashion-MNIST, CIFAR) live in memory this way; a loader moves the split to its device
    once (``on(device)``, cached) and augments and normalizes each batch there.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError(f"images must be uint8 [N, C, H, W], got {images.dtype} {tuple(images.shape)}")
        if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
            raise ValueError(f"labels {tuple(labels.shape)} do not match {images.shape[0]} images")
        self.images = images
        self.labels = labels.to(torch.int64)
        self._on_device: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.images[index], int(self.labels[index])

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_on_device"] = {}  # device copies never travel (pickling to Ray workers)
        return state

    def on(self, device: torch.device | str) -> tuple[torch.Tensor, torch.Tensor]:
        """The split's (images, labels) on ``device``, copied there once and then reused."""
        device = torch.device(device)
        key = str(device)
        if device.type == "cpu":
            return self.images, self.labels
        if key not in self._on_device:
            self._on_device[key] = (
                self.images.to(device, non_blocking=True),
                self.labels.to(device, non_blocking=True),
            )
        return self._on_device[key]

    def subset(self, indices: torch.Tensor) -> TensorSplit:
        return TensorSplit(self.images[indices], self.labels[indices])


def check_split_sizes(n_train: int, val_size: int, train_subset: int | None) -> None:
    """Raise ValueError naming the bad value when the requested sizes do not fit the training set."""
    if val_size < 0 or val_size >= n_train:
        raise ValueError(f"val_size={val_size} must be in [0, {n_train - 1}] (the training set has {n_train} samples)")
    if train_subset is not None and not 0 < train_subset <= n_train - val_size:
        raise ValueError(
            f"train_subset={train_subset} must be in [1, {n_train - val_size}] "
            f"({n_train} training samples minus val_size={val_size}); use None for all of them"
        )


def train_val_indices(
    n_train: int, *, val_size: int, train_subset: int | None, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded disjoint (train, val) index sets over the official training set.

    The validation set depends only on (n_train, val_size, seed), not on ``train_subset``, so trials with
    different subsets are judged on the same held-out images.
    """
    check_split_sizes(n_train, val_size, train_subset)
    perm = torch.randperm(n_train, generator=torch.Generator().manual_seed(seed))
    val = perm[:val_size].sort().values
    train = perm[val_size:]
    if train_subset is not None:
        train = train[:train_subset]
    return train.sort().values, val


def split_tensors(
    train_full: TensorSplit, test: TensorSplit, *, val_size: int, train_subset: int | None, seed: int
) -> Splits[TensorSplit]:
    train_idx, val_idx = train_val_indices(len(train_full), val_size=val_size, train_subset=train_subset, seed=seed)
    return Splits(train=train_full.subset(train_idx), val=train_full.subset(val_idx), test=test)
