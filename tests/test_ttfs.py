"""Tests of snnlab.ttfs (and the CAT activation, the ttfs rows of `snnlab compare`, `widgets.ttfs_app`).

The TTFS network is checked against an independent, step-by-step event simulation (each neuron compares
its potential with a threshold that halves every step and fires at most once), and against the CAT ANN.
"""
import math

import pytest
import torch
from torch import nn

from snnlab import widgets
from snnlab.activations import CAT, activation_factory, log_round, log_step
from snnlab.cli import CompareConfig, Method, parse_method, run_compare
from snnlab.convert import fold_batchnorm
from snnlab.energy import E_AC_PJ, E_MAC_PJ
from snnlab.models import build_model
from snnlab.ttfs import (
    E_ADD_PJ,
    NO_SPIKE,
    TTFSLayer,
    convert_ttfs,
    decode,
    encode,
    log_quantize,
    log_weights,
    measure_ttfs,
    run_ttfs,
)


def event_simulation(values: torch.Tensor, bound: float, window: int) -> torch.Tensor:
    """Spike steps found by stepping through the window: fire once at the first k with V ≥ s·2^(−k−½)."""
    times = torch.full(values.shape, NO_SPIKE, dtype=torch.long)
    for k in range(window):
        fires = (times == NO_SPIKE) & (values >= bound * 2 ** (-k - 0.5))
        times[fires] = k
    return times


def cat_mlp(window=4, seed=0):
    """A random MLP with BN and CAT activations (bounds 1.5 and 0.8), eval mode, BN statistics set."""
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(6, 16), nn.BatchNorm1d(16), CAT(window, 1.5), nn.Linear(16, 12), CAT(window, 0.8),
                        nn.Linear(12, 3))
    net[1].running_mean.uniform_(-0.5, 0.5)
    net[1].running_var.uniform_(0.5, 2.0)
    return net.eval()


def cat_vgg(window=8):
    torch.manual_seed(0)
    net = build_model("vgg-mini", num_classes=10, in_channels=1, image_size=8,
                      activation_layer=activation_factory("cat", levels=window, bound=1.0))
    for bn in (m for m in net.modules() if isinstance(m, nn.BatchNorm2d)):
        bn.running_var.uniform_(0.5, 2.0)
        bn.running_mean.uniform_(-0.2, 0.2)
    return net.eval()


# ---------------------------------------------------------------- the code
def test_encode_by_hand():
    s = 2.0
    values = torch.tensor([3.0, 2.0, 1.42, 1.41, 1.0, 0.71, 0.70, s * 2 ** -7, s * 2 ** -7.4, s * 2 ** -7.6, 0.0, -1.0])
    assert encode(values, s, 8).tolist() == [0, 0, 0, 1, 1, 1, 2, 7, 7, NO_SPIKE, NO_SPIKE, NO_SPIKE]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
def test_log_step_rounds_exactly_at_every_boundary(dtype):
    """The floats just above and below 2^(−k−½) (no float is equal to it) fall on either side of it: k and k + 1."""
    k = torch.arange(0, 14 if dtype == torch.float16 else 100)
    boundary = 2.0 ** (-k.double() - 0.5)
    above, below = boundary.to(dtype), boundary.to(dtype)  # the nearest float, then its neighbour on the other side
    above = torch.where(above.double() > boundary, above, torch.nextafter(above, torch.ones_like(above)))
    below = torch.where(below.double() < boundary, below, torch.nextafter(below, torch.zeros_like(below)))
    assert torch.equal(log_step(above), k.to(dtype)) and torch.equal(log_step(below), (k + 1).to(dtype))
    assert torch.equal(log_round(above, 200), 2.0 ** -k.to(dtype))
    assert log_step(torch.zeros(1, dtype=dtype)).item() == math.inf


def test_encode_matches_the_event_simulation():
    values = torch.rand(5000) ** 6 * 3  # many scales, some above s
    for window in (1, 3, 8):
        assert torch.equal(encode(values, 2.0, window), event_simulation(values, 2.0, window))


def test_decode_sends_s_times_two_to_the_minus_k():
    times = torch.tensor([0, 1, 3, NO_SPIKE])
    assert decode(times, 1.5, 4).tolist() == [1.5, 0.75, 1.5 / 8, 0.0]


def test_cat_is_decode_of_encode_and_passes_gradients_straight_through():
    z = torch.linspace(-1, 3, 401, requires_grad=True)
    cat = CAT(levels=5, bound=2.0)
    a = cat(z)
    assert torch.equal(a.detach(), decode(encode(z.detach(), 2.0, 5), 2.0, 5))
    a.sum().backward()
    inside = (z > 0) & (z < 2.0)
    assert torch.all(z.grad[inside] == 1) and torch.all(z.grad[~inside] == 0)
    assert cat.bound.grad.item() == pytest.approx((z.detach() >= 2.0).sum().item() + (
        (a.detach() - z.detach()) / 2.0)[inside].sum().item(), rel=1e-4)  # a = s·q(z/s): ∂a/∂s = q − z/s inside


# ---------------------------------------------------------------- conversion
def test_ttfs_network_equals_the_step_by_step_event_simulation():
    net, x = cat_mlp(), torch.randn(64, 6)
    snn = convert_ttfs(net)
    logits, times = run_ttfs(snn, x)
    folded = fold_batchnorm(net)
    v = folded[0](x)  # [64, 16] potentials after layer 0's inputs
    t1 = event_simulation(v, 1.5, 4)
    v2 = sum(folded[3].weight[:, i] * torch.where(t1[:, i:i + 1] >= 0, 1.5 * 2.0 ** -t1[:, i:i + 1].float(), 0.0)
             for i in range(16)) + folded[3].bias  # each spike adds w·s·2^(−k)
    t2 = event_simulation(v2, 0.8, 4)
    out = folded[5](torch.where(t2 >= 0, 0.8 * 2.0 ** -t2.float(), 0.0))
    assert torch.equal(times["2"], t1) and torch.equal(times["4"], t2)
    torch.testing.assert_close(logits, out, rtol=1e-5, atol=1e-5)


def test_cat_ann_and_its_ttfs_network_give_the_same_answer_per_image():
    net, x = cat_vgg(), torch.randn(64, 1, 8, 8)
    logits, times = run_ttfs(convert_ttfs(net), x)
    assert torch.equal(logits, fold_batchnorm(net)(x))  # the same bits as the folded CAT ANN
    assert torch.equal(logits.argmax(1), net(x).argmax(1))  # and the same prediction as the ANN with BN
    assert all(((t >= NO_SPIKE) & (t < 8)).all() for t in times.values())  # ≤ 1 spike per neuron, inside K


def test_relu_ann_converts_with_a_recipe_and_loses_what_cat_does_not():
    torch.manual_seed(0)
    relu = build_model("vgg-mini", num_classes=10, in_channels=1, image_size=8).eval()
    images = torch.randn(64, 1, 8, 8)
    snn = convert_ttfs(relu, images, window=8, threshold="percentile")
    assert all(isinstance(m, TTFSLayer) for m in snn.modules() if isinstance(m, (nn.ReLU, TTFSLayer)))
    assert not torch.equal(snn(images), fold_batchnorm(relu)(images))  # the log rounding changes the values


def test_errors_say_what_to_pass():
    relu = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
    with pytest.raises(ValueError, match="activation='cat'"):
        convert_ttfs(relu, window=4)
    with pytest.raises(ValueError, match="pass images"):
        convert_ttfs(relu, window=4, threshold="percentile")
    with pytest.raises(ValueError, match="window=K"):
        convert_ttfs(relu)
    with pytest.raises(ValueError, match="window .* ≥ 1, got 0"):
        convert_ttfs(cat_mlp(), window=0)
    with pytest.raises(ValueError, match="levels .* ≥ 1"):
        CAT(levels=0)
    with pytest.raises(ValueError, match="bits .* ≥ 2"):
        log_quantize(torch.ones(3), bits=1)
    pooled = nn.Sequential(nn.Conv2d(1, 2, 3), CAT(4), nn.MaxPool2d(2), nn.Flatten())
    with pytest.raises(ValueError, match="'2' is a MaxPool2d.*pool='avg'"):
        convert_ttfs(pooled)
    with pytest.raises(ValueError, match=r"'1' \(Sigmoid\) cannot be carried"):
        convert_ttfs(nn.Sequential(nn.Linear(2, 2), nn.Sigmoid(), nn.Linear(2, 2), CAT(4)))


# ---------------------------------------------------------------- log weights
def test_log_quantize_by_hand_and_against_a_brute_force_search():
    w = torch.tensor([1.0, -0.5, 0.3, 0.01, 0.0, 2.0 ** -20])
    assert log_quantize(w, 5).tolist() == [1.0, -0.5, 0.25, 2.0 ** -7, 0.0, 2.0 ** -15]
    assert log_quantize(w, 2).tolist() == [1.0, -0.5, 0.5, 0.5, 0.0, 0.5]
    w = torch.randn(2000)
    levels = w.abs().max() * 2.0 ** -torch.arange(16.0)  # [16]
    nearest = torch.argmin((torch.log2(w.abs()[:, None]) - torch.log2(levels)).abs(), dim=1)
    torch.testing.assert_close(log_quantize(w, 5), torch.sign(w) * levels[nearest])


def test_log_weights_fold_bn_and_stay_on_the_grid_after_fine_tuning():
    net, x = cat_mlp(), torch.randn(64, 6)
    loader = [(x[i:i + 16], torch.randint(0, 3, (16,))) for i in range(0, 64, 16)]
    tuned = log_weights(net, 5, loader, epochs=2, lr=0.05)
    assert not any(isinstance(m, nn.BatchNorm1d) for m in tuned.modules())
    for layer in (m for m in tuned.modules() if isinstance(m, nn.Linear)):
        m = torch.log2(layer.weight.abs().max() / layer.weight.abs())
        assert torch.equal(m, m.round()) and m.max() <= 15 and len(torch.unique(m)) <= 16
    rounded = log_weights(net, 5)
    assert not torch.equal(tuned[0].weight, rounded[0].weight)  # fine-tuning moved weights across levels
    torch.testing.assert_close(rounded[0].weight, log_quantize(fold_batchnorm(net)[0].weight, 5))


# ---------------------------------------------------------------- spikes and energy
def test_measure_counts_spikes_events_and_energy_by_hand():
    net, x = cat_mlp(), torch.randn(40, 6)
    y = torch.randint(0, 3, (40,))
    snn = convert_ttfs(net)
    result = measure_ttfs(snn, [(x[:25], y[:25]), (x[25:], y[25:])])
    logits, times = run_ttfs(snn, x)
    fired = {n: (t != NO_SPIKE).float().mean().item() for n, t in times.items()}
    assert result.spikes_per_neuron == pytest.approx(fired)
    assert result.accuracy == pytest.approx(100 * (logits.argmax(1) == y).float().mean().item())
    macs = [6 * 16, 16 * 12, 12 * 3]
    expected = macs[0] * E_MAC_PJ + macs[1] * fired["2"] * E_AC_PJ + macs[2] * fired["4"] * E_AC_PJ
    assert result.energy.snn_pj == pytest.approx(expected)
    assert result.shift_add.snn_pj == pytest.approx(expected + (macs[1] * fired["2"] + macs[2] * fired["4"])
                                                    * (E_ADD_PJ - E_AC_PJ))
    assert result.spikes_total == pytest.approx((fired["2"] * 16 + fired["4"] * 12) / 28)


# ---------------------------------------------------------------- the CLI and the widget
def test_parse_method_ttfs():
    assert parse_method("ttfs") == Method("ttfs", None) and parse_method("ttfs").label == "ttfs"
    with pytest.raises(ValueError, match="ttfs has no V"):
        parse_method("ttfs@0.5")


def test_compare_adds_a_ttfs_row_equal_to_the_cat_ann(tmp_cache):
    config = CompareConfig(dataset="digits", activation="cat", levels=6, epochs=1, train_size=400,
                           methods=[Method("ttfs", None), Method("bound", 0.5)], timesteps=[2, 4], calibration=100)
    result = run_compare(config)
    ttfs_row = next(r for r in result["rows"] if r["method"] == "ttfs")
    assert ttfs_row["accuracy"] == result["ann"]["accuracy"] and ttfs_row["timesteps"] == 6
    assert ttfs_row["spikes_per_neuron"] <= 1 and ttfs_row["shift_add_uj"] < ttfs_row["energy_uj"]
    assert ttfs_row["latency_steps"] == 6 * 5  # five CAT layers in vgg-mini
    assert [r["method"] for r in result["rows"]] == ["ttfs", "bound@0.5", "bound@0.5"]


def test_ttfs_app_redraws_raster_energy_and_accuracy():
    net, images = cat_vgg(), torch.randn(32, 1, 8, 8)
    labels = net(images).argmax(1)  # the CAT ANN's answers: accuracy 100 % at its own K
    row, fig = widgets.ttfs_app(net, images, labels, window=8).children
    knobs = {c.description: c for c in row.children}
    assert fig.layout.title.text.startswith("TTFS, K = 8") and "100.0 %" in fig.layout.title.text

    def dots():
        return {d.name: (list(d.x), list(d.y)) for d in fig.data if d.type == "scatter"}

    _, times = run_ttfs(convert_ttfs(net, window=3), images[:1])
    knobs["window K (steps per layer)"].value = 3
    for layer, (name, (x, y)) in enumerate(dots().items()):
        assert len(set(y)) == len(y)  # each neuron at most one dot
        t = times[name].flatten()[:256]
        assert sorted(y) == torch.nonzero(t >= 0).flatten().tolist()
        assert all(3 * layer <= step < 3 * layer + 3 for step in x)
    energy = next(d for d in fig.data if d.name == "energy").y
    result = measure_ttfs(convert_ttfs(net, window=3), [(images, labels)])
    assert energy[1] == pytest.approx(result.energy.snn_pj / 1e6)
    knobs["weights"].value = 5
    assert "5-bit log weights" in fig.layout.title.text
    assert math.isfinite(next(d for d in fig.data if d.name == "energy").y[2])
