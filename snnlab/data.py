"""Data sets (digits offline; CIFAR-10/100 through an npz cache), augmentation and loaders.

Every data set is held in memory as normalized float tensors `[N, C, H, W]`, so a loader is a
shuffled walk over indices plus a vectorized augmentation of each batch: no workers, no PIL.

Where the images come from, first match wins:
- `digits`: scikit-learn's 8×8 hand-written digits (1,797 images, offline).
- `cifar10`: `$SNNLAB_DATA/cifar10_10k.npz` (a 10k/2k subset, offline) if that file exists;
- `cifar10`, `cifar100`: `cache_dir()/<name>.npz`, written once from torchvision's download.

Taught in notebook 00 (setup) and used by every notebook after it.
"""
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .files import cache_dir, sha256, write_atomic

DATASETS = ("digits", "cifar10", "cifar100")

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck")
CIFAR100_CLASSES = tuple("""apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle
bowl boy bridge bus butterfly camel can castle caterpillar cattle chair chimpanzee clock cloud
cockroach couch crab crocodile cup dinosaur dolphin elephant flatfish forest fox girl hamster
house kangaroo keyboard lamp lawn_mower leopard lion lizard lobster man maple_tree motorcycle
mountain mouse mushroom oak_tree orange orchid otter palm_tree pear pickup_truck pine_tree plain
plate poppy porcupine possum rabbit raccoon ray road rocket rose sea seal shark shrew skunk
skyscraper snail snake spider squirrel streetcar sunflower sweet_pepper table tank telephone
television tiger tractor train trout tulip turtle wardrobe whale willow_tree wolf woman
worm""".split())
PIXEL_MAX = {"digits": 16.0, "cifar10": 255.0, "cifar100": 255.0}  # raw value of a white pixel


@dataclass(frozen=True)
class DatasetInfo:
    """What a model needs to know about a data set; mean and std per channel, in [0, 1] units."""

    name: str
    num_classes: int
    in_channels: int
    image_size: int
    mean: tuple
    std: tuple
    classes: tuple


def _check_name(dataset: str) -> None:
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}")


def _digits_arrays() -> dict:
    """scikit-learn's digits, split 80/20 stratified with seed 0, as uint8 `[N, 8, 8, 1]` arrays."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = digits.images.astype(np.uint8)[..., None]  # (1797, 8, 8, 1), values 0..16
    x_train, x_test, y_train, y_test = train_test_split(
        x, digits.target, test_size=0.2, stratify=digits.target, random_state=0)
    classes = np.array([str(c) for c in range(10)])
    return dict(x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test, classes=classes)


def _load_npz(path: Path, fix: str = "delete it so that it is rebuilt") -> dict:
    """All arrays of the npz at `path` (no pickle); an unreadable file raises naming it and `fix`."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {key: npz[key] for key in npz.files}
    except Exception as err:
        raise RuntimeError(f"could not read {path} ({type(err).__name__}: {err}); {fix}") from err


def _download_torchvision(dataset: str, root: Path) -> dict:
    """CIFAR-10/100 from torchvision (downloading into `root`), as uint8 NHWC arrays."""
    import torchvision

    cls = {"cifar10": torchvision.datasets.CIFAR10,
           "cifar100": torchvision.datasets.CIFAR100}[dataset]
    train, test = (cls(root=str(root), train=flag, download=True) for flag in (True, False))
    return dict(x_train=train.data, y_train=np.array(train.targets), x_test=test.data,
                y_test=np.array(test.targets), classes=np.array(train.classes))


def _write_npz_atomic(path: Path, arrays: dict) -> None:
    """Write `arrays` to `path` (`write_atomic`) and, before the rename, their sha256 to `<path>.sha256`."""
    def write(f):
        np.savez(f, **arrays)
        f.flush()
        Path(f"{path}.sha256").write_text(sha256(Path(f.name)) + "\n")
    write_atomic(path, write)


def _offline_subset(dataset: str):
    """`$SNNLAB_DATA/cifar10_10k.npz` if `dataset` is "cifar10" and that file exists, else None.

    Raises a ValueError naming SNNLAB_DATA when it is set, for CIFAR-10, to something that is not a folder.
    """
    folder = os.environ.get("SNNLAB_DATA")
    if dataset != "cifar10" or not folder:
        return None
    if not Path(folder).is_dir():
        raise ValueError(f"SNNLAB_DATA={folder!r} is not an existing folder: set it to the folder that holds "
                         "cifar10_10k.npz, or unset it to use the cache folder")
    path = Path(folder) / "cifar10_10k.npz"
    return path if path.is_file() else None


def data_source(dataset: str) -> str:
    """Where `dataset` is read from: "sklearn", "cifar10_10k.npz" (`$SNNLAB_DATA`) or "<name>.npz".

    Part of a trained network's configuration: the 10k subset and the full set give different nets.
    """
    _check_name(dataset)
    if dataset == "digits":
        return "sklearn"
    subset = _offline_subset(dataset)
    return subset.name if subset is not None else f"{dataset}.npz"


def _cifar_arrays(dataset: str) -> dict:
    """CIFAR arrays from `$SNNLAB_DATA`, else from the checked npz cache, else a fresh download."""
    subset = _offline_subset(dataset)
    if subset is not None:
        return _load_npz(subset, f"replace it with a good copy, or unset SNNLAB_DATA to use the cache folder {cache_dir()}")
    path = cache_dir() / f"{dataset}.npz"
    if path.exists():
        sha_file = Path(f"{path}.sha256")
        if not sha_file.is_file() or sha_file.read_text().strip() != sha256(path):
            raise RuntimeError(f"{path} does not match its checksum file {sha_file.name}; "
                               "delete both files so that they are rebuilt")
        return _load_npz(path)
    try:
        arrays = _download_torchvision(dataset, cache_dir())
    except Exception as err:
        raise RuntimeError(
            f"could not download {dataset} into {cache_dir()} ({err}). Offline, set SNNLAB_DATA to "
            "a folder holding cifar10_10k.npz, or use dataset='digits', which needs no download."
        ) from err
    _write_npz_atomic(path, arrays)
    return arrays


def _raw_arrays(dataset: str) -> dict:
    """x_train/x_test (uint8 `[N, H, W, C]`), y_train/y_test (labels) and classes of `dataset`."""
    _check_name(dataset)
    return _digits_arrays() if dataset == "digits" else _cifar_arrays(dataset)


def dataset_info(name: str) -> DatasetInfo:
    """Number of classes, input shape and normalization of the data set `name`.

    CIFAR uses the standard per-channel statistics of the full training sets; digits uses the
    mean and std of its own training split (pixel values scaled to [0, 1] by dividing by 16).

    Args:
        name: one of "digits", "cifar10", "cifar100".

    Returns:
        A `DatasetInfo`.
    """
    _check_name(name)
    if name == "cifar10":
        return DatasetInfo(name, 10, 3, 32, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616),
                           CIFAR10_CLASSES)
    if name == "cifar100":
        return DatasetInfo(name, 100, 3, 32, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762),
                           CIFAR100_CLASSES)
    x_train = _digits_arrays()["x_train"] / PIXEL_MAX["digits"]
    return DatasetInfo(name, 10, 1, 8, (float(x_train.mean()),), (float(x_train.std()),),
                       tuple(str(c) for c in range(10)))


def stratified_subset(labels: np.ndarray, size, seed: int, *, argument: str = "size") -> np.ndarray:
    """Sorted indices of a class-balanced random subset of `size` items (all if `size` is None).

    Classes are taken round-robin in a random order, so class counts differ by at most one
    (unless a class runs out).

    Args:
        labels: class label of every item, `[N]`.
        size: number of items to keep, 1 ≤ size ≤ N, or None for all.
        seed: seed of the random choice.
        argument: the caller's name for `size`, used in the error message.
    """
    labels = np.asarray(labels)
    if size is None:
        return np.arange(len(labels))
    if not 1 <= size <= len(labels):
        raise ValueError(f"{argument} must be between 1 and {len(labels)} (the images available), "
                         f"got {size}; pass None to use all of them")
    order = np.random.default_rng(seed).permutation(len(labels))
    rank = _rank_within_class(labels, order)
    return np.sort(order[np.argsort(rank[order], kind="stable")[:size]])


def _rank_within_class(labels: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Each item's position within its class when the items are read in `order`: `[N]` ints."""
    rank = np.empty(len(labels), dtype=np.int64)
    for c in np.unique(labels):
        members = order[labels[order] == c]
        rank[members] = np.arange(len(members))
    return rank


def class_interleaved(labels) -> np.ndarray:
    """An order of `labels` that takes the first item of each class, then the second of each, ...

    The CIFAR-10 subset is stored sorted by class, so without it the first test batches would hold
    only airplanes: `evaluate_snn(..., max_batches=k)` reads a class-balanced prefix instead.
    """
    labels = np.asarray(labels)
    return np.lexsort((labels, _rank_within_class(labels, np.arange(len(labels)))))


def random_crop_flip(x: torch.Tensor, padding: int, flip: bool,
                     generator: torch.Generator) -> torch.Tensor:
    """Crop each image at a random offset from a reflect-padded copy, then flip half of them.

    Args:
        x: batch of images.
        padding: pixels of reflect padding on each side (0 for no crop).
        flip: whether to mirror a random half of the batch horizontally.
        generator: source of the random offsets and flips.

    Shapes: x: [B, C, H, W] → [B, C, H, W].
    """
    batch, _, height, width = x.shape
    if padding > 0:
        padded = F.pad(x, (padding,) * 4, mode="reflect")  # [B, C, H+2p, W+2p]
        dy, dx = torch.randint(0, 2 * padding + 1, (2, batch, 1), generator=generator)
        rows = (dy + torch.arange(height))[:, None, :, None]  # [B, 1, H, 1]
        cols = (dx + torch.arange(width))[:, None, None, :]  # [B, 1, 1, W]
        x = padded[torch.arange(batch)[:, None, None, None],
                   torch.arange(x.shape[1])[None, :, None, None], rows, cols]  # [B, C, H, W]
    if flip:
        mirror = torch.rand(batch, generator=generator) < 0.5
        x = torch.where(mirror[:, None, None, None], x.flip(3), x)
    return x


class TensorLoader:
    """Batches of in-memory tensors, optionally shuffled and augmented; re-iterable every epoch.

    A shuffled loader drops the last incomplete batch (a batch of one would break BatchNorm),
    unless the data set is smaller than one batch. Reproducible: two loaders built with the
    same seed yield the same batches, epoch after epoch.

    Args:
        x: images `[N, C, H, W]`; y: labels `[N]`.
        batch_size: images per batch.
        shuffle: draw a new random order each epoch (and drop the incomplete last batch).
        padding, flip: augmentation of each batch (`random_crop_flip`); 0 and False for none.
        seed: seed of the order and the augmentation.
        pin_memory: yield page-locked batches, which `.to("cuda", non_blocking=True)` copies while the GPU
            computes (None: when CUDA is available).
    """

    def __init__(self, x, y, *, batch_size, shuffle=False, padding=0, flip=False, seed=0, pin_memory=None):
        self.x, self.y = x, y
        self.pin_memory = torch.cuda.is_available() if pin_memory is None else pin_memory
        self.batch_size, self.shuffle, self.padding, self.flip = batch_size, shuffle, padding, flip
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        if self.shuffle:
            return max(1, len(self.x) // self.batch_size)
        return -(-len(self.x) // self.batch_size)

    def __iter__(self):
        n = len(self.x)
        order = torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n)
        for i in range(len(self)):
            index = order[i * self.batch_size:(i + 1) * self.batch_size]
            x = self.x[index]
            if self.padding or self.flip:
                x = random_crop_flip(x, self.padding, self.flip, self.generator)
            yield (x.pin_memory(), self.y[index].pin_memory()) if self.pin_memory else (x, self.y[index])


def _to_tensors(x: np.ndarray, y: np.ndarray, info: DatasetInfo):
    """uint8 `[N, H, W, C]` images → normalized float `[N, C, H, W]`; labels → int64 `[N]`."""
    x = torch.from_numpy(np.ascontiguousarray(x)).permute(0, 3, 1, 2).float()  # [N, C, H, W]
    x = x / PIXEL_MAX[info.name]
    mean, std = torch.tensor(info.mean)[:, None, None], torch.tensor(info.std)[:, None, None]
    return ((x - mean) / std).contiguous(), torch.from_numpy(np.asarray(y, dtype=np.int64))


def get_loaders(dataset: str, *, batch_size: int = 128, train_size=None, test_size=None,
                augment: bool = True, seed: int = 0):
    """Train and test loaders over a (class-balanced, seeded) subset of `dataset`, held in memory.

    Augmentation (train only): CIFAR, a random crop from a 4-pixel reflect padding and a random
    horizontal flip; digits, a random crop from a 1-pixel padding (no flip: digits are not
    mirror-symmetric). The test loader is neither shuffled nor augmented; its images come class by class in turn
    (`class_interleaved`), so that its first batches hold every class.

    Args:
        dataset: "digits", "cifar10" or "cifar100".
        batch_size: images per batch.
        train_size, test_size: number of images to keep (None: all available).
        augment: augment the training batches.
        seed: seed of the subsets, the shuffling and the augmentation.

    Shapes: each batch is (x: [B, C, H, W] float, y: [B] int64).

    Returns:
        (train_loader, test_loader), both `TensorLoader`s.
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    info = dataset_info(dataset)
    arrays = _raw_arrays(dataset)
    keep_train = stratified_subset(arrays["y_train"], train_size, seed, argument="train_size")
    keep_test = stratified_subset(arrays["y_test"], test_size, seed, argument="test_size")
    x_train, y_train = _to_tensors(arrays["x_train"][keep_train], arrays["y_train"][keep_train],
                                   info)
    keep_test = keep_test[class_interleaved(arrays["y_test"][keep_test])]  # any prefix is balanced
    x_test, y_test = _to_tensors(arrays["x_test"][keep_test], arrays["y_test"][keep_test], info)
    padding, flip = ((1, False) if dataset == "digits" else (4, True)) if augment else (0, False)
    train = TensorLoader(x_train, y_train, batch_size=batch_size, shuffle=True,
                         padding=padding, flip=flip, seed=seed)
    return train, TensorLoader(x_test, y_test, batch_size=batch_size)
