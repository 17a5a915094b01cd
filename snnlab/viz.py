"""Plotly figures of the notebooks: one function per kind of figure, one `update_<kind>` per widget.

Every figure uses `TEMPLATE` (small and explicit: no figure carries plotly's 6.5 kB default), has a
title, axis titles with units and hover text. A widget's figure is built by `<kind>_figure(**knobs)`
and changed in place by `update_<kind>(fig, **knobs)`, which calls the library (neurons, convert,
simulate, analysis) and sets the traces' data, so it serves a `go.Figure` and a `go.FigureWidget`
alike. Only this module imports plotly; `widgets.py` wires the update functions to sliders.

Taught in notebooks 00 (neurons), 01 (distributions), 02 (conversion error) and 03 (V[0]).
"""
import copy

import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from .analysis import PARTS, expected_error, layer_errors
from .convert import RECIPES, percentile_threshold
from .neurons import Neuron, clip_floor, neurons
from .simulate import Probe, encode, simulate

PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000")  # Okabe–Ito
PART_COLORS = {"clipping": "#D55E00", "quantization": "#0072B2", "unevenness": "#009E73", "total": "#000000"}
_AXIS = dict(showline=True, linecolor="#444444", ticks="outside", gridcolor="#ececec", zeroline=False,
             automargin=True)
TEMPLATE = go.layout.Template(layout=dict(
    font=dict(family="Arial, Helvetica, sans-serif", size=13, color="#222222"),
    title=dict(x=0.01, xanchor="left", font=dict(size=16)), colorway=list(PALETTE),
    paper_bgcolor="white", plot_bgcolor="white", xaxis=_AXIS, yaxis=_AXIS, hovermode="closest",
    legend=dict(bgcolor="rgba(255,255,255,0.85)"), margin=dict(l=70, r=30, t=90, b=60), bargap=0.15))

RASTER_CURRENTS = torch.linspace(0.0, 1.5, 16)  # inputs X of the neurons in notebook 00's raster (a.u.)
RATE_CURRENTS = torch.linspace(-0.5, 2.0, 501)  # inputs X over which the rate curve is drawn (a.u.)
TIME = "time step t (steps)"
DASHES = ("solid", "dot", "dash", "dashdot")
LOG = dict(type="log", dtick=1, exponentformat="power")  # a log axis with one labelled tick per decade
RECIPE_LABELS = {"max": "max", "percentile": "99.9th percentile", "p99": "99th percentile", "p99.7": "99.7th percentile",
                 "mse": "MSE search", "datta": "Datta & Beerel (α, β)", "bound": "learned λ"}  # names of convert.RECIPES


# ---------------------------------------------------------------- shared pieces
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


def _log2_axis(fig: go.Figure, largest: int, **where) -> None:
    """A logarithmic x axis of time steps with ticks at 1, 2, 4, … ≤ `largest`."""
    ticks = [2**k for k in range(largest.bit_length()) if 2**k <= largest]
    fig.update_xaxes(type="log", tickvals=ticks, title="time steps T", **where)


def _ann_line(fig: go.Figure, accuracy: float = None) -> None:
    """A dashed horizontal line at the ANN's accuracy (nothing if None)."""
    if accuracy is not None:
        fig.add_hline(y=accuracy, line=dict(color="#888888", dash="dash"), annotation_text=f"ANN {accuracy:.1f} %",
                      annotation_position="top left")


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


# ---------------------------------------------------------------- notebook 00: neurons
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
    each gets Bernoulli spikes of probability clip(X, 0, 1) instead of X (`simulate.encode`).
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
                                f"X = {current:.2f}, θ = {threshold:.2f}, λ = {leak:.2f}, V[0] = {v_init:.2f}·θ, T = {timesteps}")


# ---------------------------------------------------------------- notebook 01: distributions and thresholds
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
        found["λ of the clip ANN"] = RECIPES["bound"](learned, timesteps)["threshold"]
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
        percentile: p of the percentile recipe. learned: the records of a "clip" ANN (its λ per layer).
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
    for j, label in enumerate(["max", "percentile", "MSE search", "λ of the clip ANN"]):
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
    layer = layer or next(iter(records))
    record = records[layer]
    found = _thresholds(record, timesteps, percentile, v_init, learned[layer] if learned else None)
    z = record.samples
    ann = record.activation(z)
    snn = clip_floor(z, found[f"{percentile:g}th percentile"], timesteps, v_init)
    top = max(ann.max().item(), snn.max().item())
    with fig.batch_update():
        _set(fig, "z", **_histogram(z, z.min().item(), record.max))
        for label, threshold in zip(["max", "percentile", "MSE search", "λ of the clip ANN"], found.values()):
            _set(fig, label, x=[threshold, threshold])
        _set(fig, "λ of the clip ANN", visible=learned is not None)
        _set(fig, "ANN a = ReLU(z)", **_histogram(ann, 0.0, top, bins=60))
        _set(fig, "SNN φ_T(z)", **_histogram(snn, 0.0, top, bins=60))
        fig.update_layout(title=f"Layer {layer}, T = {timesteps}: θ = {percentile:g}th percentile gives "
                                f"E[(a − φ_T)²] = {torch.mean((ann - snn) ** 2).item():.2e}")


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


# ---------------------------------------------------------------- notebooks 02 and 03: error and accuracy
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


def _adjusted(snn, threshold_scale: float = 1.0, v_init: float = None):
    """A copy of a converted SNN with every θ (and spike value A) × `threshold_scale`, and V[0] = v_init·θ."""
    snn = copy.deepcopy(snn)
    for neuron in neurons(snn).values():
        neuron.threshold.mul_(threshold_scale)
        if neuron.spike_value is not None:
            neuron.spike_value.mul_(threshold_scale)
        if v_init is not None:
            neuron.v_init.fill_(v_init)
    return snn


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
    return float(next(fig.select_traces(selector=dict(name=curve))).y[timesteps - 1])


def conversion_error_figure(snn, images, labels, timesteps: int = 4, threshold_scale: float = 1.0,
                            max_timesteps: int = 16) -> go.Figure:
    """The widget figure of notebook 02: error parts per layer at T, and accuracy vs t, for θ × scale."""
    fig = _figure("", cols=2, height=460, subplot_titles=["mean error of each layer (◆ total)", "accuracy after t steps"])
    fig.add_traces(_parts_traces({"": {p: {"mean": 0, "mse": 0} for p in (*PARTS, "total")}}, [""], "mean"), rows=1, cols=1)
    fig.add_trace(_curve_trace("θ × 1", "#888888", "dash"), row=1, col=2)
    fig.add_trace(_curve_trace("θ × scale", PALETTE[0]), row=1, col=2)
    fig.add_trace(_marker_trace("at T"), row=1, col=2)
    fig.update_layout(barmode="relative")
    fig.update_xaxes(title="layer", col=1)
    fig.update_yaxes(title="ReLU(z̄) − φ (a.u.)", col=1)
    _log2_axis(fig, max_timesteps, col=2)
    fig.update_yaxes(title="accuracy (%)", range=[0, 100], col=2)
    _set(fig, "θ × 1", x=list(range(1, max_timesteps + 1)), y=_np(_accuracy(snn, images, labels, max_timesteps)))
    update_conversion_accuracy(fig, snn, images, labels, threshold_scale, max_timesteps)
    update_conversion_parts(fig, snn, images, timesteps, threshold_scale)
    return fig


def update_conversion_accuracy(fig: go.Figure, snn, images, labels, threshold_scale: float = 1.0,
                               max_timesteps: int = 16) -> None:
    """Redraw the accuracy after t = 1..T_max steps of the SNN with every θ × `threshold_scale`."""
    curve = _accuracy(_adjusted(snn, threshold_scale), images, labels, max_timesteps)
    _set(fig, "θ × scale", x=list(range(1, max_timesteps + 1)), y=_np(curve))


def update_conversion_parts(fig: go.Figure, snn, images, timesteps: int = 4, threshold_scale: float = 1.0) -> None:
    """Redraw each layer's error parts at T for θ × `threshold_scale`, and the marker at T on the accuracy."""
    errors = layer_errors(_adjusted(snn, threshold_scale), images, timesteps)
    accuracy = _value_at(fig, "θ × scale", timesteps)
    with fig.batch_update():
        for part, values in _parts_data(errors, "mean").items():
            _set(fig, part, x=list(errors), y=values)
        _set(fig, "at T", x=[timesteps], y=[accuracy])
        total = sum(e["total"]["mean"] for e in errors.values()) / len(errors)
        fig.update_layout(title=f"Every θ × {threshold_scale:.2f}, T = {timesteps}: mean total error {total:+.3f} "
                                f"(mean over layers), accuracy {accuracy:.1f} %")


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
    fig = _figure("", cols=2, height=460, subplot_titles=["expected error on uniform input (θ = 1)",
                                                        "accuracy after t steps"])
    for name, color, dash in (("E[φ − z]", PALETTE[0], "solid"), ("√E[(φ − z)²]", PALETTE[1], "solid")):
        fig.add_trace(go.Scatter(name=name, mode="lines", line=dict(color=color, dash=dash),
                                 hovertemplate="V[0] = %{x:.2f}·θ<br>%{y:.3f}<extra>" + name + "</extra>"), row=1, col=1)
    fig.add_trace(go.Scatter(name="this V[0]", mode="markers", marker=dict(size=12, color="#000000", symbol="circle-open"),
                             hovertemplate="V[0] = %{x:.2f}·θ<br>%{y:.3f}<extra></extra>"), row=1, col=1)
    for name, reference, dash in (("V[0] = 0", 0.0, "dash"), ("V[0] = θ/2", 0.5, "dot")):
        fig.add_trace(_curve_trace(name, "#888888", dash), row=1, col=2)
        _set(fig, name, x=list(range(1, max_timesteps + 1)),
             y=_np(_accuracy(_adjusted(snn, v_init=reference), images, labels, max_timesteps)))
    fig.add_trace(_curve_trace("V[0] = v·θ", PALETTE[2]), row=1, col=2)
    fig.add_trace(_marker_trace("at T"), row=1, col=2)
    fig.update_xaxes(title="V[0] as a fraction of θ", col=1)
    fig.update_yaxes(title="error (units of θ)", col=1)
    _log2_axis(fig, max_timesteps, col=2)
    fig.update_yaxes(title="accuracy (%)", range=[0, 100], col=2)
    update_potential_accuracy(fig, snn, images, labels, v_init, max_timesteps)
    update_potential_error(fig, v_init, timesteps)
    return fig


def update_potential_accuracy(fig: go.Figure, snn, images, labels, v_init: float = 0.5, max_timesteps: int = 16) -> None:
    """Redraw the accuracy after t = 1..T_max steps of the SNN with every V[0] = v_init·θ."""
    curve = _accuracy(_adjusted(snn, v_init=v_init), images, labels, max_timesteps)
    _set(fig, "V[0] = v·θ", x=list(range(1, max_timesteps + 1)), y=_np(curve))


def update_potential_error(fig: go.Figure, v_init: float = 0.5, timesteps: int = 4) -> None:
    """Redraw `analysis.expected_error` against V[0] at T, the marker at v_init, and the marker at T."""
    grid = torch.linspace(0, 1, 101)
    mean, mse = expected_error(timesteps, 1.0, grid)
    here = expected_error(timesteps, 1.0, v_init)
    accuracy = _value_at(fig, "V[0] = v·θ", timesteps)
    with fig.batch_update():
        _set(fig, "E[φ − z]", x=_np(grid), y=_np(mean))
        _set(fig, "√E[(φ − z)²]", x=_np(grid), y=_np(mse.sqrt()))
        _set(fig, "this V[0]", x=[v_init, v_init], y=[here[0], here[1] ** 0.5])
        _set(fig, "at T", x=[timesteps], y=[accuracy])
        fig.update_layout(title=f"V[0] = {v_init:.2f}·θ, T = {timesteps}: expected error {here[0]:+.3f}·θ, "
                                f"RMS {here[1] ** 0.5:.3f}·θ; accuracy {accuracy:.1f} %")
