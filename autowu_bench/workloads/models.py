"""The models of the workloads: small Fashion-MNIST nets, CIFAR ResNet-18 and WRN-28-10, ImageNet models.

The CIFAR-style nets are written here (torchvision has none); the ImageNet models are torchvision's
(ResNet-50, EfficientNet-B0, and its VisionTransformer class with the ViT-S/16 configuration).
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models import efficientnet_b0, resnet50
from torchvision.models.vision_transformer import VisionTransformer


def fmnist_mlp(num_classes: int = 10) -> nn.Module:
    """784-512-256-10 MLP with ReLU, for 1x28x28 images."""
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(784, 512),
        nn.ReLU(inplace=True),
        nn.Linear(512, 256),
        nn.ReLU(inplace=True),
        nn.Linear(256, num_classes),
    )


def fmnist_cnn(num_classes: int = 10) -> nn.Module:
    """Two conv-ReLU-maxpool stages (32, 64 channels) and a 128-unit hidden layer, for 1x28x28 images."""
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(64 * 7 * 7, 128),
        nn.ReLU(inplace=True),
        nn.Linear(128, num_classes),
    )


class BasicBlock(nn.Module):
    """ResNet basic block (two 3x3 convs, BN, ReLU) with a 1x1 projection shortcut when the shape changes."""

    def __init__(self, in_ch: int, out_ch: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False), nn.BatchNorm2d(out_ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class CifarResNet18(nn.Module):
    """ResNet-18 with the CIFAR stem (3x3 conv, stride 1, no max-pool): 11.17M parameters for 10 classes."""

    def __init__(self, num_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, 64, 3, padding=1, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True)
        )
        layers: list[nn.Module] = []
        in_ch = 64
        for out_ch, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            layers += [BasicBlock(in_ch, out_ch, stride), BasicBlock(out_ch, out_ch, 1)]
            in_ch = out_ch
        self.layers = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.layers(self.stem(x))), 1))


class WideBlock(nn.Module):
    """Pre-activation wide residual block (BN-ReLU-conv x2), Zagoruyko & Komodakis 2016."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, dropout: float) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False)
        self.shortcut: nn.Module | None = None
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = torch.relu(self.bn1(x))
        out = self.conv1(pre)
        out = self.conv2(self.dropout(torch.relu(self.bn2(out))))
        return out + (x if self.shortcut is None else self.shortcut(pre))


class WideResNet(nn.Module):
    """WRN-depth-k for 32x32 inputs; WRN-28-10 has 36.5M parameters for 100 classes."""

    def __init__(self, depth: int = 28, widen: int = 10, num_classes: int = 100, dropout: float = 0.0) -> None:
        super().__init__()
        if (depth - 4) % 6:
            raise ValueError(f"WRN depth={depth} must be 6n + 4 (e.g. 28)")
        n = (depth - 4) // 6
        widths = (16, 16 * widen, 32 * widen, 64 * widen)
        self.stem = nn.Conv2d(3, widths[0], 3, padding=1, bias=False)
        blocks: list[nn.Module] = []
        in_ch = widths[0]
        for out_ch, stride in zip(widths[1:], (1, 2, 2)):
            for i in range(n):
                blocks.append(WideBlock(in_ch, out_ch, stride if i == 0 else 1, dropout))
                in_ch = out_ch
        self.blocks = nn.Sequential(*blocks)
        self.bn = nn.BatchNorm2d(in_ch)
        self.fc = nn.Linear(in_ch, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn(self.blocks(self.stem(x))))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(out, 1), 1))


def vit_s16(num_classes: int = 1000, image_size: int = 224) -> nn.Module:
    """ViT-S/16 (12 layers, 6 heads, width 384, MLP 1536): 22.05M parameters for 1000 classes."""
    return VisionTransformer(
        image_size=image_size, patch_size=16, num_layers=12, num_heads=6, hidden_dim=384, mlp_dim=1536,
        num_classes=num_classes,
    )


MODELS = {
    "mlp": lambda n: fmnist_mlp(n),
    "small-cnn": lambda n: fmnist_cnn(n),
    "resnet18-1ch": lambda n: CifarResNet18(n, in_channels=1),
    "resnet18-cifar": lambda n: CifarResNet18(n),
    "wrn28-10": lambda n: WideResNet(28, 10, n),
    "resnet50": lambda n: resnet50(weights=None, num_classes=n),
    "efficientnet-b0": lambda n: efficientnet_b0(weights=None, num_classes=n),
    "vit-s16": lambda n: vit_s16(n),
}


def build_model(arch: str, num_classes: int) -> nn.Module:
    """A freshly initialised model (seed the init with torch.manual_seed before calling)."""
    if arch not in MODELS:
        raise ValueError(f"unknown architecture {arch!r}; known: {', '.join(sorted(MODELS))}")
    return MODELS[arch](num_classes)
