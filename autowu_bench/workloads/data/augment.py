"""Batched, per-sample augmentation on whatever device the batch lives on.

torchvision's v2 transforms draw one set of random parameters per call, so a batched call would crop or
flip every image of the batch alike. The functions here draw parameters per sample and apply them in a
few whole-batch tensor operations (no per-image Python loop, no host synchronisation), on CPU or GPU.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .autoaugment import cifar10_autoaugment


@dataclass(frozen=True)
class AugmentSpec:
    """What a workload's training batches get.

    Attributes:
        crop_padding: random crop of the original size from the image zero-padded by this many pixels
            on each side (0: no crop).
        flip: random horizontal flip with probability 0.5.
        autoaugment: the AutoAugment CIFAR-10 policy (Cubuk et al. 2019), per sample.
        cutout: side of the square zeroed at a random centre after normalization (DeVries & Taylor
            2017; 0: none).
    """

    crop_padding: int = 0
    flip: bool = False
    autoaugment: bool = False
    cutout: int = 0


def random_crop(x: torch.Tensor, padding: int, generator: torch.Generator) -> torch.Tensor:
    """Per-sample random crop of size (H, W) from ``x`` zero-padded by ``padding`` pixels.

    The result is a channels_last ``[B, C, H, W]`` tensor (the gather produces ``[B, H, W, C]``).
    """
    if padding <= 0:
        return x
    b, _, h, w = x.shape
    padded = F.pad(x, (padding, padding, padding, padding))
    dev = x.device
    oy = torch.randint(0, 2 * padding + 1, (b,), generator=generator, device=dev)
    ox = torch.randint(0, 2 * padding + 1, (b,), generator=generator, device=dev)
    rows = oy[:, None] + torch.arange(h, device=dev)
    cols = ox[:, None] + torch.arange(w, device=dev)
    batch = torch.arange(b, device=dev)[:, None, None]
    return padded[batch, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


def random_flip(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Flip each image left-right with probability 0.5."""
    flip = torch.rand(x.shape[0], generator=generator, device=x.device) < 0.5
    return torch.where(flip[:, None, None, None], x.flip(3), x)


def cutout(x: torch.Tensor, size: int, generator: torch.Generator) -> torch.Tensor:
    """Zero a ``size`` x ``size`` square (clipped at the border) centred at a uniform random pixel."""
    if size <= 0:
        return x
    b, _, h, w = x.shape
    dev = x.device
    cy = torch.randint(0, h, (b, 1), generator=generator, device=dev) - size // 2
    cx = torch.randint(0, w, (b, 1), generator=generator, device=dev) - size // 2
    ys = torch.arange(h, device=dev)[None, :]
    xs = torch.arange(w, device=dev)[None, :]
    in_y = (ys >= cy) & (ys < cy + size)
    in_x = (xs >= cx) & (xs < cx + size)
    keep = ~(in_y[:, :, None] & in_x[:, None, :])
    return x * keep[:, None].to(x.dtype)


def augment_uint8(x: torch.Tensor, spec: AugmentSpec, generator: torch.Generator) -> torch.Tensor:
    """The uint8 part of ``spec`` (crop, flip, AutoAugment), in that order, on a uint8 batch."""
    x = random_crop(x, spec.crop_padding, generator)
    if spec.flip:
        x = random_flip(x, generator)
    if spec.autoaugment:
        x = cifar10_autoaugment(x, generator)
    return x


class Normalize:
    """``(x / 255 - mean) / std`` per channel, as one multiply-add on the batch's device."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        self.mean = mean
        self.std = std
        self._cache: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        key = str(x.device)
        if key not in self._cache:
            mean = torch.tensor(self.mean, device=x.device).view(1, -1, 1, 1)
            std = torch.tensor(self.std, device=x.device).view(1, -1, 1, 1)
            self._cache[key] = (1.0 / (255.0 * std), -mean / std)
        scale, shift = self._cache[key]
        return torch.addcmul(shift, x.float(), scale)
