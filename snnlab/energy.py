"""Compute energy of the ANN and of an SNN, one model for both (Roy group's convention).

    F_l     = k_h·k_w·C_in·C_out·H_out·W_out (conv),  n_in·n_out (linear)      MACs per sample
    E_ANN   = Σ_l F_l·E_MAC
    E_SNN   = F_1·E_MAC·(1 or T)  +  Σ_{l≥2} F_l·r_{l−1}·E_AC
    r_{l−1} = events (non-zero inputs) reaching layer l over all T, per input unit

E_MAC = 4.6 pJ and E_AC = 0.9 pJ (32-bit float, 45 nm; Horowitz, ISSCC 2014). The first layer sees
the analog image, so it multiplies; with direct encoding its input is the same at every step, so it
can be computed once (`first_layer="once"`, what `simulate` does) or charged T times ("every_step").
Membrane updates, threshold comparisons and memory traffic are not counted (as in the papers).
After average pooling a non-zero pooled value counts as one event (an upper bound of the spikes
behind it needing an accumulate each).

Reference: methods digest §7; DIET-SNN, IIR-SNN, Datta & Beerel. Notebooks 04 and 05.
"""
import math
import numbers
from dataclasses import dataclass, field

import torch
from torch import nn

from .neurons import check_timesteps

E_MAC_PJ, E_AC_PJ = 4.6, 0.9
FIRST_LAYER = ("once", "every_step")


@torch.no_grad()
def count_macs(model: nn.Module, x: torch.Tensor) -> dict:
    """MACs per sample of every Conv2d/Linear layer of an ANN, from one forward pass on `x` [B, ...]."""
    macs, hooks = {}, []

    def hook(name, module, inputs, out):
        per_output = module.in_features if isinstance(module, nn.Linear) else \
            module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
        macs[name] = out[0].numel() * per_output

    for name, m in model.named_modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            hooks.append(m.register_forward_hook(lambda mod, i, o, name=name: hook(name, mod, i, o)))
    try:
        model.eval()(x)
    finally:
        for h in hooks:
            h.remove()
    return macs


@dataclass
class EnergyReport:
    """Per-layer and total compute energy of an ANN and an SNN of the same architecture (pJ per sample)."""

    layers: list = field(default_factory=list)  # dicts: name, macs, rate, ann_pj, snn_pj
    ann_pj: float = 0.0
    snn_pj: float = 0.0

    @property
    def ratio(self) -> float:
        """E_ANN / E_SNN: how many times less energy the SNN needs (> 1 means the SNN wins)."""
        return self.ann_pj / self.snn_pj if self.snn_pj > 0 else float("inf")

    def table(self) -> str:
        """The report as a plain-text table."""
        rows = [f"{'layer':<24}{'MACs':>12}{'r_in':>8}{'ANN µJ':>10}{'SNN µJ':>10}"]
        rows += [f"{d['name']:<24}{d['macs']:>12,}{d['rate']:>8.3f}{d['ann_pj'] / 1e6:>10.3f}{d['snn_pj'] / 1e6:>10.3f}"
                 for d in self.layers]
        rows.append(f"{'total':<44}{self.ann_pj / 1e6:>10.3f}{self.snn_pj / 1e6:>10.3f}  ANN/SNN = {self.ratio:.2f}×")
        return "\n".join(rows)


def energy_report(macs: dict, event_rate: dict, timesteps: int, e_mac: float = E_MAC_PJ,
                  e_ac: float = E_AC_PJ, first_layer: str = "once") -> EnergyReport:
    """The energy model above, layer by layer.

    Args:
        macs: F_l per layer (`count_macs(ann, x)`, or `Probe.macs`; the names must match).
        event_rate: r_{l−1} per layer, events per input unit over all T (`Probe.event_rate()`).
        timesteps: T ≥ 1 (used when the first layer is charged at every step).
        e_mac, e_ac: energy of one multiply-accumulate and one accumulate, in pJ.
        first_layer: "once" or "every_step".

    Returns: an `EnergyReport`; `.ratio` is E_ANN/E_SNN.
    """
    if first_layer not in FIRST_LAYER:
        raise ValueError(f"first_layer must be one of {FIRST_LAYER}, got {first_layer!r}")
    check_timesteps(timesteps)
    _check_layers(macs, event_rate)
    report = EnergyReport()
    for i, (name, f) in enumerate(macs.items()):
        if i == 0:
            rate, snn = 1.0, f * e_mac * (timesteps if first_layer == "every_step" else 1)
        else:
            rate, snn = event_rate[name], f * event_rate[name] * e_ac
        report.layers.append({"name": name, "macs": f, "rate": rate, "ann_pj": f * e_mac, "snn_pj": snn})
        report.ann_pj += f * e_mac
        report.snn_pj += snn
    return report


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
