"""ImageNet (or any ImageFolder-style tree) with the standard augmentation, read by DataLoader workers.

Layout: ``DATA_ROOT/imagenet/{train,val}/<class>/<image>`` (or ``DATA_ROOT/{train,val}/...``), where
``val`` is the official validation set sorted into class folders. It serves as the test split; the
validation split is held out of ``train``. Workers decode and crop to uint8 tensors; normalization runs
on the training device.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset
from torchvision.transforms import v2

from ..errors import DataError
from .augment import Normalize
from .sharding import ShardedLoader, Sharding, mix_seed, train_batches
from .splits import Splits, train_val_indices

HOW_TO_GET = (
    "get ILSVRC2012 from https://image-net.org (registration required), extract the training images into "
    "DATA_ROOT/imagenet/train/<wnid>/ and the validation images into DATA_ROOT/imagenet/val/<wnid>/ "
    "(torchvision.datasets.ImageNet or the usual valprep.sh script sorts val into class folders)"
)


class ImageSplit:
    """A list of (path, class index) pairs and the class names; cheap to pickle to workers."""

    def __init__(self, samples: list[tuple[str, int]], classes: list[str]) -> None:
        self.samples = samples
        self.classes = classes

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[str, int]:
        return self.samples[index]


def folders(root: str | os.PathLike | None) -> tuple[Path, Path] | None:
    """(train, val) folders under root: ``root/imagenet/{train,val}`` first, then ``root/{train,val}``."""
    if root is None:
        return None
    for base in (Path(root) / "imagenet", Path(root)):
        if (base / "train").is_dir():
            return base / "train", base / "val"
    return Path(root) / "imagenet" / "train", Path(root) / "imagenet" / "val"


def _scan(folder: Path) -> ImageSplit:
    try:
        classes, class_to_idx = find_classes(str(folder))
        samples = make_dataset(str(folder), class_to_idx, extensions=IMG_EXTENSIONS)
    except (FileNotFoundError, OSError) as exc:
        raise DataError(f"ImageNet folder {folder} cannot be read ({exc}); {HOW_TO_GET}") from exc
    return ImageSplit(samples, classes)


def check(root: str | os.PathLike | None) -> list[str]:
    """Problems with the folders under ``root``; each names the path and how to get the data."""
    found = folders(root)
    if found is None:
        return [f"ImageNet needs a data root (none given); {HOW_TO_GET}"]
    problems = [f"ImageNet folder {f} is missing; {HOW_TO_GET}" for f in found if not f.is_dir()]
    if problems:
        return problems
    train_classes = sorted(e.name for e in os.scandir(found[0]) if e.is_dir())
    val_classes = sorted(e.name for e in os.scandir(found[1]) if e.is_dir())
    if not train_classes:
        return [f"ImageNet folder {found[0]} has no class folders; {HOW_TO_GET}"]
    if val_classes != train_classes:
        return [
            f"ImageNet {found[1]} has {len(val_classes)} class folders, {found[0]} has {len(train_classes)}; "
            f"they must be the same classes; {HOW_TO_GET}"
        ]
    return []


def load(
    root: str | os.PathLike | None, *, val_size: int, train_subset: int | None, seed: int, download: bool = False
) -> Splits[ImageSplit]:
    """Scan the folders (no image is decoded here). ImageNet cannot be downloaded automatically."""
    problems = check(root)
    if problems:
        extra = " (download=True cannot fetch ImageNet: it needs a registered account)" if download else ""
        raise DataError(problems[0] + extra)
    train_dir, val_dir = folders(root)  # type: ignore[misc]
    train_full, test = _scan(train_dir), _scan(val_dir)
    if len(train_full) == 0 or len(test) == 0:
        raise DataError(f"ImageNet folders {train_dir} / {val_dir} hold no images ({IMG_EXTENSIONS}); {HOW_TO_GET}")
    train_idx, val_idx = train_val_indices(len(train_full), val_size=val_size, train_subset=train_subset, seed=seed)
    pick = lambda idx: ImageSplit([train_full.samples[i] for i in idx.tolist()], train_full.classes)  # noqa: E731
    return Splits(train=pick(train_idx), val=pick(val_idx), test=test)


def train_transform(size: int = 224) -> v2.Transform:
    return v2.Compose([v2.RandomResizedCrop(size, antialias=True), v2.RandomHorizontalFlip(), v2.PILToTensor()])


def eval_transform(size: int = 224, resize: int = 256) -> v2.Transform:
    return v2.Compose([v2.Resize(resize, antialias=True), v2.CenterCrop(size), v2.PILToTensor()])


class _Decoded(Dataset):
    def __init__(self, split: ImageSplit, transform: v2.Transform) -> None:
        self.split = split
        self.transform = transform

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path, label = self.split.samples[index]
        with Image.open(path) as img:
            return self.transform(img.convert("RGB")), label


class _Batches:
    """Batch sampler: this rank's shuffled training batches of the current epoch, or all eval batches."""

    def __init__(self, loader: FolderLoader) -> None:
        self.loader = loader

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[list[int]]:
        ld = self.loader
        n = len(ld.split)
        if ld.train:
            batches = train_batches(
                n, batch_size=ld.batch_size, rank=ld.rank, world_size=ld.world_size, seed=ld.seed, epoch=ld.epoch
            )
            yield from batches.tolist()
        else:
            for i in range(0, n, ld.batch_size):
                yield list(range(i, min(i + ld.batch_size, n)))


class FolderLoader(ShardedLoader):
    """Batches ``(x, y)`` on ``device`` from an :class:`ImageSplit`: x float32 normalized, y int64.

    Same sharding contract as :class:`DeviceLoader`: train=True gives rank ``rank`` a disjoint part of
    each epoch's (seed, epoch) permutation, in whole batches of ``batch_size`` (the same count on every
    rank); train=False walks the whole split in order. The random crops and flips draw from the worker
    processes' generators, which torch seeds from this loader's generator (seeded from (seed, rank));
    with ``num_workers=0`` they draw from the global torch generator.
    """

    def __init__(
        self,
        split: ImageSplit,
        sharding: Sharding,
        *,
        normalize: Normalize,
        image_size: int = 224,
        num_workers: int | None = None,
        channels_last: bool = False,
    ) -> None:
        super().__init__(split, sharding, normalize=normalize, channels_last=channels_last)
        workers = min(8, os.cpu_count() or 1) if num_workers is None else num_workers
        self._generator = torch.Generator().manual_seed(mix_seed(self.seed, self.rank, 2))
        transform = train_transform(image_size) if self.train else eval_transform(image_size, round(image_size * 256 / 224))
        self._loader = DataLoader(
            _Decoded(split, transform),
            batch_sampler=_Batches(self),
            num_workers=workers,
            pin_memory=self.device.type == "cuda",
            persistent_workers=workers > 0,
            generator=self._generator,
        )

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for x, y in self._loader:
            x = self.normalize(x.to(self.device, non_blocking=True))
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, y.to(self.device, non_blocking=True)
