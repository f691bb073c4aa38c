"""Optimizers by name: the paper's (AdamP, LAMB, SGD) and the arms beyond it (LARS, CLARS, Prodigy,
Schedule-Free AdamW). ``OPTIMIZER_INFO`` holds what a table or report says about each (``label``, and
``note`` "reconstruction" for CLARS); ``build_optimizer`` builds one.

- ``adamp``: the ``adamp`` package (Heo et al., ICLR 2021, the authors' code, which the AutoWU paper
  used), betas (0.9, 0.999), eps 1e-8, AdamP's own projection settings (delta 0.1, wd_ratio 0.1). Its
  weight decay is decoupled (``p *= 1 - lr * wd``, AdamW-style), so the recipes use AdamW-scale values
  (1e-2 for the CNNs, as in the AdamP README; 5e-2 for ViT-S, the usual ViT value); see recipes.py.
  :class:`MultiTensorAdamP` computes the package's update for many tensors at once on GPUs, with no
  host synchronisation inside ``step()``, and on channels_last models too (the package's ``.view``
  raises on channels_last weights).
- ``lamb``: ``timm.optim.Lamb`` (You et al., ICLR 2020). timm's is a maintained, tested
  implementation of the NVIDIA/apex variant: bias correction, global gradient-norm clipping at 1.0,
  and the trust ratio applied to parameters that have weight decay; with norm/bias exclusion those
  get plain Adam-style updates, as in the LAMB paper's setup.
- ``sgd``: torch's SGD with momentum 0.9 (nesterov optional), coupled L2 weight decay.
- ``lars``: LARS (You et al. 2017), trust coefficient 0.001, momentum 0.9 (``layerwise.LARS``).
- ``clars`` / ``clars-chunked``: CLARS, **a reconstruction** (``layerwise.CLARS``; the paper's exact
  rule is not available): the exact per-example statistic (torch.func; small models without batch
  norm) or the one over micro-batches and data-parallel shards.
- ``prodigy``: the ``prodigyopt`` package (Mishchenko and Defazio, the authors' code) as its README
  recommends: ``lr`` 1.0 (the suite's peak LR; it scales the estimated step size), decoupled weight
  decay, no bias correction (recommended for diffusion models only), ``safeguard_warmup`` on exactly
  when the schedule warms up (``schedule_warms_up``), d0 1e-6, d_coef 1.
- ``schedulefree-adamw``: ``schedulefree.AdamWScheduleFree`` (Defazio et al., the authors' code),
  betas (0.9, 0.999), its own ``warmup_steps`` 0 because the platform's schedule gives the warmup (its
  average weights follow the applied LR, ``lr_max ** 2``, as with its own warmup) and the LR trace
  then records what was applied. Its weights to evaluate and checkpoint are the averaged ones: see
  :func:`evaluation_weights`.

Weight decay exclusion (``exclude_norm_and_bias=True``): biases and the parameters of normalization
layers (all 1-D parameters: BatchNorm/LayerNorm/GroupNorm scale and shift, biases), and ViT's position
embedding and class token go into a second group with weight decay 0 (and, for LARS and CLARS, no
layer-wise rate: ``adapt=False``).
"""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from adamp import AdamP
from torch import nn

from .layerwise import CLARS, LARS


@dataclass(frozen=True)
class OptimizerInfo:
    """What the platform says about an optimizer.

    Attributes:
        label: its name in prose ("CLARS (reconstruction)").
        source: the paper and the implementation.
        state_tensors: tensors of a parameter's size it keeps per parameter (Adam's two moments, SGD's
            momentum): what a checkpoint holds besides the model (the free-disk check before a launch).
        note: a short qualifier shown beside its rows in the table, the report and as the MLflow tag
            ``optimizer_note`` ("reconstruction"), or None.
    """

    label: str
    source: str
    state_tensors: int
    note: str | None = None


OPTIMIZER_INFO: dict[str, OptimizerInfo] = {
    "adamp": OptimizerInfo("AdamP", "Heo et al., ICLR 2021; the adamp package (the authors' code)", 2),
    "lamb": OptimizerInfo("LAMB", "You et al., ICLR 2020; timm.optim.Lamb", 2),
    "sgd": OptimizerInfo("SGD", "momentum SGD; torch.optim.SGD", 1),
    "lars": OptimizerInfo("LARS", "You et al. 2017; autowu_bench.workloads.layerwise.LARS", 1),
    "clars": OptimizerInfo(
        "CLARS (reconstruction, per-example)",
        "Huo, Gu, Huang, arXiv 2002.01576; the paper's exact rule is not available: this project's "
        "reconstruction (docs/optimizers.md), exact per-example gradient norms", 1, "reconstruction"),
    "clars-chunked": OptimizerInfo(
        "CLARS (reconstruction, chunked)",
        "Huo, Gu, Huang, arXiv 2002.01576; the paper's exact rule is not available: this project's "
        "reconstruction (docs/optimizers.md), gradient norms over micro-batches and shards", 1, "reconstruction"),
    "prodigy": OptimizerInfo("Prodigy", "Mishchenko and Defazio, ICML 2024; the prodigyopt package (the authors' code)", 4),
    "schedulefree-adamw": OptimizerInfo(
        "Schedule-Free AdamW", "Defazio et al. 2024; schedulefree.AdamWScheduleFree (the authors' code), "
        "evaluated at its averaged weights", 2),
}
OPTIMIZERS = tuple(OPTIMIZER_INFO)
NO_DECAY_NAMES = ("pos_embedding", "class_token", "pos_embed", "cls_token")


def optimizer_note(name: object) -> str | None:
    """The optimizer's ``note`` ("reconstruction"), or None (also for names it does not know)."""
    info = OPTIMIZER_INFO.get(name) if isinstance(name, str) else None
    return None if info is None else info.note


def gradient_statistic(optimizer: torch.optim.Optimizer) -> str | None:
    """What the optimizer needs the training step to measure before ``step()``: "example" or "chunk"
    (CLARS's mean gradient norms, handed over with ``set_gradient_norms``), or None."""
    return getattr(optimizer, "gradient_statistic", None)


def has_weight_modes(optimizer: torch.optim.Optimizer) -> bool:
    """True for an optimizer with Schedule-Free's ``train()`` / ``eval()`` switch: the model holds the
    gradient point y while training and must hold the averaged point x to be evaluated or saved."""
    return callable(getattr(optimizer, "train", None)) and callable(getattr(optimizer, "eval", None))


@contextlib.contextmanager
def evaluation_weights(optimizer: torch.optim.Optimizer) -> Iterator[None]:
    """Inside: the model holds the weights to evaluate and checkpoint (Schedule-Free's averaged x, as its
    authors require for both); after: the training weights again. A no-op for other optimizers.

    A state captured inside restores into the optimizer's eval mode; its next ``train()`` (``TrainStep``
    calls it every step) brings the training weights back, so a resume continues exactly."""
    if not has_weight_modes(optimizer):
        yield
        return
    optimizer.eval()
    try:
        yield
    finally:
        optimizer.train()


class MultiTensorAdamP(AdamP):
    """The ``adamp`` package's AdamP, computed for many tensors at once on GPUs and decided on the device.

    Same update as the package, with the same state (``step``, ``exp_avg``, ``exp_avg_sq``): Adam's
    moments, then for weights (more than one dimension) the projection of the update out of the
    weight's radial direction, with the weight decay scaled by ``wd_ratio``, when the gradient is
    nearly orthogonal to the weight, judged per output channel and, failing that, over the whole
    tensor; then decoupled weight decay and the step. What differs is how, with ``foreach`` (the
    default when every parameter is on a GPU, as for torch's own optimizers):

    - the package loops over tensors in Python, about 20 small operations each (1,200 kernels a step
      for a ResNet-18, more launch time than its forward and backward at small batches on a GPU); here
      Adam's moments are multi-tensor (``torch._foreach_*``) operations over the whole group, and the
      projection runs once per distinct weight shape on the stacked tensors of that shape (680);
    - the package branches on ``cosine_sim.max() < ...`` in Python: a host sync per weight tensor per
      step (42 for a ResNet-18); here the choice is made with ``torch.where``, and nothing is read back.

    Without ``foreach`` (CPU parameters) it is the package's own loop, which the CPU runs about twice as
    fast (no stacking copies). Either way its views are reshapes, so channels_last weights work (the
    package's ``.view`` raises on them).
    """

    def __init__(self, params, *args: Any, foreach: bool | None = None, **kwargs: Any) -> None:
        super().__init__(params, *args, **kwargs)
        self.foreach = foreach

    def _channel_view(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.size(0), -1)

    def _layer_view(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(1, -1)

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        every = [p for group in self.param_groups for p in group["params"]]
        if not (self.foreach if self.foreach is not None else all(p.is_cuda for p in every)):
            super().step()
            return loss
        for group in self.param_groups:
            by_step: dict[int, list[torch.Tensor]] = {}  # one batch per step count (all, unless some sat out)
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] += 1
                by_step.setdefault(state["step"], []).append(p)
            for step, params in by_step.items():
                self._update(group, params, step)
        return loss

    def _update(self, group: dict[str, Any], params: list[torch.Tensor], step: int) -> None:
        beta1, beta2 = group["betas"]
        lr, weight_decay = group["lr"], group["weight_decay"]
        grads = [p.grad for p in params]
        exp_avgs = [self.state[p]["exp_avg"] for p in params]
        exp_avg_sqs = [self.state[p]["exp_avg_sq"] for p in params]
        torch._foreach_mul_(exp_avgs, beta1)
        torch._foreach_add_(exp_avgs, grads, alpha=1 - beta1)
        torch._foreach_mul_(exp_avg_sqs, beta2)
        torch._foreach_addcmul_(exp_avg_sqs, grads, grads, value=1 - beta2)
        denom = torch._foreach_sqrt(exp_avg_sqs)
        torch._foreach_div_(denom, math.sqrt(1 - beta2**step))
        torch._foreach_add_(denom, group["eps"])
        if group["nesterov"]:
            perturb = torch._foreach_mul(exp_avgs, beta1)
            torch._foreach_add_(perturb, grads, alpha=1 - beta1)
            torch._foreach_div_(perturb, denom)
        else:
            perturb = torch._foreach_div(exp_avgs, denom)
        step_size = lr / (1 - beta1**step)

        flat = [i for i, p in enumerate(params) if p.ndim <= 1]  # never projected
        if flat:
            if weight_decay > 0:
                torch._foreach_mul_([params[i] for i in flat], 1 - lr * weight_decay)
            torch._foreach_add_([params[i] for i in flat], [perturb[i] for i in flat], alpha=-step_size)
        by_shape: dict[tuple[int, ...], list[int]] = {}
        for i, p in enumerate(params):
            if p.ndim > 1:
                by_shape.setdefault(tuple(p.shape), []).append(i)
        for index in by_shape.values():
            self._project_and_step(group, [params[i] for i in index], [grads[i] for i in index],
                                   [perturb[i] for i in index], step_size)

    def _project_and_step(self, group: dict[str, Any], params: list[torch.Tensor], grads: list[torch.Tensor],
                          perturb: list[torch.Tensor], step_size: float) -> None:
        """The projection, decay and step of same-shape weights, stacked as ``[k, out, rest]``.

        The package's projection ``u - p_n <p_n, u>`` with ``p_n = p / (|p| + eps)`` is ``u - c p`` with
        ``c = <p, u> / (|p| + eps)^2``, and its cosine similarity is ``<g, p> / (max(|g|, eps) max(|p|, eps))``:
        both come from four dot products per row (summed over rows for the whole-tensor view), so the
        weights are read a few times instead of once per operation of each view.
        """
        k, out = len(params), params[0].shape[0]
        lr, weight_decay, eps = group["lr"], group["weight_decay"], group["eps"]
        w = torch.stack([p.reshape(out, -1) for p in params])
        g = torch.stack([t.reshape(out, -1) for t in grads])
        u = torch.stack([t.reshape(out, -1) for t in perturb])
        per_row = torch.stack([(a * b).sum(dim=2) for a, b in ((w, w), (g, g), (g, w), (w, u))])  # [4, k, out]
        coef = torch.zeros(k, out, dtype=w.dtype, device=w.device)
        done = torch.zeros(k, dtype=torch.bool, device=w.device)
        views = ((per_row, w.size(2)), (per_row.sum(dim=2, keepdim=True), w.size(1) * w.size(2)))
        for (ww, gg, gw, wu), size in views:  # per output channel, then over the whole tensor
            norm_w, norm_g = ww.sqrt(), gg.sqrt()
            cosine = (gw / (norm_g.clamp_min(eps) * norm_w.clamp_min(eps))).abs()
            hit = (cosine.amax(dim=1) < group["delta"] / math.sqrt(size)) & ~done
            coef = torch.where(hit[:, None], wu / (norm_w + eps).square(), coef)
            done |= hit
        update = u - coef[:, :, None] * w
        if weight_decay > 0:
            decay = torch.where(done, 1 - lr * weight_decay * group["wd_ratio"], 1 - lr * weight_decay)
            w = w * decay.to(w.dtype)[:, None, None]
        w = w.add_(update, alpha=-step_size)
        torch._foreach_copy_(params, [w[i].view(p.shape) for i, p in enumerate(params)])


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
    schedule_warms_up: bool = False,
) -> torch.optim.Optimizer:
    """Build optimizer ``name`` (one of ``OPTIMIZERS``) over ``model``'s parameters.

    Args:
        name: which optimizer.
        model: the module (needed for the decay exclusion), or plain parameters (one group).
        lr: initial learning rate (the scheduler overwrites it every step).
        weight_decay: decay of the weight group.
        exclude_norm_and_bias: put biases, norm parameters and ViT embeddings in a group without decay
            (and without LARS's and CLARS's layer-wise rate).
        momentum, nesterov: SGD (momentum: LARS and CLARS too).
        betas: AdamP, LAMB, Prodigy and Schedule-Free AdamW.
        schedule_warms_up: whether the LR schedule starts with a warmup; Prodigy then uses
            ``safeguard_warmup``, as its authors advise.
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
        return MultiTensorAdamP(groups, lr=lr, betas=betas, eps=1e-8, weight_decay=weight_decay, delta=0.1, wd_ratio=0.1)
    if name == "lamb":
        from timm.optim import Lamb  # imported here: timm adds seconds to every worker's start-up

        return Lamb(groups, lr=lr, betas=betas, eps=1e-6, weight_decay=weight_decay, max_grad_norm=1.0)
    if name in ("lars", "clars", "clars-chunked"):
        for i, group in enumerate(groups):  # the no-decay group (biases, norms): plain momentum SGD
            group["adapt"] = i == 0 or not exclude_norm_and_bias
        if name == "lars":
            return LARS(groups, lr, momentum=momentum, weight_decay=weight_decay, trust_coefficient=1e-3)
        return CLARS(groups, lr, momentum=momentum, weight_decay=weight_decay,
                     statistic="example" if name == "clars" else "chunk")
    if name == "prodigy":
        from prodigyopt import Prodigy

        with contextlib.redirect_stdout(io.StringIO()):  # it prints "Using decoupled weight decay"
            return Prodigy(groups, lr=lr, betas=betas, weight_decay=weight_decay, decouple=True,
                           use_bias_correction=False, safeguard_warmup=schedule_warms_up, d0=1e-6, d_coef=1.0)
    if name == "schedulefree-adamw":
        from schedulefree import AdamWScheduleFree

        return AdamWScheduleFree(groups, lr=lr, betas=betas, eps=1e-8, weight_decay=weight_decay, warmup_steps=0,
                                 r=0.0, weight_lr_power=2.0)
    return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay)
