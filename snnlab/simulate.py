"""Run an SNN for T steps, time-batched, and read it out at every step t ≤ T from one pass.

The network's output layer integrates without spiking; its mean over steps 1..t is the SNN's
answer after t steps. Because every neuron is causal, the prefix t of a T-step run is exactly a
t-step run, so one simulation to T_max gives the whole accuracy-vs-T curve.

`Probe` records what the energy model and the figures need, in memory that does not grow with
the data set: per layer and step, the spikes of each `Neuron` layer and the events (non-zero
inputs) reaching each Conv2d/Linear; optionally H[t], V[t] and S[t] of a few neurons of sample 0.

Taught in notebooks 00 (encoding), 02 (accuracy vs T) and 04 (rasters and traces).
"""
import ctypes
import os
import platform
from functools import cache, partial

import torch
from torch import nn
from tqdm.auto import tqdm

from .neurons import Neuron, TimeBatched, check_timesteps, reset

ENCODINGS = ("direct", "rate")
M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # glibc's mallopt() parameters (malloc.h)


@cache
def keep_freed_memory() -> bool:
    """Ask glibc to keep freed memory for reuse instead of giving it back to the OS; True if done.

    An SNN's time-batched tensors are T times larger than the ANN's. By default glibc returns every
    freed block over 32 MB to the OS, so the next tensor of that size page-faults and is zeroed by
    the kernel again: on 2 cores that was about 40 % of `simulate`'s wall time (bench/README.md).
    `simulate` calls this on its first call. The setting is process-wide and stays for the life of
    the process, which then keeps its peak heap instead of shrinking. Opt out by setting the
    environment variable SNNLAB_KEEP_FREED_MEMORY=0 before the first call (then it returns False);
    off glibc (macOS, Windows, musl) it does nothing and returns False.
    """
    if os.environ.get("SNNLAB_KEEP_FREED_MEMORY", "1") == "0" or platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL("libc.so.6")
    return bool(libc.mallopt(M_MMAP_MAX, 0) and libc.mallopt(M_TRIM_THRESHOLD, 2**31 - 1))


def encode(x: torch.Tensor, timesteps: int, encoding: str = "direct", seed: int = 0) -> torch.Tensor:
    """Turn images into the SNN's input over time.

    direct: X[t] = x at every step (an expanded view: no copy; the first layer runs once).
    rate: X[t] ~ Bernoulli(clip(x, 0, 1)), a fresh draw each step (Poisson-like rate code).

    Shapes: x: [B, ...] → [T, B, ...].
    """
    check_timesteps(timesteps)
    if encoding == "direct":
        return x.unsqueeze(0).expand(timesteps, *x.shape)
    if encoding == "rate":
        gen = torch.Generator(device=x.device).manual_seed(seed)
        p = x.clamp(0, 1).unsqueeze(0).expand(timesteps, *x.shape)
        return torch.bernoulli(p, generator=gen)
    raise ValueError(f"encoding must be one of {ENCODINGS}, got {encoding!r}")


@torch.no_grad()
def simulate(snn: nn.Module, x: torch.Tensor, timesteps: int, encoding: str = "direct") -> torch.Tensor:
    """The SNN's output after each step: out[t] = (1/(t+1))·Σ_{k≤t} Y_out[k].

    It runs in the fast configuration: images in the channels_last memory format (the CPU's
    convolutions are faster in it; the spikes do not depend on the format x comes in), and, from
    the first call on, glibc keeps freed memory (`keep_freed_memory`: process-wide; set the
    environment variable SNNLAB_KEEP_FREED_MEMORY=0 before the first call to opt out).

    Args:
        snn: a converted network (`convert.convert`). x: images [B, C, H, W]. timesteps: T ≥ 1.

    Shapes: x: [B, ...] → out: [T, B, classes].
    """
    _check_input(snn, x)
    keep_freed_memory()  # once per process
    if x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    reset(snn)
    y = snn(encode(x, timesteps, encoding))  # [T, B, classes]
    steps = torch.arange(1, timesteps + 1, device=y.device, dtype=y.dtype).view(-1, *[1] * (y.dim() - 1))
    return y.cumsum(0) / steps  # [T, B, classes]


def _check_input(snn: nn.Module, x: torch.Tensor) -> None:
    """Refuse NaN and input that does not fit the network's first layer, with the shape it needs."""
    if torch.isnan(x).any():
        raise ValueError("the input holds NaN values; check the data pipeline")
    first = next((m.layer for m in snn.modules()
                  if isinstance(m, TimeBatched) and isinstance(m.layer, (nn.Conv2d, nn.Linear))), None)
    if isinstance(first, nn.Conv2d) and (x.dim() != 4 or x.shape[1] != first.in_channels):
        needed = f"[B, {first.in_channels}, ...]"
    elif isinstance(first, nn.Linear) and x.shape[-1] != first.in_features:
        needed = f"[B, {first.in_features}]"
    else:
        return
    raise ValueError(f"the SNN expects input {needed} (no time dimension: simulate adds it), "
                     f"got shape {tuple(x.shape)}")


def evaluate_snn(snn: nn.Module, loader, timesteps: int, max_batches: int | None = None,
                 progress: bool = True) -> torch.Tensor:
    """Accuracy (%) after each step t = 1..T over a data loader, from one simulation per batch.

    Args:
        loader: yields (images, labels). Run it inside a `Probe` to count spikes as well.
        max_batches: stop after this many batches (None: all).

    Returns: accuracy, a tensor [T] (accuracy[t − 1] is the accuracy after t steps).
    """
    correct, total = torch.zeros(timesteps), 0
    batches = tqdm(loader, desc=f"SNN T={timesteps}", leave=False, disable=not progress)
    for i, (x, labels) in enumerate(batches):
        if max_batches is not None and i >= max_batches:
            break
        out = simulate(snn, x, timesteps)  # [T, B, classes]
        correct += (out.argmax(-1) == labels).sum(1).float().cpu()
        total += len(labels)
    if total == 0:
        raise ValueError("the loader gave no batch to evaluate")
    return 100 * correct / total


class Probe:
    """Count spikes and synaptic events per layer while an SNN runs; optionally trace a few neurons.

    Use as a context manager around `simulate`/`evaluate_snn`:
        with Probe(snn, trace=8) as probe:
            simulate(snn, x, timesteps=8)
        probe.spikes["features.2"]     # [T] spikes of that layer per step, summed over samples
        probe.spike_rate()             # {layer: spikes per neuron over all T}, r_l of the energy model

    Attributes (per layer name, accumulated over every call):
        spikes, events: [T] counts per step; neurons, inputs: units per sample; samples: samples seen;
        macs: MACs per sample and step of each Conv2d/Linear (F_l); traces: {layer: {"h", "v", "s": [T, k]}}.

    Args:
        snn: the converted network. trace: how many neurons of sample 0 to trace per layer (0: none).
    """

    def __init__(self, snn: nn.Module, trace: int = 0):
        self.snn, self.trace = snn, trace
        self.spikes, self.events, self.neurons, self.inputs, self.macs, self.samples = {}, {}, {}, {}, {}, {}
        self.traces, self._hooks = {}, []

    def __enter__(self) -> "Probe":
        for name, m in self.snn.named_modules():
            if isinstance(m, Neuron):
                self._hooks.append(m.register_forward_hook(partial(self._on_neuron, name)))
                m.trace = {"index": slice(0, self.trace), "h": [], "v": []} if self.trace else None
            elif isinstance(m, TimeBatched) and isinstance(m.layer, (nn.Conv2d, nn.Linear)):
                self._hooks.append(m.register_forward_hook(partial(self._on_synapse, name)))
        return self

    def __exit__(self, *exc) -> None:
        for h in self._hooks:
            h.remove()
        for m in self.snn.modules():
            if isinstance(m, Neuron):
                m.trace = None

    def _on_neuron(self, name, module, inputs, out):
        fired = out != 0  # [T, B, ...]
        _add(self.spikes, name, fired.flatten(2).sum((1, 2)).float().cpu())  # [T]
        self.neurons[name], self.samples[name] = out[0, 0].numel(), self.samples.get(name, 0) + out.shape[1]
        if module.trace is not None:
            self._keep_trace(name, module, fired)

    def _keep_trace(self, name, module, fired):
        index = module.trace["index"]
        self.traces[name] = {"h": torch.stack(module.trace["h"]).cpu(), "v": torch.stack(module.trace["v"]).cpu(),
                             "s": fired[:, 0].flatten(1)[:, index].float().cpu()}  # [T, k] each
        module.trace["h"], module.trace["v"] = [], []

    def _on_synapse(self, name, module, inputs, out):
        x = inputs[0]  # [T, B, ...]
        _add(self.events, name, (x != 0).flatten(2).sum((1, 2)).float().cpu())  # [T]
        self.inputs[name], self.samples[name] = x[0, 0].numel(), self.samples.get(name, 0) + x.shape[1]
        layer = module.layer
        per_output = layer.in_features if isinstance(layer, nn.Linear) else \
            layer.in_channels // layer.groups * layer.kernel_size[0] * layer.kernel_size[1]
        self.macs[name] = out[0, 0].numel() * per_output

    def spike_rate(self) -> dict:
        """Spikes per neuron over all T, per Neuron layer (may exceed 1)."""
        return {n: self.spikes[n].sum().item() / (self.neurons[n] * self.samples[n]) for n in self.spikes}

    def event_rate(self) -> dict:
        """Events (non-zero inputs) per input unit over all T, per Conv2d/Linear layer: r_{l−1}."""
        return {n: self.events[n].sum().item() / (self.inputs[n] * self.samples[n]) for n in self.events}


def _add(store: dict, name: str, value: torch.Tensor) -> None:
    if name in store and len(store[name]) != len(value):
        raise ValueError(f"this Probe recorded runs of T={len(store[name])}; open a new Probe for T={len(value)}")
    store[name] = store[name] + value if name in store else value
