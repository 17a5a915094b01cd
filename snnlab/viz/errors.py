"""Notebook 02: conversion error per layer (clipping, quantization, unevenness) and accuracy vs T per recipe."""
import plotly.graph_objects as go

from ..analysis import PARTS, layer_errors
from ..convert import RECIPE_LABELS, adjusted
from .common import (DASHES, LOG, PALETTE, PART_COLORS, _accuracy, _accuracy_energy, _ann_line, _curve_trace,
                     _energy_panels, _figure, _log2_axis, _marker_trace, _np, _set, _set_energy_curve,
                     _show_energy_at, _value_at)

def _by_timesteps(results: dict) -> dict:
    """{(recipe, T): value} → {T: {recipe: value}}."""
    grouped = {}
    for (recipe, timesteps), value in results.items():
        grouped.setdefault(timesteps, {})[recipe] = value
    return grouped


def layer_error_figure(errors: dict, part: str = "total") -> go.Figure:
    """The mean square error of each layer, one bar per recipe, one panel per T.

    Args:
        errors: {(recipe, T): `analysis.layer_errors(snn, x, T)`}. part: "total" or a part of `analysis.PARTS`.
    """
    grouped = _by_timesteps(errors)
    fig = _figure(f"Mean square error of each layer, E[({part} error)²], measured in the SNN", cols=len(grouped),
                  subplot_titles=[f"T = {t}" for t in grouped], shared_yaxes=True)
    recipes = list(dict.fromkeys(recipe for recipe, _ in errors))
    for col, by_recipe in enumerate(grouped.values(), start=1):
        for recipe, found in by_recipe.items():
            label = RECIPE_LABELS.get(recipe, recipe)
            fig.add_trace(go.Bar(name=label, x=list(found), y=[e[part]["mse"] for e in found.values()],
                                 marker_color=PALETTE[recipes.index(recipe)], legendgroup=recipe, showlegend=col == 1,
                                 hovertemplate="%{x}<br>MSE %{y:.2e}<extra>" + label + "</extra>"), row=1, col=col)
    fig.update_layout(barmode="group")
    fig.update_xaxes(title="layer")
    fig.update_yaxes(**LOG)
    fig.update_yaxes(title="mean square error (a.u.²)", col=1)
    return fig


def accuracy_bar_figure(accuracy: dict, ann_accuracy: float = None) -> go.Figure:
    """SNN accuracy per recipe (bars) at each T, beside the ANN's: {(recipe, T): accuracy in %}."""
    grouped = _by_timesteps(accuracy)
    fig = _figure("SNN accuracy when the thresholds are fitted for that T")
    for recipe in dict.fromkeys(recipe for recipe, _ in accuracy):
        steps = [t for t in grouped if recipe in grouped[t]]
        label = RECIPE_LABELS.get(recipe, recipe)
        fig.add_trace(go.Bar(name=label, x=[f"T = {t}" for t in steps], y=[grouped[t][recipe] for t in steps],
                             text=[f"{grouped[t][recipe]:.1f}" for t in steps], textposition="outside",
                             hovertemplate="%{x}<br>%{y:.1f} %<extra>" + label + "</extra>"))
    _ann_line(fig, ann_accuracy)
    fig.update_layout(barmode="group")
    fig.update_xaxes(title="time steps T")
    fig.update_yaxes(title="test accuracy (%)", range=[0, 100])
    return fig


def accuracy_figure(curves: dict, ann_accuracy: float = None, title: str = "SNN accuracy after each time step") -> go.Figure:
    """Accuracy after t = 1..T steps, one line per SNN ({label: accuracy [T] in %, e.g. `evaluate_snn(...)`})."""
    fig = _figure(title)
    largest = 1
    for i, (key, curve) in enumerate(curves.items()):
        y, label = _np(curve), RECIPE_LABELS.get(key, key)
        largest = max(largest, len(y))
        fig.add_trace(go.Scatter(name=label, x=list(range(1, len(y) + 1)), y=y, mode="lines+markers",
                                 line=dict(dash=DASHES[i % len(DASHES)]),  # curves that coincide stay visible
                                 hovertemplate="T = %{x}<br>%{y:.1f} %<extra>" + label + "</extra>"))
    _ann_line(fig, ann_accuracy)
    _log2_axis(fig, largest)
    fig.update_yaxes(title="test accuracy (%)", range=[0, 100])
    return fig


def _parts_data(errors: dict, stat: str) -> dict:
    """{part: [stat of that part in each layer]} from `analysis.layer_errors` output; stat "mean" or "rms"."""
    key = "mean" if stat == "mean" else "mse"
    found = {part: [e[part][key] for e in errors.values()] for part in (*PARTS, "total")}
    return found if stat == "mean" else {part: [v**0.5 for v in values] for part, values in found.items()}


def _parts_traces(errors: dict, x: list, stat: str, showlegend: bool = True) -> list:
    """Bars (stacked signed means) or lines (RMS) of the three parts and the total, one point per x."""
    traces = []
    for part, values in _parts_data(errors, stat).items():
        style = dict(name=part, x=x, y=values, legendgroup=part, showlegend=showlegend,
                     hovertemplate="%{x}<br>" + stat + " %{y:.2e}<extra>" + part + "</extra>")
        if stat == "mean" and part != "total":
            traces.append(go.Bar(marker_color=PART_COLORS[part], **style))
        else:
            symbol = "diamond" if part == "total" else "circle"
            traces.append(go.Scatter(mode="markers" if stat == "mean" else "lines+markers", **style,
                                     marker=dict(color=PART_COLORS[part], symbol=symbol, size=10)))
    return traces


def error_parts_figure(errors: dict, timesteps: int) -> go.Figure:
    """Each layer's error ReLU(z̄) − φ split into clipping, quantization and unevenness (`analysis.layer_errors`).

    Left: the signed means, stacked (they add up to the total ◆). Right: the root mean square of each part.
    """
    fig = _figure(f"Conversion error of each layer at T = {timesteps}", cols=2, height=460,
                  subplot_titles=["mean error (stacked parts, ◆ total)", "root mean square of each part"])
    layers = list(errors)
    fig.add_traces(_parts_traces(errors, layers, "mean"), rows=1, cols=1)
    fig.add_traces(_parts_traces(errors, layers, "rms", showlegend=False), rows=1, cols=2)
    fig.update_layout(barmode="relative")
    fig.update_xaxes(title="layer")
    fig.update_yaxes(title="ReLU(z̄) − φ (a.u.)", col=1)
    fig.update_yaxes(title="RMS (a.u.)", col=2)
    return fig


def error_vs_timesteps_figure(errors_by_t: dict) -> go.Figure:
    """The parts of the error against T, averaged over layers ({T: `analysis.layer_errors(snn, x, T)`})."""
    steps = list(errors_by_t)
    averaged = {t: {part: {k: sum(e[part][k] for e in errors.values()) / len(errors) for k in ("mean", "mse")}
                    for part in (*PARTS, "total")} for t, errors in errors_by_t.items()}
    fig = _figure("The three parts of the conversion error against T (mean over layers)", cols=2, height=440,
                  subplot_titles=["mean error", "root mean square"])
    for col, stat in ((1, "mean"), (2, "rms")):
        for part, values in _parts_data(averaged, stat).items():
            fig.add_trace(go.Scatter(name=part, x=steps, y=values, mode="lines+markers", legendgroup=part,
                                     showlegend=col == 1, marker=dict(color=PART_COLORS[part]),
                                     line=dict(color=PART_COLORS[part], dash="dot" if part == "total" else "solid"),
                                     hovertemplate="T = %{x}<br>" + stat + " %{y:.2e}<extra>" + part + "</extra>"),
                          row=1, col=col)
    _log2_axis(fig, max(steps))
    fig.update_yaxes(title="ReLU(z̄) − φ (a.u.)", col=1)
    fig.update_yaxes(title="RMS (a.u.)", rangemode="tozero", col=2)
    return fig


def conversion_error_figure(snn, images, labels, timesteps: int = 4, threshold_scale: float = 1.0,
                            max_timesteps: int = 16) -> go.Figure:
    """The widget figure of notebook 02: error parts per layer at T, and accuracy vs t, for θ × scale."""
    fig = _figure("", rows=2, cols=2, height=820, vertical_spacing=0.16,
                  subplot_titles=["mean error of each layer (◆ total)", "accuracy after t steps",
                                  "energy after t steps, relative to the ANN", "energy of each layer at T"])
    fig.add_traces(_parts_traces({"": {p: {"mean": 0, "mse": 0} for p in (*PARTS, "total")}}, [""], "mean"), rows=1, cols=1)
    fig.add_trace(_curve_trace("θ × 1", "#888888", "dash"), row=1, col=2)
    fig.add_trace(_curve_trace("θ × scale", PALETTE[0]), row=1, col=2)
    fig.add_trace(_marker_trace("at T"), row=1, col=2)
    fig.update_layout(barmode="relative")
    _energy_panels(fig, row=2)
    fig.update_xaxes(title="layer", row=1, col=1)
    fig.update_yaxes(title="ReLU(z̄) − φ (a.u.)", row=1, col=1)
    _log2_axis(fig, max_timesteps, row=1, col=2)
    fig.update_yaxes(title="accuracy (%)", range=[0, 100], row=1, col=2)
    _set(fig, "θ × 1", x=list(range(1, max_timesteps + 1)), y=_np(_accuracy(snn, images, labels, max_timesteps)))
    update_conversion_accuracy(fig, snn, images, labels, threshold_scale, max_timesteps)
    update_conversion_parts(fig, snn, images, timesteps, threshold_scale)
    return fig


def update_conversion_accuracy(fig: go.Figure, snn, images, labels, threshold_scale: float = 1.0,
                               max_timesteps: int = 16) -> None:
    """Redraw the accuracy and the compute energy after t = 1..T_max steps of the SNN with every θ × `threshold_scale`,
    from one simulation (a `Probe` counts the events while it runs)."""
    curve, energies = _accuracy_energy(adjusted(snn, threshold_scale), images, labels, max_timesteps)
    _set(fig, "θ × scale", x=list(range(1, max_timesteps + 1)), y=_np(curve))
    _set_energy_curve(fig, energies)


def update_conversion_parts(fig: go.Figure, snn, images, timesteps: int = 4, threshold_scale: float = 1.0) -> None:
    """Redraw each layer's error parts at T for θ × `threshold_scale`, the markers at T on the accuracy and the
    energy, and the energy per layer at T (read from `update_conversion_accuracy`'s run)."""
    accuracy = _value_at(fig, "θ × scale", timesteps)
    errors = layer_errors(adjusted(snn, threshold_scale), images, timesteps)
    with fig.batch_update():
        for part, values in _parts_data(errors, "mean").items():
            _set(fig, part, x=list(errors), y=values)
        _set(fig, "at T", x=[timesteps], y=[accuracy])
        total = sum(e["total"]["mean"] for e in errors.values()) / len(errors)
        energy = _show_energy_at(fig, timesteps)
        fig.update_layout(title=f"Every θ × {threshold_scale:.2f}, T = {timesteps}: mean total error {total:+.3f} "
                                f"(mean over layers), accuracy {accuracy:.1f} %<br>{energy}")
