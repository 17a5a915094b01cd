"""One entry per notebook: which control of its "Try it" widget the browser moves, to what, and what must follow.

Each `Case` names the notebook, the control (by its description label) and its new value, and a
`check(knobs, before, after)` that asserts the figure's data after the move against what the library
computes here, in the test process (`knobs`: the notebook's knobs cell, executed; `before`, `after`:
`browser_kit.snapshot` of the app's figures). A notebook that is not in notebooks/ is skipped.
"""
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go
import torch
from browser_kit import trace

from snnlab import widgets
from snnlab.analysis import expected_error
from snnlab.neurons import clip_floor
from snnlab.viz.common import _value_at


@dataclass(frozen=True)
class Case:
    notebook: str
    control: str  # the description label of the control to move
    value: object  # typed into a slider's readout, or the option/button picked
    check: Callable  # check(knobs, before, after): asserts; before/after are lists of figures

    def __str__(self) -> str:
        return self.notebook[:2]


def _close(got, want, what: str) -> None:
    got, want = np.asarray(got, dtype=float), np.asarray(want, dtype=float)
    assert got.shape == want.shape and np.allclose(got, want, rtol=1e-5, atol=1e-6), f"{what}: {got} != {want}"


def _figure_of(snap: dict) -> go.Figure:
    """A plotly figure holding the snapshot's named line traces, for the library's readers (`_value_at`)."""
    return go.Figure([go.Scatter(name=t["name"], x=t["x"], y=t["y"]) for t in snap["traces"] if t["type"] == "scatter"])


def check_neuron(knobs, before, after) -> None:
    """00, T 8 → 24: every trace equals that of `widgets.neuron_app` built here with the notebook's knobs, T set to 24."""
    app = widgets.neuron_app(current=knobs["CURRENT"], threshold=knobs["THRESHOLD"], timesteps=knobs["TIMESTEPS"])
    controls, fig = app.children
    next(c for c in controls.children if c.description == "time steps T").value = 24
    got = after[0]["traces"]
    assert len(got) == len(fig.data)
    for page, lib in zip(got, fig.data):
        assert lib.name is None or page["name"] == lib.name
        for axis in ("x", "y"):
            values = getattr(lib, axis)
            if values is not None:
                _close(page[axis], np.asarray(values, dtype=float).ravel(), f"trace {lib.name!r} {axis}")


def check_distribution(knobs, before, after) -> None:
    """01, T 2 → 4: the SNN's φ_T(z) = clip_floor(z; θ, 4, V[0] = θ/2) falls only in bins of its 5 levels.

    θ is the percentile line the page draws, the bins are the 60 bars over [0, top] the page draws;
    the ANN's ReLU(z) histogram does not depend on T and stays put.
    """
    fig = after[0]
    theta = trace(fig, "percentile")["x"][0]
    snn, ann = trace(fig, "SNN φ_T(z)"), trace(fig, "ANN a = ReLU(z)")
    width = 2 * snn["x"][0]  # bar centres (i + 0.5)·width
    levels = clip_floor(torch.linspace(-10 * theta, 10 * theta, 200_001), theta, 4, 0.5).unique()
    bins = [torch.clamp(((levels / width) + shift).floor().long(), max=len(snn["x"]) - 1) for shift in (-1e-6, 1e-6)]
    allowed = set(torch.cat(bins).tolist())  # a level on a bin edge may fall on either side
    occupied = {i for i, y in enumerate(snn["y"]) if y > 0}
    assert occupied and occupied <= allowed, f"φ_4 bars at bins {sorted(occupied)}, levels in {sorted(allowed)}"
    assert abs(sum(snn["y"]) - 1) < 1e-4, "the φ_T histogram holds fractions of all samples"
    assert ann == trace(before[0], "ANN a = ReLU(z)")
    assert "T = 4" in fig["title"]


def check_conversion(knobs, before, after) -> None:
    """02, T 4 → 2: the accuracy curve stays; the marker moves to its value at t = 2; the error bars change."""
    curve = trace(after[0], "θ × scale")
    assert curve == trace(before[0], "θ × scale"), "the T slider only reads the simulated accuracy curve"
    marker = trace(after[0], "at T")
    _close(marker["x"], [2], "marker T")
    _close(marker["y"], [_value_at(_figure_of(after[0]), "θ × scale", 2)], "marker accuracy")
    bars = [[t["y"] for t in snap["traces"] if t["type"] == "bar"] for snap in (before[0], after[0])]
    assert bars[1] != bars[0], "the layers' error parts at T = 2 differ from those at T = 4"


def check_potential(knobs, before, after) -> None:
    """03, T 4 → 8: the error curves equal `analysis.expected_error(8, θ = 1, V[0])`; the marker reads t = 8."""
    fig, grid = after[0], torch.linspace(0, 1, 101)
    mean, mse = expected_error(8, 1.0, grid)
    _close(trace(fig, "E[φ − z]")["y"], mean, "E[φ − z]")
    _close(trace(fig, "√E[(φ − z)²]")["y"], mse.sqrt(), "√E[(φ − z)²]")
    here = expected_error(8, 1.0, 0.5)
    _close(trace(fig, "this V[0]")["y"], [here[0], here[1] ** 0.5], "this V[0]")
    _close(trace(fig, "at T")["x"], [8], "marker T")
    _close(trace(fig, "at T")["y"], [_value_at(_figure_of(fig), "V[0] = v·θ", 8)], "marker accuracy")


def check_spike_trace(knobs, before, after) -> None:
    """04/05, T 5 → 2: spikes and membranes only for t ≤ 2, θ unchanged; a neuron traced both times keeps H[1..2]."""
    fig, old = after[0], before[0]
    spikes = trace(fig, "spikes")
    assert spikes["x"] and set(spikes["x"]) <= {1, 2}, f"spikes at steps {sorted(set(spikes['x']))}"
    _close(trace(fig, "θ")["x"], [0.5, 2.5], "θ line")
    _close(trace(fig, "θ")["y"], trace(old, "θ")["y"], "θ")
    for j in (1, 2, 3):
        now, then = trace(fig, f"H[t], neuron {j}"), trace(old, f"H[t], neuron {j}")
        _close(now["x"], [1, 2], f"H of neuron {j}, steps")
        if now["text"][:1] == then["text"][:1]:  # the same neuron: its first two potentials
            _close(now["y"], then["y"][:2], f"H of {now['text'][0]}")


def check_ttfs(knobs, before, after) -> None:
    """06, K 8 → 4: layer l's spikes fall in its window l·K … l·K + K − 1 with K = 4; the ANN's energy stays.

    The raster has one marker trace per layer, in layer order (`viz.ttfs.raster_traces`); the energy bars
    hold the ANN's energy, which does not depend on K, first.
    """
    fig = after[0]
    layers = [t for t in fig["traces"] if t["type"] == "scatter"]  # every layer, silent ones too: plotly.js
    assert layers and any(t["x"] for t in layers), "the raster shows no spike"  # gives an empty trace no mode
    for index, layer in enumerate(layers):
        outside = [x for x in layer["x"] or [] if not 4 * index <= x < 4 * (index + 1)]
        assert not outside, f"layer {layer['name']} spikes at {outside[:5]} outside its window with K = 4"
    bars = [t for t in fig["traces"] if t["type"] == "bar"]
    assert bars and bars[0]["y"][0] == next(t for t in before[0]["traces"] if t["type"] == "bar")["y"][0]
    assert "K = 4" in fig["title"]


def check_scatter_moves(knobs, before, after) -> None:
    """07: the accuracy-vs-energy scatter moves (estimator compute → memory, or T): some marker's point differs."""
    def points(snap):
        return [(t["name"], t["x"], t["y"]) for f in snap for t in f["traces"] if "markers" in t["mode"]]

    assert points(after) and points(after) != points(before), "no marker of the scatter moved"


CASES = [
    Case("00_spiking_neurons.ipynb", "time steps T", 24, check_neuron),
    Case("01_preactivation_distributions.ipynb", "time steps T", 4, check_distribution),
    Case("02_conversion_error.ipynb", "time steps T", 2, check_conversion),
    Case("03_potential_initialization.ipynb", "time steps T", 8, check_potential),
    Case("04_threshold_leak_training.ipynb", "time steps T", 2, check_spike_trace),
    Case("05_one_timestep.ipynb", "time steps T", 2, check_spike_trace),
    Case("06_time_to_first_spike.ipynb", "window K", 4, check_ttfs),
    Case("07_tradeoff.ipynb", "time steps T", 2, check_scatter_moves),
]
VOILA_CASES = [  # 00's entry above also passes under Voilà (about 40 s more): add it to check Voilà before 07 exists
    Case("07_tradeoff.ipynb", "time steps T", 2, check_scatter_moves),
]


def knobs(notebook) -> dict:
    """The notebook's knobs: its first code cell, executed with CI=true as in CI."""
    import os

    import nbformat

    cell = next(c for c in nbformat.read(notebook, as_version=4).cells if c.cell_type == "code")
    found = {}
    saved = os.environ.get("CI")
    os.environ["CI"] = "true"
    try:
        exec(cell.source, found)  # noqa: S102 - literal values and one CI line (STYLE.md's notebook skeleton)
    finally:
        if saved is None:
            del os.environ["CI"]
        else:
            os.environ["CI"] = saved
    return found
