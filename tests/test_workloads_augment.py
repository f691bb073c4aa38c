"""Batched augmentation: shapes and dtypes kept, per-sample randomness, ops matching their definitions."""

from __future__ import annotations

import pytest
import torch
from torchvision.transforms import AutoAugment, AutoAugmentPolicy
from torchvision.transforms.v2 import functional as TF

from autowu_bench.profiling import count_kernels
from autowu_bench.workloads import get_workload
from autowu_bench.workloads.data.augment import cutout, random_crop, random_flip
from autowu_bench.workloads.data.autoaugment import (
    CIFAR10_POLICY, CPU_CHUNK, SIGNED, _policy_tables, apply_op, apply_policy, cifar10_autoaugment, magnitude,
)
from autowu_bench.workloads.data.splits import TensorSplit


def _images(n: int = 16, size: int = 32, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_random_crop_is_a_shifted_window_of_the_padded_image():
    x = _images(32)
    out = random_crop(x, 4, _gen())
    assert out.shape == x.shape and out.dtype == torch.uint8
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4))
    for i in range(32):
        windows = [(dy, dx) for dy in range(9) for dx in range(9) if torch.equal(padded[i, :, dy : dy + 32, dx : dx + 32], out[i])]
        assert windows, f"image {i} is not a crop of its padded original"
    shifted = sum(not torch.equal(out[i], x[i]) for i in range(32))
    assert shifted > 16  # offsets are drawn per image


def test_flip_flips_some_images_and_keeps_the_rest():
    x = _images(64)
    out = random_flip(x, _gen())
    flipped = [torch.equal(out[i], x[i].flip(-1)) for i in range(64)]
    kept = [torch.equal(out[i], x[i]) for i in range(64)]
    assert all(f or k for f, k in zip(flipped, kept))
    assert 10 < sum(flipped) < 54


def test_cutout_zeroes_one_square_per_image():
    x = torch.ones(32, 3, 32, 32)
    out = cutout(x, 16, _gen())
    zeros = (out[:, 0] == 0).sum(dim=(1, 2))
    assert bool((zeros > 0).all()) and bool((zeros <= 256).all())
    assert len(set(zeros.tolist())) > 1  # clipped at the border for some centres
    assert torch.equal(out[:, 0] == 0, out[:, 2] == 0)  # the same square in every channel


def test_policy_table_is_the_published_cifar10_policy():
    assert list(CIFAR10_POLICY) == AutoAugment(AutoAugmentPolicy.CIFAR10).policies


@pytest.mark.parametrize(
    ("name", "mag", "reference", "tol"),
    [
        ("Invert", 0.0, lambda x: TF.invert(x), 0),
        ("Posterize", 4.0, lambda x: TF.posterize(x, 4), 0),
        ("Solarize", 128.0, lambda x: TF.solarize(x, 128), 0),
        ("Equalize", 0.0, lambda x: TF.equalize(x), 1),
        ("AutoContrast", 0.0, lambda x: TF.autocontrast(x), 1),
        ("Brightness", 0.5, lambda x: TF.adjust_brightness(x, 1.5), 1),
        ("Color", -0.6, lambda x: TF.adjust_saturation(x, 0.4), 2),
        ("Contrast", 0.3, lambda x: TF.adjust_contrast(x, 1.3), 2),
        ("Sharpness", 0.9, lambda x: TF.adjust_sharpness(x, 1.9), 2),
    ],
)
def test_pixel_ops_match_torchvision(name, mag, reference, tol):
    x = _images(8)
    x[0] = x[0] // 2 + 60  # a low-contrast image for AutoContrast/Equalize
    out = apply_op(name, x, torch.full((8,), mag))
    expected = torch.stack([reference(img) for img in x])
    diff = (out.int() - expected.int()).abs()
    assert int(diff.max()) <= tol
    assert float((diff > 0).float().mean()) < 0.05


def test_translate_moves_by_whole_pixels_and_fills_grey():
    x = _images(2)
    out = apply_op("TranslateX", x, torch.tensor([5.0, -3.0]))
    assert torch.equal(out[0, :, :, 5:], x[0, :, :, :-5]) and bool((out[0, :, :, :5] == 128).all())
    assert torch.equal(out[1, :, :, :-3], x[1, :, :, 3:]) and bool((out[1, :, :, -3:] == 128).all())
    out = apply_op("TranslateY", x, torch.tensor([4.0, 0.0]))
    assert torch.equal(out[0, :, 4:], x[0, :, :-4]) and torch.equal(out[1], x[1])
    wide = torch.randint(0, 256, (1, 3, 20, 36), dtype=torch.uint8, generator=_gen())
    out = apply_op("TranslateX", wide, torch.tensor([7.0]))
    assert torch.equal(out[0, :, :, 7:], wide[0, :, :, :-7])  # non-square: pixels, not fractions of the width


def test_rotate_by_90_degrees_is_an_exact_quarter_turn_about_the_centre():
    x = _images(2)
    out = apply_op("Rotate", x, torch.tensor([90.0, -90.0]))
    k = 1 if torch.equal(out[0], torch.rot90(x[0], 1, (1, 2))) else -1
    assert torch.equal(out[0], torch.rot90(x[0], k, (1, 2)))
    assert torch.equal(out[1], torch.rot90(x[1], -k, (1, 2)))  # the sign turns the other way


def test_shear_changes_rows_progressively():
    x = _images(1)
    out = apply_op("ShearX", x, torch.tensor([0.3]))
    assert not torch.equal(out, x)
    assert torch.equal(apply_op("ShearX", x, torch.tensor([0.0])), x)


def test_autoaugment_changes_images_per_sample_and_is_reproducible():
    x = _images(200)
    out = cifar10_autoaugment(x, _gen(3))
    assert out.shape == x.shape and out.dtype == torch.uint8
    changed = (out != x).flatten(1).any(1).float().mean()
    assert 0.5 < float(changed) < 0.98  # most sub-policies fire something; some leave an image as is
    assert torch.equal(out, cifar10_autoaugment(x, _gen(3)))
    assert not torch.equal(out, cifar10_autoaugment(x, _gen(4)))


def test_policy_applies_each_images_fired_operations_in_order_with_their_signs():
    """The batched policy equals, image by image, the sub-policy's operations applied one after another."""
    n = 600
    x = _images(n, seed=7)
    g = _gen(11)
    pick = torch.randint(0, len(CIFAR10_POLICY), (n,), generator=g)
    u_fire, u_sign = torch.rand(2, n, generator=g), torch.rand(2, n, generator=g)
    out = apply_policy(x, pick, u_fire, u_sign, _policy_tables(32, 32, x.device))
    fired_ops = set()
    for i in range(n):
        expected = x[i : i + 1]
        for slot, (op, prob, bin_) in enumerate(CIFAR10_POLICY[int(pick[i])]):
            if u_fire[slot, i] >= prob:
                continue
            mag = magnitude(op, bin_, 32, 32) * (-1.0 if op in SIGNED and u_sign[slot, i] < 0.5 else 1.0)
            expected = apply_op(op, expected, torch.tensor([mag], dtype=torch.float64))
            fired_ops.add(op)
        assert torch.equal(out[i], expected[0]), f"image {i}: sub-policy {int(pick[i])}"
    assert fired_ops == {op for pair in CIFAR10_POLICY for op, _, _ in pair}  # every operation was exercised


def test_autoaugment_in_cpu_chunks_equals_one_pass_over_the_batch():
    n = 2 * CPU_CHUNK + 37
    x = _images(n, seed=3)
    g = _gen(5)
    pick = torch.randint(0, len(CIFAR10_POLICY), (n,), generator=g)
    u_fire, u_sign = torch.rand(2, n, generator=g), torch.rand(2, n, generator=g)
    whole = apply_policy(x, pick, u_fire, u_sign, _policy_tables(32, 32, x.device))
    assert torch.equal(cifar10_autoaugment(x, _gen(5)), whole)


def test_autoaugment_launches_a_fixed_number_of_kernels_whatever_the_batch():
    """No per-image or per-group work: the kernels per batch do not grow with it (what a GPU pays at small batches)."""
    counts = [count_kernels(lambda: cifar10_autoaugment(_images(b), _gen())) for b in (8, CPU_CHUNK)]
    assert counts[0] == counts[1]
    assert counts[0] < 250  # one pass per family of operations, not per operation (about 450 before)


@pytest.mark.parametrize("name", ["fmnist-mlp", "fmnist-cnn", "fmnist-resnet18", "cifar10-resnet18", "cifar100-wrn28-10"])
def test_train_batches_are_augmented_and_eval_batches_are_not(name):
    wl = get_workload(name)
    c, h, w = wl.input_shape
    g = torch.Generator().manual_seed(0)
    split = TensorSplit(torch.randint(0, 256, (64, c, h, w), dtype=torch.uint8, generator=g), torch.arange(64) % 10)
    ev1 = torch.cat([x for x, _ in wl.loader(split, batch_size=32, train=False)])
    ev2 = torch.cat([x for x, _ in wl.loader(split, batch_size=32, train=False)])
    assert torch.equal(ev1, ev2)
    train = wl.loader(split, batch_size=32, train=True, seed=0)
    xs, ys = zip(*train)
    x, y = torch.cat(xs), torch.cat(ys)
    assert x.shape == (64, c, h, w) and x.dtype == torch.float32
    assert not torch.equal(x, ev1[y])  # same images in shuffled order, but augmented
    changed = (x != ev1[y]).flatten(1).any(1).float().mean()
    assert float(changed) > 0.3
