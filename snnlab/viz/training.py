"""Notebooks 04–05: BPTT training curves, learned θ and λ, spikes and energy per layer, IIR stages, traces."""
import plotly.graph_objects as go
import torch

from ..neurons import neurons
from ..simulate import Probe, simulate
from .common import (PALETTE, TIME, _check_step, _energy_panels, _figure, _np, _set, _set_energy_curve,
                     _show_energy_at, energy_by_step)

ANN_COLOR = "#888888"


# ---------------------------------------------------------------- training, θ, λ, spikes, energy
def bptt_figure(histories: dict, ann_accuracy: float = None, start_accuracy: dict = None) -> go.Figure:
    """Training loss and test accuracy per epoch of BPTT runs ({label: `train_snn` history}).

    Args:
        ann_accuracy: the ANN's test accuracy (%), drawn as a dashed line.
        start_accuracy: {label: test accuracy (%) before training}, drawn at epoch 0.
    """
    fig = _figure("Training the SNN through time", cols=2, subplot_titles=["training loss", "test accuracy at T"])
    for i, (label, history) in enumerate(histories.items()):
        style = dict(name=label, mode="lines+markers", legendgroup=label, line=dict(color=PALETTE[i % len(PALETTE)]))
        fig.add_trace(go.Scatter(x=list(range(1, len(history["loss"]) + 1)), y=history["loss"], **style,
                                 hovertemplate="epoch %{x}<br>loss %{y:.3f}<extra>" + label + "</extra>"), row=1, col=1)
        start = (start_accuracy or {}).get(label)
        accuracy = ([start] if start is not None else []) + list(history["test_acc"])
        first = 0 if start is not None else 1  # epoch 0: before training
        fig.add_trace(go.Scatter(x=list(range(first, first + len(accuracy))), y=accuracy, showlegend=False, **style,
                                 hovertemplate="epoch %{x}<br>%{y:.1f} %<extra>" + label + "</extra>"), row=1, col=2)
    if ann_accuracy is not None:
        fig.add_hline(y=ann_accuracy, line=dict(color=ANN_COLOR, dash="dash"),
                      annotation_text=f"ANN {ann_accuracy:.1f} %", row=1, col=2)
    fig.update_xaxes(title="epoch", dtick=1)
    fig.update_yaxes(title="cross-entropy (nats)", col=1)
    fig.update_yaxes(title="accuracy (%)", col=2)
    return fig


def _grouped_bars(fig: go.Figure, values: dict, unit: str, fmt: str, col: int = 1, showlegend: bool = True) -> None:
    """One bar per layer and label: values = {label: {layer: value}}."""
    for i, (label, per_layer) in enumerate(values.items()):
        fig.add_trace(go.Bar(name=label, x=list(per_layer), y=list(per_layer.values()), legendgroup=label,
                             marker=dict(color=PALETTE[i % len(PALETTE)]), showlegend=showlegend,
                             hovertemplate="%{x}<br>%{y:" + fmt + "}" + unit + "<extra>" + label + "</extra>"),
                      row=1, col=col)


def _per_layer(networks: dict, attribute: str) -> dict:
    """{label: {neuron layer: θ or λ (its mean if per channel)}} of each network."""
    return {label: {name: getattr(m, attribute).mean().item() for name, m in neurons(snn).items()}
            for label, snn in networks.items()}


def threshold_leak_figure(networks: dict) -> go.Figure:
    """θ and λ of every neuron layer, one bar per network ({label: SNN}, e.g. before and after training)."""
    thresholds, leaks = _per_layer(networks, "threshold"), _per_layer(networks, "leak")
    lowest = min(v for per_layer in leaks.values() for v in per_layer.values())
    fig = _figure("Threshold θ and leak λ of each layer", cols=2,
                  subplot_titles=["threshold θ", "leak λ (1 = no leak; axis zoomed)"])
    _grouped_bars(fig, thresholds, "", ".3f", col=1)
    _grouped_bars(fig, leaks, "", ".4f", col=2, showlegend=False)
    fig.update_layout(barmode="group")
    fig.update_xaxes(title="neuron layer (input → output)")
    fig.update_yaxes(title="θ (a.u. of the layer's input)", col=1)
    fig.update_yaxes(title="λ (per step)", range=[min(0.9, lowest - 0.02), 1.005], col=2)
    return fig


def spike_rate_figure(rates: dict) -> go.Figure:
    """Spikes per neuron over all T in each layer, one bar per network ({label: `Probe.spike_rate()`})."""
    fig = _figure("Spikes per neuron in each layer, summed over the T steps")
    _grouped_bars(fig, rates, " spikes/neuron", ".3f")
    fig.update_layout(barmode="group")
    fig.update_xaxes(title="neuron layer (input → output)")
    fig.update_yaxes(title="spikes per neuron (over T steps)")
    return fig


def energy_figure(reports: dict) -> go.Figure:
    """Compute energy per layer of the ANN and of each SNN ({label: `energy.EnergyReport`}), in µJ per image."""
    first = next(iter(reports.values()))
    totals = ", ".join(f"{label} {r.snn_pj / r.ann_pj:.1%}" for label, r in reports.items())
    fig = _figure(f"Compute energy per image: ANN {first.ann_pj / 1e6:.3f} µJ; SNN / ANN: {totals}")
    values = {"ANN": {d["name"]: d["ann_pj"] / 1e6 for d in first.layers}}
    values.update({label: {d["name"]: d["snn_pj"] / 1e6 for d in r.layers} for label, r in reports.items()})
    _grouped_bars(fig, values, " µJ", ".4f")
    fig.data[0].marker.color = ANN_COLOR
    fig.update_layout(barmode="group")
    fig.update_xaxes(title="synaptic layer (input → output)")
    fig.update_yaxes(title="energy (µJ per image)")
    return fig


# ---------------------------------------------------------------- notebook 05: the IIR stages
def stages_figure(series: dict, ann_accuracy: float = None) -> go.Figure:
    """Accuracy and energy (relative to the ANN) against T, one line per series ({label: {T: `score`}})."""
    fig = _figure("Fewer time steps: accuracy and compute energy", cols=2,
                  subplot_titles=["test accuracy", "energy relative to the ANN"])
    for i, (label, scores) in enumerate(series.items()):
        steps = list(scores)
        style = dict(name=label, x=steps, mode="lines+markers", legendgroup=label,
                     line=dict(color=PALETTE[i % len(PALETTE)]), marker=dict(size=10))
        fig.add_trace(go.Scatter(y=[s["accuracy"] for s in scores.values()], **style,
                                 hovertemplate="T = %{x}<br>%{y:.1f} %<extra>" + label + "</extra>"), row=1, col=1)
        energy = [100 * s["energy"].snn_pj / s["energy"].ann_pj for s in scores.values()]
        fig.add_trace(go.Scatter(y=energy, **style, showlegend=False,
                                 hovertemplate="T = %{x}<br>%{y:.1f} % of the ANN<extra>" + label + "</extra>"),
                      row=1, col=2)
    if ann_accuracy is not None:
        fig.add_hline(y=ann_accuracy, line=dict(color=ANN_COLOR, dash="dash"),
                      annotation_text=f"ANN {ann_accuracy:.1f} %", row=1, col=1)
    fig.update_xaxes(title="time steps T", dtick=1, autorange="reversed")
    fig.update_yaxes(title="accuracy (%)", col=1)
    fig.update_yaxes(title="E_SNN / E_ANN (%)", rangemode="tozero", col=2)
    return fig


# ---------------------------------------------------------------- widget: raster and membrane of one layer
def record_traces(networks: dict, image: torch.Tensor, timesteps: int, count: int = 1024) -> dict:
    """H[t], V[t], S[t] of the first `count` neurons of every layer, for one image, per network.

    Args:
        networks: {label: SNN}. image: one image [C, H, W]. timesteps: T to simulate.

    Returns: {label: {"traces": {layer: {"h", "v", "s": [T, k]}}, "thresholds": {layer: θ},
        "energy": [the compute `EnergyReport` of this image after t = 1..T steps, from the same run]}}.
    """
    found = {}
    for label, snn in networks.items():
        with Probe(snn, trace=count) as probe:
            simulate(snn, image.unsqueeze(0), timesteps)
        found[label] = {"traces": probe.traces, "energy": energy_by_step(probe, timesteps),
                        "thresholds": {name: m.threshold.mean().item() for name, m in neurons(snn).items()}}
    return found


def _shown(spikes: torch.Tensor, rows: int) -> torch.Tensor:
    """Indices of up to `rows` firing neurons, ordered by their spike count (fewest first) and picked at evenly
    spaced ranks of that order, so a layer where most neurons fire at every step still shows its quiet ones."""
    counts = spikes.sum(0)  # [k]
    firing = torch.nonzero(counts > 0).flatten()
    firing = firing[torch.argsort(counts[firing], stable=True)]  # by rate, fewest spikes first
    pick = torch.linspace(0, len(firing) - 1, min(rows, len(firing))).round().long() if len(firing) else firing
    return firing[pick]


def spike_trace_figure(recorded: dict, **knobs) -> go.Figure:
    """The widget figure of notebooks 04–05: one layer's spike raster and three membrane traces."""
    fig = _figure("", rows=3, cols=2, height=980, vertical_spacing=0.11, row_heights=[0.4, 0.3, 0.3],
                  specs=[[{"colspan": 2}, None], [{"colspan": 2}, None], [{}, {}]],
                  subplot_titles=["spike raster: firing neurons sampled by rank of spike count, quietest at the bottom",
                                  "membrane potential H[t] of three of them",
                                  "energy of this image after t steps, relative to the ANN",
                                  "energy of each layer at T"])
    fig.add_trace(go.Scatter(name="spikes", mode="markers", marker=dict(symbol="line-ns-open", size=10,
                             color=PALETTE[0], line=dict(width=2)),
                             hovertemplate="t = %{x}<br>neuron %{customdata}<extra>spike</extra>"), row=1, col=1)
    for j in range(3):
        fig.add_trace(go.Scatter(name=f"H[t], neuron {j + 1}", mode="lines+markers", line=dict(color=PALETTE[j + 1]),
                                 hovertemplate="t = %{x}<br>H[t] = %{y:.3f}<extra>%{text}</extra>"), row=2, col=1)
    fig.add_trace(go.Scatter(name="θ", mode="lines", line=dict(color=ANN_COLOR, dash="dash"),
                             hovertemplate="threshold θ = %{y:.3f}<extra></extra>"), row=2, col=1)
    _energy_panels(fig, row=3)
    fig.update_xaxes(dtick=1, row=1, col=1)  # the membrane panel below names the shared time axis
    fig.update_xaxes(title=TIME, dtick=1, row=2, col=1)
    fig.update_yaxes(title="neuron (rank by spikes)", row=1, col=1)
    fig.update_yaxes(title="potential (a.u.)", row=2, col=1)
    fig.update_layout(margin=dict(t=120))
    update_spike_trace(fig, recorded, **knobs)
    return fig


def update_spike_trace(fig: go.Figure, recorded: dict, network: str = None, layer: str = None,
                       timesteps: int = None, rows: int = 24) -> None:
    """Redraw the raster (up to `rows` firing neurons) and three membranes of `layer` for steps t ≤ `timesteps`.

    `timesteps` must lie in [1, the steps recorded]; None shows them all.
    """
    network = network or next(iter(recorded))
    layer = layer or next(iter(recorded[network]["traces"]))
    trace, threshold = recorded[network]["traces"][layer], recorded[network]["thresholds"][layer]
    steps = len(trace["s"]) if timesteps is None else timesteps
    _check_step(steps, len(trace["s"]), f"record_traces simulated {network!r} for {len(trace['s'])} steps")
    s, h = trace["s"][:steps], trace["h"][:steps]  # [t, k]
    shown = _shown(s, rows)
    members = (shown.tolist() + [0, 1, 2])[:3]  # three firing neurons (or the first traced ones)
    step, row = torch.nonzero(s[:, shown] > 0, as_tuple=True)
    t = _np(torch.arange(1, steps + 1))
    firing = int((s.sum(0) > 0).sum())
    _set_energy_curve(fig, recorded[network]["energy"])  # outside batch_update: _show_energy_at reads it back
    energy = _show_energy_at(fig, steps)
    with fig.batch_update():
        _set(fig, "spikes", x=_np(step + 1), y=_np(row), customdata=_np(shown[row]))
        for j, column in enumerate(members):
            _set(fig, f"H[t], neuron {j + 1}", x=t, y=_np(h[:, column]), text=[f"neuron {column}"] * steps)
        _set(fig, "θ", x=[0.5, steps + 0.5], y=[threshold, threshold])
        fig.update_xaxes(range=[0.5, steps + 0.5], row=1)
        fig.update_xaxes(range=[0.5, steps + 0.5], row=2)
        fig.update_layout(title=f"{network}, layer {layer}: {firing} of {s.shape[1]} traced neurons fire in {steps} "
                                f"steps<br>{s.sum().item() / s.shape[1]:.2f} spikes per neuron (θ = {threshold:.3f}); "
                                f"{energy}")
