"""Notebook 03: potential initialization: expected vs measured error, first spikes, accuracy vs V[0]."""
import plotly.graph_objects as go
import torch

from ..analysis import expected_error
from ..convert import adjusted
from .common import (LOG, PALETTE, _accuracy, _accuracy_energy, _curve_trace, _energy_panels, _figure, _log2_axis,
                     _marker_trace, _np, _set, _set_energy_curve, _show_energy_at, _value_at)

def expected_error_figure(errors: dict, threshold: float = 1.0) -> go.Figure:
    """Measured error of φ_T − z (markers) vs the analytic `analysis.expected_error` (lines), against T.

    Args:
        errors: {v_init: φ − z, [T, ...]}, e.g. `simulate(Neuron(v_init=v), z, T) - z` for uniform z: row t − 1
            holds the errors after t steps. threshold: θ.
    """
    fig = _figure("Quantization error of an IF neuron on uniform input: measured (●) and expected (—)", cols=2,
                  height=440, subplot_titles=["mean error E[φ − z]", "mean square error E[(φ − z)²]"])
    largest = 1
    for i, (v_init, error) in enumerate(errors.items()):
        error = error.flatten(1)  # [T, N]
        steps = torch.arange(1, len(error) + 1)
        largest = max(largest, len(error))
        mean, mse = expected_error(steps.double(), threshold, v_init)
        label, color = _v0_label(v_init), PALETTE[i % len(PALETTE)]
        for col, measured, analytic in ((1, error.mean(1), mean), (2, (error**2).mean(1), mse)):
            fig.add_trace(go.Scatter(name=label + " measured", x=_np(steps), y=_np(measured), mode="markers",
                                     marker=dict(color=color, size=9), legendgroup=label, showlegend=col == 1,
                                     hovertemplate="T = %{x}<br>%{y:.2e}<extra>" + label + ", measured</extra>"),
                          row=1, col=col)
            fig.add_trace(go.Scatter(name=label + " expected", x=_np(steps), y=_np(analytic), mode="lines",
                                     line=dict(color=color), legendgroup=label, showlegend=col == 1,
                                     hovertemplate="T = %{x}<br>%{y:.2e}<extra>" + label + ", expected</extra>"),
                          row=1, col=col)
    _log2_axis(fig, largest)
    fig.update_yaxes(title="φ − z (a.u.)", col=1)
    fig.update_yaxes(title="(φ − z)² (a.u.²)", col=2, **LOG)
    return fig


def _v0_label(v_init: float) -> str:
    """"V[0] = 0", "V[0] = θ/2" or "V[0] = 0.25·θ"."""
    return {0.0: "V[0] = 0", 0.5: "V[0] = θ/2"}.get(float(v_init), f"V[0] = {v_init:g}·θ")


def first_spike_figure(first: dict) -> go.Figure:
    """The first step at which each layer fires, one line per SNN ({label: `analysis.first_spike_step`})."""
    fig = _figure("When each layer starts to fire")
    for label, steps in first.items():
        fig.add_trace(go.Scatter(name=label, x=list(steps), y=[s if s is not None else float("nan") for s in steps.values()],
                                 mode="lines+markers", marker=dict(size=10),
                                 hovertemplate="%{x}<br>first spike at t = %{y}<extra>" + label + "</extra>"))
    fig.update_xaxes(title="layer (input → output)")
    fig.update_yaxes(title="first spike: time step t (steps)", rangemode="tozero", dtick=1)
    return fig


def potential_figure(snn, images, labels, v_init: float = 0.5, timesteps: int = 4, max_timesteps: int = 16) -> go.Figure:
    """The widget figure of notebook 03: expected error against V[0], and accuracy vs t for V[0] = v_init·θ."""
    fig = _figure("", rows=2, cols=2, height=820, vertical_spacing=0.16,
                  subplot_titles=["expected error on uniform input (θ = 1)", "accuracy after t steps",
                                  "energy after t steps, relative to the ANN", "energy of each layer at T"])
    for name, color, dash in (("E[φ − z]", PALETTE[0], "solid"), ("√E[(φ − z)²]", PALETTE[1], "solid")):
        fig.add_trace(go.Scatter(name=name, mode="lines", line=dict(color=color, dash=dash),
                                 hovertemplate="V[0] = %{x:.2f}·θ<br>%{y:.3f}<extra>" + name + "</extra>"), row=1, col=1)
    fig.add_trace(go.Scatter(name="this V[0]", mode="markers", marker=dict(size=12, color="#000000", symbol="circle-open"),
                             hovertemplate="V[0] = %{x:.2f}·θ<br>%{y:.3f}<extra></extra>"), row=1, col=1)
    for name, reference, dash in (("V[0] = 0", 0.0, "dash"), ("V[0] = θ/2", 0.5, "dot")):
        fig.add_trace(_curve_trace(name, "#888888", dash), row=1, col=2)
        _set(fig, name, x=list(range(1, max_timesteps + 1)),
             y=_np(_accuracy(adjusted(snn, v_init=reference), images, labels, max_timesteps)))
    fig.add_trace(_curve_trace("V[0] = v·θ", PALETTE[2]), row=1, col=2)
    fig.add_trace(_marker_trace("at T"), row=1, col=2)
    _energy_panels(fig, row=2)
    fig.update_xaxes(title="V[0] as a fraction of θ", row=1, col=1)
    fig.update_yaxes(title="error (units of θ)", row=1, col=1)
    _log2_axis(fig, max_timesteps, row=1, col=2)
    fig.update_yaxes(title="accuracy (%)", range=[0, 100], row=1, col=2)
    update_potential_accuracy(fig, snn, images, labels, v_init, max_timesteps)
    update_potential_error(fig, v_init, timesteps)
    return fig


def update_potential_accuracy(fig: go.Figure, snn, images, labels, v_init: float = 0.5, max_timesteps: int = 16) -> None:
    """Redraw the accuracy and the compute energy after t = 1..T_max steps of the SNN with every V[0] = v_init·θ,
    from one simulation (a `Probe` counts the events while it runs)."""
    curve, energies = _accuracy_energy(adjusted(snn, v_init=v_init), images, labels, max_timesteps)
    _set(fig, "V[0] = v·θ", x=list(range(1, max_timesteps + 1)), y=_np(curve))
    _set_energy_curve(fig, energies)


def update_potential_error(fig: go.Figure, v_init: float = 0.5, timesteps: int = 4) -> None:
    """Redraw `analysis.expected_error` against V[0] at T, the marker at v_init, the markers at T on the accuracy
    and the energy, and the energy per layer at T (read from `update_potential_accuracy`'s run)."""
    accuracy = _value_at(fig, "V[0] = v·θ", timesteps)
    grid = torch.linspace(0, 1, 101)
    mean, mse = expected_error(timesteps, 1.0, grid)
    here = expected_error(timesteps, 1.0, v_init)
    with fig.batch_update():
        _set(fig, "E[φ − z]", x=_np(grid), y=_np(mean))
        _set(fig, "√E[(φ − z)²]", x=_np(grid), y=_np(mse.sqrt()))
        _set(fig, "this V[0]", x=[v_init, v_init], y=[here[0], here[1] ** 0.5])
        _set(fig, "at T", x=[timesteps], y=[accuracy])
        energy = _show_energy_at(fig, timesteps)
        fig.update_layout(title=f"V[0] = {v_init:.2f}·θ, T = {timesteps}: expected error {here[0]:+.3f}·θ, "
                                f"RMS {here[1] ** 0.5:.3f}·θ; accuracy {accuracy:.1f} %<br>{energy}")
