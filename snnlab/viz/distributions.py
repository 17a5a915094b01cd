"""Notebook 01: ANN training curves, pre-activation distributions and the thresholds each recipe picks."""
import plotly.graph_objects as go
import torch

from ..convert import RECIPES, percentile_threshold
from ..neurons import check_timesteps, clip_floor
from .common import LOG, PALETTE, _figure, _np, _set

def training_figure(histories: dict) -> go.Figure:
    """Training loss and training accuracy per epoch, one line per network ({label: `get_ann` history})."""
    fig = _figure("Training the ANNs", cols=2, subplot_titles=["loss", "training accuracy"])
    for i, (label, history) in enumerate(histories.items()):
        epochs = list(range(1, len(history["loss"]) + 1))
        for col, key, unit in ((1, "loss", ""), (2, "train_acc", " %")):
            fig.add_trace(go.Scatter(name=label, x=epochs, y=history[key], mode="lines+markers", showlegend=col == 1,
                                     line=dict(color=PALETTE[i % len(PALETTE)]), legendgroup=label,
                                     hovertemplate="epoch %{x}<br>%{y:.3f}" + unit + "<extra>" + label + "</extra>"),
                          row=1, col=col)
    fig.update_xaxes(title="epoch")
    fig.update_yaxes(title="cross-entropy (nats)", col=1)
    fig.update_yaxes(title="accuracy (%)", col=2)
    return fig


def _thresholds(record, timesteps: int, percentile: float, v_init: float, learned=None) -> dict:
    """θ of one layer by each recipe of convert.py: {label: θ} (`learned`: the clip ANN's record)."""
    found = {"max": RECIPES["max"](record, timesteps)["threshold"],
             f"{percentile:g}th percentile": percentile_threshold(record, timesteps, v_init, p=percentile)["threshold"],
             f"MSE search (T = {timesteps})": RECIPES["mse"](record, timesteps, v_init)["threshold"]}
    if learned is not None:
        found["λ_clip of the clip ANN"] = RECIPES["bound"](learned, timesteps)["threshold"]
    return found


def _histogram(values: torch.Tensor, low: float, high: float, bins: int = 80) -> dict:
    """Bar x/y/width: the fraction of `values` in each of `bins` equal bins over [low, high]."""
    counts = torch.histc(values, bins=bins, min=low, max=high)
    width = (high - low) / bins
    return dict(x=_np(low + width * (torch.arange(bins) + 0.5)), y=_np(counts / len(values)), width=width)


def _bars(name: str, color: str, data: dict = None, **extra) -> go.Bar:
    return go.Bar(name=name, marker=dict(color=color, line=dict(width=0)), **(data or {}), **extra,
                  hovertemplate="value ≈ %{x:.3f}<br>fraction %{y:.2e}<extra>" + name + "</extra>")


def _vline(name: str, color: str, x: float, top: float, **extra) -> go.Scatter:
    return go.Scatter(name=name, x=[x, x], y=[1e-6, top], mode="lines", line=dict(color=color, width=2.5), **extra,
                      hovertemplate=name + ": θ = %{x:.3f}<extra></extra>")


def preactivation_figure(records: dict, timesteps: int = 4, percentile: float = 99.9, learned: dict = None,
                         v_init: float = 0.5) -> go.Figure:
    """One histogram of pre-activations z per layer, with the threshold θ each recipe picks on it.

    Args:
        records: `convert.record_preactivations(...)` of the ANN. timesteps, v_init: what the MSE search fits.
        percentile: p of the percentile recipe. learned: the records of a "clip" ANN (its λ_clip per layer).
    """
    cols = min(3, len(records))
    rows = -(-len(records) // cols)
    fig = _figure("Pre-activations z of each layer (fraction per bin, log scale) and the thresholds θ",
                  rows=rows, cols=cols, height=300 * rows + 120, subplot_titles=list(records))
    for i, (name, record) in enumerate(records.items()):
        where = dict(row=i // cols + 1, col=i % cols + 1)
        z = record.samples
        fig.add_trace(_bars("z", "#9aa5b1", _histogram(z, z.min().item(), record.max), showlegend=i == 0,
                            legendgroup="z"), **where)
        found = _thresholds(record, timesteps, percentile, v_init, learned[name] if learned else None)
        for j, (label, threshold) in enumerate(found.items()):
            fig.add_trace(_vline(label, PALETTE[j + 1], threshold, 1.0, legendgroup=label, showlegend=i == 0), **where)
    fig.update_yaxes(title="fraction", col=1)
    fig.update_yaxes(**LOG)
    fig.update_xaxes(title="pre-activation z (a.u.)", row=rows)
    return fig


def distribution_figure(records: dict, **knobs) -> go.Figure:
    """The widget figure of notebook 01: z of one layer with the thresholds, and a(z) vs the SNN's φ_T(z)."""
    fig = _figure("", cols=2, height=460, subplot_titles=["pre-activations z and thresholds θ",
                                                        "what the ANN sends, and what the SNN sends"])
    fig.add_trace(_bars("z", "#9aa5b1"), row=1, col=1)
    for j, label in enumerate(["max", "percentile", "MSE search", "λ_clip of the clip ANN"]):
        fig.add_trace(_vline(label, PALETTE[j + 1], 0.0, 1.0), row=1, col=1)
    fig.add_trace(_bars("ANN a = ReLU(z)", PALETTE[0], opacity=0.6), row=1, col=2)
    fig.add_trace(_bars("SNN φ_T(z)", PALETTE[1], opacity=0.6), row=1, col=2)
    fig.update_layout(barmode="overlay")
    fig.update_yaxes(title="fraction", **LOG)
    fig.update_xaxes(title="pre-activation z (a.u.)", col=1)
    fig.update_xaxes(title="activation value (a.u.)", col=2)
    update_distribution(fig, records, **knobs)
    return fig


def update_distribution(fig: go.Figure, records: dict, layer: str = None, timesteps: int = 2,
                        percentile: float = 99.9, learned: dict = None, v_init: float = 0.5) -> None:
    """Redraw one layer: z with θ by each recipe; ReLU(z) vs φ_T(z) = clip_floor(z; θ_percentile, T, V[0])."""
    check_timesteps(timesteps)
    layer = layer or next(iter(records))
    record = records[layer]
    found = _thresholds(record, timesteps, percentile, v_init, learned[layer] if learned else None)
    z = record.samples
    ann = record.activation(z)
    snn = clip_floor(z, found[f"{percentile:g}th percentile"], timesteps, v_init)
    top = max(ann.max().item(), snn.max().item())
    with fig.batch_update():
        _set(fig, "z", **_histogram(z, z.min().item(), record.max))
        for label, threshold in zip(["max", "percentile", "MSE search", "λ_clip of the clip ANN"], found.values()):
            _set(fig, label, x=[threshold, threshold])
        _set(fig, "λ_clip of the clip ANN", visible=learned is not None)
        _set(fig, "ANN a = ReLU(z)", **_histogram(ann, 0.0, top, bins=60))
        _set(fig, "SNN φ_T(z)", **_histogram(snn, 0.0, top, bins=60))
        fig.update_layout(title=f"Layer {layer}, T = {timesteps}: θ = {percentile:g}th percentile gives "
                                f"E[(a − φ_T)²] = {torch.mean((ann - snn) ** 2).item():.2e}")
