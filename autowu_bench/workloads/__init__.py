"""Workloads: data sets, models, optimizers and recipes, by registry name.

    from autowu_bench.workloads import get_workload
    wl = get_workload("fmnist-mlp")
    splits = wl.load(None, val_size=5000, train_subset=None, seed=0)
    loader = wl.loader(splits.train, batch_size=256, train=True)
"""

from .data.augment import AugmentSpec
from .data.splits import Splits
from .errors import DataError
from .optimizers import build_optimizer
from .recipes import Recipe
from .registry import Workload, get_workload, workload_names

__all__ = [
    "AugmentSpec",
    "DataError",
    "Recipe",
    "Splits",
    "Workload",
    "build_optimizer",
    "get_workload",
    "workload_names",
]
