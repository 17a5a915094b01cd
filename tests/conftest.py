"""Shared fixtures: the CIFAR-10 subset marker, a throw-away cache folder, a tiny converted network."""
import os
from pathlib import Path

import pytest
import torch

from snnlab.convert import convert
from snnlab.models import build_model


def _cifar_subset_path():
    folder = os.environ.get("SNNLAB_DATA")
    path = Path(folder) / "cifar10_10k.npz" if folder else None
    return path if path is not None and path.is_file() else None


def pytest_collection_modifyitems(config, items):
    """Skip tests marked `cifar` unless `$SNNLAB_DATA` holds cifar10_10k.npz; run tests marked `browser` last.

    The browser tests run the notebooks again in a browser: after the notebooks' own run (nbval) their
    training caches are warm, so they take minutes instead of training the networks once more.
    """
    # a marker, not `"browser" in item.keywords`, which also holds folder names (a clone in a folder "browser")
    items.sort(key=lambda item: item.get_closest_marker("browser") is not None)  # stable: each group keeps its order
    if _cifar_subset_path() is not None:
        return
    skip = pytest.mark.skip(reason="needs SNNLAB_DATA pointing at a folder with cifar10_10k.npz")
    for item in items:
        if "cifar" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def tmp_cache(monkeypatch, tmp_path):
    """An empty `SNNLAB_CACHE` folder for this test, so the repository's data/ is left alone."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("SNNLAB_CACHE", str(folder))
    return folder


@pytest.fixture(scope="module")
def tiny():
    """A random vgg-mini on 8×8 one-channel images, a batch of 32 with labels, and its converted SNN."""
    torch.manual_seed(0)
    model = build_model("vgg-mini", num_classes=10, in_channels=1, image_size=8).eval()
    images, labels = torch.randn(32, 1, 8, 8), torch.randint(0, 10, (32,))
    return model, images, labels, convert(model, images, threshold="percentile", v_init=0.5)
