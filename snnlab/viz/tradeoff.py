"""Notebook 07: accuracy against energy for every method, the Pareto front, the ANN, energy per layer of one point."""
import plotly.graph_objects as go

from ..tradeoff import pareto, points
from .common import PALETTE, _energy_bars, _figure, _set

FRONT, ANN, SELECTED = "Pareto front", "ANN (E = 1)", "selected"


def tradeoff_figure(table: dict, **knobs) -> go.Figure:
    """The widget figure of notebook 07: accuracy vs E_SNN/E_ANN (log) of the chosen methods, and the energy per
    layer of the selected point (see `update_tradeoff` for the knobs)."""
    fig = _figure("", cols=2, height=520, column_widths=[0.6, 0.4], horizontal_spacing=0.12,
                  subplot_titles=["accuracy against energy (each method's network at its largest T ≤ the slider)",
                                  "energy of each layer: the selected point"])
    fig.add_trace(go.Scatter(name="methods", mode="markers+text", textposition="top center",
                             marker=dict(size=11, color=PALETTE[0]), textfont=dict(size=10),
                             hovertemplate="%{text}<br>E_SNN / E_ANN = %{x:.3f}<br>accuracy %{y:.1f} %<br>"
                                           "%{customdata}<extra></extra>"), row=1, col=1)
    fig.add_trace(go.Scatter(name=FRONT, mode="lines", line=dict(color=PALETTE[1], dash="dot", shape="hv"),
                             hovertemplate="E_SNN / E_ANN = %{x:.3f}<br>%{y:.1f} %<extra>Pareto front</extra>"),
                  row=1, col=1)
    fig.add_trace(go.Scatter(name=ANN, mode="markers", marker=dict(size=14, color="#888888", symbol="diamond"),
                             hovertemplate="the ANN: E = 1<br>accuracy %{y:.1f} %<extra></extra>"), row=1, col=1)
    fig.add_trace(go.Scatter(name=SELECTED, mode="markers", marker=dict(size=20, color="#000000",
                             symbol="circle-open"), hoverinfo="skip"), row=1, col=1)
    _energy_bars(fig, "ANN", "SNN", row=1, col=2)
    fig.add_vline(x=1, line=dict(color="#888888", dash="dash"), row=1, col=1)
    fig.update_xaxes(title="energy E_SNN / E_ANN (log; left of 1: the SNN is cheaper)", type="log", row=1, col=1)
    fig.update_yaxes(title="test accuracy (%)", row=1, col=1)
    fig.update_layout(margin=dict(t=110), showlegend=False)
    update_tradeoff(fig, table, **knobs)
    return fig


def update_tradeoff(fig: go.Figure, table: dict, methods=None, timesteps: int = 4, estimator: str = "compute",
                    selected: str | None = None) -> None:
    """Redraw the points of `methods` (None: all) at their largest T ≤ `timesteps` under `estimator`, the Pareto
    front, and the per-layer energy of the `selected` method's point (None or absent: the cheapest point)."""
    shown = points(table, estimator, timesteps, methods)
    ratio = {p["method"]: p["energy"].snn_pj / p["energy"].ann_pj for p in shown}
    front = pareto(shown)
    pick = next((p for p in shown if p["method"] == selected), front[0] if front else None)
    cheaper = sum(r < 1 for r in ratio.values())
    with fig.batch_update():
        _set(fig, "methods", x=list(ratio.values()), y=[p["accuracy"] for p in shown], text=list(ratio),
             customdata=[f"T = {p['timesteps']}, {p['family']}" for p in shown])
        _set(fig, FRONT, x=[ratio[p["method"]] for p in front], y=[p["accuracy"] for p in front])
        _set(fig, ANN, x=[1.0], y=[table["ann"]["accuracy"]])
        _set(fig, SELECTED, x=[ratio[pick["method"]]] if pick else [], y=[pick["accuracy"]] if pick else [])
        layers = pick["energy"].layers if pick else []
        _set(fig, "ANN", x=[d["name"] for d in layers], y=[d["ann_pj"] / 1e6 for d in layers])
        _set(fig, "SNN", x=[d["name"] for d in layers], y=[d["snn_pj"] / 1e6 for d in layers])
        baseline = "a ⌈log2(T+1)⌉-bit quantized ANN" if estimator == "qnn" else "the ANN"
        fig.update_layout(title=f"T ≤ {timesteps}, {estimator} estimate: {cheaper} of {len(shown)} SNNs need less "
                                f"energy than {baseline}<br>selected: {_describe(pick)}")


def _describe(point) -> str:
    """"max@0.5 at T = 4: 81.2 %, 0.123 µJ = 0.456 × ANN" (or "none" without a point)."""
    if point is None:
        return "none (choose a method)"
    energy = point["energy"]
    return (f"{point['method']} at T = {point['timesteps']}: {point['accuracy']:.1f} %, {energy.snn_pj / 1e6:.4g} µJ "
            f"= {energy.snn_pj / energy.ann_pj:.3f} × ANN ({energy.ann_pj / 1e6:.4g} µJ)")
