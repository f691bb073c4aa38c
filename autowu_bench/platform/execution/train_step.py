"""The training step and evaluation of one data-parallel worker, usable with or without Ray.

Nothing here knows about Ray: a plain script (one process, or ``torchrun`` with DDP) can drive
:class:`TrainStep` and :func:`evaluate` the same way the Ray Train worker does.

Host syncs and collectives. A step never reads a value back to the host and adds no collective to
DDP's gradient all-reduce: :class:`TrainStep` returns this rank's step loss as a device scalar and
:class:`LossBuffer` collects those scalars on the device. At each *sync point* (where the plan hands
losses over, and every epoch end) the worker takes the buffer: one all-reduce of the stacked losses
gives every rank the same per-step means over all workers (the same values a per-step all-reduce
would give), read back in one host sync. Divergence is detected there, from those values, so every
rank sees the same first bad step. Training past a bad step until the sync point costs a few wasted
steps but changes nothing: the rollback restores a snapshot taken before the bad step.

Optimizers that need more than the gradient (``optimizers.gradient_statistic``: CLARS's mean
per-example or per-chunk gradient norms) get it from the step, with one all-reduce of the gradients
and the norm sums together in place of DDP's (see :meth:`TrainStep._statistic_step`). Optimizers with
Schedule-Free's train/eval switch are put in train mode before every step.
"""

from __future__ import annotations

import contextlib
import math
from typing import Callable, Iterable

import torch
from torch import nn

from autowu_bench.platform.execution.collectives import all_reduce_mean_, all_reduce_sum_, is_distributed
from autowu_bench.schedulers.schedule import set_lr
from autowu_bench.workloads.layerwise import check_per_example_model, per_example_gradients
from autowu_bench.workloads.optimizers import gradient_statistic, has_weight_modes


class TrainStep:
    """One optimizer step on a worker's share of the global batch.

    Args:
        model: the module to train; wrapped in DistributedDataParallel when a process group with
            more than one rank is initialised (the caller keeps the unwrapped module for checkpoints).
        optimizer: its optimizer; the LR is written into it before every step.
        loss_fn: ``loss_fn(logits, targets)`` returning the mean loss of the batch.
        micro_batches: gradient accumulation: the worker's batch is split into this many equal
            micro-batches whose gradients add up to the gradient of the whole batch; AutoWU still
            counts one step per optimizer step.
        amp: ``"bf16"`` for bfloat16 autocast, None for full precision.
        channels_last: convert 4-D inputs (and the model) to channels_last memory format.
        compile: wrap the model in ``torch.compile``.
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        loss_fn: nn.Module,
        *,
        micro_batches: int = 1,
        amp: str | None = None,
        channels_last: bool = False,
        compile: bool = False,
    ) -> None:
        if micro_batches < 1:
            raise ValueError(f"micro_batches={micro_batches!r} must be >= 1")
        if amp not in (None, "bf16"):
            raise ValueError(f"amp={amp!r} is not supported; use None or 'bf16'")
        self.optimizer = optimizer
        self.loss_fn = loss_fn
        self.micro_batches = micro_batches
        self.amp = amp
        self.channels_last = channels_last
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.module = model
        net: nn.Module = model
        if is_distributed():
            device_ids = [model_device(model).index] if model_device(model).type == "cuda" else None
            net = nn.parallel.DistributedDataParallel(model, device_ids=device_ids)
        self.ddp = net if net is not model else None
        self.net = torch.compile(net) if compile else net
        self.statistic = gradient_statistic(optimizer)
        if self.statistic == "example":
            check_per_example_model(model)
        self._weight_modes = has_weight_modes(optimizer)

    def _autocast(self, device: torch.device):
        if self.amp == "bf16":
            return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def __call__(self, x: torch.Tensor, y: torch.Tensor, lr: float) -> torch.Tensor:
        """Run one optimizer step at ``lr``; returns this rank's mean step loss (device scalar, float32)."""
        set_lr(self.optimizer, lr)
        if not self.module.training:  # evaluation switched it; walking the modules every step costs
            self.module.train()
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        n = self.micro_batches
        if x.shape[0] % n:
            raise ValueError(
                f"a worker batch of {x.shape[0]} does not split into micro_batches={n}; "
                "make the per-worker batch a multiple of the micro-batch"
            )
        if self._weight_modes:
            self.optimizer.train()  # Schedule-Free: back to the training weights after an evaluation
        if self.statistic is not None:
            return self._statistic_step(x, y)
        self.optimizer.zero_grad(set_to_none=True)
        if n == 1:  # the common case without the accumulation's extra kernels
            with self._autocast(x.device):
                loss = self.loss_fn(self.net(x), y)
            loss.backward()
            self.optimizer.step()
            return loss.detach().float()
        total = torch.zeros((), device=x.device, dtype=torch.float32)
        for i, (xs, ys) in enumerate(zip(x.chunk(n), y.chunk(n))):
            last = i == n - 1
            sync = self.ddp.no_sync() if (self.ddp is not None and not last) else contextlib.nullcontext()
            with sync:
                with self._autocast(x.device):
                    loss = self.loss_fn(self.net(xs), ys)
                (loss / n).backward()
            total += loss.detach().float()
        self.optimizer.step()
        return total / n

    def _statistic_step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """A step of an optimizer that takes the mean gradient norm D of every parameter (CLARS).

        ``"chunk"``: each micro-batch's gradient alone (its own backward, DDP's reduction off), its norm
        per parameter, the gradients summed; K = ranks x micro-batches chunks. ``"example"``: every
        example's gradient (``layerwise.per_example_gradients``), its norm, their sum. Then one
        all-reduce of the summed gradients, the norm sums and the counts, so every rank holds the mean
        gradient over the global batch and ``D = (sum of norms) / (chunks or examples)``, the values one
        process would get on the whole batch.
        """
        params = self.optimizer.ordered_params()
        n = self.micro_batches
        norm_sums = torch.zeros(len(params), device=x.device, dtype=torch.float32)
        if self.statistic == "example":
            count = x.shape[0]
            with self._autocast(x.device):
                loss_sum, grads, norm_sums = per_example_gradients(self.module, self.loss_fn, params, x, y)
            mean_loss = loss_sum / count
        else:
            count = n
            grads = [torch.zeros_like(p) for p in params]
            total = torch.zeros((), device=x.device, dtype=torch.float32)
            for xs, ys in zip(x.chunk(n), y.chunk(n)):
                for p in params:
                    p.grad = None
                with self.ddp.no_sync() if self.ddp is not None else contextlib.nullcontext():
                    with self._autocast(x.device):
                        loss = self.loss_fn(self.net(xs), ys)
                    loss.backward()
                chunk = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
                norm_sums += torch.stack(torch._foreach_norm(chunk)).float()
                torch._foreach_add_(grads, chunk)
                total += loss.detach().float()
            mean_loss = total / n
        # Sums over the global batch: of the gradients (of chunk means, or of examples), of the norms,
        # and the number of chunks or examples they are sums over.
        flat = torch.cat([g.flatten().float() for g in grads]
                         + [norm_sums, torch.tensor([float(count)], device=x.device)])
        all_reduce_sum_(flat)
        parts, offset = flat.div_(flat[-1].clone()), 0
        for p in params:
            p.grad = parts[offset:offset + p.numel()].view_as(p).to(p.dtype)
            offset += p.numel()
        self.optimizer.set_gradient_norms(parts[offset:offset + len(params)])
        self.optimizer.step()
        return mean_loss


def model_device(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


class LossBuffer:
    """Step losses kept on the device until a sync point reads them all at once, as means over ranks."""

    def __init__(self) -> None:
        self._pending: list[torch.Tensor] = []

    def append(self, loss: torch.Tensor) -> None:
        self._pending.append(loss)

    def __len__(self) -> int:
        return len(self._pending)

    def take(self) -> list[float]:
        """The buffered losses, averaged over ranks (one all-reduce), as floats (one host sync); empties
        the buffer. Every rank must call it at the same steps with the same number of losses."""
        if not self._pending:
            return []
        values = all_reduce_mean_(torch.stack(self._pending)).tolist()
        self._pending = []
        return values


def first_divergent(
    losses: Iterable[float], is_divergent: Callable[[float], bool] | None = None
) -> int | None:
    """Index of the first divergent loss (by default: NaN or infinite), or None when there is none."""
    for i, value in enumerate(losses):
        if (not math.isfinite(value)) if is_divergent is None else is_divergent(value):
            return i
    return None


@torch.no_grad()
def evaluate(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    loss_fn: nn.Module,
    *,
    rank: int = 0,
    world_size: int = 1,
    amp: str | None = None,
    channels_last: bool = False,
) -> tuple[float, float]:
    """Mean loss and accuracy over all the batches, shared out across ranks.

    Every rank iterates the same batches (the loader's evaluation mode) and evaluates batch i when
    ``i % world_size == rank``; sums of loss, correct predictions and counts are all-reduced, so all
    ranks return the same result, equal to a single process evaluating everything.
    """
    model.eval()
    device = model_device(model)
    sums = torch.zeros(3, device=device, dtype=torch.float64)
    for i, (x, y) in enumerate(batches):
        if i % world_size != rank:
            continue
        if channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        ctx = torch.autocast(device.type, dtype=torch.bfloat16) if amp == "bf16" else contextlib.nullcontext()
        with ctx:
            logits = model(x)
        logits = logits.float()
        sums[0] += loss_fn(logits, y).double() * y.shape[0]
        sums[1] += (logits.argmax(dim=1) == y).sum()
        sums[2] += y.shape[0]
    all_reduce_sum_(sums)
    loss_sum, correct, count = sums.tolist()
    if count == 0:
        raise ValueError("evaluate() got no batches: the evaluation split is empty")
    return loss_sum / count, correct / count
