"""Energy of the ANN and of an SNN of the same architecture, by three estimators.

    F_l     = k_h·k_w·C_in·C_out·H_out·W_out (conv),  n_in·n_out (linear)      MACs per sample
    r_{l−1} = events (non-zero inputs) reaching layer l over all T, per input unit

`compute` (the Roy group's convention, the papers' numbers) counts arithmetic only:
    E_ANN = Σ_l F_l·E_MAC,   E_SNN = F_1·E_MAC·(1 or T) + Σ_{l≥2} F_l·r_{l−1}·E_AC
`memory` adds the SRAM reads and writes of weights, membrane potentials and spikes (Lemaire et al.),
which the literature finds often dominate and shrink the SNN's advantage (Dampfhoffer et al.).
`qnn` compares the SNN with the fair baseline for T steps: the same network as an integer ANN with
⌈log2(T+1)⌉-bit activations (Yan et al.), both sides with 8-bit integer weights.

First layer: it sees the analog image, so it multiplies. With direct encoding its input is the same at
every step, so it is computed once (`first_layer="once"`, the default, what `simulate` does) or charged
at every step ("every_step"); every table states which. After average pooling a non-zero pooled value
counts as one event (an upper bound of the spikes behind it needing an accumulate each).
Estimators differ in what they count: compare ratios within one estimator, not absolute µJ across them.

Reference: methods digest §7 and §9; DIET-SNN, IIR-SNN, Datta & Beerel. Notebooks 04, 05 and 07.
"""
import itertools
import math
import numbers
from dataclasses import dataclass, field

import torch
from torch import nn

from .neurons import check_timesteps

E_MAC_PJ, E_AC_PJ = 4.6, 0.9  # 32-bit float MAC and add, 45 nm (Horowitz, ISSCC 2014)
E_MUL8_PJ, E_ADD32_PJ = 0.2, 0.1  # 8-bit integer multiply, 32-bit integer add (same table)
WORD_BYTES = 4  # one 32-bit word per access (weight, potential, spike address), as SpikingJelly's Lemaire estimator
SRAM_PJ = ((0, 0.0), (8 * 1024, 10.0), (32 * 1024, 20.0), (1024 * 1024, 100.0))  # (bytes, pJ per access)
FIRST_LAYER = ("once", "every_step")
ESTIMATORS = ("compute", "memory", "qnn")


def macs_per_output(layer: nn.Module) -> int:
    """MACs behind one output unit of a Conv2d (k_h·k_w·C_in/groups) or a Linear (n_in)."""
    if isinstance(layer, nn.Linear):
        return layer.in_features
    return layer.in_channels // layer.groups * layer.kernel_size[0] * layer.kernel_size[1]


@torch.no_grad()
def layer_sizes(model: nn.Module, x: torch.Tensor) -> dict:
    """Per Conv2d/Linear layer of an ANN, from one forward pass on `x` [B, ...], per sample:
    {"macs": F_l, "weights": W_l, "inputs": N_in, "outputs": N_out} (what `memory` needs)."""
    sizes, hooks = {}, []

    def hook(name, module, inputs, out):
        sizes[name] = {"macs": out[0].numel() * macs_per_output(module), "weights": module.weight.numel(),
                       "inputs": inputs[0][0].numel(), "outputs": out[0].numel()}

    for name, m in model.named_modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            hooks.append(m.register_forward_hook(lambda mod, i, o, name=name: hook(name, mod, i, o)))
    try:
        model.eval()(x)
    finally:
        for h in hooks:
            h.remove()
    return sizes


def count_macs(model: nn.Module, x: torch.Tensor) -> dict:
    """MACs per sample of every Conv2d/Linear layer of an ANN, from one forward pass on `x` [B, ...]."""
    return {name: size["macs"] for name, size in layer_sizes(model, x).items()}


@dataclass
class EnergyReport:
    """Per-layer and total energy of an ANN and an SNN of the same architecture (pJ per sample)."""

    layers: list = field(default_factory=list)  # dicts: name, macs, rate, ann_pj, snn_pj
    ann_pj: float = 0.0
    snn_pj: float = 0.0
    estimator: str = "compute"

    @property
    def ratio(self) -> float:
        """E_ANN / E_SNN: how many times less energy the SNN needs (> 1 means the SNN wins)."""
        return self.ann_pj / self.snn_pj if self.snn_pj > 0 else float("inf")

    def add(self, name: str, macs: int, rate: float, ann_pj: float, snn_pj: float) -> None:
        """Append one layer and add it to the totals."""
        self.layers.append({"name": name, "macs": macs, "rate": rate, "ann_pj": ann_pj, "snn_pj": snn_pj})
        self.ann_pj += ann_pj
        self.snn_pj += snn_pj

    def table(self) -> str:
        """The report as a plain-text table."""
        rows = [f"{'layer':<24}{'MACs':>12}{'r_in':>8}{'ANN µJ':>10}{'SNN µJ':>10}"]
        rows += [f"{d['name']:<24}{d['macs']:>12,}{d['rate']:>8.3f}{d['ann_pj'] / 1e6:>10.3f}{d['snn_pj'] / 1e6:>10.3f}"
                 for d in self.layers]
        rows.append(f"{'total':<44}{self.ann_pj / 1e6:>10.3f}{self.snn_pj / 1e6:>10.3f}  ANN/SNN = {self.ratio:.2f}×")
        return "\n".join(rows)


def _first_layer_steps(first_layer: str, timesteps: int) -> int:
    """How many times the first layer is charged: 1 ("once") or T ("every_step")."""
    if first_layer not in FIRST_LAYER:
        raise ValueError(f"first_layer must be one of {FIRST_LAYER}, got {first_layer!r}")
    check_timesteps(timesteps)
    return timesteps if first_layer == "every_step" else 1


def compute(macs: dict, event_rate: dict, timesteps: int, first_layer: str = "once", e_mac: float = E_MAC_PJ,
            e_ac: float = E_AC_PJ) -> EnergyReport:
    """Compute energy only: E_ANN = Σ_l F_l·E_MAC, E_SNN = F_1·E_MAC·(1 or T) + Σ_{l≥2} F_l·r_{l−1}·E_AC.

    F_l: `macs`; r_{l−1}: `event_rate`; E_MAC, E_AC: `e_mac`, `e_ac` (pJ; default 32-bit float, 45 nm,
    Horowitz ISSCC 2014). Membrane updates, threshold comparisons and memory traffic are not counted.

    Args:
        macs: F_l per layer (`count_macs(ann, x)`, or `Probe.macs`; the names must match).
        event_rate: r_{l−1} per layer, events per input unit over all T (`Probe.event_rate()`).
        timesteps: T ≥ 1 (used when the first layer is charged at every step).
        first_layer: "once" (default) or "every_step".

    Returns: an `EnergyReport` (pJ per sample); `.ratio` is E_ANN/E_SNN.
    Reference: methods digest §7 (DIET-SNN, IIR-SNN, Datta & Beerel); notebooks 04, 05.
    """
    first = _first_layer_steps(first_layer, timesteps)
    _check_layers(macs, event_rate)
    report = EnergyReport(estimator="compute")
    for i, (name, f) in enumerate(macs.items()):
        rate, snn = (1.0, f * e_mac * first) if i == 0 else (event_rate[name], f * event_rate[name] * e_ac)
        report.add(name, f, rate, f * e_mac, snn)
    return report


energy_report = compute  # the name the notebooks and bench/ have used since notebook 04


def sram_pj(capacity_bytes: float) -> float:
    """e(c): energy of one word access to an SRAM of c bytes, linear between (0, 0), (8 kB, 10 pJ),
    (32 kB, 20 pJ), (1 MB, 100 pJ), flat above 1 MB.

    Reference: Horowitz, ISSCC 2014, as used by Lemaire et al., ICONIP 2022 and by SpikingJelly's
    `op_counter.analytical_energy` (`LemaireEnergyCostConfig`). The sources quote the figures per 64-bit
    access; like SpikingJelly we charge them per 32-bit word (an upper bound by at most 2×).
    """
    capacity = min(max(capacity_bytes, 0.0), SRAM_PJ[-1][0])
    for (x0, y0), (x1, y1) in itertools.pairwise(SRAM_PJ):
        if capacity <= x1:
            return y0 + (y1 - y0) * (capacity - x0) / (x1 - x0)
    return SRAM_PJ[-1][1]


def _access_pj(size: dict) -> tuple:
    """(e(W), e(N_in), e(N_out)): one word from the layer's weights, inputs, and outputs (or potentials)."""
    return tuple(sram_pj(WORD_BYTES * size[k]) for k in ("weights", "inputs", "outputs"))


def _dense_memory_pj(size: dict) -> float:
    """Memory energy of one dense (ANN-style) pass of a layer: F·(e(W) + e(N_in)) + N_out·e(N_out)."""
    e_w, e_in, e_out = _access_pj(size)
    return size["macs"] * (e_w + e_in) + size["outputs"] * e_out


def memory(sizes: dict, event_rate: dict, timesteps: int, first_layer: str = "once") -> EnergyReport:
    """Compute energy (`compute`) plus SRAM traffic, per layer l, for the ANN and the SNN alike:

        M_ANN,l = F_l·(e(W_l) + e(N_in)) + N_out·e(N_out)        read a weight and an input per MAC, write outputs
        M_SNN,1 = (1 or T)·M_ANN,1 + 2·T·N_out·e(N_out)           dense first layer, then V read + written each step
        M_SNN,l = A_l·(e(W_l) + 2·e(N_out)) + r_{l−1}·N_in·e(N_in) + 2·T·N_out·e(N_out)     (l ≥ 2)

    A_l = F_l·r_{l−1}: accumulates (synaptic events), each reading a weight and reading + writing one
    membrane potential V; each input spike is read once; each neuron's V is read and written once per step
    (leak, threshold, reset). e(c) = `sram_pj(4·c)`: one 32-bit word from a memory holding that array
    (W_l weights, N_in inputs, N_out potentials or outputs). No data reuse is assumed (the worst case for
    both sides), addressing and control are not counted: a reconstruction in the spirit of Lemaire et al.,
    not their exact accounting.

    Args:
        sizes: per layer {"macs": F_l, "weights": W_l, "inputs": N_in, "outputs": N_out}
            (`layer_sizes(ann, x)` or `Probe.sizes()`). event_rate, timesteps, first_layer: as `compute`.

    Returns: an `EnergyReport` (pJ per sample, arithmetic + memory).
    Reference: Lemaire et al., "An analytical estimation of spiking neural networks energy efficiency",
    ICONIP 2022; Dampfhoffer et al., IEEE TETCI 7(3), 2023; Horowitz, ISSCC 2014. Notebook 07.
    """
    _check_sizes(sizes)
    base = compute({n: s["macs"] for n, s in sizes.items()}, event_rate, timesteps, first_layer)
    report = EnergyReport(estimator="memory")
    for i, (layer, (name, size)) in enumerate(zip(base.layers, sizes.items())):
        e_w, e_in, e_v = _access_pj(size)
        potentials = 2 * timesteps * size["outputs"] * e_v
        if i == 0:
            snn = _first_layer_steps(first_layer, timesteps) * _dense_memory_pj(size) + potentials
        else:
            rate = event_rate[name]
            snn = size["macs"] * rate * (e_w + 2 * e_v) + rate * size["inputs"] * e_in + potentials
        report.add(name, size["macs"], layer["rate"], layer["ann_pj"] + _dense_memory_pj(size),
                   layer["snn_pj"] + snn)
    return report


def activation_bits(timesteps: int) -> int:
    """b = ⌈log2(T+1)⌉: the bits that count 0..T spikes, the activation width of the matching quantized ANN."""
    check_timesteps(timesteps)
    return math.ceil(math.log2(timesteps + 1))


def int_mac_pj(bits: int, weight_bits: int = 8) -> float:
    """E_MAC(b) = E_MUL8·(b·w)/64 + E_ADD32: a b-bit × w-bit integer multiply into a 32-bit accumulator.

    An array multiplier's energy grows with the product of its operand widths: Horowitz's 8-bit and 32-bit
    integer multiplies, 0.2 and 3.1 pJ, are 15.5× apart for a 16× wider product, so the 8×8 figure is
    scaled by (b·w)/64. The accumulation is one 32-bit integer add, 0.1 pJ (Horowitz, ISSCC 2014, 45 nm).
    """
    return E_MUL8_PJ * bits * weight_bits / 64 + E_ADD32_PJ


def qnn(macs: dict, event_rate: dict, timesteps: int, first_layer: str = "once") -> EnergyReport:
    """The SNN against the same network as a quantized ANN with b = ⌈log2(T+1)⌉-bit activations:

        E_QNN = F_1·E_MAC(8) + Σ_{l≥2} F_l·E_MAC(b)
        E_SNN = F_1·E_MAC(8)·(1 or T) + Σ_{l≥2} F_l·r_{l−1}·E_ADD32

    Both use 8-bit integer weights (w = 8); the first layer multiplies the 8-bit image; E_MAC(b) is
    `int_mac_pj(b)`, the SNN's accumulate one 32-bit integer add (0.1 pJ). A spike costs 0.1 pJ and a b-bit
    MAC 0.025·b + 0.1 pJ, so the SNN's layer l wins only if r_{l−1} < 1 + b/4 events per input over all T.
    The report's `ann_pj` is the quantized ANN's energy. Compute only, like `compute`.

    Returns: an `EnergyReport` (pJ per sample). Reference: Yan et al., "Reconsidering the energy efficiency
    of spiking neural networks", arXiv 2409.08290 (the baseline; our cost model is our own reconstruction
    from Horowitz, ISSCC 2014). Notebook 07.
    """
    first = _first_layer_steps(first_layer, timesteps)
    _check_layers(macs, event_rate)
    bits, report = activation_bits(timesteps), EnergyReport(estimator="qnn")
    for i, (name, f) in enumerate(macs.items()):
        if i == 0:
            report.add(name, f, 1.0, f * int_mac_pj(8), f * int_mac_pj(8) * first)
        else:
            report.add(name, f, event_rate[name], f * int_mac_pj(bits), f * event_rate[name] * E_ADD32_PJ)
    return report


def estimate(estimator: str, sizes: dict, event_rate: dict, timesteps: int,
             first_layer: str = "once") -> EnergyReport:
    """One of `ESTIMATORS` by name on `sizes` (`layer_sizes` or `Probe.sizes()`), for the CLI and widgets."""
    if estimator == "memory":
        return memory(sizes, event_rate, timesteps, first_layer)
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {ESTIMATORS}, got {estimator!r}")
    function = compute if estimator == "compute" else qnn
    return function({n: s["macs"] for n, s in sizes.items()}, event_rate, timesteps, first_layer)


def _check_sizes(sizes: dict) -> None:
    """Raise a ValueError unless every layer gives positive integer macs, weights, inputs and outputs."""
    for name, size in sizes.items():
        missing = [k for k in ("macs", "weights", "inputs", "outputs") if k not in getattr(size, "keys", list)()]
        if missing:
            raise ValueError(f"sizes['{name}'] lacks {missing}: pass layer_sizes(ann, x) or Probe.sizes()")
        for key in ("weights", "inputs", "outputs"):
            if isinstance(size[key], bool) or not isinstance(size[key], numbers.Integral) or size[key] < 1:
                raise ValueError(f"sizes['{name}']['{key}'] must be a positive integer, got {size[key]!r}")


def _check_layers(macs: dict, event_rate: dict) -> None:
    """Raise a ValueError unless both name the same layers in the same order, with MACs > 0 and rates ≥ 0."""
    if not macs:
        raise ValueError("macs is empty: pass the MACs per sample of every Conv2d/Linear layer, e.g. count_macs(ann, x)")
    only_macs = [n for n in macs if n not in event_rate]
    only_rates = [n for n in event_rate if n not in macs]
    if only_macs or only_rates:
        raise ValueError(f"macs and event_rate name different layers: {only_macs} only in macs, {only_rates} only in "
                         "event_rate; take both from one network: count_macs(ann, x) (or Probe.macs) and the "
                         "Probe.event_rate() of an SNN converted from that ANN, run inside the Probe")
    for i, (a, b) in enumerate(zip(macs, event_rate)):
        if a != b:
            raise ValueError(f"macs and event_rate list the layers in different orders (position {i}: '{a}' in "
                             f"macs, '{b}' in event_rate): pass both in the order the layers run, input layer first")
    for name, f in macs.items():
        if isinstance(f, bool) or not isinstance(f, numbers.Integral) or f < 1:
            raise ValueError(f"macs['{name}'] must be a positive integer (MACs per sample), got {f!r}")
        rate = event_rate[name]
        if isinstance(rate, bool) or not isinstance(rate, numbers.Real) or not 0 <= rate < math.inf:
            raise ValueError(f"event_rate['{name}'] must be a finite number ≥ 0 (events per input unit over all T), "
                             f"got {rate!r}")
