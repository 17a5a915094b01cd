"""Notebook 00: one layer of IF/LIF neurons: spike raster, membrane traces, rate vs input (the staircase)."""
import plotly.graph_objects as go
import torch

from ..energy import energy_report
from ..neurons import Neuron
from ..simulate import Probe, encode
from .common import PALETTE, TIME, _figure, _np, _set

RASTER_CURRENTS = torch.linspace(0.0, 1.5, 16)  # inputs X of the neurons in notebook 00's raster (a.u.)
RATE_CURRENTS = torch.linspace(-0.5, 2.0, 501)  # inputs X over which the rate curve is drawn (a.u.)


def _run_neurons(currents: torch.Tensor, timesteps: int, encoding: str = "direct", seed: int = 0,
                 **neuron) -> dict:
    """H[t], V[t] and S[t] ([T, N] each) of a `Neuron` layer whose neuron i gets currents[i] at every step."""
    layer = Neuron(**neuron)
    with Probe(layer, trace=len(currents)) as probe:
        layer(encode(currents.unsqueeze(0), timesteps, encoding, seed))  # [T, 1, N]
    return probe.traces[""]


def _membrane_data(trace: dict, column: int, threshold: float, v_init: float) -> dict:
    """x/y of V[t] (from V[0]), H[t] and the spikes of neuron `column` of a trace ([T, k] each)."""
    h, v, s = (trace[key][:, column] for key in ("h", "v", "s"))
    steps = torch.arange(1, len(h) + 1)
    return {"V[t]": dict(x=_np(torch.arange(len(h) + 1)), y=_np(torch.cat([torch.tensor([v_init * threshold]), v]))),
            "H[t]": dict(x=_np(steps), y=_np(h)), "spike": dict(x=_np(steps[s > 0]), y=_np(h[s > 0]))}


def _membrane_traces(data: dict, color: str, label: str = "") -> list:
    """Traces named "V[t]", "H[t]", "spike" (+ " label") from `_membrane_data`."""
    suffix = f" {label}" if label else ""
    return [
        go.Scatter(name="V[t]" + suffix, mode="lines+markers", line=dict(color=color), **data["V[t]"],
                   hovertemplate="t = %{x}<br>V[t] = %{y:.3f}<extra>after reset" + suffix + "</extra>"),
        go.Scatter(name="H[t]" + suffix, mode="markers", marker=dict(symbol="circle-open", size=10, color=color),
                   **data["H[t]"], hovertemplate="t = %{x}<br>H[t] = %{y:.3f}<extra>before the spike" + suffix + "</extra>"),
        go.Scatter(name="spike" + suffix, mode="markers", marker=dict(symbol="star", size=14, color=color),
                   **data["spike"], hovertemplate="spike at t = %{x}<extra>" + suffix + "</extra>")]


def _raster_data(spikes: torch.Tensor, currents) -> dict:
    """x = step, y = input current of every spike in `spikes` [T, N] (non-zero = spike)."""
    step, neuron = torch.nonzero(torch.as_tensor(spikes) != 0, as_tuple=True)
    return dict(x=_np(step + 1), y=_np(torch.as_tensor(currents).flatten()[neuron]))


def _raster_trace(data: dict, color: str = PALETTE[0], name: str = "spikes") -> go.Scatter:
    return go.Scatter(name=name, mode="markers", marker=dict(symbol="line-ns-open", size=9, color=color,
                                                             line=dict(width=2)), **data,
                      hovertemplate="spike at t = %{x}<br>neuron with X = %{y:.2f}<extra>" + name + "</extra>")


def _threshold_line(threshold: float, timesteps: int) -> dict:
    return dict(x=[0, timesteps], y=[threshold, threshold])


def membrane_figure(trace: dict, labels: list, threshold: float = 1.0, v_init: float = 0.0) -> go.Figure:
    """V[t] (line), H[t] (open circles) and spikes (stars) of traced neurons, with the threshold θ.

    Args:
        trace: `Probe.traces[layer]`, {"h", "v", "s": [T, k]}; column i is the neuron labelled labels[i].
        labels: one name per traced neuron. threshold: θ. v_init: V[0] as a fraction of θ.
    """
    timesteps = len(trace["h"])
    fig = _figure(f"Membrane potential over T = {timesteps} steps (θ = {threshold:g})")
    for i, label in enumerate(labels):
        fig.add_traces(_membrane_traces(_membrane_data(trace, i, threshold, v_init), PALETTE[i % len(PALETTE)], label))
    fig.add_trace(go.Scatter(name="θ", mode="lines", line=dict(color="#888888", dash="dash"),
                             hovertemplate="threshold θ = %{y:.3f}<extra></extra>", **_threshold_line(threshold, timesteps)))
    fig.update_xaxes(title=TIME)
    fig.update_yaxes(title="membrane potential (a.u.)")
    return fig


def raster_figure(spikes: dict, currents, input_title: str = "input current X (a.u.)") -> go.Figure:
    """Spike rasters side by side: one panel per entry, one row per neuron placed at its input X.

    Args:
        spikes: {label: [T, N] spikes (any non-zero value is a spike)}. currents: X of the N neurons.
        input_title: the y axis title, what `currents` are.
    """
    fig = _figure("Spike rasters: each row is a neuron, placed at its input X", cols=len(spikes),
                  subplot_titles=list(spikes), shared_yaxes=True)
    for i, (label, s) in enumerate(spikes.items()):
        fig.add_trace(_raster_trace(_raster_data(s, currents), PALETTE[i % len(PALETTE)], label), row=1, col=i + 1)
    fig.update_xaxes(title=TIME, dtick=1 if len(next(iter(spikes.values()))) <= 16 else None)
    fig.update_yaxes(title=input_title, col=1)
    return fig


def rate_figure(currents, rates: dict, threshold: float = 1.0) -> go.Figure:
    """Rate φ = (1/T)·ΣY[t] against the constant input X, one line per entry, with ReLU(X) for reference.

    Args:
        currents: the inputs X [N]. rates: {label: rates [N] (any shape with N values)}. threshold: θ.
    """
    x = _np(currents)
    fig = _figure(f"A neuron's rate against its input: a staircase under ReLU (θ = {threshold:g})")
    fig.add_trace(go.Scatter(name="ReLU(X)", x=x, y=_np(torch.relu(torch.as_tensor(x))), mode="lines",
                             line=dict(color="#888888", dash="dash"),
                             hovertemplate="X = %{x:.3f}<br>ReLU(X) = %{y:.3f}<extra></extra>"))
    for label, rate in rates.items():
        fig.add_trace(go.Scatter(name=label, x=x, y=_np(rate), mode="lines", line=dict(shape="hv"),
                                 hovertemplate="X = %{x:.3f}<br>φ = %{y:.3f}<extra>" + label + "</extra>"))
    fig.update_xaxes(title="input current X (a.u.)")
    fig.update_yaxes(title="rate φ = (1/T)·ΣY[t] (a.u.)")
    return fig


def neuron_figure(**knobs) -> go.Figure:
    """The widget figure of notebook 00: membrane trace, raster and rate staircase (see `update_neuron`)."""
    fig = _figure("", rows=2, cols=2, height=580, column_widths=[0.55, 0.45], vertical_spacing=0.16,
                  horizontal_spacing=0.1,
                  specs=[[{}, {"rowspan": 2}], [{}, None]],
                  subplot_titles=["membrane potential of this neuron", "rate against input: the staircase",
                                  "spike raster of 16 neurons"])
    fig.add_traces(_membrane_traces({"V[t]": {}, "H[t]": {}, "spike": {}}, PALETTE[0]), rows=1, cols=1)
    fig.add_trace(go.Scatter(name="θ", mode="lines", line=dict(color="#888888", dash="dash"),
                             hovertemplate="threshold θ = %{y:.3f}<extra></extra>"), row=1, col=1)
    fig.add_trace(_raster_trace({}), row=2, col=1)
    fig.add_trace(go.Scatter(name="ReLU(X)", mode="lines", line=dict(color="#888888", dash="dash"),
                             hovertemplate="X = %{x:.3f}<br>ReLU(X) = %{y:.3f}<extra></extra>"), row=1, col=2)
    fig.add_trace(go.Scatter(name="rate", mode="lines", line=dict(color=PALETTE[1], shape="hv"),
                             hovertemplate="X = %{x:.3f}<br>φ = %{y:.3f}<extra>rate over T steps</extra>"), row=1, col=2)
    fig.add_trace(go.Scatter(name="this neuron", mode="markers", marker=dict(size=13, color=PALETTE[0]),
                             hovertemplate="X = %{x:.3f}<br>φ = %{y:.3f}<extra>this neuron</extra>"), row=1, col=2)
    fig.update_xaxes(title=TIME, row=2, col=1)
    fig.update_yaxes(title="potential (a.u.)", row=1, col=1)
    fig.update_yaxes(title="input X (a.u.)", row=2, col=1)
    fig.update_xaxes(title="input current X (a.u.)", row=1, col=2)
    fig.update_yaxes(title="rate φ (a.u.)", row=1, col=2)
    update_neuron(fig, **knobs)
    return fig


def update_neuron(fig: go.Figure, current: float = 0.3, threshold: float = 1.0, leak: float = 1.0,
                  v_init: float = 0.0, timesteps: int = 8, reset: str = "soft", encoding: str = "direct",
                  seed: int = 0) -> None:
    """Simulate one neuron (input `current`), 16 raster neurons and the rate curve; redraw in place.

    All neurons share θ = `threshold`, λ = `leak`, V[0] = `v_init`·θ and the reset; with `encoding="rate"`
    each gets Bernoulli spikes of probability clip(X, 0, 1) instead of X (`neurons.encode`).
    """
    currents = torch.cat([torch.tensor([float(current)]), RASTER_CURRENTS, RATE_CURRENTS])
    trace = _run_neurons(currents, timesteps, encoding, seed, threshold=threshold, leak=leak, v_init=v_init,
                         reset=reset)
    rate = trace["s"].mean(0) * threshold  # [N]: spikes carry θ
    split = 1 + len(RASTER_CURRENTS)
    membrane = _membrane_data(trace, 0, threshold, v_init)
    with fig.batch_update():
        for name, data in membrane.items():
            _set(fig, name, **data)
        _set(fig, "θ", **_threshold_line(threshold, timesteps))
        _set(fig, "spikes", **_raster_data(trace["s"][:, 1:split], RASTER_CURRENTS))
        _set(fig, "ReLU(X)", x=_np(RATE_CURRENTS), y=_np(torch.relu(RATE_CURRENTS)))
        _set(fig, "rate", x=_np(RATE_CURRENTS), y=_np(rate[split:]))
        _set(fig, "this neuron", x=[float(current)], y=[rate[0].item()])
        fig.update_xaxes(range=[-0.3, timesteps + 0.5], col=1)
        fig.update_layout(title=f"{'IF' if leak == 1 else 'LIF'} neuron, {reset} reset, {encoding} input: "
                                f"X = {current:.2f}, θ = {threshold:.2f}, λ = {leak:.2f}, V[0] = {v_init:.2f}·θ, "
                                f"T = {timesteps}<br>{synapse_energy_note(int(trace['s'][:, 0].sum()), timesteps)}")


def synapse_energy_note(spikes: int, timesteps: int) -> str:
    """The energy one outgoing synapse of this neuron costs the next layer: n spikes × E_AC against one MAC.

    E_SNN = n·E_AC (an accumulate per spike), E_ANN = E_MAC (one multiply-accumulate of the ANN's activation),
    `energy.energy_report` of a one-synapse layer whose input is this neuron (r = n events over T steps).
    """
    report = energy_report({"input": 1, "synapse": 1}, {"input": 1.0, "synapse": float(spikes)}, timesteps)
    synapse = report.layers[1]
    return (f"energy per outgoing synapse: {spikes} spikes × 0.9 pJ = {synapse['snn_pj']:.2f} pJ vs one ANN MAC "
            f"{synapse['ann_pj']:.2f} pJ ({synapse['snn_pj'] / synapse['ann_pj']:.2f} ×)")
