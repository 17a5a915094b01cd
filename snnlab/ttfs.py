"""Time-to-first-spike (TTFS) coding with a log2 kernel, CAT conversion and log-quantized weights.

One spike per neuron: layer l listens during its own window of K steps and sends a value
a ∈ {0} ∪ {s_l·2^(−k): k = 0 … K−1} as ONE spike at step k (earlier = larger); a smaller value sends
nothing. The next layer accumulates V = Σ_i w_i·s_l·2^(−k_i) + b. An ANN trained with the `CAT`
activation (activations.py) computes exactly these values, so its TTFS network gives the same answers.
With log weights w = ±c_l·2^(−m), a synaptic event adds ±c_l·s_l·2^(−(k+m)): an exponent add, i.e. a
shift-and-add instead of a multiply.

RECONSTRUCTION of Lew, Lee & Park (DAC 2022, arXiv 2208.04494): no public code exists; this follows the
methods digest §5/§10 (one realisation; the chip's own kernel and energy model are not reproduced).
Energy uses energy.py's model (one event per fired input, E_AC = 0.9 pJ each) and a shift-add variant that
charges E_ADD = 0.1 pJ per event, a 32-bit integer add at 45 nm (Horowitz, ISSCC 2014, as tabulated in
SpikingJelly's op counter; methods digest §9); the first layer multiplies the image in both (E_MAC).

Taught in notebook 06.
"""
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils import parametrize

from .activations import CAT, log_step, straight_through
from .convert import SPIKING_SITES, check_threshold, fold_batchnorm, record_preactivations, resolve_recipe
from .energy import EnergyReport, count_macs, energy_report
from .train import train_ann

NO_SPIKE = -1  # the spike time of a neuron that stays silent
E_ADD_PJ = 0.1  # a 32-bit integer add, 45 nm (Horowitz, ISSCC 2014, as tabulated in methods digest §9)
CARRIED = (nn.Conv2d, nn.Linear, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.Flatten, nn.Dropout, nn.Identity)


def check_window(window) -> None:
    """Raise a ValueError unless the window K is an integer ≥ 1."""
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise ValueError(f"window (K, steps per layer) must be an integer ≥ 1, got {window!r}")


def check_bits(bits) -> None:
    """Raise a ValueError unless the weight bits b are an integer ≥ 2 (a sign bit and ≥ 1 exponent bit)."""
    if isinstance(bits, bool) or not isinstance(bits, int) or bits < 2:
        raise ValueError(f"bits must be an integer ≥ 2 (sign + exponent bits; 5 in Lew et al.), got {bits!r}")


# ---------------------------------------------------------------- 1. the code: values ↔ spike times
def encode(values: torch.Tensor, bound, window: int) -> torch.Tensor:
    """The spike step of each value: k = ⌈log2(s/V) − ½⌉ if k < K, else NO_SPIKE (−1).

    A neuron with potential V fires at the first step k whose threshold θ[k] = s·2^(−k−½) it reaches
    (the threshold halves every step); V ≥ s fires at k = 0, V < s·2^(−K+½) never.

    Symbols: s = `bound`, K = `window`, V = `values`.
    Shapes: values: any; returns int64 of the same shape.
    """
    check_window(window)
    k = log_step(torch.clamp(values / bound, 0, 1))
    return torch.where(k < window, k, torch.full_like(k, NO_SPIKE)).long()


def decode(times: torch.Tensor, bound, window: int) -> torch.Tensor:
    """The value each spike time carries: s·2^(−k), and 0 for NO_SPIKE (the same bits as `CAT`)."""
    return torch.exp2(-times.float()).masked_fill_(times == NO_SPIKE, 0) * bound


class TTFSLayer(nn.Module):
    """A layer of TTFS neurons: one spike at k = ⌈log2(s/V) − ½⌉ < K, its value s·2^(−k) to the next layer.

    Event semantics (simulated analytically, layer by layer): during layer l−1's window every input spike
    at step k_i adds w_i·s_{l−1}·2^(−k_i) to V (the bias once); then, in layer l's own K steps, the neuron
    compares V with θ[k] = s_l·2^(−k−½) and fires once at the first k with V ≥ θ[k]. The network's
    latency is K steps per layer. Records the spike times of its last call in `times` (NO_SPIKE = −1).

    Args:
        bound: s_l (> 0), the value of a spike at step 0. window: K ≥ 1.
    Shapes: z: any [B, ...]; returns the decoded values, same shape.
    """

    def __init__(self, bound: float, window: int):
        super().__init__()
        check_window(window)
        self.window = window
        self.register_buffer("bound", torch.tensor(float(bound)))
        self.times = None

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        self.times = encode(z, self.bound, self.window)
        return decode(self.times, self.bound, self.window)

    def extra_repr(self) -> str:
        return f"bound={self.bound.item():.3g}, window={self.window}"


# ---------------------------------------------------------------- 2. conversion
def convert_ttfs(ann: nn.Module, images: torch.Tensor | None = None, *, window: int | None = None, threshold="bound",
                 max_samples: int = 200_000) -> nn.Module:
    """A TTFS network from an ANN: fold BN, then each activation → a `TTFSLayer` with its s_l and K.

    With threshold="bound" the ANN must be a CAT network (`prepare(activation="cat")`): s_l is its trained
    bound and, with window=None, K is its levels, so the TTFS network computes exactly the ANN. Any other
    ANN (ReLU) needs a recipe of `convert.RECIPES` ("percentile", "max", …) and calibration images: s_l is
    that recipe's θ; the rounding to K log levels is then a conversion error CAT did not train for.

    Args:
        ann: a trained ANN (not modified); Conv2d, Linear, BatchNorm (folded), AvgPool, Flatten, Dropout.
        images: calibration images [N, C, H, W] (only for a recipe other than "bound").
        window: K, steps per layer (None: the CAT activations' levels).
        threshold: "bound" or a recipe name / function (`convert.RECIPES`).
    Returns: the TTFS network (eval mode), with `window` set; call it on [B, C, H, W] (`run_ttfs`).
    Reference: Lew et al., DAC 2022 (reconstruction, see module docstring). Notebook 06.
    """
    folded = fold_batchnorm(ann)
    sites = {name: m for name, m in folded.named_modules() if isinstance(m, SPIKING_SITES)}
    if window is None:
        windows = {m.levels for m in sites.values() if isinstance(m, CAT)}
        if len(windows) != 1 or not all(isinstance(m, CAT) for m in sites.values()):
            raise ValueError("window=None takes K from the CAT activations, but the ANN has no single CAT window: "
                             "pass window=K (e.g. 8)")
        window = windows.pop()
    check_window(window)
    bounds = _bounds(folded, sites, images, threshold, window, max_samples)
    snn = _replace(folded, bounds, window).eval()
    snn.window = window
    return snn


def _bounds(folded, sites: dict, images, threshold, window: int, max_samples: int) -> dict:
    """s_l per activation: CAT's trained bound, or a threshold recipe's θ on calibration images."""
    if threshold == "bound":
        other = [f"'{n}' ({type(m).__name__})" for n, m in sites.items() if not isinstance(m, CAT)]
        if other:
            raise ValueError(f"threshold='bound' needs a CAT network, but layer {other[0]} is not CAT: train it with "
                             "prepare(activation='cat', levels=K), or pass threshold='percentile' and calibration "
                             "images for a ReLU ANN")
        return {name: m.bound.item() for name, m in sites.items()}
    recipe = resolve_recipe(threshold)
    if images is None:
        raise ValueError(f"threshold={threshold!r} sets s_l from calibration images: pass images [N, C, H, W] "
                         "(e.g. 1,000 training images), or threshold='bound' for a CAT network")
    records = record_preactivations(folded, images, max_samples=max_samples)
    bounds = {}
    for name, record in records.items():
        bounds[name] = recipe(record, window, 0.0)["threshold"]
        check_threshold(record, bounds[name])
    return bounds


def _replace(module: nn.Module, bounds: dict, window: int, prefix: str = "") -> nn.Module:
    """Swap activations for TTFSLayers, recursively, in place; refuse what one spike per neuron cannot carry."""
    for name, child in module.named_children():
        path = f"{prefix}{name}"
        if isinstance(child, SPIKING_SITES):
            setattr(module, name, TTFSLayer(bounds[path], window))
        elif isinstance(child, nn.MaxPool2d):
            raise ValueError(f"layer '{path}' is a MaxPool2d, which TTFS does not carry here (the maximum of the "
                             "inputs is not a sum of spike values): train the ANN with pool='avg'")
        elif len(list(child.children())) > 0:
            _replace(child, bounds, window, prefix=f"{path}.")
        elif not isinstance(child, CARRIED):
            raise ValueError(f"layer '{path}' ({type(child).__name__}) cannot be carried by TTFS; supported: "
                             f"{', '.join(c.__name__ for c in SPIKING_SITES + CARRIED)}, BatchNorm (folded)")
    return module


def ttfs_layers(snn: nn.Module) -> dict:
    """{name: TTFSLayer} of a TTFS network, in the order they run."""
    return {name: m for name, m in snn.named_modules() if isinstance(m, TTFSLayer)}


@torch.no_grad()
def run_ttfs(snn: nn.Module, x: torch.Tensor) -> tuple:
    """Run a TTFS network on a batch: (logits [B, classes], {layer: spike times [B, ...], NO_SPIKE = −1})."""
    layers = ttfs_layers(snn)
    if not layers:
        raise ValueError("the network has no TTFSLayer: convert it first with convert_ttfs(ann, ...)")
    logits = snn.eval()(x)
    return logits, {name: layer.times for name, layer in layers.items()}


# ---------------------------------------------------------------- 3. log-quantized weights
def log_quantize(w: torch.Tensor, bits: int = 5) -> torch.Tensor:
    """w_q = sign(w)·c·2^(−m), c = max|w|, m = nearest integer to log2(c/|w|) clipped to 0 … 2^(b−1)−1.

    b bits = a sign and b−1 bits of exponent m (b = 5: m ∈ {0 … 15}); zero weights stay zero.
    Symbols: b = `bits`, c = the layer's scale (its largest |w|).
    Shapes: any; w_q has the shape of w.
    """
    check_bits(bits)
    scale = w.abs().max()
    if scale == 0:
        return w.clone()
    m = log_step(w.abs() / scale).clamp(max=2 ** (bits - 1) - 1)  # |w| = 0 → ∞ → clamped
    return torch.sign(w) * scale * torch.exp2(-m)


class LogWeight(nn.Module):
    """A parametrization: the layer's weight is used log-quantized (`log_quantize`), gradient straight through."""

    def __init__(self, bits: int = 5):
        super().__init__()
        check_bits(bits)
        self.bits = bits

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return straight_through(log_quantize, w, self.bits)


def log_weights(ann: nn.Module, bits: int = 5, train_loader=None, **train_kwargs) -> nn.Module:
    """A BN-folded copy of `ann` whose Conv2d/Linear weights are b-bit log-quantized (biases stay full precision).

    Without `train_loader` the weights are rounded once; with it, the folded network is first fine-tuned
    with the quantizer in the loop (quantization-aware, straight-through) by `train.train_ann(…,
    **train_kwargs)`, e.g. epochs=1, lr=0.01. BN is folded first because the TTFS network uses the folded
    weights: quantizing before folding would not leave them powers of two.

    Returns: the network (eval mode); convert it with `convert_ttfs`.
    """
    check_bits(bits)
    net = fold_batchnorm(ann)
    layers = [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    for layer in layers:
        parametrize.register_parametrization(layer, "weight", LogWeight(bits))
    if train_loader is not None:
        train_ann(net, train_loader, **{"epochs": 1, "lr": 0.01, "progress": False, **train_kwargs})
    for layer in layers:
        parametrize.remove_parametrizations(layer, "weight", leave_parametrized=True)
    return net.eval()


# ---------------------------------------------------------------- 4. accuracy, spikes and energy
@dataclass
class TTFSResult:
    """What `measure_ttfs` found on a test set (per image: spikes, events and energy are means)."""

    accuracy: float  # %
    predictions: torch.Tensor  # [N] predicted class per image
    spikes_per_neuron: dict  # {TTFS layer: fraction of its neurons that fired} (≤ 1)
    event_rate: dict  # {Conv2d/Linear: fraction of its input units that are non-zero (r_{l−1})}
    energy: EnergyReport  # E_AC per event (energy.py)
    shift_add: EnergyReport  # E_ADD per event: a log weight turns the accumulate into a shift-and-add
    spikes_total: float  # all spikes ÷ all TTFS neurons, per image (≤ 1)


@torch.no_grad()
def measure_ttfs(snn: nn.Module, loader) -> TTFSResult:
    """Accuracy, spikes per neuron per layer, events per layer input and energy of a TTFS network.

    E = F_1·E_MAC + Σ_{l≥2} F_l·r_{l−1}·E_AC, r_{l−1} = the fraction of layer l's inputs that are non-zero
    (a fired neuron, or an average-pooled value with at least one spike behind it); at most one spike per
    neuron, so r ≤ 1. The shift-add variant charges E_ADD (integer add) instead of E_AC.

    Args: snn: from `convert_ttfs`. loader: yields (x [B, C, H, W], y [B]).
    """
    names = {m: n for n, m in snn.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}
    counts = {n: [0, 0] for n in names.values()}
    hooks = [m.register_forward_pre_hook(lambda m, i: _count(counts[names[m]], i[0])) for m in names]
    fired, total, predictions, correct = {}, {}, [], 0
    try:
        for x, y in loader:
            logits, times = run_ttfs(snn, x)
            predictions.append(logits.argmax(1))
            correct += (predictions[-1] == y).sum().item()
            for name, t in times.items():
                fired[name] = fired.get(name, 0) + (t != NO_SPIKE).sum().item()
                total[name] = total.get(name, 0) + t.numel()
    finally:
        for h in hooks:
            h.remove()
    predictions = torch.cat(predictions)
    rates = {n: nonzero / units for n, (nonzero, units) in counts.items()}
    macs = count_macs(snn, x[:1])
    return TTFSResult(100.0 * correct / len(predictions), predictions, {n: fired[n] / total[n] for n in fired},
                      rates, energy_report(macs, rates, 1), energy_report(macs, rates, 1, e_ac=E_ADD_PJ),
                      sum(fired.values()) / sum(total.values()))


def _count(store: list, x: torch.Tensor) -> None:
    store[0] += (x != 0).sum().item()
    store[1] += x.numel()
