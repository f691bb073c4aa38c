"""The training step and evaluation of autowu_bench.platform.execution.train_step, with and without a process group."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from autowu_bench.platform.execution.train_step import LossBuffer, TrainStep, evaluate, first_divergent
from autowu_bench.profiling import count_kernels
from autowu_bench.schedulers.schedule import set_lr
from tests.gloo_ranks import on_gloo_ranks


def _model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 3))


def _data(n: int = 32, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 8, generator=g), torch.randint(0, 3, (n,), generator=g)


def _params(model: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


def test_gradient_accumulation_equals_the_whole_batch():
    x, y = _data()
    results = []
    for micro in (1, 4):
        model = _model()
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        step = TrainStep(model, opt, nn.CrossEntropyLoss(), micro_batches=micro)
        losses = [step(x, y, lr=0.5).item() for _ in range(3)]
        results.append((losses, _params(model)))
    (losses_1, params_1), (losses_4, params_4) = results
    assert losses_4 == pytest.approx(losses_1, rel=1e-5)
    for a, b in zip(params_1, params_4):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert params_1[0].ne(_params(_model())[0]).any()  # the steps did change the weights


def test_a_step_launches_no_more_kernels_than_a_hand_written_one():
    """On a GPU every extra kernel or host-side pass costs time a small batch cannot hide (issue 4's 0.95)."""
    x, y = _data()
    plain_model, step_model = _model(), _model()
    plain_opt = torch.optim.SGD(plain_model.parameters(), lr=0.1, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()

    def plain_step():
        set_lr(plain_opt, 0.5)
        plain_opt.zero_grad(set_to_none=True)
        loss = loss_fn(plain_model(x), y)
        loss.backward()
        plain_opt.step()
        return loss.detach()

    step = TrainStep(step_model, torch.optim.SGD(step_model.parameters(), lr=0.1, momentum=0.9), loss_fn)
    buffer = LossBuffer()
    for _ in range(2):  # the first step creates the momentum buffers
        plain_step()
        step(x, y, lr=0.5)
    assert count_kernels(lambda: buffer.append(step(x, y, lr=0.5))) == count_kernels(plain_step)
    for a, b in zip(_params(plain_model), _params(step_model)):
        torch.testing.assert_close(a, b)  # and the same arithmetic


def test_micro_batches_must_divide_the_worker_batch():
    model = _model()
    step = TrainStep(model, torch.optim.SGD(model.parameters(), lr=0.1), nn.CrossEntropyLoss(), micro_batches=3)
    x, y = _data(32)
    with pytest.raises(ValueError, match="micro_batches=3"):
        step(x, y, lr=0.1)


def test_each_group_gets_the_lr_times_its_lr_scale():
    model = _model()
    opt = torch.optim.SGD(
        [{"params": model[0].parameters(), "lr_scale": 0.25}, {"params": model[2].parameters()}], lr=1.0
    )
    before = _params(model)
    x, y = _data()
    TrainStep(model, opt, nn.CrossEntropyLoss())(x, y, lr=0.2)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.05, 0.2])
    # Plain SGD: the update of the first layer is its gradient times 0.05.
    grad_model = _model()
    nn.CrossEntropyLoss()(grad_model(x), y).backward()
    expected = before[0] - 0.05 * grad_model[0].weight.grad
    torch.testing.assert_close(model[0].weight.detach(), expected)
    set_lr(opt, 1.0)
    assert [g["lr"] for g in opt.param_groups] == [0.25, 1.0]


def test_first_divergent_finds_nan_inf_and_the_plan_threshold():
    assert first_divergent([1.0, 2.0, 3.0]) is None
    assert first_divergent([1.0, math.nan, math.inf]) == 1
    assert first_divergent([1.0, 2.0, -math.inf]) == 2
    assert first_divergent([1.0, 5.0, math.nan], lambda v: not math.isfinite(v) or v > 4.0) == 1


def test_loss_buffer_reads_back_once_in_order():
    buf = LossBuffer()
    for v in (1.5, math.nan, 2.5):
        buf.append(torch.tensor(v))
    assert len(buf) == 3
    values = buf.take()
    assert values[0] == 1.5 and math.isnan(values[1]) and values[2] == 2.5
    assert buf.take() == [] and len(buf) == 0


def test_evaluate_gives_mean_loss_and_accuracy():
    model = _model()
    x, y = _data(50)
    batches = [(x[i:i + 16], y[i:i + 16]) for i in range(0, 50, 16)]
    loss, acc = evaluate(model, batches, nn.CrossEntropyLoss())
    with torch.no_grad():
        logits = model(x)
    assert loss == pytest.approx(nn.CrossEntropyLoss()(logits, y).item(), rel=1e-6)
    assert acc == pytest.approx((logits.argmax(1) == y).float().mean().item())


def _ddp_worker(rank: int, world: int) -> tuple:
    x, y = _data(32)
    share = slice(rank * 16, (rank + 1) * 16)
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    step = TrainStep(model, opt, nn.CrossEntropyLoss(), micro_batches=2)
    buffer = LossBuffer()
    for _ in range(2):
        buffer.append(step(x[share], y[share], lr=0.3))
    losses = buffer.take()  # one all-reduce: the means over both ranks
    batches = [(x[i:i + 8], y[i:i + 8]) for i in range(0, 32, 8)]
    return losses, _params(model), evaluate(model, batches, nn.CrossEntropyLoss(), rank=rank, world_size=world)


def test_two_ranks_match_one_process_on_the_whole_batch():
    """DDP with accumulation on 2 gloo ranks = one process on the global batch: the buffered step losses
    (averaged over ranks at the sync point), weights, eval."""
    ranks = on_gloo_ranks(_ddp_worker, 2)
    x, y = _data(32)
    model = _model()
    step = TrainStep(model, torch.optim.SGD(model.parameters(), lr=0.1), nn.CrossEntropyLoss())
    losses = [step(x, y, lr=0.3).item() for _ in range(2)]
    batches = [(x[i:i + 8], y[i:i + 8]) for i in range(0, 32, 8)]
    single_eval = evaluate(model, batches, nn.CrossEntropyLoss())
    for rank in (0, 1):
        rank_losses, rank_params, rank_eval = ranks[rank]
        assert rank_losses == pytest.approx(losses, rel=1e-5)
        for a, b in zip(rank_params, _params(model)):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
        assert rank_eval == pytest.approx(single_eval, rel=1e-6)
