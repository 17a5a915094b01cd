"""Training an SNN through time (BPTT) with surrogate gradients: DIET-SNN, IIR-SNN, Datta & Beerel.

The image is fed unchanged at every step (direct encoding); the output layer integrates without
spiking, and the loss is the cross-entropy of its potential accumulated over the T steps:

    U_out = Σ_{t=1..T} Y_out[t]               loss = CE(U_out, label)
    ∂S[t]/∂H[t] ≈ s(H[t]/θ − 1)/θ             s = triangle (γ = 0.3) or boxcar surrogate (neurons.py)
    after every optimizer step:  λ ← min(λ, 1),  θ ← max(θ, θ_min)

θ (threshold) and λ (leak), one scalar per layer, are trained with the weights; the reset uses a
detached spike, as in the official code. Three recipes, all starting from a converted ANN:
- DIET-SNN: spikes carry 1 (`fold_unit_spikes`), θ ← scale·θ (`diet_init`), then BPTT at T = 5.
- IIR-SNN: then re-train at T = 4, 3, 2, 1, each stage from the previous one's W, θ, λ (`iir_schedule`);
  at T = 1 the SNN is a binary-activation network (`binary_network`).
- Datta & Beerel: `convert(clip_ann, images, threshold="datta", timesteps=2)`, then BPTT at T = 2 with
  the boxcar surrogate and trainable θ (`make_trainable(snn, surrogate="boxcar", leak=False)`).
Reference: methods digest §0, §1, §3, §4. Taught in notebooks 04 (DIET-SNN) and 05 (IIR-SNN, Datta).
"""
import copy
import hashlib
import json
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .convert import convert
from .energy import energy_report
from .files import cache_dir
from .neurons import (SURROGATES, Neuron, SharedDropout, TimeBatched, check_timesteps,
                      learn_threshold_and_leak, neurons, reset)
from .parallel import distribute, is_main, model_device, reduce_sums
from .simulate import Probe, encode, evaluate_snn, simulate
from .train import make_scheduler, resume_training, save_training

MIN_THRESHOLD = 1e-3  # θ is kept above this: the surrogate's z = H/θ − 1 divides by θ
IIR_INIT = {"threshold": "p90", "scale": 1.0}  # IIR-SNN's own T = 5 start: `diet_init(ann, images, **IIR_INIT)`
WEIGHT_LAYERS = (nn.Conv2d, nn.Linear)


# ---------------------------------------------------------------- 1. hybrid initialization
def _chain(module: nn.Module, prefix: str = ""):
    """The layers of a sequential SNN in the order they run; refuse a network that branches."""
    for name, child in module.named_children():
        path = f"{prefix}{name}"
        if isinstance(child, nn.Sequential):
            yield from _chain(child, f"{path}.")
        elif isinstance(child, (Neuron, TimeBatched, SharedDropout, nn.Identity)):
            yield path, child
        else:
            raise ValueError(f"fold_unit_spikes needs a sequential (VGG-style) SNN; layer '{path}' is a "
                             f"{type(child).__name__}: keep spikes carrying θ for this network")


@torch.no_grad()
def fold_unit_spikes(snn: nn.Module) -> nn.Module:
    """Make every spike carry 1 (DIET-SNN's unit spikes) without changing what the SNN computes.

        W_l·Y_{l−1}[t] = W_l·(A_{l−1}·S_{l−1}[t]) = (W_l·A_{l−1})·S_{l−1}[t]
        ⇒  W_l ← W_l·A_{l−1},  A_{l−1} ← 1,  θ and biases unchanged

    Symbols: S = spikes (0/1), A = what a spike carries (`spike_value`, θ when None), W_l = the weight
    of the next Conv2d/Linear. Pooling, flatten and dropout between them are linear, so every
    potential, spike and output stays the same (tests/test_train_snn.py: identical outputs).

    Args:
        snn: a converted sequential SNN with one θ (and A) per layer; changed in place.

    Returns: `snn`. Raises ValueError for a branching network (ResNet) or per-channel θ.
    Reference: methods digest §0 (A = 1 in DIET/IIR-SNN) and §8.4; notebook 04.
    """
    carried, last = None, None  # A of the last neuron, waiting for the next weight layer
    for path, layer in _chain(snn):
        if isinstance(layer, Neuron):
            value = layer.threshold if layer.spike_value is None else layer.spike_value
            if value.numel() != 1 or carried is not None:
                raise ValueError(f"fold_unit_spikes: neuron layer '{path}' needs one scalar θ and a "
                                 "Conv2d/Linear layer after the previous neuron layer")
            carried, last = value.detach().clone(), path
            layer.spike_value = torch.ones_like(carried)
        elif isinstance(layer, TimeBatched) and isinstance(layer.layer, WEIGHT_LAYERS) and carried is not None:
            layer.layer.weight.mul_(carried)
            carried = None
    if carried is not None:
        raise ValueError(f"fold_unit_spikes: no Conv2d/Linear layer follows neuron layer '{last}'")
    return snn


def make_trainable(snn: nn.Module, *, surrogate: str = "triangle", leak: bool = True) -> nn.Module:
    """Prepare a converted SNN for BPTT: pick each neuron's surrogate gradient, make θ (and λ) parameters.

    Args:
        snn: a converted SNN (`convert.convert`); changed in place.
        surrogate: "triangle" (γ = 0.3, DIET/IIR-SNN) or "boxcar" (Datta & Beerel).
        leak: also train λ (DIET/IIR-SNN); False keeps it fixed (Datta's IF neurons).

    Returns: `snn`.
    """
    if surrogate not in SURROGATES:
        raise ValueError(f"surrogate must be one of {sorted(SURROGATES)}, got {surrogate!r}")
    if not neurons(snn):
        raise ValueError("the network has no Neuron layer: convert the ANN first (convert.convert)")
    for m in neurons(snn).values():
        m.surrogate = surrogate
    return learn_threshold_and_leak(snn, threshold=True, leak=leak)


def diet_init(ann: nn.Module, images: torch.Tensor, *, scale: float, threshold="p99.7",
              timesteps: int = 5, surrogate: str = "triangle") -> nn.Module:
    """DIET-SNN's hybrid initialization: convert, fold to unit spikes, θ ← scale·θ, make θ, λ trainable.

        θ_l = scale·P(z_l)     W_l ← W_l·P(z_{l−1})     λ_l = 1     V[0] = 0

    Symbols: P(z_l) = the recipe's threshold of layer l (default the 99.7th percentile of its ANN pre-activations
    z_l; IIR-SNN's own start, `**IIR_INIT`, is the 90th at scale 1.0; both codes take it over a spiking simulation),
    `scale` = DIET-SNN's scaling factor (0.2 at T = 5 for its larger estimate; notebook 04 measures ours).

    Args:
        ann: the trained ANN (not modified). images: calibration images [N, C, H, W].
        scale: the factor applied to every θ after the fold (> 0).
        threshold: a conversion recipe (see `convert.RECIPES`).
        timesteps: the T that recipes modelling the neuron ("mse", "datta") fit for.
        surrogate: see `make_trainable`.

    Returns: the SNN (unit spikes, trainable θ and λ), ready for `train_snn`.
    Reference: Rathi & Roy, DIET-SNN (methods digest §3); notebook 04.
    """
    if not scale > 0:
        raise ValueError(f"scale must be > 0 (DIET-SNN uses 0.2–0.3), got {scale!r}")
    snn = fold_unit_spikes(convert(ann, images, threshold=threshold, timesteps=timesteps, v_init=0.0))
    with torch.no_grad():
        for m in neurons(snn).values():
            m.threshold.mul_(scale)
    return make_trainable(snn, surrogate=surrogate)


# ---------------------------------------------------------------- 2. BPTT
@torch.no_grad()
def clamp_threshold_and_leak(snn: nn.Module) -> None:
    """λ ← min(λ, 1) and θ ← max(θ, θ_min) in every neuron layer (DIET-SNN clamps λ after each step)."""
    for m in neurons(snn).values():
        m.leak.clamp_(max=1.0)
        m.threshold.clamp_(min=MIN_THRESHOLD)


def _train_epoch(snn, loader, optimizer, scheduler, timesteps: int, progress: bool) -> tuple:
    """One pass over `loader`; returns (mean loss, training accuracy in %)."""
    snn.train()
    device = model_device(snn)
    loss_sum, correct, seen = 0.0, 0, 0
    for x, labels in tqdm(loader, desc=f"T={timesteps}", unit="batch", leave=False, disable=not progress):
        x, labels = x.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        reset(snn)
        potential = snn(encode(x, timesteps)).sum(0)  # [T, B, classes] → U_out: [B, classes]
        loss = F.cross_entropy(potential, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        clamp_threshold_and_leak(snn)
        loss_sum += loss.item() * len(labels)
        correct += (potential.argmax(1) == labels).sum().item()
        seen += len(labels)
    reset(snn)  # drop the last graph
    loss_sum, correct, seen = reduce_sums(loss_sum, correct, seen)  # over all ranks under torchrun
    return loss_sum / seen, 100.0 * correct / seen


def _log_epoch(history: dict, snn, loss: float, accuracy: float, seconds: float, test_loader, timesteps):
    """Append one epoch to `history`: loss, accuracies, seconds, θ and λ per neuron layer."""
    for key, value in (("loss", loss), ("train_acc", accuracy), ("seconds", seconds)):
        history[key].append(value)
    history["threshold"].append([m.threshold.tolist() for m in neurons(snn).values()])
    history["leak"].append([m.leak.tolist() for m in neurons(snn).values()])
    if test_loader is not None:
        history["test_acc"].append(evaluate_snn(snn.eval(), test_loader, timesteps, progress=False)[-1].item())


def _adam(snn: nn.Module, lr: float, neuron_lr, weight_decay: float) -> torch.optim.Adam:
    """Adam (amsgrad): the weights at `lr`, each layer's θ and λ at `neuron_lr` (`lr` when None)."""
    own = [p for m in neurons(snn).values() for p in (m.threshold, m.leak) if isinstance(p, nn.Parameter)]
    rest = [p for p in snn.parameters() if all(p is not q for q in own)]
    groups = [{"params": rest}] + ([{"params": own, "lr": neuron_lr or lr}] if own else [])
    return torch.optim.Adam(groups, lr=lr, weight_decay=weight_decay, amsgrad=True)


def train_snn(snn: nn.Module, train_loader, *, timesteps: int, epochs: int, lr: float = 1e-4, neuron_lr=None,
              weight_decay: float = 0.0, cache: str | None = None, checkpoint=None, test_loader=None,
              progress: bool = True, schedule: str = "cosine") -> dict:
    """Train an SNN by backpropagation through time: loss = CE(Σ_t Y_out[t], label).

    Adam (amsgrad), lr decayed per batch (`schedule`: "cosine", or "step", ÷ 5 at 60/80/90 %); λ ≤ 1 and
    θ ≥ θ_min after every step. Under torchrun it runs through DistributedDataParallel as `train.train_ann` does.
    With `cache` (or an explicit `checkpoint` file), its folder is checked writable before training, the
    whole state is saved atomically after every epoch (`train.save_training`), and a call that finds the
    file resumes after its last finished epoch (a finished run just loads: the file is a cache).

    Args:
        snn: from `diet_init`, or `convert` + `make_trainable`; trained in place, left in eval mode.
        train_loader: yields (images [B, C, H, W], labels [B]); its `generator` (if any) is checkpointed.
        timesteps: T, the steps per image. epochs: passes over `train_loader`.
        lr: Adam's initial lr of the weights (papers: 1e-4, 200–500 epochs; 1e-3 did 3–5 pt better in 2–14).
        neuron_lr: that of θ and λ (None: `lr`, as in the papers). Adam moves every parameter by about
            its lr per step, whatever its size: θ (≈ 1) is ≈ 30× larger than a weight, so in a few epochs
            it needs a larger lr to move at all (notebook 04 measures it).
        weight_decay: of Adam (0 in the papers).
        cache: a name, e.g. "diet": keep the run in `cache_dir()/checkpoints/snn-<name>-<hash>.pt`, the
            hash covering the start network, the training data and these arguments (`cache_path`).
        checkpoint: an explicit file path instead (None, and no `cache`: no checkpoint).
        test_loader: if given, the test accuracy at T is measured after every epoch (the cache key counts its images).
        progress: show tqdm bars over epochs and batches.

    Returns: history, one entry per epoch: "loss", "train_acc", "test_acc" (%, empty without
    test_loader), "seconds" (training only), "threshold" and "leak" (per neuron layer).
    Reference: DIET-SNN, IIR-SNN (methods digest §3, §4); notebook 04.
    """
    check_timesteps(timesteps)
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be an integer ≥ 1, got {epochs!r}")
    if not lr > 0 or not (neuron_lr is None or neuron_lr > 0):
        raise ValueError(f"lr and neuron_lr must be > 0 (neuron_lr may be None), got {lr!r} and {neuron_lr!r}")
    if schedule not in ("cosine", "step"):
        raise ValueError(f"schedule must be 'cosine' or 'step', got {schedule!r}")
    config = {"timesteps": timesteps, "epochs": epochs, "lr": lr, "neuron_lr": neuron_lr, "weight_decay": weight_decay,
              "batches": len(train_loader), **({} if schedule == "cosine" else {"schedule": schedule}),
              **({} if test_loader is None else {"test_images": len(getattr(test_loader, "y", test_loader))})}
    if cache is not None:
        checkpoint = cache_path(cache, snn, train_loader, config)
    optimizer = _adam(snn, lr, neuron_lr, weight_decay)
    scheduler = make_scheduler(optimizer, schedule, lr, epochs * len(train_loader))
    history = {key: [] for key in ("loss", "train_acc", "test_acc", "seconds", "threshold", "leak")}
    if checkpoint is not None:  # checks the folder is writable; resumes a run it finds there
        history = resume_training(checkpoint, snn, optimizer, scheduler, train_loader, config, history)
    done = len(history["loss"])
    bar = tqdm(range(done, epochs), initial=done, total=epochs, desc=f"BPTT T={timesteps}", unit="epoch",
               disable=not (progress and is_main()))
    trained = distribute(reset(snn))  # DistributedDataParallel under torchrun, else `snn`
    for _ in bar:
        start = time.perf_counter()
        loss, accuracy = _train_epoch(trained, train_loader, optimizer, scheduler, timesteps, progress and is_main())
        _log_epoch(history, snn, loss, accuracy, time.perf_counter() - start, test_loader, timesteps)
        if checkpoint is not None:
            save_training(checkpoint, snn, optimizer, scheduler, train_loader, config, history)
        bar.set_postfix(loss=round(loss, 3), test_acc=history["test_acc"][-1] if test_loader is not None else None)
    snn.eval()
    return history


def cache_path(name: str, snn: nn.Module, loader, config: dict) -> Path:
    """Where `train_snn(..., cache=name)` keeps its run: `cache_dir()/checkpoints/snn-<name>-<hash>.pt`.

    The hash covers all that decides the trained network: the start (every parameter and buffer of
    `snn`, and its layers as printed, reset and surrogate included), the training data (the loader's
    images, labels, batch size, shuffling, augmentation and the state of its random generator) and
    `config`, the run's own arguments (T, epochs, learning rates, weight decay). Hashing reads every
    image once (about 0.3 s for 10,000 CIFAR images).

    Raises: ValueError unless `loader` is a `data.TensorLoader` (other loaders cannot be fingerprinted:
    pass `checkpoint=<file>` to `train_snn` instead).
    """
    if not all(hasattr(loader, a) for a in ("x", "y", "batch_size", "shuffle", "padding", "flip", "generator")):
        raise ValueError(f"cache={name!r} fingerprints the training data of a data.TensorLoader, got a "
                         f"{type(loader).__name__}: pass checkpoint=<file path> instead")
    described = {"config": config, "net": repr(snn), "batch_size": loader.batch_size, "shuffle": loader.shuffle,
                 "padding": loader.padding, "flip": loader.flip,
                 "neurons": {n: [m.reset, m.surrogate] for n, m in neurons(snn).items()}}
    digest = hashlib.sha256(json.dumps(described, sort_keys=True, default=str).encode())
    tensors = [*snn.state_dict().items(), ("x", loader.x), ("y", loader.y), ("rng", loader.generator.get_state())]
    for key, tensor in tensors:
        digest.update(key.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return cache_dir() / "checkpoints" / f"snn-{name}-{digest.hexdigest()[:10]}.pt"


# ---------------------------------------------------------------- 3. IIR-SNN: fewer and fewer steps
def iir_schedule(snn: nn.Module, train_loader, *, timesteps=(4, 3, 2, 1), epochs: int, lr: float = 1e-4,
                 neuron_lr=None, cache: str | None = None, test_loader=None, progress: bool = True,
                 schedule: str = "cosine", checkpoint=None) -> dict:
    """IIR-SNN: re-train at each T in turn, each stage starting from the previous stage's W, θ and λ.

        (W, θ, λ)_k = BPTT at T_k for `epochs`, starting from (W, θ, λ)_{k−1}  (θ is not re-estimated)

    Args:
        snn: the trained start (DIET-SNN at T = 5); not modified: every stage trains a copy.
        timesteps: the T of each stage, in order (IIR-SNN: 4, 3, 2, 1 after the T = 5 start).
        epochs, lr, neuron_lr, test_loader, progress, schedule: of each stage (see `train_snn`).
        cache: a name, e.g. "iir", to keep each stage as `train_snn(..., cache=name)` does (each stage's
            file is named by its own start, the stage before it), or None (no caching).
        checkpoint: or a path prefix: stage T is kept at "<checkpoint>-T<T>.pt" (resumable; under torchrun).

    Returns: {T: (snn, history)} in stage order.
    Reference: Chowdhury, Rathi & Roy, "One Timestep is All You Need" (methods digest §4); notebook 05.
    """
    for t in timesteps:
        check_timesteps(t)
    stages = {}
    for t in timesteps:
        snn = copy.deepcopy(snn)
        history = train_snn(snn, train_loader, timesteps=t, epochs=epochs, lr=lr, neuron_lr=neuron_lr, cache=cache,
                            checkpoint=None if checkpoint is None else f"{checkpoint}-T{t}.pt",
                            test_loader=test_loader, progress=progress, schedule=schedule)
        stages[t] = (snn, history)
    return stages


class BinaryActivation(nn.Module):
    """What a spiking neuron computes at T = 1: a = A·Θ(z − θ·(1 − λ·v_init)), a step function.

    With one step, H[1] = λ·V[0] + X[1] and V[0] = v_init·θ, so the neuron fires iff
    X[1] ≥ θ·(1 − λ·v_init); it emits A (`value`) or 0. Built by `binary_network`.

    Shapes: any; a has the shape of z.
    """

    def __init__(self, neuron: Neuron):
        super().__init__()
        value = neuron.threshold if neuron.spike_value is None else neuron.spike_value
        self.register_buffer("threshold", (neuron.threshold * (1 - neuron.leak * neuron.v_init)).detach().clone())
        self.register_buffer("value", value.detach().clone())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return (z >= self.threshold).to(z.dtype) * self.value


def binary_network(snn: nn.Module) -> nn.Module:
    """The ANN that computes exactly what `snn` computes at T = 1 (IIR-SNN's one-timestep network).

    Each `Neuron` becomes a `BinaryActivation`, each `TimeBatched` layer its plain layer, dropout
    the identity. Input [B, C, H, W] (no time axis) → output [B, classes] = the SNN's output at T = 1.

    Returns: a new network in eval mode (`snn` is not modified). Notebook 05.
    """
    net = copy.deepcopy(snn).eval()
    _to_binary(net)
    return net


def _to_binary(module: nn.Module) -> None:
    for name, child in module.named_children():
        if isinstance(child, Neuron):
            setattr(module, name, BinaryActivation(child))
        elif isinstance(child, TimeBatched):
            setattr(module, name, child.layer)
        elif isinstance(child, SharedDropout):
            setattr(module, name, nn.Identity())
        else:
            _to_binary(child)


# ---------------------------------------------------------------- 4. scoring
def score(snn: nn.Module, loader, timesteps: int, max_batches: int | None = None) -> dict:
    """Accuracy, spikes per neuron and compute energy of an SNN run for T steps on `loader`.

    Returns: {"timesteps": T, "accuracy": % after T, "curve": % after each t ≤ T, "spike_rate": {layer: spikes
    per neuron}, "energy": `energy.EnergyReport` (beside the ANN), "sizes": `Probe.sizes()`, "event_rate":
    {layer: r_{l−1}} (for energy.py's other estimators)}. Notebooks 04–05 and 07.
    """
    with Probe(snn) as probe:
        curve = evaluate_snn(snn, loader, timesteps, max_batches=max_batches, progress=False)  # [T]
    return {"timesteps": timesteps, "accuracy": curve[-1].item(), "curve": curve.tolist(),
            "spike_rate": probe.spike_rate(), "energy": energy_report(probe.macs, probe.event_rate(), timesteps),
            "sizes": probe.sizes(), "event_rate": probe.event_rate()}


def score_stages(stages: dict, loader, max_batches: int | None = None) -> dict:
    """`score` of every stage of `iir_schedule`'s result, each at its own T: {T: score}."""
    return {t: score(snn, loader, t, max_batches) for t, (snn, _) in stages.items()}


@torch.no_grad()
def per_image_correct(snn: nn.Module, loader, timesteps: int) -> torch.Tensor:
    """Per image of `loader` (in its order): True where the SNN's answer after T steps is right. [N] bool."""
    return torch.cat([simulate(snn, x, timesteps)[-1].argmax(-1) == labels for x, labels in loader])


def paired_test(a: torch.Tensor, b: torch.Tensor) -> dict:
    """Is network a more accurate than network b on these images, or is the difference chance? (exact McNemar)

    Only the images where exactly one of them is right count. If both were equally accurate, each of
    those n = a_only + b_only images would be a fair coin, so the two-sided p-value is
        p = min(1, 2·Σ_{i ≤ k} C(n, i) / 2^n),   k = min(a_only, b_only).
    On 2,000 test images, a 0.5-pt gap (80 against 70 images) gives p ≈ 0.46: no evidence of a difference.

    Args: a, b: per-image correctness of the two networks on the same images (`per_image_correct`).

    Returns: {"images", "a_only", "b_only", "difference" (a − b, in points), "p_value"}. Notebook 05.
    """
    if a.shape != b.shape or a.dim() != 1:
        raise ValueError(f"paired_test needs two [N] tensors over the same images, got {tuple(a.shape)} and "
                         f"{tuple(b.shape)}")
    a, b = a.bool(), b.bool()
    a_only, b_only = int((a & ~b).sum()), int((~a & b).sum())
    n, k = a_only + b_only, min(a_only, b_only)
    p = min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n) if n else 1.0
    return {"images": len(a), "a_only": a_only, "b_only": b_only,
            "difference": 100.0 * (a_only - b_only) / len(a), "p_value": p}
