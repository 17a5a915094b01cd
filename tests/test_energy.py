"""energy.py: MAC counts by hand, the energy model's arithmetic, and agreement with the probe."""
import pytest
import torch
from torch import nn

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
