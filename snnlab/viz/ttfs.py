"""Notebook 06: time-to-first-spike coding: the log code, accuracy vs window, log weights, spike rasters."""
import plotly.graph_objects as go
import torch

from ..activations import log_round
from ..ttfs import NO_SPIKE, convert_ttfs, log_weights, measure_ttfs, run_ttfs
from .common import PALETTE, TIME, _figure, _np, _set

RASTER_NEURONS = 256  # neurons drawn per layer in a raster (the first of the flattened layer)


def log_code_figure(window: int = 8, bound: float = 1.0) -> go.Figure:
    """What one spike can carry: a = s·q(z/s) (CAT, K levels in log2) against ReLU(z), and its spike step."""
    z = torch.logspace(-4, 0.5, 600, base=2.0 ** 4) * bound / 4  # [600] from s·2^-18 to s·2^(0.5)
    x = torch.clamp(z / bound, 0, 1)
    a = log_round(x, window) * bound
    fig = _figure(f"The TTFS code: one spike at step k carries s·2^(−k) (K = {window}, s = {bound:g})", cols=2,
                  subplot_titles=["value sent: CAT vs ReLU", "spike step k (earlier = larger)"])
    fig.add_trace(go.Scatter(name="ReLU(z)", x=_np(z), y=_np(torch.clamp(z, max=bound * 1.5)), mode="lines",
                             line=dict(color="#888888", dash="dash"), hovertemplate="z = %{x:.3g}<br>%{y:.3g}"), 1, 1)
    fig.add_trace(go.Scatter(name="CAT a = s·q(z/s)", x=_np(z), y=_np(a), mode="lines", line=dict(color=PALETTE[0]),
                             hovertemplate="z = %{x:.3g}<br>a = %{y:.3g}"), 1, 1)
    steps = torch.where(a > 0, torch.round(torch.log2(bound / a.clamp(min=1e-30))), torch.full_like(a, float("nan")))
    fig.add_trace(go.Scatter(name="spike step k", x=_np(z), y=_np(steps), mode="lines", line=dict(color=PALETTE[1]),
                             hovertemplate="z = %{x:.3g}<br>k = %{y}"), 1, 2)
    fig.update_xaxes(type="log", exponentformat="power", title="input z (a.u., log scale)")
    fig.update_yaxes(type="log", exponentformat="power", title="value a (a.u.)", col=1)
    fig.update_yaxes(title="spike step k (steps; none = below the last level)", autorange="reversed", dtick=1, col=2)
    return fig


def window_figure(curves: dict, ann: dict) -> go.Figure:
    """Accuracy vs the window K, one line per network ({label: {K: accuracy %}}), ANNs dashed ({label: %})."""
    fig = _figure("Accuracy of the TTFS network vs its window K (steps per layer)")
    for i, (label, points) in enumerate(curves.items()):
        fig.add_trace(go.Scatter(name=label, x=list(points), y=list(points.values()), mode="lines+markers",
                                 line=dict(color=PALETTE[i % len(PALETTE)]), marker=dict(size=9),
                                 hovertemplate="K = %{x}<br>%{y:.1f} %<extra>" + label + "</extra>"))
    for i, (label, accuracy) in enumerate(ann.items()):
        fig.add_hline(y=accuracy, line=dict(color=PALETTE[i % len(PALETTE)], dash="dash"),
                      annotation_text=f"{label} {accuracy:.1f} %", annotation_position="bottom right")
    fig.update_xaxes(title="window K (steps per layer)", dtick=1)
    fig.update_yaxes(title="test accuracy (%)")
    return fig


def weight_figure(weights: torch.Tensor, quantized: torch.Tensor, bits: int) -> go.Figure:
    """One layer's |w| on a log2 scale: full precision (histogram) and the b-bit log levels it is rounded to."""
    scale = weights.abs().max()
    full = torch.log2(weights.abs()[weights != 0] / scale)
    levels, counts = torch.unique(torch.log2(quantized.abs()[quantized != 0] / scale), return_counts=True)
    fig = _figure(f"Log-quantized weights: |w| = c·2^(−m), m = 0 … {2 ** (bits - 1) - 1} ({bits} bits with the sign)")
    fig.add_trace(go.Histogram(name="full precision", x=_np(full), nbinsx=120, marker_color=PALETTE[0], opacity=0.6,
                               hovertemplate="log2(|w|/c) ≈ %{x:.2f}<br>%{y} weights<extra></extra>"))
    fig.add_trace(go.Bar(name=f"{bits}-bit log", x=_np(levels), y=_np(counts), width=0.15, marker_color=PALETTE[1],
                         hovertemplate="m = −%{x}<br>%{y} weights<extra></extra>"))
    fig.update_layout(barmode="overlay")
    fig.update_xaxes(title="log2(|w| / c) (c = the layer's largest |w|)")
    fig.update_yaxes(title="weights (count)")
    return fig


def raster_traces(fig: go.Figure, times: dict, window: int, row: int = 1, col: int = 1) -> None:
    """Add one scatter per layer: a dot at (l·K + k, neuron) for each neuron that fired (one image)."""
    for i, name in enumerate(times):
        fig.add_trace(go.Scatter(name=name, mode="markers", marker=dict(size=4, color=PALETTE[i % len(PALETTE)]),
                                 hovertemplate="step %{x}<br>neuron %{y}<extra>" + name + "</extra>"), row, col)
    _raster_data(fig, times, window)


def _raster_data(fig: go.Figure, times: dict, window: int) -> None:
    """Set each layer's raster dots: layer l's window holds the global steps l·K … l·K + K − 1."""
    for layer, (name, t) in enumerate(times.items()):
        t = t.flatten()[:RASTER_NEURONS]  # one image's first neurons
        neurons = torch.nonzero(t != NO_SPIKE).flatten()
        _set(fig, name, x=_np(layer * window + t[neurons]), y=_np(neurons))


def ttfs_figure(ann, images, labels, window: int = 8, bits=None) -> go.Figure:
    """The widget figure of notebook 06: the raster of images[0] and the energy per image, accuracy in the title.

    Args:
        ann: a CAT ANN (`prepare(activation="cat")`); s_l are its bounds, K = `window`.
        images, labels: a batch [B, C, H, W], [B]; bits: b of the log weights, or None (full precision).
    """
    fig = _figure("", cols=2, height=480, column_widths=[0.7, 0.3],
                  subplot_titles=[f"spike times of one image (first {RASTER_NEURONS} neurons per layer)",
                                  "compute energy per image"])
    snn, result = _ttfs(ann, images, labels, window, bits)
    _, times = run_ttfs(snn, images[:1])
    raster_traces(fig, times, window)
    fig.add_trace(go.Bar(name="energy", x=["ANN", "TTFS (AC)", "TTFS (shift-add)"], marker_color=PALETTE[:3],
                         hovertemplate="%{x}<br>%{y:.3f} µJ<extra></extra>", showlegend=False), 1, 2)
    _energy_data(fig, result)
    fig.update_xaxes(title=TIME + ", layer l listens in l·K … l·K + K − 1", col=1)
    fig.update_yaxes(title="neuron (index in its layer)", col=1)
    fig.update_yaxes(title="energy (µJ per image)", col=2)
    _title(fig, result, window, bits)
    return fig


def update_ttfs(fig: go.Figure, ann, images, labels, window: int = 8, bits=None) -> None:
    """Re-convert with window K and b-bit log weights, and redraw the raster, energy and accuracy in place."""
    snn, result = _ttfs(ann, images, labels, window, bits)
    _, times = run_ttfs(snn, images[:1])
    with fig.batch_update():
        _raster_data(fig, times, window)
        _energy_data(fig, result)
        _title(fig, result, window, bits)


def _ttfs(ann, images, labels, window: int, bits):
    """The TTFS network of `ann` at (K, b) and its `measure_ttfs` on the batch."""
    net = ann if bits is None else log_weights(ann, bits)
    snn = convert_ttfs(net, window=window)
    return snn, measure_ttfs(snn, [(images, labels)])


def _energy_data(fig: go.Figure, result) -> None:
    _set(fig, "energy", y=[result.energy.ann_pj / 1e6, result.energy.snn_pj / 1e6, result.shift_add.snn_pj / 1e6])


def _title(fig: go.Figure, result, window: int, bits) -> None:
    weights = "full-precision" if bits is None else f"{bits}-bit log"
    fig.layout.title.text = (f"TTFS, K = {window}, {weights} weights: {result.accuracy:.1f} % on {len(result.predictions)} "
                             f"images, {result.spikes_total:.3f} spikes per neuron")
