"""Run an SNN for T steps, time-batched, and read it out at every step t ≤ T from one pass.

The network's output layer integrates without spiking; its mean over steps 1..t is the SNN's
answer after t steps. Because every neuron is causal, the prefix t of a T-step run is exactly a
t-step run, so one simulation to T_max gives the whole accuracy-vs-T curve.

A long run can be fed in chunks of steps (`chunk`): the neurons keep V between calls, so memory
grows with the chunk instead of T, and the outputs are bitwise those of one pass.

`Probe` records what the energy model and the figures need, in memory that does not grow with
the data set: per layer and step, the spikes of each `Neuron` layer and the events (non-zero
inputs) reaching each Conv2d/Linear; optionally H[t], V[t] and S[t] of a few neurons of sample 0.
It works through forward hooks only, so the neurons know nothing of it. (`encode`, the input over
time, lives in neurons.py; `from snnlab.simulate import encode` still works.)

Taught in notebooks 00 (encoding), 02 (accuracy vs T) and 04 (rasters and traces).
"""
import ctypes
import os
import platform
from functools import cache, partial

import torch
from torch import nn
from tqdm.auto import tqdm

from .energy import macs_per_output
from .neurons import Neuron, TimeBatched, check_images, check_timesteps, encode, if_step, neurons, reset
from .parallel import model_device

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


@torch.no_grad()
def simulate(snn: nn.Module, x: torch.Tensor, timesteps: int, encoding: str = "direct",
             chunk: int | None = None) -> torch.Tensor:
    """The SNN's output after each step: out[t] = (1/t)·Σ_{k≤t} Y_out[k], t = 1..T.

    It runs in the fast configuration: images in the channels_last memory format (the CPU's
    convolutions are faster in it; the spikes do not depend on the format x comes in), and, from
    the first call on, glibc keeps freed memory (`keep_freed_memory`: process-wide; set the
    environment variable SNNLAB_KEEP_FREED_MEMORY=0 before the first call to opt out).

    Args:
        snn: a converted network (`convert.convert`). x: images [B, C, H, W], moved to the SNN's device
            (the output stays there). timesteps: T ≥ 1.
        encoding: "direct" or "rate" (`neurons.encode`; the rate code is drawn with seed 0).
        chunk: feed the T steps this many at a time (None: all in one pass). Memory then grows with
            chunk·B instead of T·B, and the result is bitwise the same. Chunk long runs, T in the
            hundreds: on 64 digits images T = 1024 takes +1.0 GB in one pass, +87 MB in chunks of
            64, in the same time (bench/memory.py). For the T ≤ 64 of the notebooks one pass is fine.

    Shapes: x: [B, ...] → out: [T, B, classes].
    """
    check_timesteps(timesteps)
    _check_chunk(chunk)
    _check_input(snn, x)
    keep_freed_memory()  # once per process
    x = x.to(model_device(snn), non_blocking=True)
    if x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    reset(snn)
    generator = torch.Generator(device=x.device).manual_seed(0) if encoding == "rate" else None  # the rate code
    size, sums = chunk or timesteps, []
    for start in range(0, timesteps, size):
        y = snn(encode(x, min(size, timesteps - start), encoding, generator=generator))  # [k, B, classes]
        # Σ Y_out continued from the chunk before, in float64: CPU cumsum adds float32 in float64
        # internally, so a float32 carry would round where one pass does not.
        before = sums[-1][-1:] if sums else torch.zeros_like(y[:1], dtype=torch.float64)  # [1, B, classes]
        sums.append(torch.cat([before, y.double()]).cumsum(0)[1:])  # [k, B, classes]
    steps = torch.arange(1, timesteps + 1, device=y.device, dtype=torch.float64).view(-1, *[1] * (y.dim() - 1))
    return (torch.cat(sums) / steps).to(y.dtype)  # [T, B, classes]


def _check_chunk(chunk) -> None:
    if chunk is not None and (isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1):
        raise ValueError(f"chunk must be None (one pass) or an integer ≥ 1 (steps per call), got {chunk!r}")


def _check_input(snn: nn.Module, x: torch.Tensor) -> None:
    """Refuse input of the wrong type, NaN/Inf, or of another shape than the SNN takes, saying which it takes."""
    check_images(x, "x", next((p.dtype for p in snn.parameters()), torch.float32))
    expected = _input_shape(snn)
    if expected is None or (x.dim() == len(expected) + 1 and
                            all(isinstance(e, str) or e == n for e, n in zip(expected, x.shape[1:]))):
        return
    raise ValueError(f"the SNN expects input x of shape [B, {', '.join(map(str, expected))}] (no time dimension: "
                     f"simulate adds it), got shape {tuple(x.shape)}; resize x, or convert the ANN with "
                     "calibration images of the shape you need")


def _input_shape(snn: nn.Module) -> tuple | None:
    """One sample's shape: the calibration images' (`convert` records it), else what the first layer fixes."""
    if getattr(snn, "input_shape", None) is not None:
        return tuple(snn.input_shape)
    first = next((m.layer for m in snn.modules()
                  if isinstance(m, TimeBatched) and isinstance(m.layer, (nn.Conv2d, nn.Linear, nn.Flatten))), None)
    if isinstance(first, nn.Conv2d):
        return first.in_channels, "H", "W"  # any image size
    return (first.in_features,) if isinstance(first, nn.Linear) else None  # after a Flatten: any shape


def evaluate_snn(snn: nn.Module, loader, timesteps: int, max_batches: int | None = None,
                 progress: bool = True, chunk: int | None = None) -> torch.Tensor:
    """Accuracy (%) after each step t = 1..T over a data loader, from one simulation per batch.

    Args:
        loader: yields (images, labels), each batch moved to the SNN's device. Run it inside a `Probe`
            to count spikes as well.
        max_batches: stop after this many batches (None: all).
        chunk: steps per call of the network (see `simulate`; None: all T at once).

    Returns: accuracy, a tensor [T] (accuracy[t − 1] is the accuracy after t steps).
    """
    check_timesteps(timesteps)
    correct, total = torch.zeros(timesteps), 0
    batches = tqdm(loader, desc=f"SNN T={timesteps}", leave=False, disable=not progress)
    for i, (x, labels) in enumerate(batches):
        if max_batches is not None and i >= max_batches:
            break
        out = simulate(snn, x, timesteps, chunk=chunk)  # [T, B, classes]
        correct += (out.argmax(-1) == labels.to(out.device)).sum(1).float().cpu()
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

    A call of the network right after `reset` starts a run at step 1; any other call continues the
    run (a chunked `simulate`), so its counts land at its own steps and its traces are appended.

    Attributes (per layer name, accumulated over every run, all runs of one T):
        spikes, events: [T] counts per step; neurons, inputs: units per sample; samples: samples seen;
        macs: MACs per sample and step of each Conv2d/Linear (F_l); outputs, weights: its N_out and W_l;
        traces: {layer: {"h", "v", "s": [T, k]}}, H[t], V[t], S[t] of the first k neurons of sample 0
        in the last run, replayed with `neurons.if_step` from the layer's input and V before it.

    Args:
        snn: the converted network. trace: how many neurons of sample 0 to trace per layer (0: none).
        device: where the counts add up (None: the CPU). The SNN's device saves a copy per layer and
            call on a GPU; reading a count (`spike_rate`, `.item()`) then waits for the GPU.
    """

    def __init__(self, snn: nn.Module, trace: int = 0, device=None):
        self.snn, self.trace, self.device = snn, trace, torch.device("cpu" if device is None else device)
        self.spikes, self.events, self.neurons, self.inputs, self.macs, self.samples = {}, {}, {}, {}, {}, {}
        self.outputs, self.weights = {}, {}
        self.traces, self._hooks, self._before = {}, [], {}
        self._start, self._end, self._length = 0, 0, None  # this call's steps [start, end) of the run; T of runs

    def __enter__(self) -> "Probe":
        self._hooks.append(self.snn.register_forward_pre_hook(self._on_call))
        for name, m in self.snn.named_modules():
            if isinstance(m, Neuron):
                if self.trace:
                    self._hooks.append(m.register_forward_pre_hook(partial(self._before_neuron, name)))
                self._hooks.append(m.register_forward_hook(partial(self._on_neuron, name)))
            elif isinstance(m, TimeBatched) and isinstance(m.layer, (nn.Conv2d, nn.Linear)):
                self._hooks.append(m.register_forward_hook(partial(self._on_synapse, name)))
        return self

    def __exit__(self, exc_type, *exc) -> None:
        for h in self._hooks:
            h.remove()
        self._hooks, self._before = [], {}
        if exc_type is None:
            self._end_run()

    def _on_call(self, module, inputs):
        """Place this call in time: after `reset` (every V is None) a new run, else the run goes on."""
        fresh = all(m.v is None for m in neurons(self.snn).values())
        if fresh:
            self._end_run()
        start = 0 if fresh else self._end
        end = start + inputs[0].shape[0]  # inputs[0]: [T, B, ...]
        if self._length is not None and end > self._length:
            raise ValueError(f"this Probe recorded runs of T={self._length}, this one reaches step {end}; "
                             "open a new Probe for each T")
        self._start, self._end = start, end

    def _end_run(self):
        """The run that ended fixes T for this Probe, or must have the T of the runs before it."""
        if self._end == 0:  # no run yet
            return
        if self._length is None:
            self._length = self._end
        elif self._end != self._length:
            raise ValueError(f"this Probe recorded runs of T={self._length}, then one of T={self._end}; "
                             "open a new Probe for each T")

    def _count(self, store: dict, name: str, counts: torch.Tensor, samples: int) -> None:
        """Add this call's per-step counts ([k]) at its steps of the run; the first run grows the record."""
        total = store.get(name, torch.zeros(0, device=self.device))
        if len(total) < self._end:
            total = torch.cat([total, torch.zeros(self._end - len(total), device=self.device)])  # [end]
        total[self._start:self._end] += counts.to(self.device)
        store[name] = total
        if self._start == 0:  # a run's later chunks bring no new samples
            self.samples[name] = self.samples.get(name, 0) + samples

    def _on_neuron(self, name, module, inputs, out):
        fired = out != 0  # [T, B, ...]
        self._count(self.spikes, name, fired.flatten(2).sum((1, 2)).float(), out.shape[1])  # [T]
        self.neurons[name] = out[0, 0].numel()
        if name in self._before:
            self._keep_trace(name, module, fired)

    def _before_neuron(self, name, module, inputs):
        x = inputs[0]  # [T, B, ...]
        self._before[name] = (x[:, :1].detach(), module.potential(x)[:1].detach())  # sample 0: X, V before

    @torch.no_grad()
    def _keep_trace(self, name, module, fired):  # fired: [T, B, ...]
        """H[t], V[t] of sample 0, replayed with `if_step`; S[t] as the layer fired. Appended within a run."""
        x, v = self._before.pop(name)  # [T, 1, ...], [1, ...]
        charged, potentials = [], []
        for t in range(x.shape[0]):
            charged.append(module.leak * v + x[t])  # H[t], as if_step charges
            _, v = if_step(x[t], v, module.threshold, module.leak, module.reset)
            potentials.append(v)
        new = {"h": torch.stack(charged), "v": torch.stack(potentials), "s": fired[:, :1].float()}  # [T, 1, ...]
        new = {key: value.flatten(1)[:, :self.trace].cpu() for key, value in new.items()}  # [T, k] each
        old = self.traces.get(name) if self._start > 0 else None
        self.traces[name] = new if old is None else {key: torch.cat([old[key], new[key]]) for key in new}

    def _on_synapse(self, name, module, inputs, out):
        x = inputs[0]  # [T, B, ...]
        self._count(self.events, name, (x != 0).flatten(2).sum((1, 2)).float(), x.shape[1])  # [T]
        self.inputs[name] = x[0, 0].numel()
        self.outputs[name], self.weights[name] = out[0, 0].numel(), module.layer.weight.numel()
        self.macs[name] = out[0, 0].numel() * macs_per_output(module.layer)

    def sizes(self) -> dict:
        """Per Conv2d/Linear layer {"macs", "weights", "inputs", "outputs"} per sample, as `energy.layer_sizes`."""
        return {n: {"macs": self.macs[n], "weights": self.weights[n], "inputs": self.inputs[n],
                    "outputs": self.outputs[n]} for n in self.macs}

    def spike_rate(self) -> dict:
        """Spikes per neuron over all T, per Neuron layer (may exceed 1)."""
        return {n: self.spikes[n].sum().item() / (self.neurons[n] * self.samples[n]) for n in self.spikes}

    def event_rate(self, steps: int | None = None) -> dict:
        """Events (non-zero inputs) per input unit over the first `steps` steps (None: all T), per Conv2d/Linear
        layer: r_{l−1} of the energy model. Causal neurons make the prefix of a run a shorter run."""
        return {n: self.events[n][:steps].sum().item() / (self.inputs[n] * self.samples[n]) for n in self.events}
