"""Optimizers: parameter groups with and without decay exclusion; each builds and takes a step."""

from __future__ import annotations

import pytest
import torch
from adamp import AdamP
from timm.optim import Lamb
from torch import nn

from autowu_bench.workloads import build_optimizer, get_workload
from autowu_bench.workloads.optimizers import AdamPNoSync, param_groups


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3))


@pytest.mark.parametrize(("name", "cls"), [("adamp", AdamPNoSync), ("lamb", Lamb), ("sgd", torch.optim.SGD)])
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


def test_adamp_without_host_syncs_matches_the_package_step_for_step():
    """Conv weights followed by BN are scale-invariant (AdamP projects them), the last Linear is not."""
    torch.manual_seed(1)
    ours_model = _net()
    ref_model = _net()
    ours = build_optimizer("adamp", ours_model, lr=0.05, weight_decay=0.1)
    ref = AdamP(param_groups(ref_model, 0.1, True), lr=0.05, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1)
    x, y = torch.randn(32, 1, 8, 8), torch.randint(0, 3, (32,))
    projected = []
    for _ in range(6):
        for model, opt in ((ours_model, ours), (ref_model, ref)):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
        conv = ref_model[0].weight
        _, wd = AdamP._projection(ref, conv, conv.grad, torch.ones_like(conv), 0.1, 0.1, 1e-8)
        projected.append(wd == 0.1)
        ours.step()
        ref.step()
        for a, b in zip(ours_model.parameters(), ref_model.parameters()):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
    assert any(projected)  # the projection branch was exercised


def test_adamp_steps_a_channels_last_model_like_a_contiguous_one():
    def net() -> nn.Module:
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3))

    plain, cl = net(), net().to(memory_format=torch.channels_last)
    assert not cl[0].weight.is_contiguous()
    x, y = torch.randn(8, 3, 8, 8), torch.randint(0, 3, (8,))
    for model in (plain, cl):
        opt = build_optimizer("adamp", model, lr=0.05, weight_decay=0.1)
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
