"""The "Try it" app of notebooks 04–05: pick a network, a layer and T; see spikes and membranes.

Same conventions as `widgets.py` (meant to be merged into it): the app builds its controls and one
`FigureWidget` and only wires them; `viz_training.update_spike_trace` redraws the figure. The networks
are simulated once to T_max when the app is built, so the T slider only indexes the result.

Taught in notebooks 04 (converted vs trained) and 05 (the IIR stages).
"""
import ipywidgets as w

from . import viz, viz_training
from .widgets import _STYLE, _app, _slider, _wire


def spike_trace_app(networks: dict, image, max_timesteps: int = 5, count: int = 1024) -> w.VBox:
    """One layer's spike raster and membrane potentials for one image, per network, layer and T.

    Args:
        networks: {label: SNN}, e.g. {"converted": snn, "trained": trained}; they are not modified.
        image: one image [C, H, W]. max_timesteps: T_max of the one simulation per network.
        count: neurons traced per layer (the first `count` of sample 0's flattened layer).
    """
    recorded = viz_training.record_traces(networks, image, max_timesteps, count)
    layers = list(next(iter(recorded.values()))["traces"])
    controls = {
        "network": w.Dropdown(options=list(networks), description="network", **_STYLE),
        "layer": w.Dropdown(options=layers, description="layer", **_STYLE),
        "timesteps": _slider("time steps T", max_timesteps, 1, max_timesteps, 1, continuous=True),
    }
    fig = viz.as_widget(viz_training.spike_trace_figure(recorded, **{k: c.value for k, c in controls.items()}))
    _wire(controls, list(controls), lambda **knobs: viz_training.update_spike_trace(fig, recorded, **knobs))
    return _app(controls, fig)
