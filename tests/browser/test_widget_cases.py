"""The browser tests' checks, without a browser: each accepts what the library draws after the move and
rejects a figure left as it was.

The apps are built here on the tiny random network of tests/conftest.py, their figures read as
`browser_kit.snapshot` reads a page (name, type, mode, x, y, text of every trace, the title), and the
control of each `widget_cases.CASES` entry set in Python. Runs with the unit tests (no `browser` marker).
"""
import numpy as np
import pytest
from widget_cases import CASES, check_scatter_moves

from snnlab import widgets
from snnlab.convert import record_preactivations


def _list(values) -> list:
    if values is None:
        return []
    if isinstance(values, str):
        return [values]
    return [v.item() if hasattr(v, "item") else v for v in np.asarray(values, dtype=object).ravel()]


def _snapshot(fig) -> list:
    """The figure as `browser_kit.snapshot` reads it from plotly.js."""
    return [{"title": fig.layout.title.text or "", "axes": {}, "traces": [
        {"name": t.name or "", "type": t.type, "mode": getattr(t, "mode", None) or "", "visible": t.visible,
         "x": _list(t.x), "y": _list(t.y), "text": _list(getattr(t, "text", None))} for t in fig.data]}]


def _app(notebook: str, tiny):
    model, images, labels, snn = tiny
    images = images.abs()  # inputs that make the first layers fire
    if notebook.startswith("00"):
        return widgets.neuron_app(current=0.3, threshold=1.0, timesteps=8)
    if notebook.startswith("01"):
        return widgets.distribution_app(record_preactivations(model, images), timesteps=2)
    if notebook.startswith("02"):
        return widgets.conversion_error_app(snn, images, labels, timesteps=4, max_timesteps=8)
    if notebook.startswith("03"):
        return widgets.potential_app(snn, images, labels, timesteps=4, max_timesteps=8)
    return widgets.spike_trace_app({"converted": snn, "again": snn}, images[0], max_timesteps=5)


@pytest.mark.parametrize("case", [c for c in CASES if c.notebook[:2] <= "05"], ids=str)
def test_check_accepts_the_library_update_and_rejects_a_stale_figure(case, tiny):
    controls, fig = _app(case.notebook, tiny).children
    knobs = {"CURRENT": 0.3, "THRESHOLD": 1.0, "TIMESTEPS": 8}  # notebook 00's, as the app above
    control = next(c for c in controls.children if c.description.startswith(case.control))
    before = _snapshot(fig)
    control.value = case.value
    after = _snapshot(fig)
    case.check(knobs, before, after)
    with pytest.raises(AssertionError):
        case.check(knobs, before, before)


def test_scatter_check_needs_a_moved_marker():
    figure = [{"title": "", "axes": {}, "traces": [{"name": "a", "type": "scatter", "mode": "markers",
                                                   "x": [1], "y": [2], "text": []}]}]
    moved = [{**figure[0], "traces": [{**figure[0]["traces"][0], "x": [3]}]}]
    check_scatter_moves({}, figure, moved)
    with pytest.raises(AssertionError):
        check_scatter_moves({}, figure, figure)
