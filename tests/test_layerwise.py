"""LARS and CLARS (the reconstruction, docs/optimizers.md): the invariants of the CLARS statistic and step,
on one process and on 2 gloo ranks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from autowu_bench.platform.execution.train_step import TrainStep
from autowu_bench.workloads import build_optimizer
from autowu_bench.workloads.layerwise import CLARS, LARS, per_example_gradients
from tests.gloo_ranks import on_gloo_ranks


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(12, 16), nn.Tanh(), nn.Linear(16, 8), nn.Tanh(), nn.Linear(8, 3))


def _data(n: int, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 12, generator=g), torch.randint(0, 3, (n,), generator=g)


def _params(model: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


def _lars_reference_step(model: nn.Module, buffers: dict, lr: float, wd: float, momentum: float = 0.9) -> None:
    """LARS with trust coefficient 1 and no weight-decay term in the denominator, written out: weights
    (2-D) get ``lr * ||w|| / ||g||``, biases plain momentum SGD (as build_optimizer's groups)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            d = p.grad + wd * p if p.ndim > 1 else p.grad.clone()
            rate = lr * p.norm() / (p.grad.norm() + 1e-8) if p.ndim > 1 else lr
            buffers[name] = d * rate if name not in buffers else buffers[name] * momentum + d * rate
            p.sub_(buffers[name])


@pytest.mark.parametrize("wd", [0.0, 5e-3])
def test_chunked_clars_with_one_chunk_is_lars_with_trust_coefficient_1_and_no_decay_term(wd):
    x, y = _data(32)
    clars_model, ref_model, lars_model = _model(), _model(), _model()
    clars = build_optimizer("clars-chunked", clars_model, lr=0.05, weight_decay=wd)
    step = TrainStep(clars_model, clars, nn.CrossEntropyLoss())  # one process, one micro-batch: K = 1
    lars = LARS([{"params": [p for p in lars_model.parameters() if p.ndim > 1], "weight_decay": wd},
                 {"params": [p for p in lars_model.parameters() if p.ndim <= 1], "weight_decay": 0.0, "adapt": False}],
                lr=0.05, trust_coefficient=1.0)
    lars_step = TrainStep(lars_model, lars, nn.CrossEntropyLoss())
    buffers: dict = {}
    for lr in (0.05, 0.1, 0.02):
        step(x, y, lr)
        if wd == 0.0:  # the package's LARS is the same rule when there is no decay term to differ by
            lars_step(x, y, lr)
        ref_model.zero_grad()
        nn.functional.cross_entropy(ref_model(x), y).backward()
        _lars_reference_step(ref_model, buffers, lr, wd)
        for a, b in zip(clars_model.parameters(), ref_model.parameters()):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
        if wd == 0.0:
            for a, b in zip(clars_model.parameters(), lars_model.parameters()):
                torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize(("name", "micro"), [("clars", 1), ("clars", 4), ("clars-chunked", 4), ("clars-chunked", 8)])
def test_the_denominator_is_never_below_the_averaged_gradients_norm(name, micro):
    x, y = _data(64)
    model = _model()
    opt = build_optimizer(name, model, lr=0.05, weight_decay=1e-3)
    step = TrainStep(model, opt, nn.CrossEntropyLoss(), micro_batches=micro)
    for _ in range(4):
        step(x, y, 0.05)
        for p in opt.ordered_params():  # p.grad: the averaged gradient the step used
            assert opt.denominators[p] >= p.grad.norm() * (1 - 1e-6)
    # and strictly above it here: per-example (per-chunk) gradients do not all point the same way
    assert all(opt.denominators[p] > p.grad.norm() * 1.01 for p in opt.ordered_params())


def test_the_exact_statistic_is_a_loop_over_examples():
    x, y = _data(10)
    model = _model()
    params = list(model.parameters())
    loss_sum, grad_sums, norm_sums = per_example_gradients(model, nn.CrossEntropyLoss(), params, x, y, slice_size=3)
    norms, grads, losses = torch.zeros(len(params)), [torch.zeros_like(p) for p in params], 0.0
    for i in range(10):
        model.zero_grad()
        loss = nn.functional.cross_entropy(model(x[i:i + 1]), y[i:i + 1])
        loss.backward()
        losses += loss.item()
        norms += torch.stack([p.grad.norm() for p in params])
        for g, p in zip(grads, params):
            g += p.grad
    assert loss_sum.item() == pytest.approx(losses, rel=1e-5)
    torch.testing.assert_close(norm_sums, norms, rtol=1e-5, atol=1e-7)
    for a, b in zip(grad_sums, grads):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


def test_the_step_with_the_exact_statistic_uses_the_batch_gradient():
    """The per-example path sums the per-example gradients: the gradient it steps with is the batch's."""
    x, y = _data(16)
    model = _model()
    opt = build_optimizer("clars", model, lr=0.05, weight_decay=0.0)
    reference = _model()
    nn.functional.cross_entropy(reference(x), y).backward()
    TrainStep(model, opt, nn.CrossEntropyLoss())(x, y, 0.05)
    for p, r in zip(model.parameters(), reference.parameters()):
        torch.testing.assert_close(p.grad, r.grad, rtol=1e-5, atol=1e-7)


def test_the_exact_statistic_refuses_batch_norm_and_a_step_needs_fresh_norms():
    model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    opt = build_optimizer("clars", model, lr=0.1, weight_decay=0.0)
    with pytest.raises(ValueError, match="clars-chunked"):
        TrainStep(model, opt, nn.CrossEntropyLoss())
    opt = build_optimizer("clars-chunked", model, lr=0.1, weight_decay=0.0)
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    with pytest.raises(RuntimeError, match="set_gradient_norms"):
        opt.step()
    opt.set_gradient_norms([torch.tensor(1.0)] * len(opt.ordered_params()))
    opt.step()
    with pytest.raises(RuntimeError, match="set_gradient_norms"):  # the norms of one step serve one step
        opt.step()
    assert isinstance(opt, CLARS) and opt.gradient_statistic == "chunk"


def test_zero_norms_fall_back_to_the_global_lr():
    w = nn.Parameter(torch.zeros(3, 2))
    w.grad = torch.ones(3, 2)
    opt = CLARS([w], lr=0.5, momentum=0.0, statistic="chunk")
    opt.set_gradient_norms([torch.tensor(2.0)])
    opt.step()
    torch.testing.assert_close(w.detach(), torch.full((3, 2), -0.5))


def _ddp_worker(rank: int, world: int, name: str, micro: int) -> tuple:
    x, y = _data(32)
    share = slice(rank * 16, (rank + 1) * 16)
    model = _model()
    opt = build_optimizer(name, model, lr=0.05, weight_decay=1e-3)
    step = TrainStep(model, opt, nn.CrossEntropyLoss(), micro_batches=micro)
    stats = []
    for lr in (0.05, 0.1):
        step(x[share], y[share], lr)
        stats.append([opt.denominators[p].item() for p in opt.ordered_params()])
    return stats, _params(model)


@pytest.mark.parametrize("name", ["clars", "clars-chunked"])
def test_under_data_parallelism_the_statistic_is_that_of_one_process_on_the_global_batch(name):
    """2 gloo ranks x 2 micro-batches of 8 = one process with 4 micro-batches of 8 of the same 32 examples
    (the chunks are the same); per-example, the same 32 examples: the same D, the same weights."""
    ranks = on_gloo_ranks(_ddp_worker, 2, name, 2)
    x, y = _data(32)
    model = _model()
    opt = build_optimizer(name, model, lr=0.05, weight_decay=1e-3)
    step = TrainStep(model, opt, nn.CrossEntropyLoss(), micro_batches=4)
    single = []
    for lr in (0.05, 0.1):
        step(x, y, lr)
        single.append([opt.denominators[p].item() for p in opt.ordered_params()])
    for rank in (0, 1):
        stats, params = ranks[rank]
        for got, want in zip(stats, single):
            assert got == pytest.approx(want, rel=1e-5)
        for a, b in zip(params, _params(model)):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
