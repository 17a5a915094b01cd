"""Tests of snnlab.widgets: move each app's sliders, as a reader would, and check the figure followed."""
import pytest
import torch

from snnlab import energy, viz, widgets
from snnlab.activations import activation_factory
from snnlab.analysis import expected_error, layer_errors
from snnlab.convert import adjusted, fold_batchnorm, record_preactivations
from snnlab.models import build_model
from snnlab.neurons import neurons
from snnlab.simulate import Probe, simulate


def controls(app) -> dict:
    """The app's controls by description, and its FigureWidget."""
    row, fig = app.children
    assert type(fig).__name__ == "FigureWidget"
    return {c.description: c for c in row.children}, fig


def trace(fig, name, **where):
    return next(fig.select_traces(selector=dict(name=name), **where))


def accuracy_of(snn, images, labels, timesteps):
    """Accuracy (%) after each step, computed here from `simulate` directly."""
    return (100 * (simulate(snn, images, timesteps).argmax(-1) == labels).float().mean(1)).tolist()


def assert_energy_shown(fig, snn, images, timesteps):
    """The figure's energy at T equals `energy.energy_report` of a Probe'd T-step run of the same SNN and images."""
    with Probe(snn) as probe:
        simulate(snn, images, timesteps)
    report = energy.energy_report(probe.macs, probe.event_rate(), timesteps)
    assert list(trace(fig, "energy at T").x) == [timesteps]
    assert trace(fig, "energy at T").y[0] == pytest.approx(report.snn_pj / report.ann_pj)
    assert list(trace(fig, "SNN µJ at T").y) == pytest.approx([d["snn_pj"] / 1e6 for d in report.layers])
    assert list(trace(fig, "ANN µJ").y) == pytest.approx([d["ann_pj"] / 1e6 for d in report.layers])
    assert f"SNN {report.snn_pj / 1e6:.4g} µJ/image = {report.snn_pj / report.ann_pj:.3f} × ANN" in \
        fig.layout.title.text


def test_neuron_app_follows_t_threshold_and_v_init():
    knobs, fig = controls(widgets.neuron_app(timesteps=8))
    knobs["time steps T"].value = 13
    counts = torch.clamp(torch.floor(13 * viz.RASTER_CURRENTS), 0, 13)  # clip-floor counts, θ = 1, V[0] = 0
    assert len(trace(fig, "spikes").x) == int(counts.sum())
    assert len(set(trace(fig, "rate").y)) == 14  # T + 1 levels
    assert len(trace(fig, "H[t]").x) == 13
    knobs["threshold θ"].value = 0.5
    assert list(trace(fig, "θ").y) == [0.5, 0.5]
    assert max(trace(fig, "rate").y) == pytest.approx(0.5)  # saturates at θ
    knobs["V[0] / θ"].value = 0.25
    assert trace(fig, "V[t]").y[0] == pytest.approx(0.125)
    assert "T = 13" in fig.layout.title.text
    knobs["V[0] / θ"].value = 0.0
    knobs["input current X"].value = 0.4  # floor(13·0.4/0.5) = 10 spikes at θ = 0.5
    spikes = int(trace(fig, "spike").x.size)
    synapse = energy.energy_report({"input": 1, "synapse": 1}, {"input": 1.0, "synapse": float(spikes)}, 13).layers[1]
    assert spikes == 10 and synapse["snn_pj"] == pytest.approx(10 * 0.9)
    assert f"{spikes} spikes × 0.9 pJ = {synapse['snn_pj']:.2f} pJ vs one ANN MAC {synapse['ann_pj']:.2f} pJ" in \
        fig.layout.title.text


def test_neuron_app_leak_reset_and_encoding_change_the_rate():
    knobs, fig = controls(widgets.neuron_app(current=0.7, timesteps=8))
    assert trace(fig, "this neuron").y[0] == pytest.approx(5 / 8)  # floor(8·0.7) = 5 spikes
    knobs["reset"].value = "hard"
    assert trace(fig, "this neuron").y[0] == pytest.approx(4 / 8)  # fires every second step
    knobs["reset"].value = "soft"
    knobs["leak λ"].value = 0.5
    assert trace(fig, "this neuron").y[0] < 5 / 8
    direct = list(trace(fig, "rate").y)
    knobs["input"].value = "rate"
    assert list(trace(fig, "rate").y) != direct


def test_distribution_app_follows_layer_t_and_percentile(tiny):
    model, images, _, _ = tiny
    records = record_preactivations(fold_batchnorm(model), images)
    clip = build_model("vgg-mini", num_classes=10, in_channels=1, image_size=8,
                       activation_layer=activation_factory("clip", bound=3.0)).eval()
    knobs, fig = controls(widgets.distribution_app(records, learned=record_preactivations(fold_batchnorm(clip), images)))
    last = list(records)[-1]
    knobs["layer"].value = last
    assert fig.layout.title.text.startswith(f"Layer {last}")
    assert trace(fig, "max").x[0] == pytest.approx(records[last].max)
    knobs["time steps T"].value = 1
    assert sum(1 for y in trace(fig, "SNN φ_T(z)").y if y > 0) <= 2  # 0 or θ
    knobs["percentile p"].value = 95.0
    z = records[last].samples
    assert trace(fig, "percentile").x[0] == pytest.approx(torch.quantile(z[z > 0], 0.95).item(), rel=1e-5)
    assert trace(fig, "λ_clip of the clip ANN").x[0] == pytest.approx(3.0)


def test_conversion_error_app_rescales_thresholds_and_redraws_parts(tiny):
    _, images, labels, snn = tiny
    knobs, fig = controls(widgets.conversion_error_app(snn, images, labels, timesteps=2, max_timesteps=4))
    knobs["θ × scale"].value = 0.5
    scaled = adjusted(snn, threshold_scale=0.5)
    assert list(trace(fig, "θ × scale").y) == pytest.approx(accuracy_of(scaled, images, labels, 4))
    assert list(trace(fig, "θ × 1").y) == pytest.approx(accuracy_of(snn, images, labels, 4))
    knobs["time steps T"].value = 3
    expected = layer_errors(scaled, images, 3)
    assert list(trace(fig, "clipping").y) == pytest.approx([e["clipping"]["mean"] for e in expected.values()])
    assert list(trace(fig, "at T").x) == [3]
    assert all(n.threshold.item() > 0 for n in neurons(snn).values()) and "× 0.50" in fig.layout.title.text
    assert_energy_shown(fig, scaled, images, 3)
    knobs["θ × scale"].value = 2.0  # higher θ: fewer spikes, less energy, from the same run as the accuracy
    assert_energy_shown(fig, adjusted(snn, threshold_scale=2.0), images, 3)


def test_potential_app_follows_v_init_and_t(tiny):
    _, images, labels, snn = tiny
    knobs, fig = controls(widgets.potential_app(snn, images, labels, v_init=0.5, timesteps=2, max_timesteps=4))
    knobs["V[0] / θ"].value = 0.0
    zero = adjusted(snn, v_init=0.0)
    assert list(trace(fig, "V[0] = v·θ").y) == pytest.approx(accuracy_of(zero, images, labels, 4))
    assert trace(fig, "this V[0]").y[0] == pytest.approx(expected_error(2, 1.0, 0.0)[0])  # −θ/(2T)
    knobs["time steps T"].value = 4
    assert list(trace(fig, "at T").x) == [4]
    assert trace(fig, "at T").y[0] == pytest.approx(trace(fig, "V[0] = v·θ").y[3])
    assert trace(fig, "this V[0]").y[0] == pytest.approx(-1 / 8)
    assert_energy_shown(fig, zero, images, 4)
    knobs["time steps T"].value = 1
    assert_energy_shown(fig, zero, images, 1)
