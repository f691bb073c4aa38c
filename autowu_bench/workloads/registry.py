"""Workload registry: name -> data set, model, recipe, loaders (the platform's only entry point here)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch
from torch import nn

from .data import cifar, fashion_mnist, imagenet
from .data.augment import AugmentSpec, Normalize
from .data.imagenet import FolderLoader, ImageSplit
from .data.sharding import Sharding
from .data.splits import Splits, TensorSplit
from .data.tensor_loader import DeviceLoader
from .models import build_model
from .recipes import BASE_LR, Recipe

# Images in each data set's official training split, before the validation hold-out: what a suite's
# steps per epoch are planned from before any data is read (an ImageNet folder may hold fewer).
TRAIN_IMAGES = {"fashion-mnist": 60_000, "cifar10": 50_000, "cifar100": 50_000, "imagenet": 1_281_167}
STATS = {
    "fashion-mnist": ((0.2860,), (0.3530,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}


@dataclass(frozen=True)
class Workload:
    """A data set, a model and a recipe.

    Attributes:
        name: registry name.
        dataset: "fashion-mnist", "cifar10", "cifar100" or "imagenet".
        arch: model architecture (see models.MODELS).
        num_classes: classes of the data set.
        recipe: default training recipe.
        augment: training augmentation of the in-memory data sets (ImageNet: the standard one, always).
        input_shape: (C, H, W) of a batch's images.
    """

    name: str
    dataset: str
    arch: str
    num_classes: int
    recipe: Recipe
    augment: AugmentSpec = field(default_factory=AugmentSpec)
    input_shape: tuple[int, int, int] = (3, 32, 32)

    def check_data(self, root: str | os.PathLike | None) -> list[str]:
        """Problems with the data under ``root`` (None: the default location); empty when it loads.

        Each message names the path looked at and how to get the data.
        """
        if self.dataset == "fashion-mnist":
            return fashion_mnist.check(root)
        if self.dataset in ("cifar10", "cifar100"):
            return cifar.check(self.dataset, root)
        return imagenet.check(root)

    def load(
        self,
        root: str | os.PathLike | None,
        *,
        val_size: int,
        train_subset: int | None = None,
        seed: int = 0,
        download: bool = False,
    ) -> Splits:
        """Train / val (held out of train by ``seed``) / test splits; raises DataError when data is missing.

        Args:
            root: data root (None: the default location; only Fashion-MNIST has one).
            val_size: images held out of the official training set for validation.
            train_subset: keep only this many of the remaining training images (None: all).
            seed: seeds the held-out split and the subset.
            download: fetch the data set into ``root`` when missing (not possible for ImageNet).
        """
        if self.dataset == "fashion-mnist":
            return fashion_mnist.load(root, val_size=val_size, train_subset=train_subset, seed=seed, download=download)
        if self.dataset in ("cifar10", "cifar100"):
            return cifar.load(
                self.dataset, root, val_size=val_size, train_subset=train_subset, seed=seed, download=download
            )
        return imagenet.load(root, val_size=val_size, train_subset=train_subset, seed=seed, download=download)

    @property
    def train_images(self) -> int:
        """Images in the data set's official training split (validation hold-out included)."""
        return TRAIN_IMAGES[self.dataset]

    def build_model(self) -> nn.Module:
        """A freshly initialised model (the caller seeds it with torch.manual_seed)."""
        return build_model(self.arch, self.num_classes)

    def loss_fn(self) -> nn.Module:
        return nn.CrossEntropyLoss(label_smoothing=self.recipe.label_smoothing)

    def loader(
        self,
        split: TensorSplit | ImageSplit,
        *,
        batch_size: int,
        rank: int = 0,
        world_size: int = 1,
        train: bool,
        seed: int = 0,
        device: torch.device | str = "cpu",
        channels_last: bool = False,
        num_workers: int | None = None,
    ) -> DeviceLoader | FolderLoader:
        """Batches ``(x, y)`` on ``device``, normalized, augmented when ``train``; see DeviceLoader.

        ``batch_size`` is per rank. ``num_workers`` applies to ImageNet's DataLoader only (default:
        min(8, CPU count)); Fashion-MNIST and CIFAR are served from device memory with no workers.
        """
        mean, std = STATS[self.dataset]
        sharding = Sharding(batch_size=batch_size, train=train, rank=rank, world_size=world_size, seed=seed,
                            device=device)
        if isinstance(split, TensorSplit):
            return DeviceLoader(split, sharding, augment=self.augment, normalize=Normalize(mean, std),
                                channels_last=channels_last)
        if isinstance(split, ImageSplit):
            return FolderLoader(split, sharding, normalize=Normalize(mean, std), image_size=self.input_shape[-1],
                                num_workers=num_workers, channels_last=channels_last)
        raise TypeError(f"split must come from {self.name}'s load(), got {type(split).__name__}")


_FMNIST = Recipe(epochs=20, base_lr=BASE_LR["adamp"], warmup_epochs=2)
_CIFAR = Recipe(epochs=200, base_lr=BASE_LR["adamp"], label_smoothing=0.1)
_IMAGENET = Recipe(epochs=120, base_lr=BASE_LR["adamp"])
_CIFAR_AUG = AugmentSpec(crop_padding=4, flip=True, autoaugment=True, cutout=16)
_FMNIST_SHAPE = (1, 28, 28)

WORKLOADS: dict[str, Workload] = {
    w.name: w
    for w in (
        Workload("fmnist-mlp", "fashion-mnist", "mlp", 10, _FMNIST, AugmentSpec(flip=True), _FMNIST_SHAPE),
        Workload("fmnist-cnn", "fashion-mnist", "small-cnn", 10, _FMNIST, AugmentSpec(2, True), _FMNIST_SHAPE),
        Workload("fmnist-resnet18", "fashion-mnist", "resnet18-1ch", 10, _FMNIST, AugmentSpec(2, True), _FMNIST_SHAPE),
        Workload("cifar10-resnet18", "cifar10", "resnet18-cifar", 10, _CIFAR, _CIFAR_AUG),
        Workload("cifar100-wrn28-10", "cifar100", "wrn28-10", 100, _CIFAR, _CIFAR_AUG),
        Workload("imagenet-resnet50", "imagenet", "resnet50", 1000, _IMAGENET, input_shape=(3, 224, 224)),
        Workload("imagenet-efficientnet-b0", "imagenet", "efficientnet-b0", 1000, _IMAGENET, input_shape=(3, 224, 224)),
        Workload(
            "imagenet-vit-s16", "imagenet", "vit-s16", 1000,
            Recipe(epochs=300, base_lr=BASE_LR["adamp"], weight_decay=5e-2),
            input_shape=(3, 224, 224),
        ),
    )
}  # fmt: skip


def workload_names() -> list[str]:
    return sorted(WORKLOADS)


def get_workload(name: str) -> Workload:
    """The registered workload ``name``; ValueError listing the known names otherwise."""
    if name not in WORKLOADS:
        raise ValueError(f"unknown workload {name!r}; known: {', '.join(workload_names())}")
    return WORKLOADS[name]
