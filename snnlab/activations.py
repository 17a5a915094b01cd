"""The ANN side of conversion: ReLU, a clip with a trainable bound λ_clip, QCFS and CAT.

Every activation here marks a place where the converted SNN puts a spiking neuron
(`convert.SPIKING_SITES`). The trainable bound λ_clip ("bound") of `ClipReLU` and `QCFS` becomes the
neuron's threshold θ when converting with the "bound" recipe.

Taught in notebooks 01 (distributions, learned λ_clip), 03 (QCFS vs T) and 06 (CAT, time-to-first-spike).
"""
import math
from typing import Callable

import torch
from torch import nn


class ClipReLU(nn.Module):
    """ReLU clipped at a trainable per-layer bound: a = min(max(z, 0), λ_clip).

    λ_clip receives gradient 1 wherever the unit is clipped (PACT; Datta & Beerel 2022 train it from
    `bound=4.0`, OPI's `TCL` module likewise).

    Args:
        bound: initial λ_clip (> 0).

    Shapes: any; a has the shape of z.

    Reference: Datta & Beerel, DATE 2022; Bu et al., AAAI 2022 (OPI). Notebook 01.
    """

    def __init__(self, bound: float = 4.0):
        super().__init__()
        if not bound > 0:
            raise ValueError(f"ClipReLU: bound must be > 0, got {bound}")
        self.bound = nn.Parameter(torch.tensor(float(bound)))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.minimum(torch.relu(z), self.bound)

    def extra_repr(self) -> str:
        return f"bound={self.bound.item():.3g}"


class _StraightThrough(torch.autograd.Function):
    """f(x, *args) forward, identity backward."""

    @staticmethod
    def forward(ctx, x, f, args):
        return f(x, *args)

    @staticmethod
    def backward(ctx, grad):
        return grad, None, None


def straight_through(f: Callable, x: torch.Tensor, *args) -> torch.Tensor:
    """f(x, *args) in the forward pass, ∂/∂x = 1 in the backward pass: the straight-through estimator.

    The forward value is exactly f's (no x + (f(x) − x) rounding), which bit-exact conversions need. Used by
    QCFS (floor) and `ttfs.LogWeight` (log-quantized weights); CAT's `_CATRound` also gives s its gradient.
    """
    return _StraightThrough.apply(x, f, args)


def _set_levels_and_bound(module: nn.Module, what: str, levels: int, bound: float) -> None:
    """Check and set `module.levels` (an integer ≥ 1) and the trainable bound (> 0) of QCFS and CAT."""
    if isinstance(levels, bool) or not isinstance(levels, int) or levels < 1:
        raise ValueError(f"{what} must be an integer ≥ 1, got {levels!r}")
    if not bound > 0:
        raise ValueError(f"{what.split(':')[0]}: bound must be > 0, got {bound}")
    module.levels = levels
    module.bound = nn.Parameter(torch.tensor(float(bound)))


class QCFS(nn.Module):
    """Quantization-clip-floor-shift activation: a = λ_clip·clip(floor(z·L/λ_clip + φ)/L, 0, 1), φ = ½.

    An ANN trained with it converts to an IF SNN (θ = λ_clip, V[0] = θ/2, spikes carry θ) whose expected
    conversion error is zero for every T, and whose output equals the ANN's exactly at T = L apart
    from unevenness. The floor passes gradients straight through; λ_clip is trained (init 8.0 as in
    the official code).

    Symbols: L = `levels`, λ_clip = `bound`, φ = ½ (shift).

    Args:
        levels: number of quantization steps L (≥ 1).
        bound: initial λ_clip (> 0).

    Shapes: any; a has the shape of z.

    Reference: Bu et al., "Optimal ANN-SNN Conversion for High-accuracy and Ultra-low-latency
    SNNs", ICLR 2022 (code: putshua/ANN_SNN_QCFS, Models/layer.py). Notebook 03.
    """

    def __init__(self, levels: int = 4, bound: float = 8.0):
        super().__init__()
        _set_levels_and_bound(self, "QCFS: levels", levels, bound)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = torch.clamp(z / self.bound, 0, 1)  # the order of the official code: scale, clip,
        x = straight_through(torch.floor, x * self.levels + 0.5) / self.levels  # floor with shift, rescale
        return x * self.bound

    def extra_repr(self) -> str:
        return f"levels={self.levels}, bound={self.bound.item():.3g}"


# Per float type: its integer type, mantissa bits, exponent bias, and the mantissa of the first float ≥ √2.
_FLOAT_BITS = {torch.float32: (torch.int32, 23, 127, 0x3504F4), torch.float64: (torch.int64, 52, 1023, 0x6A09E667F3BCD)}


def _nearest_exponent(x: torch.Tensor) -> torch.Tensor:
    """The biased exponent of the power of two nearest x ≥ 0 in the log2 domain, read off x's bits.

    x = 2^e·(1 + f) rounds up to 2^(e+1) iff 1 + f ≥ √2: adding 2^M − f(√2) to the bits carries into the
    exponent exactly then (M mantissa bits). Exact, where ⌊log2(x) + ½⌋ in floats can miss by one near the
    boundary, and about 2.5× faster than log2, floor and exp2. A subnormal x (float32: < 2^(−126))
    gets k = 126 or 127, not its own: only a window of more than 126 steps could tell.
    """
    int_type, mantissa, _, sqrt2 = _FLOAT_BITS[x.dtype]
    return (x.view(int_type) + ((1 << mantissa) - sqrt2)) >> mantissa


def log_step(x: torch.Tensor) -> torch.Tensor:
    """The log2-domain rounding step of x ∈ [0, 1]: k = −⌊log2(x) + ½⌋ = ⌈log2(1/x) − ½⌉, the first k with x ≥ 2^(−k−½).

    x is rounded to 2^(−k), its nearest power of two in the log2 domain (x = 0: k = ∞). Shared by `CAT`
    and `ttfs.encode` (with `log_round`, which gives 2^(−k) from the same bits), so both compute the same.

    Shapes: any; k has the shape of x (float, integer-valued ≥ 0, or ∞).
    """
    if x.dtype not in _FLOAT_BITS:
        return log_step(x.float()).to(x.dtype)
    bias = _FLOAT_BITS[x.dtype][2]
    return (bias - _nearest_exponent(x)).to(x.dtype).masked_fill_(x <= 0, math.inf)


def log_round(x: torch.Tensor, levels: int) -> torch.Tensor:
    """x ∈ [0, 1] rounded in the log2 domain to {0} ∪ {2^(−k): k = 0 … levels−1}: 2^(−k) if k < levels, else 0."""
    if x.dtype not in _FLOAT_BITS:
        return log_round(x.float(), levels).to(x.dtype)
    power = (_nearest_exponent(x) << _FLOAT_BITS[x.dtype][1]).view(x.dtype)  # 2^(−k); 0 (or < 0) for x = ±0
    return power.masked_fill_(power < 2.0 ** (1 - levels), 0)


class _CATRound(torch.autograd.Function):
    """a = s·q(clip(z/s, 0, 1)) forward; ∂a/∂z = [0 < z < s] (straight through q), ∂a/∂s = q − (z/s)·[0 < z < s].

    What autograd gives for `straight_through(log_round, clamp(z/s, 0, 1), K)·s`, in one pass that keeps two
    tensors instead of five. With `_nearest_exponent`, a vgg-mini training step on 128 images took 0.26 s
    instead of 0.33–0.36 s (ReLU: 0.20 s; 2 threads), and notebook 06 cold 150 s instead of 183 s.
    """

    @staticmethod
    def forward(ctx, z, bound, levels):
        x = z / bound
        inside = (x > 0) & (x < 1)
        q = log_round(x.clamp_(0, 1), levels)
        ctx.save_for_backward(inside, q - x * inside)
        return q * bound

    @staticmethod
    def backward(ctx, grad):
        inside, d_bound = ctx.saved_tensors
        return grad * inside, (grad * d_bound).sum(), None


class CAT(nn.Module):
    """Conversion-aware training activation: a = s·q(clip(z/s, 0, 1)), q = rounding to K levels in log2.

    q(x) = 2^(−k), k = ⌈log2(1/x) − ½⌉ if k < K, else 0: the values a time-to-first-spike neuron with a
    window of K steps can send as one spike at step k (`ttfs.py`). Trained with it, the ANN computes what
    its TTFS network computes, so conversion loses nothing. Straight-through gradient through q; s gets
    the gradient of a = s·q(z/s) like QCFS's λ (1 where z is clipped). Choice here: s is a trainable
    per-layer parameter from `bound` = 4.0 (ClipReLU's start), kept in check by weight decay like λ.

    Symbols: K = `levels` (the window), s = `bound`, k = the spike step.

    Args:
        levels: the window K ≥ 1 (levels s, s/2, …, s·2^(−(K−1))).
        bound: initial s (> 0).

    Shapes: any; a has the shape of z.

    Reference: Lew, Lee & Park, DAC 2022 (arXiv 2208.04494). RECONSTRUCTION: no public code exists; the
    quantizer follows the methods digest §5/§10. Notebook 06.
    """

    def __init__(self, levels: int = 8, bound: float = 4.0):
        super().__init__()
        _set_levels_and_bound(self, "CAT: levels (the window K)", levels, bound)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return _CATRound.apply(z, self.bound, self.levels)

    def extra_repr(self) -> str:
        return f"levels={self.levels}, bound={self.bound.item():.3g}"


ACTIVATIONS = {"relu": nn.ReLU, "clip": ClipReLU, "qcfs": QCFS, "cat": CAT}


def activation_factory(name: str, **kwargs) -> Callable[[], nn.Module]:
    """The constructor of the activation called `name`, with `kwargs` bound (for `activation_layer=`).

    Example: `activation_factory("qcfs", levels=4)()` builds a fresh `QCFS(levels=4)`.
    """
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; choose one of {sorted(ACTIVATIONS)}")
    cls = ACTIVATIONS[name]
    return lambda: cls(**kwargs)
