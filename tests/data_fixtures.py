"""Small data sets written in the real on-disk formats, for tests that load them through the suites' code.

- Fashion-MNIST: gzip IDX files named like the real ones (magic 2051/2049, big-endian sizes).
- CIFAR-10/100: python pickles in cifar-10-batches-py / cifar-100-python with the real keys, marked as
  fixtures (their md5s cannot be the official files', which real data must match).
- ImageNet: an ImageFolder tree imagenet/{train,val}/<wnid>/<name>.JPEG (and PNG).
Images are random noise plus a per-class brightness offset, so labels are learnable but tiny.
"""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
from PIL import Image


def _images(rng: np.random.Generator, labels: np.ndarray, shape: tuple[int, ...], num_classes: int) -> np.ndarray:
    noise = rng.integers(0, 128, size=(len(labels), *shape))
    offset = (labels * (127 // max(num_classes - 1, 1))).reshape(-1, *([1] * len(shape)))
    return (noise + offset).astype(np.uint8)


def _write_idx(path: Path, magic: int, array: np.ndarray) -> None:
    header = struct.pack(f">{1 + array.ndim}I", magic, *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def write_fashion_mnist_idx(root: str | Path, n_train: int = 600, n_test: int = 100, seed: int = 0) -> Path:
    """Write the four gzip IDX files into ``root`` (as Debian's package does) and return that folder."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.integers(0, 10, size=n).astype(np.uint8)
        _write_idx(root / f"{prefix}-images-idx3-ubyte.gz", 2051, _images(rng, labels, (28, 28), 10))
        _write_idx(root / f"{prefix}-labels-idx1-ubyte.gz", 2049, labels)
    return root


def _cifar_batch(rng: np.random.Generator, n: int, num_classes: int, label_key: str, name: str) -> dict:
    labels = rng.integers(0, num_classes, size=n)
    data = _images(rng, labels, (3, 32, 32), num_classes).reshape(n, 3072)  # row: R plane, G plane, B plane
    batch = {"batch_label": name, label_key: labels.tolist(), "data": data, "filenames": [f"img_{i}.png" for i in range(n)]}
    if label_key == "fine_labels":
        batch["coarse_labels"] = (labels // 5).tolist()
    return batch


def _dump(path: Path, obj: dict) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def _skip_md5(folder: Path, skip: bool) -> None:
    """The fixture's opt-out of the md5 check that real CIFAR files pass (workloads/data/cifar.py)."""
    from autowu_bench.workloads.data.cifar import NO_MD5_CHECK_MARKER

    if skip:
        (folder / NO_MD5_CHECK_MARKER).write_text("a test fixture: md5 not compared with the official archive's\n")


def write_cifar10(root: str | Path, n_train: int = 500, n_test: int = 100, seed: int = 0, skip_md5: bool = True) -> Path:
    """Write cifar-10-batches-py/ (data_batch_1..5, test_batch, batches.meta) under ``root``; return root.
    ``skip_md5``: mark the folder as a fixture, whose md5s cannot be the official files'."""
    root = Path(root)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    _skip_md5(folder, skip_md5)
    rng = np.random.default_rng(seed)
    sizes = [n_train // 5 + (1 if i < n_train % 5 else 0) for i in range(5)]
    for i, n in enumerate(sizes, start=1):
        _dump(folder / f"data_batch_{i}", _cifar_batch(rng, n, 10, "labels", f"training batch {i} of 5"))
    _dump(folder / "test_batch", _cifar_batch(rng, n_test, 10, "labels", "testing batch 1 of 1"))
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    _dump(folder / "batches.meta", {"label_names": names, "num_cases_per_batch": max(sizes), "num_vis": 3072})
    return root


def write_cifar100(root: str | Path, n_train: int = 500, n_test: int = 100, seed: int = 0, skip_md5: bool = True) -> Path:
    """Write cifar-100-python/ (train, test, meta) under ``root``; return root (``skip_md5``: as write_cifar10)."""
    root = Path(root)
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    _skip_md5(folder, skip_md5)
    rng = np.random.default_rng(seed)
    _dump(folder / "train", _cifar_batch(rng, n_train, 100, "fine_labels", "training batch 1 of 1"))
    _dump(folder / "test", _cifar_batch(rng, n_test, 100, "fine_labels", "testing batch 1 of 1"))
    meta = {"fine_label_names": [f"class_{i}" for i in range(100)], "coarse_label_names": [f"super_{i}" for i in range(20)]}
    _dump(folder / "meta", meta)
    return root


def write_imagenet_folders(
    root: str | Path, num_classes: int = 3, per_class_train: int = 6, per_class_val: int = 2, size: int = 40, seed: int = 0
) -> Path:
    """Write imagenet/{train,val}/n0000000k/*.JPEG (every third image a PNG) under ``root``; return root."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    for split, per_class in (("train", per_class_train), ("val", per_class_val)):
        for k in range(num_classes):
            folder = root / "imagenet" / split / f"n{k:08d}"
            folder.mkdir(parents=True, exist_ok=True)
            labels = np.full(per_class, k)
            for i, img in enumerate(_images(rng, labels, (size, size + 8, 3), num_classes)):
                ext = "png" if i % 3 == 2 else "JPEG"
                Image.fromarray(img).save(folder / f"{split}_{k}_{i}.{ext}")
    return root
