"""LARS and CLARS: momentum SGD with a learning rate per layer from the layer's weight and gradient norms.

A "layer" is one parameter tensor. Parameter groups with ``adapt=False`` (biases and norm layers: the
no-decay group of ``optimizers.param_groups``) get plain momentum SGD at the global LR. Both keep their
state in ``momentum_buffer`` tensors only, so a checkpoint holds plain tensors. The update, for a layer
w with gradient g (weight decay ``wd``, momentum ``m``)::

    v <- m * v + layer_lr * (g + wd * w);  w <- w - v         (You et al. 2017, Algorithm 1)

- LARS (You et al. 2017): ``layer_lr = lr * eta * ||w|| / (||g|| + wd * ||w||)``, g the mini-batch
  gradient, eta the trust coefficient (0.001).
- CLARS, a **reconstruction**: "Large Batch Training Does Not Need Warmup" (Huo, Gu, Huang; arXiv
  2002.01576) does not publish its rule in a form we have, so this is our reading of "complete
  layer-wise adaptive rate scaling", labelled a reconstruction wherever it is used (docs/optimizers.md):
  the norm of the averaged gradient is replaced by the average of per-example gradient norms, which
  does not shrink as the batch grows, ``D = (1/B) sum_i ||g_i||``, and ``layer_lr = lr * ||w|| /
  (D + 1e-8)`` (trust coefficient 1, no weight-decay term; ``lr`` when either norm is 0). Two ways to
  get D (``CLARS.gradient_statistic``):

  - ``"example"``: exact per-example gradients, ``torch.func`` (vmap over grad) in slices of
    ``EXAMPLE_SLICE`` examples (:func:`per_example_gradients`); small models only (it writes one
    gradient per example) and no batch norm (one example has no batch statistics);
  - ``"chunk"``: the global batch in K chunks, D = the mean over chunks of ``||g_k||``, g_k the mean
    gradient of chunk k: the micro-batches of gradient accumulation and the data-parallel shards
    (K = workers x micro-batches per worker). K = 1 is LARS with eta = 1 and no weight-decay term.

  Either way D >= ||g|| (triangle inequality). The training step computes D and hands it over with
  :meth:`CLARS.set_gradient_norms` before every ``step()``
  (``autowu_bench.platform.execution.train_step.TrainStep`` does; under data parallelism the per-rank sums are
  all-reduced, so D is that of one process on the global batch).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

EXAMPLE_SLICE = 64  # examples per vmap call of the exact statistic: bounds the per-example gradients' memory
STATISTICS = ("example", "chunk")


class LARS(torch.optim.Optimizer):
    """LARS (You et al. 2017): momentum SGD with ``layer_lr = lr * eta * ||w|| / (||g|| + wd ||w|| + eps)``.

    Args:
        params: parameters or groups; a group with ``adapt=False`` gets plain momentum SGD at ``lr``.
        lr: global learning rate (the schedule overwrites it every step).
        momentum: heavy-ball momentum.
        weight_decay: coupled L2 decay, in the update and in the trust ratio's denominator.
        trust_coefficient: eta.
        eps: added to the denominator.
    """

    def __init__(self, params, lr: float, *, momentum: float = 0.9, weight_decay: float = 0.0,
                 trust_coefficient: float = 1e-3, eps: float = 1e-8) -> None:
        if not lr > 0 or not 0 <= momentum < 1 or weight_decay < 0 or not trust_coefficient > 0:
            raise ValueError(f"need lr > 0, 0 <= momentum < 1, weight_decay >= 0, trust_coefficient > 0; got "
                             f"lr={lr}, momentum={momentum}, weight_decay={weight_decay}, "
                             f"trust_coefficient={trust_coefficient}")
        defaults = {"lr": lr, "momentum": momentum, "weight_decay": weight_decay,
                    "trust_coefficient": trust_coefficient, "eps": eps, "adapt": True}
        super().__init__(params, defaults)

    def _denominator(self, p: torch.Tensor, w_norm: torch.Tensor, group: dict[str, Any]) -> torch.Tensor:
        return p.grad.norm() + group["weight_decay"] * w_norm

    def _before_step(self) -> None:
        pass

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None):  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self._before_step()
        for group in self.param_groups:
            lr, momentum, wd = group["lr"], group["momentum"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                update = p.grad.add(p, alpha=wd) if wd else p.grad.clone()
                if group["adapt"]:
                    w_norm = p.norm()
                    denom = self._denominator(p, w_norm, group)
                    ratio = group["trust_coefficient"] * w_norm / (denom + group["eps"])
                    # Decided on the device: no host sync per layer.
                    scale = torch.where((w_norm > 0) & (denom > 0), ratio, torch.ones_like(ratio)) * lr
                    update.mul_(scale)
                else:
                    update.mul_(lr)
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = update
                else:
                    state["momentum_buffer"].mul_(momentum).add_(update)
                p.sub_(state["momentum_buffer"])
        return loss


class CLARS(LARS):
    """CLARS, as this project reconstructs it (module docstring): LARS with trust coefficient 1, no
    weight-decay term, and the mean per-example (or per-chunk) gradient norm D as the denominator.

    Call :meth:`set_gradient_norms` with D of every parameter before each ``step()``; a step without
    fresh norms raises. ``gradient_statistic`` says how the training step must compute D.

    Args:
        params, lr, momentum, weight_decay, eps: as LARS.
        statistic: ``"example"`` (exact per-example norms) or ``"chunk"`` (micro-batches and shards).
    """

    def __init__(self, params, lr: float, *, momentum: float = 0.9, weight_decay: float = 0.0, eps: float = 1e-8,
                 statistic: str = "example") -> None:
        if statistic not in STATISTICS:
            raise ValueError(f"statistic={statistic!r}; valid: {', '.join(STATISTICS)}")
        super().__init__(params, lr, momentum=momentum, weight_decay=weight_decay, trust_coefficient=1.0, eps=eps)
        self.gradient_statistic = statistic
        self.denominators: dict[torch.Tensor, torch.Tensor] = {}  # D per parameter, of the last step
        self._fresh = False

    def ordered_params(self) -> list[torch.Tensor]:
        """The parameters in the order :meth:`set_gradient_norms` takes their norms."""
        return [p for group in self.param_groups for p in group["params"]]

    def set_gradient_norms(self, mean_norms: Sequence[torch.Tensor] | torch.Tensor) -> None:
        """D of every parameter of :meth:`ordered_params`, for the next ``step()``."""
        params = self.ordered_params()
        if len(mean_norms) != len(params):
            raise ValueError(f"got {len(mean_norms)} gradient norms for {len(params)} parameters")
        self.denominators = dict(zip(params, mean_norms))
        self._fresh = True

    def _before_step(self) -> None:
        if not self._fresh:
            raise RuntimeError(
                "CLARS.step() needs the mean per-example (or per-chunk) gradient norm of every layer first: "
                "call set_gradient_norms() (autowu_bench.platform.execution.train_step.TrainStep does), e.g. with the norms "
                "from autowu_bench.workloads.layerwise.per_example_gradients"
            )
        self._fresh = False

    def _denominator(self, p: torch.Tensor, w_norm: torch.Tensor, group: dict[str, Any]) -> torch.Tensor:
        return self.denominators[p].to(w_norm.dtype)


def check_per_example_model(module: nn.Module) -> None:
    """Per-example gradients need a model whose output for one example does not depend on the others."""
    norms = [n for n, m in module.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if norms:
        raise ValueError(
            f"the per-example statistic (optimizer clars) cannot run a model with batch norm ({norms[0]}, ...): "
            "one example has no batch statistics; use the chunked variant, optimizer clars-chunked"
        )


def per_example_gradients(
    module: nn.Module, loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], params: Sequence[torch.Tensor],
    x: torch.Tensor, y: torch.Tensor, *, slice_size: int = EXAMPLE_SLICE,
) -> tuple[torch.Tensor, list[torch.Tensor], torch.Tensor]:
    """Sums over the examples of ``x`` of the loss, of the gradient and of the gradient norm, exactly.

    Per-example gradients come from ``torch.func`` (``vmap`` over ``grad`` of the model called on one
    example, ``functional_call``), ``slice_size`` examples at a time, and are never all held at once.

    Args:
        module: the model (unwrapped: not DDP); parameters not in ``params`` are held fixed.
        loss_fn: ``loss_fn(logits, targets)``, the mean over the batch (so over one example: its loss).
        params: the parameters to differentiate, in the order of the returned lists.
        x, y: the examples.

    Returns:
        (loss sum, [gradient sum per parameter], tensor of per-parameter sums of ``||g_i||``).
    """
    from torch.func import functional_call, grad, vmap

    check_per_example_model(module)
    names = {id(p): n for n, p in module.named_parameters()}
    missing = [i for i, p in enumerate(params) if id(p) not in names]
    if missing:
        raise ValueError(f"parameters {missing} of the optimizer are not the model's")
    keys = [names[id(p)] for p in params]
    fixed = {n: p.detach() for n, p in module.named_parameters() if n not in set(keys)}
    fixed.update({n: b for n, b in module.named_buffers()})

    def loss_of_one(trained: dict[str, torch.Tensor], xi: torch.Tensor, yi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = functional_call(module, {**fixed, **trained}, (xi.unsqueeze(0),))
        loss = loss_fn(out, yi.unsqueeze(0))
        return loss, loss.detach()

    per_example = vmap(grad(loss_of_one, has_aux=True), in_dims=(None, 0, 0))
    trained = {k: p.detach() for k, p in zip(keys, params)}
    grad_sums = [torch.zeros_like(p) for p in params]
    norm_sums = torch.zeros(len(params), device=x.device, dtype=torch.float32)
    loss_sum = torch.zeros((), device=x.device, dtype=torch.float32)
    for xs, ys in zip(x.split(slice_size), y.split(slice_size)):
        grads, losses = per_example(trained, xs, ys)
        gs = [grads[k] for k in keys]
        norm_sums += torch.stack([g.flatten(1).float().norm(dim=1).sum() for g in gs])
        torch._foreach_add_(grad_sums, [g.sum(0) for g in gs])
        loss_sum += losses.float().sum()
    return loss_sum, grad_sums, norm_sums
