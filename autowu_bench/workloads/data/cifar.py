"""CIFAR-10 and CIFAR-100 through torchvision's classes, md5-checked as torchvision checks them.

torchvision's ``CIFAR10``/``CIFAR100`` compare every file's md5 with the official archive's before they
unpickle it, even when not downloading: only the official files load (a pickle can run code, so a
file of unknown origin is never read). The subclasses below keep that check and say which file
differs. The tests' small fixtures, written in the same format, opt out explicitly: a file named
``NO_MD5_CHECK_MARKER`` in the data set's folder (``cifar-10-batches-py/``) skips the md5 comparison
there, and the files only have to exist and unpickle. Never put one beside real data.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import torch
from torchvision.datasets import CIFAR10, CIFAR100
from torchvision.datasets.utils import check_integrity

from ..errors import DataError
from .splits import Splits, TensorSplit, split_tensors

NO_MD5_CHECK_MARKER = "NO-MD5-CHECK-test-fixture"


def md5_check_skipped(folder: str | os.PathLike) -> bool:
    """True when ``folder`` (a data set's folder) holds ``NO_MD5_CHECK_MARKER``: a test fixture."""
    return (Path(folder) / NO_MD5_CHECK_MARKER).is_file()


class _Checked:
    """Mixin: torchvision's md5 check (its own methods), unless the folder opts out (``md5_check_skipped``)."""

    base_folder: str
    root: str
    train_list: list[list[str]]
    test_list: list[list[str]]
    meta: dict[str, str]

    def _check_integrity(self) -> bool:
        folder = Path(self.root) / self.base_folder
        if not md5_check_skipped(folder):
            return super()._check_integrity()
        return all((folder / name).is_file() for name, _ in self.train_list + self.test_list)

    def _load_meta(self) -> None:
        path = Path(self.root) / self.base_folder / self.meta["filename"]
        if not md5_check_skipped(path.parent):
            super()._load_meta()
            return
        with open(path, "rb") as f:
            data = pickle.load(f, encoding="latin1")
        self.classes = data[self.meta["key"]]
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}


class CIFAR10Files(_Checked, CIFAR10):
    pass


class CIFAR100Files(_Checked, CIFAR100):
    pass


CLASSES = {"cifar10": CIFAR10Files, "cifar100": CIFAR100Files}
NUM_CLASSES = {"cifar10": 10, "cifar100": 100}


def _how_to_get(kind: str) -> str:
    cls = CLASSES[kind]
    return (
        f"fetch it into the data root with `run_suite.py --download`, or download {cls.url} and extract it "
        f"there (giving DATA_ROOT/{cls.base_folder}/)"
    )


def _required(kind: str, root: Path) -> list[Path]:
    cls = CLASSES[kind]
    folder = root / cls.base_folder
    return [folder / name for name, _ in cls.train_list + cls.test_list] + [folder / cls.meta["filename"]]


def _missing(kind: str, root: str | os.PathLike | None) -> list[str]:
    if root is None:
        return [f"{kind.upper()} needs a data root (none given): set data.root, then {_how_to_get(kind)}"]
    missing = [p for p in _required(kind, Path(root)) if not p.is_file()]
    if missing:
        return [f"{kind.upper()} not found: missing {', '.join(map(str, missing))}; {_how_to_get(kind)}"]
    return []


def check(kind: str, root: str | os.PathLike | None) -> list[str]:
    """Problems with the data set under ``root`` (empty when it loads); each names the path and the fix."""
    missing = _missing(kind, root)
    if missing:
        return missing
    try:
        _read(kind, Path(root), train=True)
        _read(kind, Path(root), train=False)
    except DataError as exc:
        return [str(exc)]
    return []


def _md5_mismatches(kind: str, root: Path) -> list[str]:
    """The files under ``root`` whose md5 differs from the official archive's (none when the folder opts out)."""
    cls = CLASSES[kind]
    folder = root / cls.base_folder
    if md5_check_skipped(folder):
        return []
    files = cls.train_list + cls.test_list + [[cls.meta["filename"], cls.meta["md5"]]]
    return [name for name, md5 in files if not check_integrity(str(folder / name), md5)]


def _read(kind: str, root: Path, *, train: bool) -> TensorSplit:
    folder = root / CLASSES[kind].base_folder
    try:
        ds = CLASSES[kind](str(root), train=train, download=False)
    except (pickle.UnpicklingError, EOFError, KeyError, ValueError, TypeError, OSError, RuntimeError) as exc:
        differ = _md5_mismatches(kind, root) if isinstance(exc, RuntimeError) else []
        if differ:
            raise DataError(
                f"{kind.upper()} files in {folder} are not the official ones (md5 of {', '.join(differ)} differs "
                f"from the archive's: a partial or altered copy); delete {folder}, then {_how_to_get(kind)}"
            ) from exc
        raise DataError(
            f"{kind.upper()} files in {folder} cannot be read ({type(exc).__name__}: {exc}); {_how_to_get(kind)}"
        ) from exc
    images = np.ascontiguousarray(ds.data.transpose(0, 3, 1, 2))  # NHWC -> NCHW
    labels = np.asarray(ds.targets, dtype=np.int64)
    if labels.size and (labels.min() < 0 or labels.max() >= NUM_CLASSES[kind]):
        raise DataError(f"{kind.upper()} labels in {folder} fall outside [0, {NUM_CLASSES[kind]}); {_how_to_get(kind)}")
    return TensorSplit(torch.from_numpy(images), torch.from_numpy(labels))


def load(
    kind: str,
    root: str | os.PathLike | None,
    *,
    val_size: int,
    train_subset: int | None,
    seed: int,
    download: bool = False,
) -> Splits[TensorSplit]:
    """Train (minus a seeded held-out val set) and the official test set as uint8 ``[N, 3, 32, 32]``."""
    if download and root is not None:
        try:
            CLASSES[kind](str(root), train=True, download=True)
        except (OSError, RuntimeError) as exc:  # no network, a bad archive, a read-only root
            raise DataError(f"downloading {kind.upper()} into {root} failed ({exc}); {_how_to_get(kind)}") from exc
    problems = _missing(kind, root)
    if problems:
        raise DataError(problems[0])
    train = _read(kind, Path(root), train=True)
    test = _read(kind, Path(root), train=False)
    return split_tensors(train, test, val_size=val_size, train_subset=train_subset, seed=seed)
