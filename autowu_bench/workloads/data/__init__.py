"""Data sets on disk (Fashion-MNIST, CIFAR, ImageNet folders), splits, loaders and batched augmentation."""
