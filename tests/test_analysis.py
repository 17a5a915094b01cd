"""analysis.py: the three error parts add up, unevenness appears only when input order varies,
the analytic error of the staircase, first spike times."""
import pytest
import torch
from torch import nn

from snnlab.analysis import decompose, expected_error, first_spike_step, layer_errors
from snnlab.convert import convert
from snnlab.neurons import Neuron, reset


def test_expected_error_closed_forms():
    assert expected_error(4, 1.0, 0.5) == pytest.approx((0.0, 1 / (12 * 16)))
    assert expected_error(4, 2.0, 0.0) == pytest.approx((-2.0 / 8, 4 / (3 * 16)))


@pytest.mark.parametrize("v_init", [0.0, 0.25, 0.5, 0.8])
def test_expected_error_matches_a_simulated_neuron(v_init):
    torch.manual_seed(0)
    z = torch.rand(100_000) * 3.0  # many steps of the staircase, then clipped: keep z < θ
    z = z[z < 1.0]
    with torch.no_grad():
        rate = Neuron(1.0, v_init=v_init)(z.expand(4, -1)).mean(0)
    mean, mse = expected_error(4, 1.0, v_init)
    assert (rate - z).mean().item() == pytest.approx(mean, abs=2e-3)
    assert ((rate - z) ** 2).mean().item() == pytest.approx(mse, rel=0.03)


def run_neuron(neuron, x):
    with torch.no_grad():
        return reset(neuron)(x)


def test_parts_add_up_and_unevenness_needs_uneven_input():
    torch.manual_seed(0)
    neuron, timesteps = Neuron(1.0, v_init=0.5), 4
    z = torch.randn(5000) * 1.5
    constant = z.expand(timesteps, -1)
    parts = decompose(z, run_neuron(neuron, constant).mean(0), neuron, timesteps)
    assert torch.allclose(sum(parts.values()), torch.relu(z) - run_neuron(neuron, constant).mean(0), atol=1e-6)
    assert parts["unevenness"].abs().max() < 1e-6  # constant input: the clip-floor identity
    assert (parts["clipping"] > 0).sum() > 0 and (parts["quantization"] != 0).sum() > 0
    jitter = torch.randn(timesteps, 5000) * 0.5
    uneven = constant + jitter - jitter.mean(0)  # same mean input, different order in time
    parts = decompose(uneven.mean(0), run_neuron(neuron, uneven).mean(0), neuron, timesteps)
    assert (parts["unevenness"].abs() > 1e-6).float().mean() > 0.05


def test_layer_errors_on_a_converted_net():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 3))
    x = torch.randn(256, 10)
    errors = {t: layer_errors(convert(model, x, threshold="max", v_init=0.0), x, t) for t in (2, 16)}
    assert list(errors[2]) == ["1", "3"]
    for layer in ("1", "3"):
        total = errors[2][layer]["total"]["mean"]
        assert total == pytest.approx(sum(errors[2][layer][p]["mean"] for p in
                                          ("clipping", "quantization", "unevenness")), abs=1e-6)
    assert errors[2]["1"]["clipping"]["mean"] == pytest.approx(0, abs=1e-6)  # θ = max of the same inputs
    assert errors[16]["1"]["quantization"]["mse"] < errors[2]["1"]["quantization"]["mse"]


def test_first_spike_step():
    spikes = {"a": torch.tensor([0.0, 3.0, 1.0]), "b": torch.tensor([0.0, 0.0, 0.0]), "c": torch.tensor([2.0, 0, 0])}
    assert first_spike_step(spikes) == {"a": 2, "b": None, "c": 1}


def test_qcfs_network_at_t_equal_l_has_no_clipping_or_quantization():
    """Target = each layer's own activation: a QCFS net (L = 4) at T = 4 loses only through unevenness,
    and the first layer (constant input) not at all; ReLU as target would report clipping and quantization."""
    from snnlab.activations import QCFS
    from snnlab.neurons import neurons
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(10, 64), QCFS(levels=4, bound=1.5), nn.Linear(64, 64), QCFS(levels=4, bound=1.0),
                          nn.Linear(64, 3))
    x = torch.randn(512, 10)
    snn = convert(model, x, threshold="bound", v_init=0.5)
    errors = layer_errors(snn, x, 4)
    for layer in ("1", "3"):
        assert errors[layer]["clipping"]["mse"] < 1e-12 and errors[layer]["quantization"]["mse"] < 1e-12
    with torch.no_grad():  # layer 1 of the SNN and of the ANN agree exactly: nothing lost at all
        ann_out, snn_out = model[1](model[0](x)), reset(snn)[1](snn[0](x.expand(4, -1, -1))).mean(0)
    assert torch.allclose(ann_out, snn_out, atol=1e-6)
    assert errors["1"]["total"]["mse"] < 1e-12
    assert errors["3"]["unevenness"]["mse"] > 0  # deeper: spikes arrive unevenly
    del snn.activations  # the old ReLU target books QCFS's own rounding as conversion error
    relu_target = layer_errors(snn, x, 4)
    assert relu_target["1"]["clipping"]["mse"] > 1e-4 and relu_target["1"]["quantization"]["mse"] > 1e-4
    assert len(neurons(snn)) == 2


def test_layer_errors_refuses_a_leak_and_a_hard_reset():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(10, 16), nn.ReLU(), nn.Linear(16, 3))
    x = torch.randn(64, 10)
    snn = convert(model, x, threshold="max")
    snn[1].leak.fill_(0.9)
    with pytest.raises(ValueError, match=r"layer '1'.*leak λ = 0.9"):
        layer_errors(snn, x, 4)
    snn[1].leak.fill_(1.0)
    snn[1].reset = "hard"
    with pytest.raises(ValueError, match="reset 'hard'"):
        layer_errors(snn, x, 4)
