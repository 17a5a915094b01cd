"""The ANN side of conversion: ReLU, a clip with a trainable bound λ_clip, and QCFS.

Every activation here marks a place where the converted SNN puts a spiking neuron
(`convert.SPIKING_SITES`). The trainable bound λ_clip ("bound") of `ClipReLU` and `QCFS` becomes the
neuron's threshold θ when converting with the "bound" recipe.

Taught in notebooks 01 (distributions, learned λ_clip) and 03 (QCFS vs T).
"""
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


class _FloorSTE(torch.autograd.Function):
    """floor(x) forward, identity backward (straight-through estimator)."""

    @staticmethod
    def forward(ctx, x):
        return torch.floor(x)

    @staticmethod
    def backward(ctx, grad):
        return grad


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
        if not isinstance(levels, int) or levels < 1:
            raise ValueError(f"QCFS: levels must be an integer ≥ 1, got {levels!r}")
        if not bound > 0:
            raise ValueError(f"QCFS: bound must be > 0, got {bound}")
        self.levels = levels
        self.bound = nn.Parameter(torch.tensor(float(bound)))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = torch.clamp(z / self.bound, 0, 1)  # the order of the official code: scale, clip,
        x = _FloorSTE.apply(x * self.levels + 0.5) / self.levels  # floor with shift, rescale
        return x * self.bound

    def extra_repr(self) -> str:
        return f"levels={self.levels}, bound={self.bound.item():.3g}"


ACTIVATIONS = {"relu": nn.ReLU, "clip": ClipReLU, "qcfs": QCFS}


def activation_factory(name: str, **kwargs) -> Callable[[], nn.Module]:
    """The constructor of the activation called `name`, with `kwargs` bound (for `activation_layer=`).

    Example: `activation_factory("qcfs", levels=4)()` builds a fresh `QCFS(levels=4)`.
    """
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; choose one of {sorted(ACTIVATIONS)}")
    cls = ACTIVATIONS[name]
    return lambda: cls(**kwargs)
