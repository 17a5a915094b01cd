"""Tests of snnlab.data: digits, subsets, augmentation, the CIFAR npz cache and its errors."""
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from snnlab import data, files


def test_digits_shapes_and_normalization():
    train, test = data.get_loaders("digits", batch_size=64)
    x, y = next(iter(train))
    assert x.shape == (64, 1, 8, 8) and y.dtype == torch.int64
    assert len(train.x) + len(test.x) == 1797 and len(test.x) == 360  # 80/20 split
    assert train.x.mean().abs() < 1e-4 and (train.x.std() - 1).abs() < 1e-3
    info = data.dataset_info("digits")
    assert (info.num_classes, info.in_channels, info.image_size) == (10, 1, 8)


def test_digits_split_is_stratified_and_disjoint():
    arrays = data._digits_arrays()
    counts_train = np.bincount(arrays["y_train"])
    counts_test = np.bincount(arrays["y_test"])
    assert np.all(np.abs(counts_train / counts_test - 4) < 0.15)
    train_rows = {x.tobytes() for x in arrays["x_train"]}
    assert sum(x.tobytes() in train_rows for x in arrays["x_test"]) < 10  # few duplicates


def test_subsets_are_class_balanced_and_sized():
    train, test = data.get_loaders("digits", train_size=100, test_size=50, seed=3)
    assert len(train.x) == 100 and len(test.x) == 50
    assert torch.bincount(train.y).tolist() == [10] * 10
    assert torch.bincount(test.y).tolist() == [5] * 10


def test_subset_too_large_raises():
    with pytest.raises(ValueError, match="train_size"):
        data.get_loaders("digits", train_size=100_000)


def test_unknown_dataset_lists_valid_names():
    with pytest.raises(ValueError, match="digits.*cifar10.*cifar100"):
        data.get_loaders("mnist")


def test_random_crop_flip_is_a_crop_of_the_padded_image():
    x = torch.randn(6, 3, 8, 8)
    out = data.random_crop_flip(x, padding=2, flip=True, generator=torch.Generator().manual_seed(0))
    assert out.shape == x.shape and not torch.equal(out, x)
    padded = F.pad(x, (2, 2, 2, 2), mode="reflect")
    for i in range(len(x)):  # brute force over every offset and mirror
        crops = [padded[i, :, dy:dy + 8, dx:dx + 8] for dy in range(5) for dx in range(5)]
        assert any(torch.equal(out[i], c) or torch.equal(out[i], c.flip(2)) for c in crops)


def test_loaders_are_reproducible_and_reshuffle_each_epoch():
    first = [data.get_loaders("digits", seed=1)[0] for _ in range(2)]
    epochs = [[torch.cat([y for _, y in loader]) for _ in range(2)] for loader in first]
    assert torch.equal(epochs[0][0], epochs[1][0]) and torch.equal(epochs[0][1], epochs[1][1])
    assert not torch.equal(epochs[0][0], epochs[0][1])
    other = torch.cat([y for _, y in data.get_loaders("digits", seed=2)[0]])
    assert not torch.equal(other, epochs[0][0])


def test_test_loader_is_ordered_and_complete():
    _, test = data.get_loaders("digits", batch_size=100)
    xs = torch.cat([x for x, _ in test])
    assert torch.equal(xs, test.x)
    assert torch.equal(test.y[:10], torch.arange(10))  # one image of each class, then the next of each


def test_class_interleaved_takes_each_class_in_turn():
    labels = [2, 0, 0, 1, 2, 0]
    order = data.class_interleaved(labels)
    assert order.tolist() == [1, 3, 0, 2, 4, 5]  # first 0, first 1, first 2, second 0, second 2, third 0


def _tiny_cifar():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (30, 32, 32, 3), dtype=np.uint8)
    return dict(x_train=images[:20], y_train=np.repeat(np.arange(10), 2), x_test=images[20:],
                y_test=np.arange(10), classes=np.array(data.CIFAR10_CLASSES))


def test_cifar_cache_is_written_once_and_checked(tmp_cache, monkeypatch):
    monkeypatch.delenv("SNNLAB_DATA", raising=False)
    monkeypatch.setattr(data, "_download_torchvision", lambda name, root: _tiny_cifar())
    first, _ = data.get_loaders("cifar10", batch_size=4, augment=False)
    assert (tmp_cache / "cifar10.npz").is_file() and (tmp_cache / "cifar10.npz.sha256").is_file()

    def offline(name, root):
        raise OSError("no network")
    monkeypatch.setattr(data, "_download_torchvision", offline)
    second, _ = data.get_loaders("cifar10", batch_size=4, augment=False)
    assert torch.equal(first.x, second.x)


def test_cifar_offline_without_data_suggests_the_fixes(tmp_cache, monkeypatch):
    monkeypatch.delenv("SNNLAB_DATA", raising=False)

    def offline(name, root):
        raise OSError("no network")
    monkeypatch.setattr(data, "_download_torchvision", offline)
    with pytest.raises(RuntimeError, match="SNNLAB_DATA.*digits"):
        data.get_loaders("cifar10")


def test_corrupted_npz_cache_names_the_file(tmp_cache, monkeypatch):
    monkeypatch.delenv("SNNLAB_DATA", raising=False)
    path = files.cache_dir() / "cifar10.npz"
    path.write_bytes(b"not an npz file")
    with pytest.raises(RuntimeError, match="cifar10.npz.*delete"):  # no checksum beside it
        data.get_loaders("cifar10")
    (tmp_cache / "cifar10.npz.sha256").write_text(files.sha256(path))
    with pytest.raises(RuntimeError, match="cifar10.npz.*delete"):  # checksum fits, content broken
        data.get_loaders("cifar10")


def test_corrupted_npz_in_snnlab_data_is_not_to_be_deleted(tmp_cache, tmp_path, monkeypatch):
    (tmp_path / "cifar10_10k.npz").write_bytes(b"not an npz file")
    monkeypatch.setenv("SNNLAB_DATA", str(tmp_path))
    with pytest.raises(RuntimeError, match=r"cifar10_10k.npz .*; replace it with a good copy, or unset "
                                           rf"SNNLAB_DATA to use the cache folder {re.escape(str(tmp_cache))}$"):
        data.get_loaders("cifar10")


@pytest.mark.parametrize("kind", ["missing", "file"])
def test_snnlab_data_that_is_not_a_folder_is_named(tmp_path, monkeypatch, kind):
    target = tmp_path / "data"
    if kind == "file":
        target.write_bytes(b"")
    monkeypatch.setenv("SNNLAB_DATA", str(target))
    with pytest.raises(ValueError, match=rf"SNNLAB_DATA='{re.escape(str(target))}' is not an existing folder: set it to the folder "
                                         "that holds cifar10_10k.npz, or unset it"):
        data.get_loaders("cifar10")
    assert data.data_source("cifar100") == "cifar100.npz"  # SNNLAB_DATA only serves CIFAR-10


@pytest.mark.cifar
def test_cifar10_subset_loads():
    train, test = data.get_loaders("cifar10", batch_size=256)
    x, y = next(iter(train))
    assert x.shape == (256, 3, 32, 32) and len(train.x) == 10_000 and len(test.x) == 2_000
    assert torch.bincount(test.y).tolist() == [200] * 10
    assert torch.bincount(test.y[:100]).tolist() == [10] * 10  # stored by class; the loader interleaves them
    assert train.x.mean(dim=(0, 2, 3)).abs().max() < 0.05  # the standard CIFAR-10 statistics fit


def test_data_source_tells_the_subset_from_the_full_set(tmp_path, monkeypatch):
    monkeypatch.delenv("SNNLAB_DATA", raising=False)
    assert data.data_source("digits") == "sklearn" and data.data_source("cifar10") == "cifar10.npz"
    (tmp_path / "cifar10_10k.npz").write_bytes(b"")
    monkeypatch.setenv("SNNLAB_DATA", str(tmp_path))
    assert data.data_source("cifar10") == "cifar10_10k.npz"
    assert data.data_source("cifar100") == "cifar100.npz"
