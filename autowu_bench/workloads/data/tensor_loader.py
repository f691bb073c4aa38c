"""A loader over a split that lives whole on one device (Fashion-MNIST, CIFAR)."""

from __future__ import annotations

from collections.abc import Iterator

import torch

from .augment import AugmentSpec, Normalize, augment_uint8, cutout
from .sharding import ShardedLoader, Sharding, mix_seed, train_batches
from .splits import TensorSplit


class DeviceLoader(ShardedLoader):
    """Batches ``(x, y)`` of a :class:`TensorSplit` on ``device``: x float32 normalized, y int64.

    The uint8 split is copied to ``device`` once; each batch is gathered, augmented (train only) and
    normalized there, so the input pipeline is a handful of kernels per batch and never needs worker
    processes.

    Args:
        split: the images and labels.
        sharding: this rank's batches and their device (``Sharding``).
        augment: what train batches get; ignored when train=False.
        normalize: per-channel normalization.
        channels_last: return 4-D batches in channels_last memory format.
    """

    def __init__(
        self,
        split: TensorSplit,
        sharding: Sharding,
        *,
        augment: AugmentSpec = AugmentSpec(),
        normalize: Normalize,
        channels_last: bool = False,
    ) -> None:
        super().__init__(split, sharding, normalize=normalize, channels_last=channels_last)
        self.augment = augment

    def _index_batches(self) -> list[torch.Tensor]:
        n = len(self.split)
        if self.train:
            batches = train_batches(
                n, batch_size=self.batch_size, rank=self.rank, world_size=self.world_size, seed=self.seed,
                epoch=self.epoch,
            )
            return list(batches.to(self.device).unbind(0))
        return [slice(i, min(i + self.batch_size, n)) for i in range(0, n, self.batch_size)]  # type: ignore[misc]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        images, labels = self.split.on(self.device)
        generator = torch.Generator(device=self.device)
        generator.manual_seed(mix_seed(self.seed, self.epoch, self.rank, 1))
        for index in self._index_batches():
            x, y = images[index], labels[index]
            if self.train:
                x = augment_uint8(x, self.augment, generator)
            x = self.normalize(x)
            if self.train and self.augment.cutout:
                x = cutout(x, self.augment.cutout, generator)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, y
