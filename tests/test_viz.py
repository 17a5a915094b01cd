"""Tests of snnlab.viz: every figure is titled, labelled, hoverable, and draws what it was given."""
import json
import re

import pytest
import torch

from snnlab import viz
from snnlab.activations import activation_factory
from snnlab.analysis import first_spike_step, layer_errors
from snnlab.convert import adjusted, convert, fold_batchnorm, record_preactivations
from snnlab.models import build_model
from snnlab.neurons import Neuron, clip_floor, neurons
from snnlab.simulate import Probe, encode, simulate


def check_basics(fig) -> None:
    """A title, our template (not plotly's default), titled axes and hover text on every trace."""
    assert fig.layout.title.text
    assert fig.layout.template.layout.font.family == viz.TEMPLATE.layout.font.family
    assert len(json.dumps(fig.layout.template.to_plotly_json())) < 1500
    axes = [fig.layout[name] for name in fig.layout if name.startswith(("xaxis", "yaxis"))]
    assert any(a.title.text for a in axes if a.plotly_name.startswith("x"))
    assert any(a.title.text for a in axes if a.plotly_name.startswith("y"))
    for trace in fig.data:
        assert trace.hovertemplate, f"trace {trace.name!r} has no hover text"


def trace(fig, name):
    found = list(fig.select_traces(selector=dict(name=name)))
    assert len(found) == 1, f"expected one trace named {name!r}, found {len(found)}"
    return found[0]


def test_membrane_figure_draws_the_hand_computed_if_trace():
    neuron = Neuron(threshold=1.0)
    with Probe(neuron, trace=1) as probe:
        neuron(encode(torch.tensor([[0.3]]), 8))
    fig = viz.membrane_figure(probe.traces[""], ["IF"], threshold=1.0)
    check_basics(fig)
    # by hand: H climbs 0.3 per step, fires at 1.2 (t = 4) and 1.1 (t = 7), keeping the excess
    expected_v = [0.0, 0.3, 0.6, 0.9, 0.2, 0.5, 0.8, 0.1, 0.4]
    assert list(trace(fig, "V[t] IF").y) == pytest.approx(expected_v, abs=1e-6)
    assert list(trace(fig, "spike IF").x) == [4, 7]
    assert list(trace(fig, "θ").y) == [1.0, 1.0]


def test_raster_figure_has_one_marker_per_spike_at_the_neurons_input():
    spikes = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]])  # [T = 2, N = 3]
    currents = torch.tensor([0.1, 0.5, 0.9])
    fig = viz.raster_figure({"a": spikes, "b": torch.zeros(2, 3)}, currents)
    check_basics(fig)
    assert list(trace(fig, "a").x) == [1, 1, 2] and list(trace(fig, "a").y) == pytest.approx([0.1, 0.9, 0.9])
    assert len(trace(fig, "b").x) == 0


def test_rate_figure_draws_relu_and_a_staircase_of_t_plus_one_levels():
    currents = torch.linspace(-0.5, 2.0, 501).unsqueeze(0)
    fig = viz.rate_figure(currents, {"T = 4": clip_floor(currents, 1.0, 4)}, threshold=1.0)
    check_basics(fig)
    assert len(set(list(trace(fig, "T = 4").y))) == 5
    assert list(trace(fig, "ReLU(X)").y) == pytest.approx(torch.relu(currents).flatten().tolist())


@pytest.mark.parametrize("timesteps, v_init", [(8, 0.0), (5, 0.25)])  # no input on a step edge
def test_neuron_figure_matches_the_clip_floor_closed_form(timesteps, v_init):
    fig = viz.neuron_figure(current=0.3, threshold=1.0, v_init=v_init, timesteps=timesteps)
    check_basics(fig)
    counts = torch.clamp(torch.floor(timesteps * viz.RASTER_CURRENTS + v_init), 0, timesteps)  # θ = 1
    assert len(trace(fig, "spikes").x) == int(counts.sum())
    assert len(set(list(trace(fig, "rate").y))) == timesteps + 1
    expected = clip_floor(torch.tensor(0.3), 1.0, timesteps, v_init).item()
    assert trace(fig, "this neuron").y[0] == pytest.approx(expected)
    assert trace(fig, "V[t]").y[0] == pytest.approx(v_init)


def test_update_neuron_with_hard_reset_matches_a_hand_loop():
    fig = viz.neuron_figure()
    viz.update_neuron(fig, current=0.7, threshold=1.0, timesteps=8, reset="hard")
    v, count = 0.0, 0
    for _ in range(8):  # reset to zero, by hand
        v += 0.7
        count, v = (count + 1, 0.0) if v >= 1.0 else (count, v)
    assert trace(fig, "this neuron").y[0] == pytest.approx(count / 8)
    assert "hard reset" in fig.layout.title.text


def test_preactivation_figure_draws_each_layer_and_its_thresholds(tiny):
    model, images, _, _ = tiny
    records = record_preactivations(fold_batchnorm(model), images)
    clip = build_model("vgg-mini", num_classes=10, in_channels=1, image_size=8,
                       activation_layer=activation_factory("clip", bound=2.5)).eval()
    fig = viz.preactivation_figure(records, timesteps=2, percentile=99.0,
                                   learned=record_preactivations(fold_batchnorm(clip), images))
    check_basics(fig)
    histograms = list(fig.select_traces(selector=dict(name="z")))
    assert len(histograms) == len(records)
    assert sum(histograms[0].y) == pytest.approx(1.0, abs=1e-4)
    maxima = [t.x[0] for t in fig.select_traces(selector=dict(name="max"))]
    assert maxima == pytest.approx([r.max for r in records.values()])
    first = next(iter(records.values())).samples
    expected = torch.quantile(first[first > 0], 0.99).item()
    assert [t.x[0] for t in fig.select_traces(selector=dict(name="λ_clip of the clip ANN"))] == [2.5] * len(records)
    assert next(fig.select_traces(selector=dict(name="99th percentile"))).x[0] == pytest.approx(expected, rel=1e-5)


def test_distribution_figure_shows_at_most_t_plus_one_snn_values(tiny):
    model, images, _, _ = tiny
    records = record_preactivations(fold_batchnorm(model), images)
    fig = viz.distribution_figure(records, timesteps=2)
    check_basics(fig)
    snn = trace(fig, "SNN φ_T(z)").y
    assert 1 <= sum(1 for y in snn if y > 0) <= 3
    assert sum(snn) == pytest.approx(1.0, abs=1e-4)
    assert not trace(fig, "λ_clip of the clip ANN").visible


def test_layer_error_and_accuracy_bar_figures_have_a_bar_per_recipe_and_t(tiny):
    model, images, _, _ = tiny
    fits = {(recipe, t): convert(model, images, threshold=recipe, timesteps=t) for recipe in ("mse", "datta")
            for t in (1, 2)}
    errors = {key: layer_errors(snn, images, key[1]) for key, snn in fits.items()}
    fig = viz.layer_error_figure(errors)
    check_basics(fig)
    assert len(fig.data) == 4
    first = next(fig.select_traces(selector=dict(name="Datta & Beerel (α, β)"), col=2))
    assert list(first.y) == pytest.approx([e["total"]["mse"] for e in errors[("datta", 2)].values()])
    bars = viz.accuracy_bar_figure({key: 10.0 * key[1] for key in fits}, ann_accuracy=50.0)
    check_basics(bars)
    assert list(trace(bars, "MSE search").y) == [10.0, 20.0] and list(trace(bars, "MSE search").x) == ["T = 1", "T = 2"]


def test_accuracy_figure_draws_one_point_per_step():
    fig = viz.accuracy_figure({"a": torch.tensor([10.0, 20.0, 30.0, 40.0])}, ann_accuracy=50.0)
    check_basics(fig)
    assert list(trace(fig, "a").x) == [1, 2, 3, 4] and fig.layout.xaxis.type == "log"


def test_error_parts_figure_stacks_parts_that_add_up_to_the_total(tiny):
    _, images, _, snn = tiny
    errors = layer_errors(snn, images, 4)
    fig = viz.error_parts_figure(errors, timesteps=4)
    check_basics(fig)
    bars = [t for t in fig.data if t.type == "bar"]
    assert {t.name for t in bars} == {"clipping", "quantization", "unevenness"}
    stacked = torch.tensor([list(t.y) for t in bars]).sum(0)
    total = torch.tensor(list(next(fig.select_traces(selector=dict(name="total"), col=1)).y))
    assert torch.allclose(stacked, total, atol=1e-6)


def test_error_vs_timesteps_figure_has_a_point_per_t(tiny):
    _, images, _, snn = tiny
    fig = viz.error_vs_timesteps_figure({t: layer_errors(snn, images, t) for t in (1, 2, 4)})
    check_basics(fig)
    assert list(next(fig.select_traces(selector=dict(name="quantization"), col=2)).x) == [1, 2, 4]


def test_expected_error_figure_agrees_with_theta_squared_over_12_t_squared():
    z = torch.rand(1, 20_000, generator=torch.Generator().manual_seed(0))
    errors = {v: simulate(Neuron(v_init=v), z, 8) - z for v in (0.0, 0.5)}
    fig = viz.expected_error_figure(errors)
    check_basics(fig)
    steps = torch.arange(1, 9).double()
    half_mse = list(fig.select_traces(selector=dict(name="V[0] = θ/2 expected"), col=2))[0].y
    assert list(half_mse) == pytest.approx((1 / (12 * steps**2)).tolist())
    measured = list(fig.select_traces(selector=dict(name="V[0] = θ/2 measured"), col=2))[0].y
    assert list(measured) == pytest.approx((1 / (12 * steps**2)).tolist(), rel=0.05)
    zero_mean = list(fig.select_traces(selector=dict(name="V[0] = 0 measured"), col=1))[0].y
    assert list(zero_mean) == pytest.approx((-1 / (2 * steps)).tolist(), rel=0.05)


def test_first_spike_figure_draws_the_first_step_of_each_layer(tiny):
    _, images, _, snn = tiny
    with Probe(snn) as probe:
        simulate(snn, images, 8)
    first = first_spike_step(probe.spikes)
    fig = viz.first_spike_figure({"θ/2": first})
    check_basics(fig)
    assert list(trace(fig, "θ/2").x) == list(first)


def test_adjusted_scales_thresholds_of_a_copy_only(tiny):
    _, _, _, snn = tiny
    before = [n.threshold.clone() for n in neurons(snn).values()]
    scaled = adjusted(snn, threshold_scale=0.5, v_init=0.25)
    for original, old, new in zip(neurons(snn).values(), before, neurons(scaled).values()):
        assert torch.equal(original.threshold, old)
        assert torch.allclose(new.threshold, 0.5 * old) and new.v_init.item() == 0.25


def test_conversion_error_figure_accuracy_is_that_of_the_scaled_snn(tiny):
    _, images, labels, snn = tiny
    fig = viz.conversion_error_figure(snn, images, labels, timesteps=2, threshold_scale=0.5, max_timesteps=4)
    check_basics(fig)
    scaled = adjusted(snn, threshold_scale=0.5)
    expected = 100 * (simulate(scaled, images, 4).argmax(-1) == labels).float().mean(1)
    assert list(trace(fig, "θ × scale").y) == pytest.approx(expected.tolist())
    assert list(trace(fig, "at T").x) == [2]


def test_potential_figure_puts_the_expected_error_minimum_at_half_theta(tiny):
    _, images, labels, snn = tiny
    fig = viz.potential_figure(snn, images, labels, v_init=0.2, timesteps=4, max_timesteps=4)
    check_basics(fig)
    rms = trace(fig, "√E[(φ − z)²]")
    assert rms.x[list(rms.y).index(min(rms.y))] == pytest.approx(0.5)
    assert trace(fig, "this V[0]").x[0] == pytest.approx(0.2)


@pytest.mark.parametrize("bad", [-2, 0, 5, 2.5])
def test_widget_updates_refuse_t_outside_the_simulated_curve(tiny, bad):
    _, images, labels, snn = tiny
    def message(curve):
        return (rf"timesteps must be an integer in \[1, 4\] \(the curve '{re.escape(curve)}' was simulated to T = 4; "
                rf"raise max_timesteps for more\), got {bad}")
    fig = viz.potential_figure(snn, images, labels, timesteps=2, max_timesteps=4)
    with pytest.raises(ValueError, match=message("V[0] = v·θ")):
        viz.update_potential_error(fig, 0.5, bad)
    assert list(trace(fig, "at T").x) == [2]  # nothing was redrawn
    fig = viz.conversion_error_figure(snn, images, labels, timesteps=2, max_timesteps=4)
    with pytest.raises(ValueError, match=message("θ × scale")):
        viz.update_conversion_parts(fig, snn, images, bad)


@pytest.mark.parametrize("bad", [-2, 0, 2.5])
def test_distribution_update_refuses_bad_timesteps(tiny, bad):
    model, images, _, _ = tiny
    records = record_preactivations(fold_batchnorm(model), images)
    fig = viz.distribution_figure(records, timesteps=2)
    with pytest.raises(ValueError, match=rf"timesteps must be an integer ≥ 1, got {bad}"):
        viz.update_distribution(fig, records, timesteps=bad)
