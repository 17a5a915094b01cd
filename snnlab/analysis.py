"""Where conversion loses accuracy: the error of each layer, split into three measured parts.

For a neuron layer with average input current z̄ = (1/T)·ΣX[t], actual rate φ = (1/T)·ΣY[t] and
target a(z̄) = the layer's own ANN activation (ReLU, clip at λ_clip, or QCFS) applied to z̄:

    a(z̄) − φ =  [a(z̄) − min(a(z̄), A)]                          clipping: above the top rate A
              + [min(a(z̄), A) − φ_T(z̄)]                          quantization: the clip-floor staircase
              + [φ_T(z̄) − φ]                                      unevenness: the input's order in time

φ_T = `neurons.clip_floor(z̄, θ, T, v_init, A)`, what the neuron would emit if its input were constant.
The first two terms follow from z̄ alone; the third only from the simulation. The three add up exactly.
A QCFS network (L levels) converted with θ = λ_clip, V[0] = θ/2 has a(z̄) = φ_T(z̄) at T = L: no clipping,
no quantization, only unevenness. `convert.convert` stores each layer's activation in `snn.activations`;
an SNN without it (built by hand) is measured against ReLU. `clip_floor` models a soft-reset IF neuron
only, so layers with a leak λ < 1 or a hard reset are refused (their loss would be booked as unevenness).

Also the analytic quantization error for inputs spread evenly over the staircase's steps:
E[e] = (θ/T)·(v_init − ½), E[e²] = (θ/T)²·((1 − v_init)³ + v_init³)/3 (v_init as a fraction of θ):
zero mean and θ²/(12T²) at v_init = ½, −θ/(2T) and θ²/(3T²) at 0.

Signs: the decomposition counts what the SNN loses, ANN − SNN (positive: the SNN sends too little);
`expected_error` is SNN − ANN, φ_T − z, as in Bu et al.'s OPI paper. At v_init = 0 the first is
+θ/(2T) on average and the second −θ/(2T): the same floor bias seen from the two sides.

Reference: methods digest §8.2–8.3. Notebooks 02 (decomposition) and 03 (V[0]).
"""
import copy
from functools import partial

import torch
from torch import nn

from .neurons import Neuron, clip_floor, encode, reset
from .parallel import model_device

PARTS = ("clipping", "quantization", "unevenness")


def expected_error(timesteps: int, threshold: float = 1.0, v_init: float = 0.0) -> tuple:
    """Mean and mean square of φ_T(z) − z for z spread uniformly over many steps of the staircase.

    Returns: (mean, mse); e.g. v_init = 0.5 → (0, θ²/(12T²)); v_init = 0 → (−θ/(2T), θ²/(3T²)).
    """
    step = threshold / timesteps
    return step * (v_init - 0.5), step**2 * ((1 - v_init) ** 3 + v_init**3) / 3


def decompose(z_mean: torch.Tensor, rate: torch.Tensor, neuron: Neuron, timesteps: int, target=torch.relu) -> dict:
    """The three parts of a(z̄) − φ for one layer, per neuron (see the module docstring).

    Args:
        target: a, the layer's ANN activation (a function or module; ReLU by default).

    Shapes: z_mean, rate: [B, ...] → each part [B, ...].
    Raises ValueError if the neuron leaks (λ < 1) or resets to zero: `clip_floor` does not model it.
    """
    if not bool(torch.all(neuron.leak == 1)) or neuron.reset != "soft":
        raise ValueError(f"cannot decompose the error of a neuron with leak λ = {neuron.leak.mean().item():.3g} "
                         f"and reset '{neuron.reset}': the clip-floor staircase is the soft-reset IF neuron's "
                         "(λ = 1); measure the whole error (ANN − SNN) instead, or set leak to 1")
    value = neuron.threshold if neuron.spike_value is None else neuron.spike_value
    ideal = target(z_mean)
    clipped = torch.minimum(ideal, value)
    staircase = clip_floor(z_mean, neuron.threshold, timesteps, neuron.v_init, neuron.spike_value)
    return {"clipping": ideal - clipped, "quantization": clipped - staircase, "unevenness": staircase - rate}


@torch.no_grad()
def layer_errors(snn: nn.Module, x: torch.Tensor, timesteps: int) -> dict:
    """Run the SNN on `x` for T steps and split each neuron layer's error into the three parts.

    Returns: {layer name: {part: {"mean": float, "mse": float}, "total": {...}}}, in run order.
    Means are over all neurons and samples; "total" is a(z̄) − φ, a = the layer's ANN activation
    (`snn.activations[name]`, stored by `convert.convert`; ReLU where the SNN has none).
    Raises ValueError naming the layer if a neuron leaks or resets to zero (see `decompose`).
    """
    found, hooks, targets = {}, [], getattr(snn, "activations", {})
    for name, m in snn.named_modules():
        if isinstance(m, Neuron):
            try:
                decompose(torch.zeros(1), torch.zeros(1), m, timesteps)  # refuse before running
            except ValueError as error:
                raise ValueError(f"layer '{name}': {error}") from None
            target = copy.deepcopy(targets[name]).to(m.threshold.device) if name in targets else torch.relu
            hooks.append(m.register_forward_hook(partial(_on_neuron, found, name, timesteps, target)))
    try:
        reset(snn)
        snn(encode(x.to(model_device(snn)), timesteps))
    finally:
        for h in hooks:
            h.remove()
    return found


def _on_neuron(found, name, timesteps, target, module, inputs, out):
    parts = decompose(inputs[0].mean(0), out.mean(0), module, timesteps, target)
    parts["total"] = sum(parts.values())
    found[name] = {k: {"mean": v.mean().item(), "mse": (v**2).mean().item()} for k, v in parts.items()}


def first_spike_step(spikes: dict) -> dict:
    """The first step (1-based) at which each layer fires at all, from `Probe.spikes`; None if never.

    With V[0] = θ/2 deeper layers start earlier: OPI's shorter "propagation delay" (notebook 03).
    """
    out = {}
    for name, per_step in spikes.items():
        fired = torch.nonzero(per_step > 0)
        out[name] = int(fired[0]) + 1 if len(fired) else None
    return out
