"""Shared fixtures: the CIFAR-10 subset marker and a throw-away cache folder."""
import os
from pathlib import Path

import pytest


def _cifar_subset_path():
    folder = os.environ.get("SNNLAB_DATA")
    path = Path(folder) / "cifar10_10k.npz" if folder else None
    return path if path is not None and path.is_file() else None


def pytest_collection_modifyitems(config, items):
    """Skip tests marked `cifar` unless `$SNNLAB_DATA` holds cifar10_10k.npz."""
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
