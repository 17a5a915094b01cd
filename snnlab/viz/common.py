"""The style and helpers that every figure of `snnlab.viz` shares: template, colours, labels, updates."""
import numbers

import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from ..energy import EnergyReport, estimate
from ..simulate import Probe, simulate

PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000")  # Okabe–Ito
PART_COLORS = {"clipping": "#D55E00", "quantization": "#0072B2", "unevenness": "#009E73", "total": "#000000"}
_AXIS = dict(showline=True, linecolor="#444444", ticks="outside", gridcolor="#ececec", zeroline=False,
             automargin=True)
TEMPLATE = go.layout.Template(layout=dict(
    font=dict(family="Arial, Helvetica, sans-serif", size=13, color="#222222"),
    title=dict(x=0.01, xanchor="left", font=dict(size=16)), colorway=list(PALETTE),
    paper_bgcolor="white", plot_bgcolor="white", xaxis=_AXIS, yaxis=_AXIS, hovermode="closest",
    legend=dict(bgcolor="rgba(255,255,255,0.85)"), margin=dict(l=70, r=30, t=90, b=60), bargap=0.15))
TIME = "time step t (steps)"
DASHES = ("solid", "dot", "dash", "dashdot")
LOG = dict(type="log", dtick=1, exponentformat="power")  # a log axis with one labelled tick per decade
ENERGY, ENERGY_AT, ANN_BARS, SNN_BARS = "E_SNN / E_ANN", "energy at T", "ANN µJ", "SNN µJ at T"


def _figure(title: str, rows: int = 1, cols: int = 1, height: int = 420, **subplots) -> go.Figure:
    """An empty figure (or grid of subplots) with the template, a title and a height."""
    fig = make_subplots(rows=rows, cols=cols, **subplots)
    fig.update_layout(template=TEMPLATE, title=title, height=height)
    return fig


def as_widget(fig: go.Figure) -> go.FigureWidget:
    """The figure as a `go.FigureWidget`, which a widget app updates in place (plotly ≥ 6 needs anywidget)."""
    return go.FigureWidget(fig)


def _np(x):
    """A tensor (or list) as a flat NumPy array, which plotly stores compactly."""
    return torch.as_tensor(x).detach().cpu().flatten().numpy()


def _set(fig: go.Figure, name: str, **data) -> None:
    """Set the data (x, y, ...) of the trace called `name` in place."""
    fig.update_traces(data, selector=dict(name=name))


def _check_step(timesteps, largest: int, why: str) -> None:
    """Raise a ValueError unless `timesteps` is an integer in [1, largest]; `why` says where the range comes from."""
    if isinstance(timesteps, bool) or not isinstance(timesteps, numbers.Integral) or not 1 <= timesteps <= largest:
        raise ValueError(f"timesteps must be an integer in [1, {largest}] ({why}), got {timesteps!r}")


def _log2_axis(fig: go.Figure, largest: int, **where) -> None:
    """A logarithmic x axis of time steps with ticks at 1, 2, 4, … ≤ `largest`."""
    ticks = [2**k for k in range(largest.bit_length()) if 2**k <= largest]
    fig.update_xaxes(type="log", tickvals=ticks, title="time steps T", **where)


def _ann_line(fig: go.Figure, accuracy: float = None) -> None:
    """A dashed horizontal line at the ANN's accuracy (nothing if None)."""
    if accuracy is not None:
        fig.add_hline(y=accuracy, line=dict(color="#888888", dash="dash"), annotation_text=f"ANN {accuracy:.1f} %",
                      annotation_position="top left")


def _accuracy(snn, images: torch.Tensor, labels: torch.Tensor, timesteps: int) -> torch.Tensor:
    """Accuracy (%) after each step t = 1..T on one batch, from one simulation."""
    out = simulate(snn, images, timesteps)  # [T, B, classes]
    return 100 * (out.argmax(-1) == labels).float().mean(1)  # [T]


def _curve_trace(name: str, color: str, dash: str = "solid") -> go.Scatter:
    return go.Scatter(name=name, mode="lines", line=dict(color=color, dash=dash),
                      hovertemplate="T = %{x}<br>%{y:.1f} %<extra>" + name + "</extra>")


def _marker_trace(name: str) -> go.Scatter:
    return go.Scatter(name=name, mode="markers", marker=dict(size=14, color="#000000", symbol="circle-open"),
                      hovertemplate="T = %{x}<br>%{y:.1f} %<extra>" + name + "</extra>")


def _value_at(fig: go.Figure, curve: str, timesteps: int) -> float:
    """The y of the (already drawn) trace `curve` at t = T."""
    y = next(fig.select_traces(selector=dict(name=curve))).y
    _check_step(timesteps, len(y), f"the curve '{curve}' was simulated to T = {len(y)}; raise max_timesteps for more")
    return float(y[timesteps - 1])


# ---------------------------------------------------------------- energy from the run that gives the accuracy
def energy_by_step(probe: Probe, timesteps: int, estimator: str = "compute") -> list:
    """The `energy.estimate` after t = 1..T steps, from one Probe'd run of T steps (causal: a prefix is a run)."""
    sizes = probe.sizes()
    return [estimate(estimator, sizes, probe.event_rate(t), t) for t in range(1, timesteps + 1)]


def _accuracy_energy(snn, images: torch.Tensor, labels: torch.Tensor, timesteps: int) -> tuple:
    """Accuracy (%) after each step t = 1..T on one batch, and the compute energy at each t, from ONE simulation."""
    with Probe(snn) as probe:
        curve = _accuracy(snn, images, labels, timesteps)  # [T]
    return curve, energy_by_step(probe, timesteps)  # [T], [T reports]


def energy_note(report: EnergyReport) -> str:
    """"energy: SNN 0.123 µJ/image = 0.456 × ANN (0.27 µJ; compute, first layer once)", a widget title's line."""
    return _energy_text(report.snn_pj / 1e6, report.ann_pj / 1e6, report.estimator)


def _energy_text(snn_uj: float, ann_uj: float, estimator: str = "compute") -> str:
    return (f"energy: SNN {snn_uj:.4g} µJ/image = {snn_uj / ann_uj:.3f} × ANN ({ann_uj:.4g} µJ; {estimator}, "
            "first layer once)")


def _energy_panels(fig: go.Figure, row: int) -> None:
    """Two panels on `row`: E_SNN/E_ANN after t steps (with the point at T), and µJ per layer at T."""
    fig.add_trace(go.Scatter(name=ENERGY, mode="lines+markers", line=dict(color=PALETTE[4]),
                             hovertemplate="t = %{x}<br>E_SNN / E_ANN = %{y:.3f}<extra></extra>"), row=row, col=1)
    fig.add_trace(go.Scatter(name=ENERGY_AT, mode="markers",
                             marker=dict(size=14, color="#000000", symbol="circle-open"),
                             hovertemplate="T = %{x}<br>E_SNN / E_ANN = %{y:.3f}<extra></extra>"), row=row, col=1)
    _energy_bars(fig, ANN_BARS, SNN_BARS, row=row, col=2)
    fig.update_xaxes(title=TIME, row=row, col=1)
    fig.update_yaxes(title="E_SNN / E_ANN (compute)", rangemode="tozero", row=row, col=1)


def _energy_bars(fig: go.Figure, ann: str, snn: str, row: int, col: int) -> None:
    """Two empty bar traces named `ann` (grey) and `snn`, µJ per layer, with the panel's axis titles."""
    for name, color in ((ann, "#888888"), (snn, PALETTE[4])):
        fig.add_trace(go.Bar(name=name, marker=dict(color=color),
                             hovertemplate="%{x}<br>%{y:.4f} µJ<extra>" + name + "</extra>"), row=row, col=col)
    fig.update_xaxes(title="layer (input → output)", row=row, col=col)
    fig.update_yaxes(title="energy (µJ per image)", row=row, col=col)


def _set_energy_curve(fig: go.Figure, reports: list) -> None:
    """Store E_SNN/E_ANN after every t (and each layer's SNN µJ in customdata) and the ANN's µJ per layer."""
    last = reports[-1]
    _set(fig, ENERGY, x=list(range(1, len(reports) + 1)), y=[r.snn_pj / r.ann_pj for r in reports],
         customdata=[[d["snn_pj"] / 1e6 for d in r.layers] + [r.snn_pj / 1e6, r.ann_pj / 1e6] for r in reports])
    _set(fig, ANN_BARS, x=[d["name"] for d in last.layers], y=[d["ann_pj"] / 1e6 for d in last.layers])


def _show_energy_at(fig: go.Figure, timesteps: int) -> str:
    """Mark T on the energy curve, draw the per-layer µJ at T; return the `energy_note` at T for the title."""
    curve = next(fig.select_traces(selector=dict(name=ENERGY)))
    _check_step(timesteps, len(curve.y), f"the energy was recorded to T = {len(curve.y)}")
    *layers, snn_uj, ann_uj = curve.customdata[timesteps - 1]
    _set(fig, ENERGY_AT, x=[timesteps], y=[curve.y[timesteps - 1]])
    _set(fig, SNN_BARS, x=list(next(fig.select_traces(selector=dict(name=ANN_BARS))).x), y=list(layers))
    return _energy_text(snn_uj, ann_uj)
