"""The notebooks' "Try it" apps: sliders wired to one figure that `viz.update_<kind>` changes in place.

Each `<kind>_app(...)` builds its controls and one `FigureWidget`, and only wires them: every
computation happens in the library (through viz's update functions). An app is a `VBox` whose first
child holds the controls and whose second is the figure, so tests can set `control.value` and read
`fig.data` without a browser (STYLE.md rules 18–19). Sliders that start a simulation update on release
(`continuous_update=False`); sliders that only pick a step of a finished simulation follow the mouse.

Every app that varies T (or θ, V[0], the network) also shows the energy per image from the same simulation
(`viz.energy_by_step` on the run's `Probe`; notebook 00: one synapse's energy). Taught in notebooks 00 (neuron), 01
(distributions), 02 (conversion error), 03 (V[0]), 04–05
(spike traces of trained SNNs), 06 (time-to-first-spike) and 07 (accuracy against energy of every method).
"""
import ipywidgets as w

from . import viz
from .energy import ESTIMATORS

_STYLE = dict(style={"description_width": "initial"}, layout=w.Layout(width="300px"))


def _slider(description: str, value, low, high, step, continuous: bool = False, **extra) -> w.widgets.ValueWidget:
    """An IntSlider when every bound is an int, else a FloatSlider, labelled and sized alike."""
    kind = w.IntSlider if all(isinstance(v, int) for v in (value, low, high, step)) else w.FloatSlider
    return kind(value=value, min=low, max=high, step=step, description=description,
                continuous_update=continuous, **_STYLE, **extra)


def _app(controls: dict, fig) -> w.VBox:
    """Controls in a wrapping row above the figure."""
    row = w.HBox(list(controls.values()), layout=w.Layout(flex_flow="row wrap"))
    return w.VBox([row, fig])


def _wire(controls: dict, names: list, callback) -> None:
    """Call `callback(**{knob: value})` with every control's value whenever one of `names` changes."""
    def redraw(change):
        callback(**{knob: control.value for knob, control in controls.items()})

    for name in names:
        controls[name].observe(redraw, names="value")


def neuron_app(current: float = 0.3, threshold: float = 1.0, leak: float = 1.0, v_init: float = 0.0,
               timesteps: int = 8, reset: str = "soft", encoding: str = "direct") -> w.VBox:
    """Notebook 00: one (L)IF neuron's membrane trace, a 16-neuron raster and the rate staircase.

    Knobs: input current X, threshold θ, leak λ, V[0] as a fraction of θ, T, reset, encoding.
    """
    controls = {
        "current": _slider("input current X", current, -0.5, 2.0, 0.05),
        "threshold": _slider("threshold θ", threshold, 0.25, 2.0, 0.05),
        "leak": _slider("leak λ", leak, 0.5, 1.0, 0.01),
        "v_init": _slider("V[0] / θ", v_init, 0.0, 1.0, 0.05),
        "timesteps": _slider("time steps T", timesteps, 1, 32, 1),
        "reset": w.ToggleButtons(options=["soft", "hard"], value=reset, description="reset"),
        "encoding": w.ToggleButtons(options=["direct", "rate"], value=encoding, description="input"),
    }
    fig = viz.as_widget(viz.neuron_figure(**{k: c.value for k, c in controls.items()}))
    _wire(controls, list(controls), lambda **knobs: viz.update_neuron(fig, **knobs))
    return _app(controls, fig)


def distribution_app(records: dict, learned: dict = None, timesteps: int = 2, percentile: float = 99.9,
                     v_init: float = 0.5) -> w.VBox:
    """Notebook 01: one layer's pre-activations with each recipe's θ, and ReLU(z) against φ_T(z).

    Args:
        records: `record_preactivations` of the ANN. learned: those of the "clip" ANN (its λ), or None.
        v_init: V[0] as a fraction of θ of the neurons drawn.
    """
    controls = {
        "layer": w.Dropdown(options=list(records), description="layer", **_STYLE),
        "timesteps": _slider("time steps T", timesteps, 1, 16, 1),
        "percentile": _slider("percentile p", percentile, 90.0, 100.0, 0.1, readout_format=".1f"),
    }
    fig = viz.as_widget(viz.distribution_figure(records, learned=learned, v_init=v_init,
                                                **{k: c.value for k, c in controls.items()}))
    _wire(controls, list(controls),
          lambda **knobs: viz.update_distribution(fig, records, learned=learned, v_init=v_init, **knobs))
    return _app(controls, fig)


def conversion_error_app(snn, images, labels, timesteps: int = 4, threshold_scale: float = 1.0,
                         max_timesteps: int = 16) -> w.VBox:
    """Notebook 02: scale every θ of a converted SNN; see each layer's error parts at T and the accuracy.

    Args:
        snn: a converted network (`convert.convert`); it is not modified. images, labels: one batch.
        max_timesteps: the accuracy curve is simulated once per scale to this T.
    """
    controls = {"timesteps": _slider("time steps T", timesteps, 1, max_timesteps, 1),
                "threshold_scale": _slider("θ × scale", threshold_scale, 0.25, 2.0, 0.05)}
    fig = viz.as_widget(viz.conversion_error_figure(snn, images, labels, timesteps, threshold_scale, max_timesteps))

    def rescale(timesteps, threshold_scale):
        viz.update_conversion_accuracy(fig, snn, images, labels, threshold_scale, max_timesteps)
        viz.update_conversion_parts(fig, snn, images, timesteps, threshold_scale)

    _wire(controls, ["threshold_scale"], rescale)
    _wire(controls, ["timesteps"], lambda **knobs: viz.update_conversion_parts(fig, snn, images, **knobs))
    return _app(controls, fig)


def potential_app(snn, images, labels, v_init: float = 0.5, timesteps: int = 4, max_timesteps: int = 16) -> w.VBox:
    """Notebook 03: set every V[0] of a converted SNN; see the expected error and the accuracy vs T.

    Args:
        snn: a converted network; it is not modified. images, labels: one batch.
        max_timesteps: the accuracy curve is simulated once per V[0] to this T; the T slider only indexes it.
    """
    controls = {"v_init": _slider("V[0] / θ", v_init, 0.0, 1.0, 0.05),
                "timesteps": _slider("time steps T", timesteps, 1, max_timesteps, 1, continuous=True)}
    fig = viz.as_widget(viz.potential_figure(snn, images, labels, v_init, timesteps, max_timesteps))

    def reinitialize(v_init, timesteps):
        viz.update_potential_accuracy(fig, snn, images, labels, v_init, max_timesteps)
        viz.update_potential_error(fig, v_init, timesteps)

    _wire(controls, ["v_init"], reinitialize)
    _wire(controls, ["timesteps"], lambda **knobs: viz.update_potential_error(fig, **knobs))
    return _app(controls, fig)


def spike_trace_app(networks: dict, image, max_timesteps: int = 5, count: int = 1024) -> w.VBox:
    """One layer's spike raster and membrane potentials for one image, per network, layer and T.

    Args:
        networks: {label: SNN}, e.g. {"converted": snn, "trained": trained}; they are not modified.
        image: one image [C, H, W]. max_timesteps: T_max of the one simulation per network.
        count: neurons traced per layer (the first `count` of sample 0's flattened layer).
    """
    recorded = viz.record_traces(networks, image, max_timesteps, count)
    layers = list(next(iter(recorded.values()))["traces"])
    controls = {
        "network": w.Dropdown(options=list(networks), description="network", **_STYLE),
        "layer": w.Dropdown(options=layers, description="layer", **_STYLE),
        "timesteps": _slider("time steps T", max_timesteps, 1, max_timesteps, 1, continuous=True),
    }
    fig = viz.as_widget(viz.spike_trace_figure(recorded, **{k: c.value for k, c in controls.items()}))
    _wire(controls, list(controls), lambda **knobs: viz.update_spike_trace(fig, recorded, **knobs))
    return _app(controls, fig)


def ttfs_app(ann, images, labels, window: int = 8, bits=None, max_window: int = 12) -> w.VBox:
    """Notebook 06: the TTFS network of a CAT ANN at window K and b-bit log weights: raster, accuracy, energy.

    Args:
        ann: a CAT ANN (not modified). images, labels: one batch [B, C, H, W], [B]; raster of images[0].
        window: K; bits: b of the log weights, or None (full precision). max_window: the K slider's end.
    """
    controls = {"window": _slider("window K (steps per layer)", window, 1, max_window, 1),
                "bits": w.Dropdown(options=[("full precision", None)] + [(f"{b}-bit log", b) for b in range(2, 9)],
                                   value=bits, description="weights", **_STYLE)}
    fig = viz.as_widget(viz.ttfs_figure(ann, images, labels, window, bits))
    _wire(controls, list(controls), lambda **knobs: viz.update_ttfs(fig, ann, images, labels, **knobs))
    return _app(controls, fig)


def tradeoff_app(table: dict, timesteps: int = 4, estimator: str = "compute") -> w.VBox:
    """Notebook 07: accuracy against energy of every method, its Pareto front, and one point's energy per layer.

    Args:
        table: `tradeoff.load_table`'s (rows of methods × T with event rates, layer sizes, the ANN's accuracy).
        timesteps: the T slider's start: each method shows its network with the largest T ≤ it.
        estimator: "compute", "memory" or "qnn" (`energy.ESTIMATORS`).
    """
    labels = list(dict.fromkeys(row["method"] for row in table["rows"]))
    largest = max(row["timesteps"] for row in table["rows"])
    controls = {
        "methods": w.SelectMultiple(options=labels, value=tuple(labels), description="methods", rows=6, **_STYLE),
        "timesteps": _slider("time steps T ≤", min(timesteps, largest), 1, largest, 1, continuous=True),
        "estimator": w.ToggleButtons(options=list(ESTIMATORS), value=estimator, description="energy"),
        "selected": w.Dropdown(options=labels, value=labels[0], description="per layer", **_STYLE),
    }
    fig = viz.as_widget(viz.tradeoff_figure(table, **{k: c.value for k, c in controls.items()}))
    _wire(controls, list(controls), lambda **knobs: viz.update_tradeoff(fig, table, **knobs))

    def select(trace, clicked, state):  # a click on a point shows its layers (in a browser)
        if clicked.point_inds:
            controls["selected"].value = trace.text[clicked.point_inds[0]]

    next(fig.select_traces(selector=dict(name="methods"))).on_click(select)
    return _app(controls, fig)
