"""Training loops: the ANN before conversion (this part) and the SNN through time (BPTT).

The ANN part trains with SGD (Nesterov) or Adam and a OneCycle, cosine or step learning-rate schedule
(data parallel under torchrun: parallel.py), and caches trained networks as checkpoints named by a hash
of their configuration (`get_ann`), so that a notebook re-run with the same knobs loads the network
instead of training it again.

Taught in notebook 00 (training the ANN) and reused by every notebook after it.
"""
import hashlib
import json
import random
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from .activations import activation_factory
from .data import data_source, dataset_info, get_loaders
from .files import cache_dir, check_writable, write_atomic
from .models import build_model
from .parallel import distribute, is_main, model_device, reduce_sums, resolve_device, sync_buffers

SCHEDULES = ("onecycle", "cosine", "step")
OPTIMIZERS = ("sgd", "adam")
STEP_MILESTONES = (0.6, 0.8, 0.9)  # "step": lr ÷ 5 at these fractions of training (Datta, IIR-SNN)
ANN_EPOCHS = 35  # get_ann's default: about 80 % on the 10k CIFAR-10 subset in 10 minutes on 2 cores


# ---------------------------------------------------------------------------------------------
# ANN training
# ---------------------------------------------------------------------------------------------

def seed_everything(seed: int) -> None:
    """Seed Python's `random`, NumPy and PyTorch, so that a run can be repeated exactly."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@torch.no_grad()
def evaluate(model: nn.Module, loader) -> float:
    """Top-1 accuracy of `model` on `loader`, in %, in eval mode (the mode is restored after).

    Shapes: each batch is (x: [B, ...], y: [B]); model(x): [B, num_classes].
    """
    was_training = model.training
    model.eval()
    device = model_device(model)
    correct = total = 0
    for x, y in loader:
        correct += (model(x.to(device, non_blocking=True)).argmax(1) == y.to(device)).sum().item()
        total += len(y)
    model.train(was_training)
    return 100.0 * correct / total


def make_scheduler(optimizer, schedule: str, lr: float, total_steps: int, milestones=STEP_MILESTONES):
    """Per-batch lr schedule: OneCycle (25 % warm-up to `lr`), cosine decay from `lr`, or "step" (÷ 5 at
    each fraction of `milestones` of the steps, the papers' step decay)."""
    if schedule == "step":
        steps = [max(1, round(f * total_steps)) for f in milestones]
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=steps, gamma=0.2)
    if schedule == "onecycle":
        warm_up = 0.25 if total_steps != 4 else 0.3  # OneCycleLR divides by warm_up·steps − 1: 0 at 4 steps
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=total_steps,
                                                   pct_start=warm_up, cycle_momentum=False)
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)


def _optimizer(model: nn.Module, name: str, lr: float, weight_decay: float, momentum: float):
    """SGD with Nesterov momentum, or Adam (DIET-SNN's ANN); weight decay on every parameter."""
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}")
    if name == "adam":
        return torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    return torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, nesterov=True, weight_decay=weight_decay)


def _check_train_args(epochs, lr, schedule, train_loader) -> None:
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be an integer ≥ 1, got {epochs!r}")
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr!r}")
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; choose one of {', '.join(SCHEDULES)}")
    if len(train_loader) < 1:
        raise ValueError("train_loader yields no batch; pass a loader over at least one image")


def train_ann(model: nn.Module, train_loader, *, epochs: int, lr: float = 0.1,
              weight_decay: float = 5e-4, momentum: float = 0.9, schedule: str = "onecycle",
              label_smoothing: float = 0.1, test_loader=None, checkpoint=None, progress: bool = True,
              optimizer: str = "sgd", milestones=STEP_MILESTONES) -> dict:
    """Train `model` with SGD (Nesterov) or Adam on cross-entropy with label smoothing; lr per batch.

    Weight decay applies to every parameter, trainable activation bounds λ_clip included (as QCFS
    does: it keeps λ_clip from growing). Training runs in channels_last memory format, which makes the
    CPU's convolutions about 12 % faster (bench: 196 vs 223 ms per batch of 128 on 2 cores); the
    model is returned in the default format, in train mode.

    Args:
        model: the network; its parameters are updated in place.
        train_loader: yields (x, y) batches; re-iterated every epoch; its `generator` (if any) is checkpointed.
        epochs: passes over `train_loader` (≥ 1).
        lr: peak learning rate (OneCycle) or initial one (cosine).
        weight_decay, momentum: of SGD.
        schedule: "onecycle" (25 % warm-up, then cosine annealing), "cosine", or "step" (÷ 5 at 60/80/90 %).
        label_smoothing: of the cross-entropy loss.
        test_loader: if given, test accuracy is measured after every epoch.
        checkpoint: a file path, or None. The whole state is saved there after every epoch
            (`save_training`), and a call that finds the file resumes after its last finished epoch,
            ending exactly as an uninterrupted run would.
        progress: show a tqdm bar over epochs with the last loss and accuracies (rank 0 only).
        optimizer: "sgd" (Nesterov, `momentum`) or "adam". milestones: the fractions of training where
            the "step" schedule divides lr by 5.

    Under torchrun (`parallel`), the loop runs in every process on its `parallel.ShardedLoader`, through
    DistributedDataParallel; losses and accuracies are summed over ranks, rank 0 alone writes `checkpoint`.

    Returns:
        History, one entry per epoch: {"loss": mean training loss, "train_acc": %, "test_acc": %
        (empty without test_loader), "seconds": training time of the epoch (without testing)}.
    """
    _check_train_args(epochs, lr, schedule, train_loader)
    optimizer_name, optimizer = optimizer, _optimizer(model, optimizer, lr, weight_decay, momentum)
    scheduler = make_scheduler(optimizer, schedule, lr, epochs * len(train_loader), milestones)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=label_smoothing)
    history = {"loss": [], "train_acc": [], "test_acc": [], "seconds": []}
    config = {"epochs": epochs, "lr": lr, "weight_decay": weight_decay, "momentum": momentum,
              "schedule": schedule, "label_smoothing": label_smoothing, "batches": len(train_loader)}
    if optimizer_name != "sgd":
        config["optimizer"] = optimizer_name
    if schedule == "step":
        config["milestones"] = list(milestones)
    if checkpoint is not None:
        history = resume_training(checkpoint, model, optimizer, scheduler, train_loader, config, history)
    done = len(history["loss"])
    bar = tqdm(range(done, epochs), initial=done, total=epochs, desc="train", unit="epoch",
               disable=not (progress and is_main()))
    model.to(memory_format=torch.channels_last)  # only 4-d weights change layout
    trained = distribute(model)  # DistributedDataParallel under torchrun, else `model`
    for _ in bar:
        start = time.perf_counter()
        loss, accuracy = _train_epoch(trained, train_loader, optimizer, scheduler, loss_fn)
        sync_buffers(model)  # BN statistics: rank 0's everywhere
        history["seconds"].append(time.perf_counter() - start)
        history["loss"].append(loss)
        history["train_acc"].append(accuracy)
        if test_loader is not None:
            history["test_acc"].append(evaluate(model, test_loader))
        if checkpoint is not None:
            save_training(checkpoint, model, optimizer, scheduler, train_loader, config, history)
        bar.set_postfix({key: round(values[-1], 3) for key, values in history.items()
                         if key != "seconds" and values})
    model.to(memory_format=torch.contiguous_format)
    return history


def _train_epoch(model, loader, optimizer, scheduler, loss_fn) -> tuple:
    """One pass over `loader` in channels_last, lr stepped per batch; returns (mean loss, training accuracy %)."""
    model.train()
    device = model_device(model)
    loss_sum, correct, seen = 0.0, 0, 0
    for x, y in loader:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        if x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        logits = model(x)  # [B, num_classes]
        loss = loss_fn(logits, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        loss_sum += loss.item() * len(y)
        correct += (logits.argmax(1) == y).sum().item()
        seen += len(y)
    loss_sum, correct, seen = reduce_sums(loss_sum, correct, seen)  # over all ranks under torchrun
    return loss_sum / seen, 100.0 * correct / seen


def save_checkpoint(path, model: nn.Module, meta: dict) -> None:
    """Save the state dict of `model` and `meta` to `path`, atomically (`files.write_atomic`).

    `meta` may hold only what `torch.load(weights_only=True)` reads back: numbers, strings,
    None, tensors, and lists/dicts of those. Under torchrun only rank 0 writes (every rank holds
    the same weights).

    Raises: OSError naming `path` if it cannot be written.
    """
    if is_main():
        write_atomic(path, lambda f: torch.save({"state_dict": model.state_dict(), "meta": meta}, f))


def save_training(path, model: nn.Module, optimizer, scheduler, loader, config: dict, history: dict) -> None:
    """Checkpoint everything a resumed run needs to continue exactly (`resume_training` reads it back).

    Weights, optimizer and lr-schedule state, PyTorch's global RNG (dropout), the loader's
    `generator` (order and augmentation, if the loader has one) or its `state_dict()` (a
    `parallel.ShardedLoader`), the run's `config` and `history`.
    """
    generator = getattr(loader, "generator", None)
    save_checkpoint(path, model, {"config": config, "history": history, "optimizer": optimizer.state_dict(),
                                  "scheduler": scheduler.state_dict(), "rng": torch.get_rng_state(),
                                  "loader_rng": None if generator is None else generator.get_state(),
                                  "loader_state": loader.state_dict() if hasattr(loader, "state_dict") else None})


def resume_training(path, model: nn.Module, optimizer, scheduler, loader, config: dict, history: dict) -> dict:
    """Prepare a run that checkpoints to `path`: the history to continue from.

    If `path` exists (`save_training`), loads it into model, optimizer, scheduler and the RNGs and
    returns its history; else returns `history` (the empty one of a new run). If epochs are left to
    train (fewer than `config["epochs"]`), checks now that `path`'s folder is writable
    (`files.check_writable`), before any training; a finished run only reads.

    Raises: ValueError naming `path` if it was saved by a run with another `config`.
    """
    if Path(path).exists():
        history = _load_training(path, model, optimizer, scheduler, loader, config)
    if len(history["loss"]) < config["epochs"]:
        check_writable(Path(path).parent)
    return history


def _load_training(path, model: nn.Module, optimizer, scheduler, loader, config: dict) -> dict:
    """Load a `save_training` checkpoint of a run with this `config` into the run; returns its history."""
    meta = load_checkpoint(path, model)
    if meta.get("config") != config:
        raise ValueError(f"checkpoint {path} was saved by a run with {meta.get('config')}, not {config}: "
                         "pass another checkpoint path or delete it")
    optimizer.load_state_dict(meta["optimizer"])
    scheduler.load_state_dict(meta["scheduler"])
    torch.set_rng_state(meta["rng"])
    generator = getattr(loader, "generator", None)
    if generator is not None and meta["loader_rng"] is not None:
        generator.set_state(meta["loader_rng"])
    if hasattr(loader, "load_state_dict") and meta.get("loader_state") is not None:
        loader.load_state_dict(meta["loader_state"])
    return meta["history"]


def load_checkpoint(path, model: nn.Module) -> dict:
    """Load the weights saved at `path` into `model` and return the checkpoint's meta dict.

    Raises:
        RuntimeError naming `path` if the file cannot be read or does not fit `model`.
    """
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        state_dict, meta = checkpoint["state_dict"], checkpoint["meta"]
    except Exception as err:
        raise RuntimeError(f"could not read checkpoint {path} ({type(err).__name__}); delete it "
                           "so that the network is trained again") from err
    try:
        model.load_state_dict(state_dict)
    except RuntimeError as err:
        raise RuntimeError(f"checkpoint {path} does not fit this model; build the model it was "
                           f"saved from, or delete the file. {err}") from err
    return meta


def get_ann(*, dataset: str = "cifar10", model: str = "vgg-mini", activation: str = "relu",
            levels: int = 4, epochs: int = ANN_EPOCHS, lr: float = 0.2, train_size=None, test_size=None,
            batch_size: int = 128, seed: int = 0, progress: bool = True, device=None):
    """A trained ANN: loaded from the checkpoint cache when its configuration was trained before,
    else trained (`train_ann`, OneCycle), tested and saved.

    Checkpoints live in `cache_dir()/checkpoints/<model>-<dataset>-<activation>-<hash>.pt`, the
    hash covering the whole configuration, including where the data came from (`data_source`).
    The defaults reach about 80 % on the 10k CIFAR-10 subset in about 10 minutes on 2 CPU cores.
    Training first checks that the folder is writable, then saves its state after every epoch to
    `<name>.partial.pt`: a call after an interruption resumes there and ends with the weights an
    uninterrupted run would have; the partial file is removed once the checkpoint is written.

    Args:
        dataset: "digits", "cifar10" or "cifar100".
        model: a name of `models.MODELS`.
        activation: "relu", "clip" (ClipReLU, trainable λ), "qcfs" (QCFS with `levels`) or "cat" (CAT with
            window K = `levels`).
        levels: quantization levels L of QCFS, or the window K of CAT (ignored otherwise).
        epochs, lr, batch_size: of the training (`lr` is the OneCycle peak).
        train_size, test_size, seed: of `data.get_loaders`; `seed` also seeds the initialization.
        progress: show a progress bar while training.
        device: where the model is trained and returned (None: CUDA when available, else the CPU;
            `parallel.resolve_device`). Not part of the checkpoint's hash: a net trained on a GPU loads on a CPU.

    Returns:
        (model in eval mode, on `device`, info) with info = {"config", "test_accuracy" (%), "train_seconds",
        "history" (see `train_ann`), "checkpoint" (path), "cached" (True if loaded)}.
    """
    config = dict(dataset=dataset, source=data_source(dataset), model=model, activation=activation,
                  epochs=epochs, lr=lr, train_size=train_size, test_size=test_size,
                  batch_size=batch_size, seed=seed, schedule="onecycle", weight_decay=5e-4,
                  label_smoothing=0.1, augment=True)
    kwargs = {"levels": levels} if activation in ("qcfs", "cat") else {}
    config.update(kwargs)
    digest = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:10]
    path = cache_dir() / "checkpoints" / f"{model}-{dataset}-{activation}-{digest}.pt"
    data_info = dataset_info(dataset)
    seed_everything(seed)
    net = build_model(model, num_classes=data_info.num_classes, in_channels=data_info.in_channels,
                      image_size=data_info.image_size,
                      activation_layer=activation_factory(activation, **kwargs)).to(resolve_device(device))
    cached = path.exists()
    if cached:
        meta = load_checkpoint(path, net)
    else:
        partial = path.with_suffix(".partial.pt")  # saved after every epoch: an interrupted run resumes
        train_loader, test_loader = get_loaders(dataset, batch_size=batch_size, seed=seed,
                                                train_size=train_size, test_size=test_size)
        history = train_ann(net, train_loader, epochs=epochs, lr=lr, checkpoint=partial, progress=progress)
        meta = dict(config=config, test_accuracy=evaluate(net, test_loader), history=history,
                    train_seconds=sum(history["seconds"]), torch_version=str(torch.__version__))
        save_checkpoint(path, net, meta)
        partial.unlink()
    info = dict(config=config, test_accuracy=meta["test_accuracy"], history=meta["history"],
                train_seconds=meta["train_seconds"], checkpoint=str(path), cached=cached)
    return net.eval(), info


class Prepared(NamedTuple):
    """What a conversion experiment starts from (`prepare`); unpack it or read it by name."""

    ann: nn.Module  # the trained ANN, eval mode, on the device asked for
    info: dict  # `get_ann`'s info: test accuracy on all test images, history, checkpoint path
    calibration: torch.Tensor  # [N_cal, C, H, W] training images that set the thresholds, on the ANN's device
    test_loader: object  # a `data.TensorLoader` over the test images, classes interleaved


def prepare(*, dataset: str = "cifar10", model: str = "vgg-mini", activation: str = "relu", levels: int = 4,
            epochs: int = ANN_EPOCHS, train_size=None, calibration: int = 1000, test_size=None, batch_size: int = 100,
            seed: int = 0, progress: bool = True, device=None) -> Prepared:
    """The setup of every notebook, `snnlab compare` and the benchmarks: ANN, calibration images, test loader.

    The ANN comes from `get_ann` (cached); the calibration images are the first `calibration` of a
    seeded shuffled pass over the ANN's own training images (no augmentation); the test loader holds
    `test_size` test images (None: all), class-balanced and interleaved, in batches of `batch_size`.

    Args: as `get_ann` (dataset, model, activation, levels, epochs, train_size, seed, progress, device), and
        calibration: how many training images set the thresholds (≤ the training images).
        test_size, batch_size: of the test loader.

    Returns: `Prepared(ann, info, calibration, test_loader)`. Notebooks 01–05.
    """
    valid = not isinstance(calibration, bool) and isinstance(calibration, int) and calibration >= 1
    train, _ = get_loaders(dataset, batch_size=calibration if valid else 1, train_size=train_size, augment=False,
                           seed=seed)
    if not valid or calibration > len(train.x):  # checked before any training
        raise ValueError(f"calibration must be an integer from 1 to {len(train.x)} (the training images), "
                         f"got {calibration!r}")
    ann, info = get_ann(dataset=dataset, model=model, activation=activation, levels=levels, epochs=epochs,
                        train_size=train_size, seed=seed, progress=progress, device=device)
    images = next(iter(train))[0].to(model_device(ann))  # [N_cal, C, H, W]
    _, test_loader = get_loaders(dataset, batch_size=batch_size, test_size=test_size, augment=False, seed=seed)
    return Prepared(ann, info, images, test_loader)
