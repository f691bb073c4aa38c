"""Optimizers of the paper: AdamP and LAMB (its two adaptive optimizers), and SGD with momentum.

- ``adamp``: the ``adamp`` package (Heo et al., ICLR 2021, the authors' code, which the AutoWU paper
  used), betas (0.9, 0.999), eps 1e-8, AdamP's own projection settings (delta 0.1, wd_ratio 0.1). Its
  weight decay is decoupled (``p *= 1 - lr * wd``, AdamW-style), so the recipes use AdamW-scale values
  (1e-2 for the CNNs, as in the AdamP README; 5e-2 for ViT-S, the usual ViT value); see recipes.py.
  :class:`AdamPNoSync` keeps the package's update and replaces only its projection test, which reads
  a GPU value back per weight tensor (``if cosine_sim.max() < ...``), by the same choice made with
  ``torch.where`` on the device: identical updates, no host synchronisation inside ``step()``, and
  it works on channels_last models (the package's ``.view`` raises on channels_last weights).
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

import math
from collections.abc import Iterable
from typing import Any

import torch
from adamp import AdamP
from torch import nn

OPTIMIZERS = ("adamp", "lamb", "sgd")
NO_DECAY_NAMES = ("pos_embedding", "class_token", "pos_embed", "cls_token")


class AdamPNoSync(AdamP):
    """The ``adamp`` package's AdamP with its projection decided on the device instead of the host.

    AdamP projects the update of a weight out of its radial direction (and scales its weight decay by
    ``wd_ratio``) when the gradient is nearly orthogonal to the weight, judged first per output channel
    and, failing that, over the whole tensor. The package branches on that in Python, a host sync per
    weight tensor per step that stalls a GPU. Here both candidates are computed and selected with
    ``torch.where``; ``wd_ratio`` comes back as a device scalar, which the package's ``step`` applies
    unchanged. Its flattening views are reshapes, so channels_last weights work (the package's
    ``.view`` fails on them).
    """

    def _channel_view(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.size(0), -1)

    def _layer_view(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(1, -1)

    def _projection(self, p, grad, perturb, delta, wd_ratio, eps):  # type: ignore[override]
        expand_size = [-1] + [1] * (len(p.shape) - 1)
        out = perturb
        wd = torch.ones((), device=p.device, dtype=p.dtype)
        done = torch.zeros((), device=p.device, dtype=torch.bool)
        for view_func in (self._channel_view, self._layer_view):
            cosine_sim = self._cosine_similarity(grad, p.data, eps, view_func)
            hit = (cosine_sim.max() < delta / math.sqrt(view_func(p.data).size(1))) & ~done
            p_n = p.data / view_func(p.data).norm(dim=1).view(expand_size).add_(eps)
            projected = perturb - p_n * view_func(p_n * perturb).sum(dim=1).view(expand_size)
            out = torch.where(hit, projected, out)
            wd = torch.where(hit, torch.full_like(wd, wd_ratio), wd)
            done = done | hit
        return out, wd


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
        return AdamPNoSync(groups, lr=lr, betas=betas, eps=1e-8, weight_decay=weight_decay, delta=0.1, wd_ratio=0.1)
    if name == "lamb":
        from timm.optim import Lamb  # imported here: timm adds seconds to every worker's start-up

        return Lamb(groups, lr=lr, betas=betas, eps=1e-6, weight_decay=weight_decay, max_grad_norm=1.0)
    return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay)
