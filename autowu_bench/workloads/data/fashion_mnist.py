"""Fashion-MNIST from its real on-disk format (gzip IDX files), found on its own when installed by Debian.

The IDX files are read directly (gzip + numpy, checking magic numbers and sizes), which is the same
format torchvision's ``FashionMNIST`` reads; torchvision's class is used only to download on request.
"""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from .splits import Splits, TensorSplit, split_tensors

DEBIAN_DIR = "/usr/share/datasets/fashion-mnist"
FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
IMAGE_MAGIC = 2051
LABEL_MAGIC = 2049
HOW_TO_GET = (
    f"install Debian's package ('sudo apt-get install dataset-fashion-mnist', files in {DEBIAN_DIR}), "
    "or put the four *-ubyte(.gz) files from https://github.com/zalandoresearch/fashion-mnist under "
    "DATA_ROOT/FashionMNIST/raw (python -c \"import torchvision; torchvision.datasets.FashionMNIST('DATA_ROOT', download=True)\" does that)"
)


def candidate_dirs(root: str | os.PathLike | None) -> list[Path]:
    """Folders searched, in order: the Debian location when root is None, else torchvision's layout
    (root/FashionMNIST/raw), root/fashion-mnist and root itself."""
    if root is None:
        return [Path(DEBIAN_DIR)]
    root = Path(root)
    return [root / "FashionMNIST" / "raw", root / "fashion-mnist", root]


def _find(folder: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem):
        if (folder / name).is_file():
            return folder / name
    return None


def locate(root: str | os.PathLike | None) -> tuple[dict[str, Path] | None, list[Path]]:
    """The four files from the first folder holding all of them, and the folders searched."""
    dirs = candidate_dirs(root)
    for folder in dirs:
        found = {key: _find(folder, stem) for key, stem in FILES.items()}
        if all(found.values()):
            return found, dirs  # type: ignore[return-value]
    return None, dirs


def _missing_message(dirs: list[Path]) -> str:
    looked = ", ".join(str(d) for d in dirs)
    return f"Fashion-MNIST not found: looked for {', '.join(s + '(.gz)' for s in FILES.values())} in {looked}; {HOW_TO_GET}"


def read_idx(path: Path, magic: int) -> np.ndarray:
    """Read one IDX file (gzip or raw) into a uint8 array, checking the magic number and the size."""
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise DataError(f"Fashion-MNIST file {path} cannot be read ({exc}); {HOW_TO_GET}") from exc
    ndim = 3 if magic == IMAGE_MAGIC else 1
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"Fashion-MNIST file {path} is truncated ({len(raw)} bytes); {HOW_TO_GET}")
    found_magic, *dims = struct.unpack(f">{1 + ndim}I", raw[:header])
    if found_magic != magic:
        raise DataError(f"Fashion-MNIST file {path} has magic number {found_magic}, expected {magic}; {HOW_TO_GET}")
    expected = header + int(np.prod(dims))
    if len(raw) != expected:
        raise DataError(
            f"Fashion-MNIST file {path} has {len(raw)} bytes, expected {expected} for shape {tuple(dims)}; {HOW_TO_GET}"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def check(root: str | os.PathLike | None) -> list[str]:
    files, dirs = locate(root)
    if files is None:
        return [_missing_message(dirs)]
    try:
        _read_pair(files["train_images"], files["train_labels"])
        _read_pair(files["test_images"], files["test_labels"])
    except DataError as exc:
        return [str(exc)]
    return []


def _read_pair(images_path: Path, labels_path: Path) -> TensorSplit:
    images = read_idx(images_path, IMAGE_MAGIC)
    labels = read_idx(labels_path, LABEL_MAGIC)
    if images.shape[0] != labels.shape[0]:
        raise DataError(
            f"Fashion-MNIST {images_path} holds {images.shape[0]} images but {labels_path} "
            f"{labels.shape[0]} labels; {HOW_TO_GET}"
        )
    if labels.size and labels.max() > 9:
        raise DataError(f"Fashion-MNIST {labels_path} has label {labels.max()} > 9; {HOW_TO_GET}")
    return TensorSplit(torch.from_numpy(images.copy()).unsqueeze(1), torch.from_numpy(labels.astype(np.int64)))


def load(
    root: str | os.PathLike | None, *, val_size: int, train_subset: int | None, seed: int, download: bool = False
) -> Splits[TensorSplit]:
    """Train (minus a seeded held-out val set) and the official test set as uint8 ``[N, 1, 28, 28]``."""
    files, dirs = locate(root)
    if files is None and download:
        if root is None:
            raise DataError(f"download=True needs a data root to download into; {_missing_message(dirs)}")
        from torchvision.datasets import FashionMNIST

        try:
            FashionMNIST(str(root), train=True, download=True)
        except (OSError, RuntimeError) as exc:  # no network, a bad archive, a read-only root
            raise DataError(f"downloading Fashion-MNIST into {root} failed ({exc}); {HOW_TO_GET}") from exc
        files, dirs = locate(root)
    if files is None:
        raise DataError(_missing_message(dirs))
    train = _read_pair(files["train_images"], files["train_labels"])
    test = _read_pair(files["test_images"], files["test_labels"])
    return split_tensors(train, test, val_size=val_size, train_subset=train_subset, seed=seed)
