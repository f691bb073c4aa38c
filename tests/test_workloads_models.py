"""Models: parameter counts of the paper's architectures, output shapes of the small ones."""

from __future__ import annotations

import pytest
import torch

from autowu_bench.schedulers.lr_functions import scaled_peak_lr
from autowu_bench.workloads import get_workload, workload_names

# Published sizes (rounded as papers print them) and the exact counts of these implementations.
PARAMS = {
    "fmnist-mlp": (None, 535_818),  # 784*512+512 + 512*256+256 + 256*10+10
    "cifar10-resnet18": (11.17e6, 11_173_962),
    "cifar100-wrn28-10": (36.5e6, 36_536_884),
    "imagenet-resnet50": (25.6e6, 25_557_032),
    "imagenet-efficientnet-b0": (5.3e6, 5_288_548),
    "imagenet-vit-s16": (22.0e6, 22_050_664),
}


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_parameter_count(name):
    with torch.device("meta"):
        model = get_workload(name).build_model()
    n = sum(p.numel() for p in model.parameters())
    published, exact = PARAMS[name]
    assert n == exact
    if published is not None:
        assert abs(n - published) / published < 0.01


@pytest.mark.parametrize("name", ["fmnist-mlp", "fmnist-cnn", "fmnist-resnet18", "cifar10-resnet18"])
def test_small_models_map_a_batch_to_logits(name):
    wl = get_workload(name)
    torch.manual_seed(0)
    model = wl.build_model()
    x = torch.randn(2, *wl.input_shape)
    out = model(x)
    assert out.shape == (2, wl.num_classes)
    loss = wl.loss_fn()(out, torch.tensor([0, 1]))
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())


def test_build_model_is_seeded_by_the_caller():
    wl = get_workload("fmnist-cnn")
    torch.manual_seed(3)
    a = wl.build_model()
    torch.manual_seed(3)
    b = wl.build_model()
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def test_every_workload_has_a_consistent_recipe():
    for name in workload_names():
        wl = get_workload(name)
        r = wl.recipe
        assert r.scaling == "sqrt" and r.warmup_epochs > 0 and r.epochs > r.warmup_epochs
        assert scaled_peak_lr(r.scaling, r.base_lr, r.base_batch * 4, r.base_batch) == pytest.approx(2 * r.base_lr)
    cifar = get_workload("cifar10-resnet18").recipe
    assert (cifar.epochs, cifar.label_smoothing, cifar.warmup_epochs) == (200, 0.1, 5)
    assert get_workload("cifar10-resnet18").loss_fn().label_smoothing == 0.1
    assert get_workload("imagenet-resnet50").recipe.epochs == 120
    assert get_workload("imagenet-vit-s16").recipe.epochs == 300
    aug = get_workload("cifar100-wrn28-10").augment
    assert aug.autoaugment and aug.cutout == 16 and aug.crop_padding == 4 and aug.flip
    lamb = cifar.with_optimizer("lamb")
    assert lamb.optimizer == "lamb" and lamb.base_lr != cifar.base_lr and lamb.epochs == 200
    with pytest.raises(ValueError, match="valid: adamp, lamb, sgd"):
        cifar.with_optimizer("adam")
