"""Training recipes: the paper's epochs and baseline, with documented base LRs.

The baseline of the paper (Kim et al. 2021) warms up linearly from 0 over 5 epochs to a peak LR that
the square-root rule scales from one base LR: ``peak = base_lr * sqrt(B / base_batch)``. The paper
tuned that base LR across tasks but does not print it per optimizer, so the values below are this
project's choices, at ``base_batch`` 256:

- AdamP 1e-3: the AdamP authors' default and the usual Adam LR at batch 256; sqrt scaling gives 8e-3
  at 16K, inside the range where AdamP on ResNets trains stably with warmup.
- LAMB 2e-3: gives 1.6e-2 at 16K and 2.3e-2 at 32K, the range the LAMB paper used for ResNet-50 at
  those batch sizes.
- SGD 0.1: Goyal et al.'s 0.1 per 256 images.

Weight decay (decoupled for AdamP and LAMB, coupled L2 for SGD): 1e-2 for AdamP and LAMB (AdamP
README, LAMB paper), 5e-2 for ViT-S/16 with AdamP (DeiT-style ViT training), 5e-4 for SGD on CIFAR
and 1e-4 on ImageNet.

The arms beyond the paper (docs/optimizers.md); their suites give the peak LR and scaling explicitly:

- LARS 16 (with trust coefficient 0.001: a relative step of 1.6 % per layer) and CLARS 0.1
  (per-example) / 0.04 (64-example chunks): the best of a coarse sweep at batch 256 on the Fashion-MNIST
  MLP (10 epochs, 8192 images: LARS 1, 4, 16, 32, 64; CLARS 0.01, 0.03, 0.1 / 0.02 to 0.06); both are
  scaled linearly with the batch (CLARS.md's default for CLARS, You et al.'s rule for LARS). Coupled L2
  weight decay 5e-4, as for SGD.
- Prodigy 1.0: not an LR but the multiplier of Prodigy's own estimate; its authors recommend 1 at any
  batch size. Decoupled weight decay 1e-2 (AdamW's default, one of the values its README suggests).
- Schedule-Free AdamW 2.5e-3: its package's default (its authors advise 1x to 10x the LR of a
  scheduled AdamW), decoupled weight decay 1e-2 as for AdamP.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from autowu_bench.schedulers.lr_functions import SCALING_RULES

from .optimizers import OPTIMIZERS

BASE_BATCH = 256
BASE_LR = {"adamp": 1e-3, "lamb": 2e-3, "sgd": 0.1, "lars": 16.0, "clars": 0.1, "clars-chunked": 0.04,
           "prodigy": 1.0, "schedulefree-adamw": 2.5e-3}
WEIGHT_DECAY = {"adamp": 1e-2, "lamb": 1e-2, "sgd": 5e-4, "lars": 5e-4, "clars": 5e-4, "clars-chunked": 5e-4,
                "prodigy": 1e-2, "schedulefree-adamw": 1e-2}


@dataclass(frozen=True)
class Recipe:
    """How a workload is trained by default.

    Attributes:
        epochs: training epochs.
        base_lr: the baseline's LR at ``base_batch``, scaled to the batch size by ``scaling``.
        base_batch: the batch size ``base_lr`` belongs to.
        warmup_epochs: the baseline's linear warmup length.
        optimizer: a name of ``optimizers.OPTIMIZERS`` ("adamp", "lamb", "sgd", ...).
        weight_decay: weight decay of the decayed parameter group.
        label_smoothing: cross-entropy label smoothing.
        scaling: peak-LR scaling rule ("sqrt", the paper's, or "linear").
    """

    epochs: int
    base_lr: float
    base_batch: int = BASE_BATCH
    warmup_epochs: int = 5
    optimizer: str = "adamp"
    weight_decay: float = WEIGHT_DECAY["adamp"]
    label_smoothing: float = 0.0
    scaling: str = "sqrt"

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer={self.optimizer!r}; valid: {', '.join(OPTIMIZERS)}")
        if self.scaling not in SCALING_RULES:
            raise ValueError(f"scaling={self.scaling!r}; valid: {', '.join(SCALING_RULES)}")

    def with_optimizer(self, name: str, *, weight_decay: float | None = None) -> Recipe:
        """This recipe with optimizer ``name`` and that optimizer's base LR and (unless given) weight decay."""
        if name not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {name!r}; valid: {', '.join(OPTIMIZERS)}")
        wd = WEIGHT_DECAY[name] if weight_decay is None else weight_decay
        return dataclasses.replace(self, optimizer=name, base_lr=BASE_LR[name], weight_decay=wd)
