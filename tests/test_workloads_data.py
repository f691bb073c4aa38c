"""Data sets in their real on-disk formats, DataError messages, splits and loader sharding."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
import torch

from autowu_bench.workloads import DataError, get_workload
from autowu_bench.workloads.data import fashion_mnist
from data_fixtures import write_cifar10, write_cifar100, write_fashion_mnist_idx, write_imagenet_folders


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data")
    write_fashion_mnist_idx(root / "FashionMNIST" / "raw", n_train=300, n_test=50, seed=1)
    write_cifar10(root, n_train=203, n_test=40, seed=2)
    write_cifar100(root, n_train=150, n_test=30, seed=3)
    write_imagenet_folders(root, num_classes=3, per_class_train=6, per_class_val=2)
    return root


@pytest.mark.parametrize(
    ("name", "n_train", "n_test", "shape", "classes"),
    [
        ("fmnist-mlp", 300, 50, (1, 28, 28), 10),
        ("cifar10-resnet18", 203, 40, (3, 32, 32), 10),
        ("cifar100-wrn28-10", 150, 30, (3, 32, 32), 100),
    ],
)
def test_fixture_in_real_format_loads_with_held_out_val(data_root, name, n_train, n_test, shape, classes):
    wl = get_workload(name)
    assert wl.check_data(data_root) == []
    splits = wl.load(data_root, val_size=20, train_subset=None, seed=0)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (n_train - 20, 20, n_test)
    assert splits.train.images.dtype == torch.uint8 and tuple(splits.train.images.shape[1:]) == shape
    assert int(splits.train.labels.max()) < classes
    # val is held out: no training image of the split is a val image
    train_rows = {bytes(img.flatten().tolist()) for img in splits.train.images}
    assert not any(bytes(img.flatten().tolist()) in train_rows for img in splits.val.images)


def test_cifar_reads_pixels_in_torchvision_layout(tmp_path):
    """The first row of a batch is the red plane: the loaded tensor's channel 0 must hold it."""
    import pickle

    write_cifar10(tmp_path, n_train=10, n_test=5, seed=0)
    with open(tmp_path / "cifar-10-batches-py" / "test_batch", "rb") as f:
        raw = pickle.load(f, encoding="latin1")
    splits = get_workload("cifar10-resnet18").load(tmp_path, val_size=2, seed=0)
    expected = torch.from_numpy(raw["data"].reshape(-1, 3, 32, 32))
    assert torch.equal(splits.test.images, expected)
    assert splits.test.labels.tolist() == raw["labels"]


def test_split_is_seeded_and_subset_keeps_val(data_root):
    wl = get_workload("fmnist-mlp")
    a = wl.load(data_root, val_size=30, train_subset=None, seed=5)
    b = wl.load(data_root, val_size=30, train_subset=100, seed=5)
    c = wl.load(data_root, val_size=30, train_subset=None, seed=6)
    assert torch.equal(a.val.images, b.val.images)
    assert len(b.train) == 100
    assert not torch.equal(a.val.images, c.val.images)


def test_bad_split_sizes_name_the_value(data_root):
    wl = get_workload("fmnist-mlp")
    with pytest.raises(ValueError, match="val_size=300"):
        wl.load(data_root, val_size=300, seed=0)
    with pytest.raises(ValueError, match="train_subset=999"):
        wl.load(data_root, val_size=10, train_subset=999, seed=0)


def test_fashion_mnist_found_without_root_is_the_debian_package():
    """The real data, which CI installs (.ci/run, as make run does): missing, it is a failure, not a skip."""
    wl = get_workload("fmnist-mlp")
    if not Path(fashion_mnist.DEBIAN_DIR, "train-images-idx3-ubyte.gz").is_file():
        pytest.fail(f"real Fashion-MNIST is missing from {fashion_mnist.DEBIAN_DIR}: install Debian's package "
                    "dataset-fashion-mnist (sudo apt-get install dataset-fashion-mnist; make data does it as root)")
    assert wl.check_data(None) == []
    splits = wl.load(None, val_size=5000, train_subset=1000, seed=0)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (1000, 5000, 10000)
    # the published test set: 1000 images per class, in the file's order (ankle boot, pullover, trouser, ...)
    assert splits.test.labels.bincount().tolist() == [1000] * 10
    assert splits.test.labels[:5].tolist() == [9, 2, 1, 1, 6]
    assert splits.train.images.dtype == torch.uint8 and tuple(splits.train.images.shape[1:]) == (1, 28, 28)


def test_fashion_mnist_missing_without_root_names_the_debian_package(tmp_path, monkeypatch):
    absent = str(tmp_path / "fashion-mnist")
    monkeypatch.setattr(fashion_mnist, "DEBIAN_DIR", absent)
    problems = get_workload("fmnist-mlp").check_data(None)
    assert len(problems) == 1 and absent in problems[0] and "apt-get install dataset-fashion-mnist" in problems[0]


def test_missing_data_names_path_and_remedy(tmp_path):
    for name, remedy in (
        ("fmnist-mlp", "apt-get install dataset-fashion-mnist"),
        ("cifar10-resnet18", "run_suite.py --download"),
        ("cifar100-wrn28-10", "cifar-100-python.tar.gz"),
        ("imagenet-resnet50", "image-net.org"),
    ):
        wl = get_workload(name)
        problems = wl.check_data(tmp_path)
        assert len(problems) >= 1
        assert str(tmp_path) in problems[0] and remedy in problems[0]
        with pytest.raises(DataError) as err:
            wl.load(tmp_path, val_size=1, seed=0)
        assert str(err.value) == problems[0]


def test_cifar_without_root_says_a_root_is_needed():
    problems = get_workload("cifar10-resnet18").check_data(None)
    assert "data root" in problems[0]


def test_broken_idx_file_is_a_data_error(tmp_path):
    folder = write_fashion_mnist_idx(tmp_path, n_train=20, n_test=10)
    path = folder / "train-labels-idx1-ubyte.gz"
    with gzip.open(path, "rb") as f:
        raw = f.read()
    with gzip.open(path, "wb") as f:
        f.write(raw[:-3])  # truncated
    problems = get_workload("fmnist-mlp").check_data(tmp_path)
    assert str(path) in problems[0] and "bytes" in problems[0]
    (folder / "t10k-images-idx3-ubyte.gz").write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match="t10k-images"):
        fashion_mnist.read_idx(folder / "t10k-images-idx3-ubyte.gz", fashion_mnist.IMAGE_MAGIC)
    with pytest.raises(DataError, match="magic number 2049"):
        fashion_mnist.read_idx(path.with_name("t10k-labels-idx1-ubyte.gz"), fashion_mnist.IMAGE_MAGIC)


def test_broken_cifar_pickle_is_a_data_error(tmp_path):
    write_cifar10(tmp_path, n_train=10, n_test=5)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").write_bytes(b"\x80\x02garbage")
    problems = get_workload("cifar10-resnet18").check_data(tmp_path)
    assert "cifar-10-batches-py" in problems[0] and "cannot be read" in problems[0]


def test_real_cifar_files_are_md5_checked_as_torchvision_does(tmp_path, monkeypatch):
    """Without the fixtures' opt-out every file must have the official archive's md5 (torchvision's own
    check, before any pickle is read): here the md5s are set to the fixture's, then one file changes."""
    from torchvision.datasets.utils import calculate_md5

    from autowu_bench.workloads.data.cifar import CIFAR10Files

    write_cifar10(tmp_path, n_train=10, n_test=5, skip_md5=False)
    folder = tmp_path / "cifar-10-batches-py"
    wl = get_workload("cifar10-resnet18")
    (problem,) = wl.check_data(tmp_path)
    assert f"files in {folder} are not the official ones" in problem and "run_suite.py --download" in problem
    assert "data_batch_1, data_batch_2, data_batch_3, data_batch_4, data_batch_5, test_batch, batches.meta" in problem
    with pytest.raises(DataError, match="not the official ones"):
        wl.load(tmp_path, val_size=2, seed=0)

    def md5s(entries):
        return [[name, calculate_md5(str(folder / name))] for name, _ in entries]

    monkeypatch.setattr(CIFAR10Files, "train_list", md5s(CIFAR10Files.train_list))
    monkeypatch.setattr(CIFAR10Files, "test_list", md5s(CIFAR10Files.test_list))
    monkeypatch.setattr(CIFAR10Files, "meta", {**CIFAR10Files.meta, "md5": calculate_md5(str(folder / "batches.meta"))})
    assert wl.check_data(tmp_path) == []
    assert len(wl.load(tmp_path, val_size=2, seed=0).test) == 5
    with open(folder / "data_batch_2", "r+b") as f:
        f.seek(40)
        byte = f.read(1)
        f.seek(40)
        f.write(bytes([byte[0] ^ 1]))
    (problem,) = wl.check_data(tmp_path)
    assert "(md5 of data_batch_2 differs" in problem


class _Runs:
    """Pickled, it calls ``os.mkdir(path)`` when unpickled: code that a pickle of unknown origin can run."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        import os

        return os.mkdir, (self.path,)


def test_a_cifar_file_that_is_not_the_official_one_is_never_unpickled(tmp_path):
    import pickle

    write_cifar10(tmp_path, n_train=10, n_test=5, skip_md5=False)
    ran = tmp_path / "the-pickle-ran"
    (tmp_path / "cifar-10-batches-py" / "data_batch_1").write_bytes(pickle.dumps(_Runs(str(ran))))
    (problem,) = get_workload("cifar10-resnet18").check_data(tmp_path)
    assert "not the official ones" in problem and not ran.exists()


def test_imagenet_folders_load_with_standard_augmentation(data_root):
    wl = get_workload("imagenet-resnet50")
    assert wl.check_data(data_root) == []
    splits = wl.load(data_root, val_size=3, seed=0)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (15, 3, 6)
    assert {Path(p).suffix for p, _ in splits.train.samples} == {".JPEG", ".png"}
    train = wl.loader(splits.train, batch_size=4, train=True, num_workers=0)
    assert len(train) == 3
    batches = list(train)
    assert len(batches) == 3
    x, y = batches[0]
    assert x.shape == (4, 3, 224, 224) and x.dtype == torch.float32 and y.dtype == torch.int64
    test = wl.loader(splits.test, batch_size=4, train=False, num_workers=0)
    first = [b[0] for b in test]
    again = [b[0] for b in test]
    assert [b.shape[0] for b in first] == [4, 2]  # last batch kept
    assert all(torch.equal(a, b) for a, b in zip(first, again))  # eval: deterministic resize + centre crop


def test_imagenet_ranks_read_disjoint_batches_through_worker_processes(data_root):
    wl = get_workload("imagenet-resnet50")
    splits = wl.load(data_root, val_size=0, seed=0)
    paths, counts = [], []
    for rank in (0, 1):
        ld = wl.loader(splits.train, batch_size=3, rank=rank, world_size=2, train=True, seed=7, num_workers=2)
        ld.set_epoch(2)
        batches = list(ld._loader.batch_sampler)
        paths.append({splits.train.samples[i][0] for b in batches for i in b})
        got = [y for _, y in ld]
        counts.append(len(got))
        assert all(y.shape == (3,) for y in got)
        assert sorted(torch.cat(got).tolist()) == sorted(splits.train.samples[i][1] for b in batches for i in b)
    assert counts == [3, 3] and not paths[0] & paths[1]


def test_imagenet_val_classes_must_match_train(tmp_path):
    write_imagenet_folders(tmp_path, num_classes=2)
    (tmp_path / "imagenet" / "val" / "n00000001").rename(tmp_path / "imagenet" / "val" / "n99999999")
    problems = get_workload("imagenet-resnet50").check_data(tmp_path)
    assert "same classes" in problems[0]


def _tensor_split(n: int):
    from autowu_bench.workloads.data.splits import TensorSplit

    images = torch.arange(n, dtype=torch.int64).remainder(256).to(torch.uint8).view(n, 1, 1, 1).expand(n, 1, 28, 28)
    return TensorSplit(images.contiguous(), torch.arange(n))


@pytest.mark.parametrize("world_size", [1, 2, 3])
def test_train_loader_shards_disjoint_equal_batches(world_size):
    wl = get_workload("fmnist-mlp")
    split = _tensor_split(103)
    loaders = [
        wl.loader(split, batch_size=8, rank=r, world_size=world_size, train=True, seed=4) for r in range(world_size)
    ]
    seen = []
    for ld in loaders:
        labels = [y for _, y in ld]
        assert len(labels) == len(ld) == (103 // world_size) // 8
        assert all(y.shape == (8,) for y in labels)
        seen.append(torch.cat(labels))
    union = torch.cat(seen)
    assert union.unique().numel() == union.numel()  # disjoint across ranks


def test_set_epoch_reshuffles_deterministically():
    wl = get_workload("fmnist-mlp")
    split = _tensor_split(64)
    order = lambda ld: torch.cat([y for _, y in ld])  # noqa: E731
    a = wl.loader(split, batch_size=16, train=True, seed=1)
    b = wl.loader(split, batch_size=16, train=True, seed=1)
    e0 = order(a)
    a.set_epoch(1)
    e1 = order(a)
    b.set_epoch(1)
    assert not torch.equal(e0, e1)
    assert torch.equal(e1, order(b))
    a.set_epoch(0)
    assert torch.equal(e0, order(a))


def test_eval_loader_sees_whole_split_in_order_on_every_rank():
    wl = get_workload("fmnist-mlp")
    split = _tensor_split(50)
    for rank in (0, 1):
        ld = wl.loader(split, batch_size=16, rank=rank, world_size=2, train=False)
        ys = [y for _, y in ld]
        assert len(ld) == 4 and [len(y) for y in ys] == [16, 16, 16, 2]
        assert torch.equal(torch.cat(ys), torch.arange(50))


def test_batch_larger_than_shard_is_refused():
    with pytest.raises(ValueError, match="batch_size=64 x world_size=2"):
        get_workload("fmnist-mlp").loader(_tensor_split(100), batch_size=64, world_size=2, train=True)


def test_rank_outside_world_is_refused():
    with pytest.raises(ValueError, match="rank=2"):
        get_workload("fmnist-mlp").loader(_tensor_split(100), batch_size=4, rank=2, world_size=2, train=True)


def test_loader_batches_are_normalized_and_optionally_channels_last(data_root):
    wl = get_workload("cifar10-resnet18")
    splits = wl.load(data_root, val_size=10, seed=0)
    x, y = next(iter(wl.loader(splits.test, batch_size=40, train=False)))
    assert x.dtype == torch.float32 and y.dtype == torch.int64
    assert abs(float(x.mean())) < 1.0 and 0.3 < float(x.std()) < 3.0
    x, _ = next(iter(wl.loader(splits.train, batch_size=16, train=True, channels_last=True)))
    assert x.is_contiguous(memory_format=torch.channels_last)


def test_unknown_workload_lists_known_names():
    with pytest.raises(ValueError, match="known: .*fmnist-mlp"):
        get_workload("mnist-mlp")


def test_failed_download_is_a_data_error_naming_the_root(tmp_path, monkeypatch):
    from urllib.error import URLError

    from autowu_bench.workloads.data.cifar import CIFAR10Files

    def offline(self):
        raise URLError("no network")

    monkeypatch.setattr(CIFAR10Files, "download", offline)
    with pytest.raises(DataError, match=f"downloading CIFAR10 into {tmp_path} failed"):
        get_workload("cifar10-resnet18").load(tmp_path, val_size=1, seed=0, download=True)
