"""Tests of the figures and the app of notebooks 04–05 (viz/training.py, widgets.py), without a browser."""
import pytest
import torch

from snnlab import viz, widgets
from snnlab.models import build_model
from snnlab.neurons import neurons
from snnlab.data import get_loaders
from snnlab.train_snn import diet_init, score, train_snn

from test_widgets import assert_energy_shown  # tests/ is on sys.path (pytest rootdir conftest)


@pytest.fixture(scope="module")
def nets():
    """An untrained digits VGG-mini converted with unit spikes, a copy trained for one epoch, and a test loader."""
    torch.manual_seed(0)
    train_loader, test_loader = get_loaders("digits", batch_size=64, train_size=128, test_size=100, seed=0)
    ann = build_model("vgg-mini", num_classes=10, in_channels=1, image_size=8).eval()
    start, trained = (diet_init(ann, train_loader.x, scale=0.5) for _ in range(2))
    history = train_snn(trained, train_loader, timesteps=3, epochs=1, test_loader=test_loader, progress=False)
    return start, trained, history, test_loader


def test_spike_trace_app_follows_its_controls(nets):
    start, trained, _, test_loader = nets
    app = widgets.spike_trace_app({"converted": start, "trained": trained}, test_loader.x[0],
                                           max_timesteps=4, count=64)
    controls, fig = app.children[0].children, app.children[1]
    network, layer, timesteps = controls
    raster = next(fig.select_traces(selector=dict(name="spikes")))
    assert layer.options == tuple(neurons(start))
    layer.value = layer.options[-1]
    timesteps.value = 2
    recorded = viz.record_traces({"trained": trained}, test_loader.x[0], 4, 64)
    s = recorded["trained"]["traces"][layer.value]["s"][:2]  # [2, 64]
    network.value = "trained"
    assert len(raster.x) > 0 and all(s[int(t) - 1, int(i)] == 1 for t, i in zip(raster.x, raster.customdata))
    counts = [s[:, int(i)].sum().item() for i in raster.customdata]  # rows ordered by spike count
    assert [c for _, c in sorted(zip(raster.y, counts))] == sorted(counts)
    assert_energy_shown(fig, trained, test_loader.x[:1], 2)
    assert f"layer {layer.value}" in fig.layout.title.text and "2 steps" in fig.layout.title.text
    assert list(next(fig.select_traces(selector=dict(name="θ"))).y) == [pytest.approx(neurons(trained)[layer.value].threshold.item())] * 2


def test_training_figures_show_every_network_and_layer(nets):
    start, trained, history, test_loader = nets
    scores = {t: score(trained, test_loader, t) for t in (3, 1)}
    figures = [viz.bptt_figure({"DIET": history}, ann_accuracy=90.0, start_accuracy={"DIET": 10.0}),
               viz.threshold_leak_figure({"converted": start, "trained": trained}),
               viz.spike_rate_figure({"trained": scores[3]["spike_rate"]}),
               viz.energy_figure({"T = 3": scores[3]["energy"], "T = 1": scores[1]["energy"]}),
               viz.stages_figure({"IIR": scores}, ann_accuracy=90.0)]
    for fig in figures:
        assert fig.layout.title.text and fig.layout.template.layout.font.family
        assert all(trace.hovertemplate for trace in fig.data)
    thresholds = [bar for bar in figures[1].data if bar.name == "trained"][0]
    assert list(thresholds.y) == pytest.approx([m.threshold.item() for m in neurons(trained).values()])
    energy = figures[3].data
    assert [bar.name for bar in energy] == ["ANN", "T = 3", "T = 1"] and len(energy[0].x) == 6
    assert sum(energy[2].y) == pytest.approx(scores[1]["energy"].snn_pj / 1e6)
    assert list(figures[4].data[0].y) == [scores[3]["accuracy"], scores[1]["accuracy"]]


@pytest.mark.parametrize("bad", [-2, 0, 4])
def test_spike_trace_refuses_t_outside_the_recorded_steps(nets, bad):
    start, _, _, test_loader = nets
    recorded = viz.record_traces({"converted": start}, test_loader.x[0], 3, 16)
    fig = viz.spike_trace_figure(recorded, timesteps=2)
    with pytest.raises(ValueError, match=r"timesteps must be an integer in \[1, 3\] \(record_traces simulated "
                                         rf"'converted' for 3 steps\), got {bad}"):
        viz.update_spike_trace(fig, recorded, timesteps=bad)
    assert "in 2 steps" in fig.layout.title.text  # the figure still shows T = 2
