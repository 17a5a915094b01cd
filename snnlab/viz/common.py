"""The style and helpers that every figure of `snnlab.viz` shares: template, colours, labels, updates."""
import numbers

import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from ..simulate import simulate

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
