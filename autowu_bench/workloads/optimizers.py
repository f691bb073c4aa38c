"""Optimizers of the paper: AdamP and LAMB (its two adaptive optimizers), and SGD with momentum.

- ``adamp``: the ``adamp`` package (Heo et al., ICLR 2021, the authors' code, which the AutoWU paper
  used), betas (0.9, 0.999), eps 1e-8, AdamP's own projection settings (delta 0.1, wd_ratio 0.1). Its
  weight decay is decoupled (``p *= 1 - lr * wd``, AdamW-style), so the recipes use AdamW-scale values
  (1e-2 for the CNNs, as in the AdamP README; 5e-2 for ViT-S, the usual ViT value); see recipes.py.
- ``lamb``: ``timm.optim.Lamb`` (You et al., ICLR 2020). timm's is a maintained, tested
  implementation of the NVIDIA/apex variant: bias correction, global gradient-norm clipping at 1.0,
  and the trust ratio applied to parameters that have weight decay; with norm/bias exclusion those
  get plain Adam-style updates, as in the LAMB paper's setup.
- ``sgd``: torch's SGD with momentum 0.9 (nesterov optional), coupled L2 weight decay.

Weight decay exclusion (``exclude_norm_and_bias=True``): biases and the parameters of normalization
layers (all 1-D parameters: BatchNorm/LayerNorm/GroupNorm scale and shift, biases), and ViT's position
embedding and class token go into a second group with weight decay 0.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from adamp import AdamP
from timm.optim import Lamb
from torch import nn

OPTIMIZERS = ("adamp", "lamb", "sgd")
NO_DECAY_NAMES = ("pos_embedding", "class_token", "pos_embed", "cls_token")


def param_groups(model: nn.Module, weight_decay: float, exclude_norm_and_bias: bool) -> list[dict[str, Any]]:
    """One group with ``weight_decay``, plus (when excluding) one with 0 for biases, norms and embeddings."""
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not exclude_norm_and_bias:
        return [{"params": [p for _, p in params], "weight_decay": weight_decay}]
    decay, no_decay = [], []
    for name, p in params:
        if p.ndim <= 1 or name.rsplit(".", 1)[-1] in NO_DECAY_NAMES:
            no_decay.append(p)
        else:
            decay.append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


def build_optimizer(
    name: str,
    model: nn.Module | Iterable[torch.nn.Parameter],
    *,
    lr: float,
    weight_decay: float,
    exclude_norm_and_bias: bool = True,
    momentum: float = 0.9,
    nesterov: bool = False,
    betas: tuple[float, float] = (0.9, 0.999),
) -> torch.optim.Optimizer:
    """Build optimizer ``name`` ("adamp", "lamb" or "sgd") over ``model``'s parameters.

    Args:
        name: which optimizer.
        model: the module (needed for the decay exclusion), or plain parameters (one group).
        lr: initial learning rate (the scheduler overwrites it every step).
        weight_decay: decay of the weight group.
        exclude_norm_and_bias: put biases, norm parameters and ViT embeddings in a group without decay.
        momentum, nesterov: SGD only.
        betas: AdamP and LAMB.
    """
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; valid: {', '.join(OPTIMIZERS)}")
    if lr <= 0 or weight_decay < 0:
        raise ValueError(f"need lr > 0 and weight_decay >= 0, got lr={lr}, weight_decay={weight_decay}")
    if isinstance(model, nn.Module):
        groups = param_groups(model, weight_decay, exclude_norm_and_bias)
    else:
        groups = [{"params": list(model), "weight_decay": weight_decay}]
    if name == "adamp":
        return AdamP(groups, lr=lr, betas=betas, eps=1e-8, weight_decay=weight_decay, delta=0.1, wd_ratio=0.1)
    if name == "lamb":
        return Lamb(groups, lr=lr, betas=betas, eps=1e-6, weight_decay=weight_decay, max_grad_norm=1.0)
    return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay)
