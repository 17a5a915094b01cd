"""Integrate-and-fire neurons, time-batched: one step is charge, fire, reset.

    H[t] = λ·V[t−1] + X[t]                     charge (λ = 1: IF, λ < 1: LIF)
    S[t] = Θ(H[t] − θ)                         fire (Θ: Heaviside, Θ(0) = 1)
    V[t] = H[t] − θ·S[t]                       soft reset ("reset by subtraction")
    V[t] = H[t]·(1 − S[t])                     hard reset ("reset to zero")
    Y[t] = A·S[t]                              what the spike carries to the next layer
    V[0] = v_init·θ

Symbols: X = input current (`x`), H = potential before the spike, V = potential after reset,
θ = `threshold`, λ = `leak`, A = `spike_value` (θ when None), v_init = `v_init` (a fraction of θ).

Summed over T steps with λ = 1 and soft reset, the rate (1/T)·ΣY[t] of a neuron with constant input z
is a clip-floor quantizer of z (`clip_floor`); tests/test_neurons.py checks the identity exactly.

Also here, as the bottom layer that simulate and training share: `encode`, the input over time
(direct, or a Bernoulli rate code).

Taught in notebook 00 (neurons, encoding), 03 (V[0]) and 04 (trainable θ and λ).
"""
import torch
from torch import nn

RESETS = ("soft", "hard")
ENCODINGS = ("direct", "rate")


def check_timesteps(timesteps) -> None:
    """Raise a ValueError unless `timesteps` (T) is an integer ≥ 1."""
    if isinstance(timesteps, bool) or not isinstance(timesteps, int) or timesteps < 1:
        raise ValueError(f"timesteps must be an integer ≥ 1, got {timesteps!r}")


def check_images(x, argument: str, dtype: torch.dtype = torch.float32) -> None:
    """Raise a TypeError unless `x` is a tensor of `dtype`, a ValueError if it holds NaN or ±Inf."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{argument} must be a tensor of images, got {type(x).__name__}")
    if x.dtype != dtype:
        cast = f"{argument}.float()" if dtype == torch.float32 else f"{argument}.to({dtype})"
        raise TypeError(f"{argument} is a {x.dtype} tensor, but the network computes in {dtype}: pass "
                        f"{dtype} images, e.g. {cast} after scaling and normalizing them (data.get_loaders does both)")
    bad = int((~torch.isfinite(x)).sum())
    if bad:
        raise ValueError(f"{argument} holds {bad} NaN or infinite values (of {x.numel()}); check the data "
                         "pipeline (e.g. a division by a zero standard deviation)")


# ---------------------------------------------------------------- surrogate gradients
def triangle(z: torch.Tensor, gamma: float = 0.3) -> torch.Tensor:
    """Triangle surrogate ∂S/∂z = γ·max(0, 1 − |z|), z = H/θ − 1 (DIET-SNN, IIR-SNN: γ = 0.3)."""
    return gamma * torch.clamp(1 - z.abs(), min=0)


def boxcar(z: torch.Tensor) -> torch.Tensor:
    """Boxcar surrogate ∂S/∂z = 1 if |z| < 1 else 0, z = H/θ − 1 (Datta & Beerel's code)."""
    return (z.abs() < 1).to(z.dtype)


SURROGATES = {"triangle": triangle, "boxcar": boxcar}


class _Spike(torch.autograd.Function):
    """S = Θ(H − θ) forward; backward through the surrogate of z = H/θ − 1 to both H and θ."""

    @staticmethod
    def forward(ctx, h, threshold, surrogate):
        ctx.save_for_backward(h, threshold)
        ctx.surrogate = surrogate
        return (h >= threshold).to(h.dtype)

    @staticmethod
    def backward(ctx, grad):
        h, threshold = ctx.saved_tensors
        g = grad * ctx.surrogate(h / threshold - 1)  # ∂S/∂z
        grad_h = g / threshold  # ∂z/∂H = 1/θ
        grad_threshold = None
        if ctx.needs_input_grad[1]:
            grad_threshold = _sum_to(-g * h / threshold**2, threshold.shape)  # ∂z/∂θ = −H/θ²
        return grad_h, grad_threshold, None


def _sum_to(x: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """Sum a broadcast gradient back to `shape` (a scalar or per-channel threshold)."""
    dims = [i for i in range(x.dim()) if i < x.dim() - len(shape) or shape[i - x.dim() + len(shape)] == 1]
    return x.sum(dims, keepdim=True).reshape(shape)


# ---------------------------------------------------------------- one step, and its closed form
def if_step(x, v, threshold, leak=1.0, reset="soft", surrogate=triangle):
    """One time step of an (L)IF neuron: charge, fire, reset; returns (S[t], V[t]).

    H[t] = λ·V[t−1] + X[t],  S[t] = Θ(H[t] − θ),  V[t] = H[t] − θ·S[t] (soft) or H[t]·(1 − S[t]) (hard).
    The reset uses a detached spike, as the DIET-SNN/IIR-SNN code does: the gradient reaches θ
    through the firing condition only.

    Args:
        x: input current X[t]. v: potential V[t−1]. threshold: θ (tensor broadcastable to x).
        leak: λ. reset: "soft" or "hard". surrogate: ∂S/∂z as a function of z = H/θ − 1.

    Shapes: x, v: [B, ...]; returns two tensors of that shape.
    """
    h = leak * v + x  # charge
    spike = _Spike.apply(h, torch.as_tensor(threshold, dtype=h.dtype), surrogate)  # fire
    s = spike.detach()
    v = h - threshold * s if reset == "soft" else h * (1 - s)  # reset
    return spike, v


def clip_floor(z, threshold, timesteps, v_init=0.0, spike_value=None):
    """The rate of a soft-reset IF neuron with constant input z over T steps (closed form).

    φ(T) = (A/T)·clip(floor((T·z + v_init·θ)/θ), 0, T)

    Symbols: z = `z`, θ = `threshold`, T = `timesteps`, A = `spike_value` (θ when None).
    It holds exactly while V[T] ends in [0, θ), i.e. for constant input; with input that varies in
    time the difference from the simulated rate is the unevenness error (notebook 02).

    Shapes: z: any; returns the shape of z.
    Reference: methods digest §8.1; notebook 00 (the staircase) and 02.
    """
    value = threshold if spike_value is None else spike_value
    counts = torch.clamp(torch.floor((timesteps * z + v_init * threshold) / threshold), 0, timesteps)
    return value * counts / timesteps


# ---------------------------------------------------------------- the module
class Neuron(nn.Module):
    """A layer of integrate-and-fire neurons run over T steps at once (see the module docstring).

    Threshold θ and leak λ are tensors (one per layer, or per channel when given as a tensor): buffers,
    or parameters after `learn_threshold_and_leak(net)`. The potential V lives in the module, shaped on
    first use, and carries over between calls until `reset(net)`, so a long input can be fed in chunks.

    Args:
        threshold: θ > 0 (float or tensor broadcastable to one sample, e.g. shape [C, 1, 1]).
        leak: λ in (0, 1]; 1.0 is IF.
        v_init: V[0] as a fraction of θ: 0.0 (classic), 0.5 (θ/2, OPI/QCFS), or a tensor.
        reset: "soft" (subtract θ) or "hard" (to zero).
        spike_value: A, what a spike carries; None carries θ (the rate then approximates the ANN
            activation, so the next layer keeps the ANN's weights); 1.0 gives DIET-SNN's unit spikes.
        surrogate: "triangle" (γ = 0.3, DIET/IIR-SNN) or "boxcar" (Datta & Beerel).

    Shapes: x: [T, B, ...] → spikes·A: [T, B, ...].
    Example: `Neuron(threshold=1.0, v_init=0.5)(torch.full((4, 1), 0.3))` → one spike, at t = 1 (of 0..3):
    H = 0.8, 1.1 (fire, V = 0.1), 0.4, 0.7; the rate 1/4 is 0.3 rounded to the step θ/T.
    """

    def __init__(self, threshold=1.0, leak=1.0, v_init=0.0, reset="soft", spike_value=None,
                 surrogate="triangle"):
        super().__init__()
        if reset not in RESETS:
            raise ValueError(f"Neuron: reset must be one of {RESETS}, got {reset!r}")
        if surrogate not in SURROGATES:
            raise ValueError(f"Neuron: surrogate must be one of {sorted(SURROGATES)}, got {surrogate!r}")
        if not torch.all(torch.as_tensor(threshold) > 0):
            raise ValueError(f"Neuron: threshold must be > 0, got {threshold}")
        self.reset, self.surrogate = reset, surrogate
        self.register_buffer("threshold", torch.as_tensor(threshold, dtype=torch.float32).clone())
        self.register_buffer("leak", torch.as_tensor(leak, dtype=torch.float32).clone())
        self.register_buffer("v_init", torch.as_tensor(v_init, dtype=torch.float32).clone())
        value = None if spike_value is None else torch.as_tensor(spike_value, dtype=torch.float32).clone()
        self.register_buffer("spike_value", value)
        self.v = None  # V after the last step seen; None until first use and after reset()

    def potential(self, x: torch.Tensor) -> torch.Tensor:
        """V before the first step of `x`: V carried from the last call, or V[0] = v_init·θ after a reset.

        Shapes: x: [T, B, ...] → [B, ...].
        """
        return self.v if self.v is not None else (self.v_init * self.threshold).expand_as(x[0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() < 2:
            raise ValueError(f"Neuron expects time-batched input [T, B, ...], got shape {tuple(x.shape)}")
        v, value = self.potential(x), self.threshold if self.spike_value is None else self.spike_value
        if torch.is_grad_enabled():  # training: the readable scan, through autograd
            spikes, self.v = self._scan(x, v)
            return spikes * value
        out, self.v = _scan_fast(x, v, self.threshold, self.leak, self.reset, value)  # inference: Y = A·S
        return out

    def _scan(self, x, v):
        """The readable scan: `if_step` at each t."""
        surrogate, spikes = SURROGATES[self.surrogate], []
        for t in range(x.shape[0]):
            spike, v = if_step(x[t], v, self.threshold, self.leak, self.reset, surrogate)
            spikes.append(spike)
        return torch.stack(spikes), v  # [T, B, ...]

    def extra_repr(self) -> str:
        th = self.threshold
        th = f"{th.item():.4g}" if th.numel() == 1 else f"tensor{tuple(th.shape)}"
        return f"threshold={th}, leak={self.leak.mean().item():.3g}, reset={self.reset}"


BLOCK = 32_768  # neurons per block of `_scan_fast`: V, X[t] and Y[t] of a block (128 kB each) stay in cache


def _scan_fast(x, v, threshold, leak, reset, value):
    """The same math as `if_step` over all T, for inference: returns (Y = A·S [T, B, ...], V[T]).

    It runs block by block of samples (at most `BLOCK` neurons, or one sample): a block's V stays
    in the core's cache for all T steps, so a step reads X[t] and writes Y[t] from memory once and
    its four in-place operations work in cache (over whole layers they would be four passes over
    memory). A block that small also runs each operation on one thread (PyTorch's grain size), with
    no thread barrier per operation. Every update is in place and in the order of `if_step`, so
    tests/test_neurons.py checks that the spikes are exactly the readable scan's.
    """
    out = torch.empty_like(x)  # [T, B, ...], in x's memory format
    v = torch.empty_like(x[0]).copy_(v)  # own, writable
    leaky = not bool(torch.all(leak == 1))
    per_block = max(1, BLOCK // x[0, 0].numel())  # samples per block
    for first in range(0, x.shape[1], per_block):
        block = slice(first, first + per_block)
        v_block = v[block]  # a view: updates V in place
        for t in range(x.shape[0]):
            y = out[t, block]
            if leaky:
                v_block.mul_(leak)
            v_block.add_(x[t, block])  # H[t] = λ·V[t−1] + X[t]
            torch.ge(v_block, threshold, out=y)  # S[t] = Θ(H[t] − θ)
            if reset == "soft":
                v_block.addcmul_(y, threshold, value=-1)  # V[t] = H[t] − θ·S[t]
            else:
                v_block.mul_(1 - y)  # V[t] = H[t]·(1 − S[t])
            y.mul_(value)  # Y[t] = A·S[t]
    return out, v


# ---------------------------------------------------------------- the input over time
def encode(x: torch.Tensor, timesteps: int, encoding: str = "direct", seed: int = 0,
           generator: torch.Generator | None = None) -> torch.Tensor:
    """Turn images into the SNN's input over time.

    direct: X[t] = x at every step (an expanded view: no copy; the first layer runs once).
    rate: X[t] ~ Bernoulli(clip(x, 0, 1)), a fresh draw each step (Poisson-like rate code).

    Args:
        seed: of the rate code's random draws. generator: draw from this generator instead of a
            fresh one seeded with `seed`; drawing T1 steps and then T2 from one generator gives the
            T1 + T2 steps of a single draw (`simulate` feeds a long input in chunks this way).

    Shapes: x: [B, ...] → [T, B, ...].
    """
    check_timesteps(timesteps)
    if encoding == "direct":
        return x.unsqueeze(0).expand(timesteps, *x.shape)
    if encoding == "rate":
        gen = generator if generator is not None else torch.Generator(device=x.device).manual_seed(seed)
        p = x.clamp(0, 1).unsqueeze(0).expand(timesteps, *x.shape)
        return torch.bernoulli(p, generator=gen)
    raise ValueError(f"encoding must be one of {ENCODINGS}, got {encoding!r}")


# ---------------------------------------------------------------- stateless layers in time
class TimeBatched(nn.Module):
    """Run a stateless layer on all T·B samples at once: [T, B, ...] → layer([T·B, ...]) → [T, B, ...].

    With direct encoding the image is the same at every step; `simulate` passes it as an expanded view
    (stride 0 along T). Such an input is computed once and the result expanded again, so the layers
    before the first neuron cost one step, not T.

    Args:
        layer: a module without state across steps (Conv2d, Linear, AvgPool2d, Flatten, ...).

    Shapes: x: [T, B, ...] → [T, B, ...'].
    """

    def __init__(self, layer: nn.Module):
        super().__init__()
        self.layer = layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() < 2:
            raise ValueError(f"{type(self.layer).__name__} in an SNN expects [T, B, ...], got shape {tuple(x.shape)}")
        if x.stride(0) == 0:  # constant over time: one step is enough
            y = self.layer(x[0])  # [B, ...']
            return y.unsqueeze(0).expand(x.shape[0], *y.shape)  # [T, B, ...']
        y = self.layer(x.flatten(0, 1))  # [T·B, ...']
        return y.unflatten(0, x.shape[:2])  # [T, B, ...']


class SharedDropout(nn.Module):
    """Dropout whose mask is drawn once per sample and reused at every step (DIET-SNN, IIR-SNN).

    Args:
        p: probability of dropping a unit.

    Shapes: x: [T, B, ...] → [T, B, ...].
    """

    def __init__(self, p: float = 0.2):
        super().__init__()
        if not 0 <= p < 1:
            raise ValueError(f"SharedDropout: p must be in [0, 1), got {p}")
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        keep = torch.bernoulli(torch.full_like(x[0], 1 - self.p))  # [B, ...], one mask for all T
        return x * keep / (1 - self.p)


# ---------------------------------------------------------------- whole-network helpers
def neurons(net: nn.Module) -> dict:
    """The `Neuron` layers of `net`, by name, in the order they run in a sequential network."""
    return {name: m for name, m in net.named_modules() if isinstance(m, Neuron)}


def reset(net: nn.Module) -> nn.Module:
    """Forget the membrane potential of every neuron in `net` (call before each new input)."""
    for m in net.modules():
        if isinstance(m, Neuron):
            m.v = None
    return net


def learn_threshold_and_leak(net: nn.Module, threshold: bool = True, leak: bool = True) -> nn.Module:
    """Turn each neuron's θ and/or λ buffer into an `nn.Parameter`, so an optimizer trains it (DIET-SNN)."""
    for m in neurons(net).values():
        for name, wanted in (("threshold", threshold), ("leak", leak)):
            if wanted and not isinstance(getattr(m, name), nn.Parameter):
                value = m._buffers.pop(name)
                setattr(m, name, nn.Parameter(value))
    return net
