"""Optimizers: parameter groups with and without decay exclusion; each builds and takes a step."""

from __future__ import annotations

import math

import pytest
import torch
from adamp import AdamP
from timm.optim import Lamb
from torch import nn

from autowu_bench.profiling import count_host_reads, count_kernels
from autowu_bench.workloads import build_optimizer, get_workload
from autowu_bench.workloads.optimizers import MultiTensorAdamP, param_groups


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3))


@pytest.mark.parametrize(("name", "cls"), [("adamp", MultiTensorAdamP), ("lamb", Lamb), ("sgd", torch.optim.SGD)])
def test_builds_and_steps_reducing_the_loss(name, cls):
    model = _net()
    opt = build_optimizer(name, model, lr=0.01, weight_decay=1e-2)
    assert isinstance(opt, cls)
    x, y = torch.randn(16, 1, 8, 8), torch.randint(0, 3, (16,))
    losses = []
    for _ in range(5):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


def test_decay_exclusion_puts_biases_and_norms_in_a_zero_decay_group():
    model = _net()
    opt = build_optimizer("adamp", model, lr=1e-3, weight_decay=0.05)
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    assert {id(p) for p in decay["params"]} == {id(model[0].weight), id(model[4].weight)}
    assert {id(p) for p in no_decay["params"]} == {id(model[0].bias), id(model[1].weight), id(model[1].bias), id(model[4].bias)}


def test_without_exclusion_there_is_one_group():
    model = _net()
    opt = build_optimizer("sgd", model, lr=0.1, weight_decay=5e-4, exclude_norm_and_bias=False, nesterov=True)
    assert len(opt.param_groups) == 1 and opt.param_groups[0]["nesterov"]
    assert len(opt.param_groups[0]["params"]) == len(list(model.parameters()))


def test_excluded_parameters_do_not_decay():
    """With zero gradients, only weight decay moves parameters: weights shrink, biases stay."""
    model = _net()
    opt = build_optimizer("sgd", model, lr=0.1, weight_decay=0.5, momentum=0.0)
    before = [p.detach().clone() for p in model.parameters()]
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    after = list(model.parameters())
    assert torch.allclose(after[0], before[0] * 0.95)  # conv weight decayed
    assert torch.equal(after[1], before[1])  # conv bias not


def test_vit_embeddings_are_excluded():
    with torch.device("meta"):
        model = get_workload("imagenet-vit-s16").build_model()
    groups = build_optimizer("adamp", model, lr=1e-3, weight_decay=0.05).param_groups
    no_decay = {id(p) for p in groups[1]["params"]}
    assert id(model.class_token) in no_decay and id(model.encoder.pos_embedding) in no_decay


def _scale_invariant_net() -> nn.Module:
    """Conv weights followed by BN are scale-invariant per output channel (AdamP projects them per
    channel), a Linear followed by LayerNorm only as a whole (projected over the whole tensor), the last
    Linear not at all; two convs share a shape (batched together). The convs have no bias: before BN its
    gradient is rounding noise, which Adam's normalisation would blow up into differences of order one."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU(),
        nn.Conv2d(4, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU(),
        nn.Conv2d(4, 4, 3, bias=False), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 8),
        nn.LayerNorm(8, elementwise_affine=False), nn.Linear(8, 3),
    )  # fmt: skip


@pytest.mark.parametrize("nesterov", [False, True])
@pytest.mark.parametrize("foreach", [True, False])
def test_multi_tensor_adamp_matches_the_package_step_for_step(nesterov, foreach):
    ours_model, ref_model = _scale_invariant_net(), _scale_invariant_net()
    ours = build_optimizer("adamp", ours_model, lr=0.05, weight_decay=0.1)
    ours.foreach = foreach
    for group in ours.param_groups:
        group["nesterov"] = nesterov
    ref = AdamP(param_groups(ref_model, 0.1, True), lr=0.05, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1,
                nesterov=nesterov)
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(32, 1, 8, 8, generator=g), torch.randint(0, 3, (32,), generator=g)
    branches = set()
    for _ in range(6):
        for model, opt in ((ours_model, ours), (ref_model, ref)):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
        for layer in (ref_model[3], ref_model[10], ref_model[12]):
            w = layer.weight
            channel = AdamP._cosine_similarity(ref, w.grad, w, 1e-8, ref._channel_view).max() < 0.1 / math.sqrt(w[0].numel())
            whole = AdamP._cosine_similarity(ref, w.grad, w, 1e-8, ref._layer_view).max() < 0.1 / math.sqrt(w.numel())
            branches.add("channel" if channel else "whole" if whole else "none")
        ours.step()
        ref.step()
        for a, b in zip(ours_model.parameters(), ref_model.parameters()):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
        for a, b in zip(ours.state.values(), ref.state.values()):
            assert a["step"] == b["step"]
            torch.testing.assert_close(a["exp_avg_sq"], b["exp_avg_sq"], rtol=1e-5, atol=1e-12)
    assert branches == {"channel", "whole", "none"}  # every branch of the projection was exercised


def test_multi_tensor_adamp_launches_fewer_kernels_and_never_reads_back():
    """Per-tensor Python loops cost a GPU a launch per operation, and each read-back a wait for the queue;
    a ResNet-18 has 62 tensors, its 21 weight tensors in 12 shapes."""
    counts = {}
    for make in (MultiTensorAdamP, AdamP):
        torch.manual_seed(0)
        model = get_workload("cifar10-resnet18").build_model()
        opt = make(param_groups(model, 1e-2, True), lr=1e-3, weight_decay=1e-2)
        opt.foreach = True  # what it does on GPU parameters (and nothing for the package's)
        nn.functional.cross_entropy(model(torch.randn(2, 3, 32, 32)), torch.tensor([0, 1])).backward()
        opt.step()
        counts[make] = (count_kernels(opt.step), count_host_reads(opt.step))
    (ours, our_reads), (package, package_reads) = counts[MultiTensorAdamP], counts[AdamP]
    assert our_reads == 0 and package_reads >= 21  # one per weight tensor at least
    assert ours * 1.5 < package


def test_multi_tensor_adamp_takes_the_packages_loop_for_cpu_parameters():
    opt = build_optimizer("adamp", _net(), lr=1e-3, weight_decay=1e-2)
    assert opt.foreach is None  # chosen per step from where the parameters are
    for p in opt.param_groups[0]["params"]:
        p.grad = torch.randn_like(p)
    assert count_host_reads(opt.step) > 0  # the package's Python branch: free on a CPU


@pytest.mark.parametrize("foreach", [True, False])
def test_adamp_steps_a_channels_last_model_like_a_contiguous_one(foreach):
    def net() -> nn.Module:
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3))

    plain, cl = net(), net().to(memory_format=torch.channels_last)
    assert not cl[0].weight.is_contiguous()
    x, y = torch.randn(8, 3, 8, 8), torch.randint(0, 3, (8,))
    for model in (plain, cl):
        opt = build_optimizer("adamp", model, lr=0.05, weight_decay=0.1)
        opt.foreach = foreach
        for _ in range(2):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x.contiguous(memory_format=torch.channels_last)), y).backward()
            opt.step()
    for a, b in zip(plain.parameters(), cl.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_adamp_uses_the_papers_settings():
    opt = build_optimizer("adamp", _net(), lr=1e-3, weight_decay=1e-2)
    g = opt.param_groups[0]
    assert g["betas"] == (0.9, 0.999) and g["eps"] == 1e-8 and g["delta"] == 0.1 and g["wd_ratio"] == 0.1


def test_unknown_optimizer_lists_valid_names():
    with pytest.raises(ValueError, match="unknown optimizer 'adam'; valid: adamp, lamb, sgd"):
        build_optimizer("adam", _net(), lr=1e-3, weight_decay=0.0)
