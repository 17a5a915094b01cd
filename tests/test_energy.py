"""energy.py: MAC counts by hand, the energy model's arithmetic, and agreement with the probe."""
import pytest
import torch
from torch import nn

from snnlab import energy
from snnlab.convert import convert
from snnlab.energy import E_AC_PJ, E_MAC_PJ, count_macs, energy_report
from snnlab.models import build_model
from snnlab.simulate import Probe, simulate


def test_count_macs_by_hand():
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(),
                          nn.Linear(8 * 4 * 4, 10))
    macs = count_macs(model, torch.randn(2, 3, 8, 8))
    assert macs == {"0": 3 * 3 * 3 * 8 * 8 * 8, "4": 128 * 10}


def test_vgg_mini_is_about_30_million_macs():
    total = sum(count_macs(build_model("vgg-mini", num_classes=10), torch.randn(1, 3, 32, 32)).values())
    assert 28e6 <= total <= 32e6


def test_energy_model_arithmetic():
    macs = {"conv1": 1000, "conv2": 2000, "fc": 100}
    rates = {"conv1": 4.0, "conv2": 0.5, "fc": 1.5}
    report = energy_report(macs, rates, timesteps=4)
    assert report.ann_pj == pytest.approx(3100 * E_MAC_PJ)
    assert report.snn_pj == pytest.approx(1000 * E_MAC_PJ + (2000 * 0.5 + 100 * 1.5) * E_AC_PJ)
    every = energy_report(macs, rates, timesteps=4, first_layer="every_step")
    assert every.snn_pj - report.snn_pj == pytest.approx(3 * 1000 * E_MAC_PJ)
    assert report.ratio == pytest.approx(report.ann_pj / report.snn_pj)
    assert "total" in report.table()


def test_energy_report_errors():
    with pytest.raises(ValueError, match="first_layer must be one of"):
        energy_report({"a": 1}, {"a": 1.0}, 4, first_layer="twice")


@pytest.mark.parametrize("macs, rates, timesteps, message", [
    ({"x": 1, "y": 2}, {"a": 1.0, "b": 0.5}, 4,  # MACs of another model
     r"macs and event_rate name different layers: \['x', 'y'\] only in macs, \['a', 'b'\] only in event_rate; "
     r"take both from one network"),
    ({"a": 1, "b": 2}, {"a": 1.0}, 4, r"\['b'\] only in macs, \[\] only in event_rate"),
    ({"b": 2, "a": 1}, {"a": 1.0, "b": 0.5}, 4,
     r"different orders \(position 0: 'b' in macs, 'a' in event_rate\): pass both in the order the layers run"),
    ({}, {}, 4, r"macs is empty: pass the MACs per sample of every Conv2d/Linear layer, e.g. count_macs\(ann, x\)"),
    ({"a": 1, "b": 2}, {"a": 1.0, "b": -0.5}, 4, r"event_rate\['b'\] must be a finite number ≥ 0 .*, got -0.5"),
    ({"a": 1, "b": 2}, {"a": float("nan"), "b": 0.5}, 4, r"event_rate\['a'\] must be a finite number ≥ 0 .*, got nan"),
    ({"a": 1, "b": -2}, {"a": 1.0, "b": 0.5}, 4, r"macs\['b'\] must be a positive integer \(MACs per sample\), got -2"),
    ({"a": 1.5, "b": 2}, {"a": 1.0, "b": 0.5}, 4, r"macs\['a'\] must be a positive integer .*, got 1.5"),
    ({"a": 1, "b": 2}, {"a": 1.0, "b": 0.5}, 0, r"timesteps must be an integer ≥ 1, got 0"),
])
def test_energy_report_refuses_mismatched_or_impossible_input(macs, rates, timesteps, message):
    with pytest.raises(ValueError, match=message):
        energy_report(macs, rates, timesteps, first_layer="every_step")


def test_probe_macs_match_the_ann_and_energy_grows_with_t():
    torch.manual_seed(0)
    model = build_model("vgg-mini", num_classes=10, in_channels=1, image_size=8).eval()
    x = torch.randn(32, 1, 8, 8)
    snn = convert(model, x, threshold="p99", v_init=0.5)
    ann_macs = count_macs(model, x)
    reports = {}
    for timesteps in (2, 8):
        with Probe(snn) as probe:
            simulate(snn, x, timesteps)
        assert probe.macs == ann_macs  # same names, same F_l
        reports[timesteps] = energy_report(probe.macs, probe.event_rate(), timesteps)
    assert reports[8].snn_pj > reports[2].snn_pj  # more steps, more spikes
    assert reports[2].ann_pj == reports[8].ann_pj


# ---------------------------------------------------------------- the three estimators on a two-layer net
TWO_LAYER = {"fc1": {"macs": 12, "weights": 12, "inputs": 4, "outputs": 3},  # Linear(4, 3), bias aside
             "fc2": {"macs": 6, "weights": 6, "inputs": 3, "outputs": 2}}  # Linear(3, 2)
RATES = {"fc1": 1.0, "fc2": 0.5}  # r_1 = 0.5 events per input of fc2 over all T


def two_layer_net():
    return nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))


def test_layer_sizes_by_hand():
    sizes = energy.layer_sizes(two_layer_net(), torch.randn(5, 4))
    assert sizes == {"0": TWO_LAYER["fc1"], "2": TWO_LAYER["fc2"]}
    assert energy.count_macs(two_layer_net(), torch.randn(5, 4)) == {"0": 12, "2": 6}


def test_compute_by_hand():
    report = energy.compute({n: s["macs"] for n, s in TWO_LAYER.items()}, RATES, timesteps=2)
    assert report.ann_pj == pytest.approx(18 * 4.6)
    assert report.snn_pj == pytest.approx(12 * 4.6 + 6 * 0.5 * 0.9)  # first layer once, then accumulates
    assert [d["snn_pj"] for d in report.layers] == pytest.approx([12 * 4.6, 2.7])
    assert energy.energy_report is energy.compute


@pytest.mark.parametrize("capacity, pj", [(0, 0.0), (4096, 5.0), (8192, 10.0), (20480, 15.0), (32768, 20.0),
                                          (1024 * 1024, 100.0), (4 * 1024 * 1024, 100.0)])
def test_sram_access_energy_interpolates_the_table(capacity, pj):
    assert energy.sram_pj(capacity) == pytest.approx(pj)


def test_memory_by_hand():
    def e(words):  # all arrays here are far below 8 kB: e(c) = 10 pJ · c / 8192 for c = 4·words bytes
        return 10 * 4 * words / 8192
    report = energy.memory(TWO_LAYER, RATES, timesteps=2)
    ann1 = 12 * (e(12) + e(4)) + 3 * e(3)  # a weight and an input read per MAC, outputs written
    ann2 = 6 * (e(6) + e(3)) + 2 * e(2)
    snn1 = ann1 + 2 * 2 * 3 * e(3)  # dense once, then V read and written at each of T = 2 steps
    snn2 = 6 * 0.5 * (e(6) + 2 * e(2)) + 0.5 * 3 * e(3) + 2 * 2 * 2 * e(2)
    assert report.ann_pj == pytest.approx(18 * 4.6 + ann1 + ann2)
    assert report.snn_pj == pytest.approx(12 * 4.6 + 2.7 + snn1 + snn2)
    assert report.estimator == "memory"
    every = energy.memory(TWO_LAYER, RATES, timesteps=2, first_layer="every_step")
    assert every.snn_pj - report.snn_pj == pytest.approx(12 * 4.6 + ann1)  # one more dense pass of layer 1


def test_memory_costs_more_than_compute_and_grows_with_t():
    compute = energy.compute({n: s["macs"] for n, s in TWO_LAYER.items()}, RATES, 2)
    assert energy.memory(TWO_LAYER, RATES, 2).snn_pj > compute.snn_pj
    assert energy.memory(TWO_LAYER, RATES, 8).snn_pj > energy.memory(TWO_LAYER, RATES, 2).snn_pj  # V updates


@pytest.mark.parametrize("timesteps, bits", [(1, 1), (2, 2), (3, 2), (4, 3), (7, 3), (8, 4), (16, 5)])
def test_activation_bits(timesteps, bits):
    assert energy.activation_bits(timesteps) == bits


def test_qnn_by_hand():
    report = energy.qnn({n: s["macs"] for n, s in TWO_LAYER.items()}, RATES, timesteps=2)  # b = 2 bits
    mac8, mac2 = 0.2 + 0.1, 0.2 * 2 * 8 / 64 + 0.1  # 8×8-bit and 2×8-bit multiply, each + a 32-bit add
    assert report.ann_pj == pytest.approx(12 * mac8 + 6 * mac2)
    assert report.snn_pj == pytest.approx(12 * mac8 + 6 * 0.5 * 0.1)
    assert energy.qnn({"a": 1, "b": 1}, {"a": 1.0, "b": 3.0}, 4).layers[1]["snn_pj"] > \
        energy.qnn({"a": 1, "b": 1}, {"a": 1.0, "b": 3.0}, 4).layers[1]["ann_pj"]  # r = 3 > 1 + b/4 = 1.75: loses


def test_estimate_picks_by_name_and_refuses_unknown():
    macs = {n: s["macs"] for n, s in TWO_LAYER.items()}
    assert energy.estimate("compute", TWO_LAYER, RATES, 2).snn_pj == energy.compute(macs, RATES, 2).snn_pj
    assert energy.estimate("qnn", TWO_LAYER, RATES, 2).ann_pj == energy.qnn(macs, RATES, 2).ann_pj
    assert energy.estimate("memory", TWO_LAYER, RATES, 2).snn_pj == energy.memory(TWO_LAYER, RATES, 2).snn_pj
    with pytest.raises(ValueError, match=r"estimator must be one of \('compute', 'memory', 'qnn'\), got 'flops'"):
        energy.estimate("flops", TWO_LAYER, RATES, 2)
    with pytest.raises(ValueError, match=r"sizes\['fc1'\] lacks \['weights', 'inputs', 'outputs'\]"):
        energy.memory({"fc1": {"macs": 12}}, {"fc1": 1.0}, 2)


def test_probe_sizes_equal_the_anns():
    torch.manual_seed(0)
    ann = two_layer_net().eval()
    x = torch.randn(16, 4)
    snn = convert(ann, x, threshold="max", v_init=0.5)
    with Probe(snn) as probe:
        simulate(snn, x, 3)
    assert probe.sizes() == energy.layer_sizes(ann, x)
