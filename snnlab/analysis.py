"""Where conversion loses accuracy: the error of each layer, split into three measured parts.

For a neuron layer with average input current z̄ = (1/T)·ΣX[t] and actual rate φ = (1/T)·ΣY[t]:

    relu(z̄) − φ =  [relu(z̄) − min(relu(z̄), A)]                 clipping: above the top rate A
                 + [min(relu(z̄), A) − φ_T(z̄)]                   quantization: the clip-floor staircase
                 + [φ_T(z̄) − φ]                                  unevenness: the input's order in time

φ_T = `neurons.clip_floor(z̄, θ, T, v_init, A)`, what the neuron would emit if its input were constant.
The first two terms follow from z̄ alone; the third only from the simulation. The three add up exactly.

Also the analytic quantization error for inputs spread evenly over the staircase's steps:
E[e] = (θ/T)·(v_init − ½), E[e²] = (θ/T)²·((1 − v_init)³ + v_init³)/3 (v_init as a fraction of θ):
zero mean and θ²/(12T²) at v_init = ½, −θ/(2T) and θ²/(3T²) at 0.

Signs: the decomposition counts what the SNN loses, ANN − SNN (positive: the SNN sends too little);
`expected_error` is SNN − ANN, φ_T − z, as in Bu et al.'s OPI paper. At v_init = 0 the first is
+θ/(2T) on average and the second −θ/(2T): the same floor bias seen from the two sides.

Reference: methods digest §8.2–8.3. Notebooks 02 (decomposition) and 03 (V[0]).
"""
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


def decompose(z_mean: torch.Tensor, rate: torch.Tensor, neuron: Neuron, timesteps: int) -> dict:
    """The three parts of relu(z̄) − φ for one layer, per neuron (see the module docstring).

    Shapes: z_mean, rate: [B, ...] → each part [B, ...].
    """
    value = neuron.threshold if neuron.spike_value is None else neuron.spike_value
    ideal = torch.relu(z_mean)
    clipped = torch.minimum(ideal, value)
    staircase = clip_floor(z_mean, neuron.threshold, timesteps, neuron.v_init, neuron.spike_value)
    return {"clipping": ideal - clipped, "quantization": clipped - staircase, "unevenness": staircase - rate}


@torch.no_grad()
def layer_errors(snn: nn.Module, x: torch.Tensor, timesteps: int) -> dict:
    """Run the SNN on `x` for T steps and split each neuron layer's error into the three parts.

    Returns: {layer name: {part: {"mean": float, "mse": float}, "total": {...}}}, in run order.
    Means are over all neurons and samples; "total" is relu(z̄) − φ.
    """
    found, hooks = {}, []
    for name, m in snn.named_modules():
        if isinstance(m, Neuron):
            hooks.append(m.register_forward_hook(partial(_on_neuron, found, name, timesteps)))
    try:
        reset(snn)
        snn(encode(x.to(model_device(snn)), timesteps))
    finally:
        for h in hooks:
            h.remove()
    return found


def _on_neuron(found, name, timesteps, module, inputs, out):
    parts = decompose(inputs[0].mean(0), out.mean(0), module, timesteps)
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
