"""simulate.py: one pass gives every t ≤ T, direct encoding, the fast configuration, the probe's counts, bad input."""
import copy
import importlib
import platform

import pytest
import torch
from torch import nn

from snnlab.convert import convert
from snnlab.models import build_model
from snnlab.neurons import Neuron, TimeBatched, if_step, neurons, reset
from snnlab.simulate import Probe, encode, evaluate_snn, keep_freed_memory, simulate

simulate_module = importlib.import_module("snnlab.simulate")  # `snnlab.simulate` is also the function


@pytest.fixture(scope="module")
def snn():
    torch.manual_seed(0)
    model = build_model("vgg-mini", num_classes=10, in_channels=1, image_size=8).eval()
    return convert(model, torch.randn(64, 1, 8, 8), threshold="p99", v_init=0.5)


def test_prefix_of_a_long_run_is_the_short_run(snn):
    x = torch.randn(16, 1, 8, 8)
    long = simulate(snn, x, 8)
    for t in (1, 3, 5):
        assert torch.allclose(simulate(snn, x, t)[-1], long[t - 1], atol=1e-5)


def test_output_is_the_running_mean_of_the_output_layer(snn):
    x = torch.randn(4, 1, 8, 8)
    out = simulate(snn, x, 6)
    reset(snn)
    with torch.no_grad():
        y = snn(x.unsqueeze(0).repeat(6, 1, 1, 1, 1))  # materialized input: nothing computed once
    assert torch.allclose(out[2], y[:3].mean(0), atol=1e-5)
    assert torch.allclose(out[-1], y.mean(0), atol=1e-5)


def test_rate_encoding_averages_to_the_pixel_value():
    x = torch.tensor([[0.0, 0.25, 0.8, 1.0, 1.7]])
    spikes = encode(x, 4000, "rate", seed=1)
    assert set(spikes.unique().tolist()) <= {0.0, 1.0}
    assert torch.allclose(spikes.mean(0), x.clamp(0, 1), atol=0.03)
    assert torch.equal(spikes, encode(x, 4000, "rate", seed=1))  # seeded


def test_evaluate_snn_matches_simulate(snn):
    torch.manual_seed(1)
    batches = [(torch.randn(10, 1, 8, 8), torch.randint(0, 10, (10,))) for _ in range(3)]
    accuracy = evaluate_snn(snn, batches, 5, progress=False)
    correct = sum((simulate(snn, x, 5).argmax(-1) == y).sum(1) for x, y in batches)
    assert torch.allclose(accuracy, 100 * correct.float() / 30)


# ------------------------------------------------------------------ the fast configuration
def test_memory_format_changes_only_the_rounding_of_convolutions():
    """`simulate` runs in channels_last whatever format x comes in. Given the same input, every layer
    agrees with an NCHW run: neurons, pooling and the classifier exactly, convolutions within float
    rounding (their kernels sum in another order per format). So two whole runs, one per format, can
    differ where a rounding difference moves H[t] across θ: a flipped spike then changes later layers."""
    torch.manual_seed(0)
    model = build_model("vgg-mini", num_classes=10, in_channels=3, image_size=16).eval()
    snn = convert(model, torch.randn(64, 3, 16, 16), threshold="p99", v_init=0.5)
    x = torch.randn(64, 3, 16, 16)  # NCHW, as loaders give it
    seen, layers = {}, {n: m for n, m in snn.named_modules() if isinstance(m, (Neuron, TimeBatched))}
    hooks = [m.register_forward_hook(lambda m, i, o, n=n: seen.__setitem__(n, (i[0], o))) for n, m in layers.items()]
    out = simulate(snn, x, 6)
    for h in hooks:
        h.remove()
    assert torch.equal(out, simulate(snn, x.contiguous(memory_format=torch.channels_last), 6))
    for name, (current, result) in seen.items():
        layer = reset(copy.deepcopy(layers[name]))
        with torch.no_grad():
            nchw = layer(current.contiguous())  # [T, B, ...] in the default format
        if isinstance(layers[name], TimeBatched) and isinstance(layers[name].layer, nn.Conv2d):
            assert result[0].is_contiguous(memory_format=torch.channels_last), name  # the fast path's format
            assert torch.allclose(nchw, result, rtol=1e-5, atol=1e-5), name
        else:
            assert torch.equal(nchw, result), name


def test_keep_freed_memory_does_nothing_when_opted_out_or_off_glibc(monkeypatch):
    def refuse(*args):
        raise AssertionError("must not load libc")

    monkeypatch.setattr(simulate_module.ctypes, "CDLL", refuse)
    monkeypatch.setenv("SNNLAB_KEEP_FREED_MEMORY", "0")
    assert keep_freed_memory.__wrapped__() is False  # the function without its once-per-process cache
    monkeypatch.delenv("SNNLAB_KEEP_FREED_MEMORY")
    monkeypatch.setattr(platform, "libc_ver", lambda: ("", ""))  # macOS, Windows, musl
    assert keep_freed_memory.__wrapped__() is False


def test_simulate_sets_the_allocator_once(snn, monkeypatch):
    calls = []
    monkeypatch.setattr(simulate_module, "keep_freed_memory", lambda: calls.append(1))
    simulate(snn, torch.randn(2, 1, 8, 8), 2)
    assert calls == [1]
    assert keep_freed_memory() is (platform.libc_ver()[0] == "glibc")  # done here (pytest's process) on glibc
    assert keep_freed_memory.cache_info().currsize == 1  # once: later calls return the first answer


def test_probe_counts_spikes_events_and_traces(snn):
    x = torch.randn(8, 1, 8, 8)
    seen = {}
    hooks = [m.register_forward_hook(lambda m, i, o, n=name: seen.__setitem__(n, (i[0].clone(), o.clone())))
             for name, m in neurons(snn).items()]
    with Probe(snn, trace=3) as probe:
        simulate(snn, x, 4)
    for h in hooks:
        h.remove()
    for name, (current, out) in seen.items():
        assert torch.equal(probe.spikes[name], (out != 0).flatten(2).sum((1, 2)).float())
        assert probe.spike_rate()[name] == pytest.approx((out != 0).sum().item() / out[0].numel())
        trace = probe.traces[name]
        assert trace["h"].shape == trace["v"].shape == trace["s"].shape == (4, 3)
        module = neurons(snn)[name]
        v = (module.v_init * module.threshold).expand_as(current[0]).flatten(1)[0, :3]
        for t in range(4):  # the trace follows the step equations, computed here independently
            s, v = if_step(current[t].flatten(1)[0, :3], v, module.threshold)
            assert torch.allclose(trace["v"][t], v, atol=1e-5) and torch.equal(trace["s"][t], s)
    first = next(iter(probe.events))
    assert probe.event_rate()[first] == pytest.approx(4 * (x != 0).float().mean().item())  # analog input
    assert all(n.trace is None for n in neurons(snn).values())  # the probe cleans up


def test_probe_refuses_mixed_timesteps(snn):
    with Probe(snn):
        simulate(snn, torch.randn(2, 1, 8, 8), 4)
        with pytest.raises(ValueError, match="open a new Probe"):
            simulate(snn, torch.randn(2, 1, 8, 8), 5)


@pytest.mark.parametrize("bad", [0, -3, 2.0, True])
def test_bad_timesteps(snn, bad):
    with pytest.raises(ValueError, match="timesteps must be an integer"):
        simulate(snn, torch.randn(2, 1, 8, 8), bad)


def test_nan_input_is_refused(snn):
    x = torch.randn(2, 1, 8, 8)
    x[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        simulate(snn, x, 4)


def test_wrong_input_shape_is_explained(snn):
    with pytest.raises(ValueError, match=r"expects input \[B, 1, \.\.\.\].*\(2, 3, 8, 8\)"):
        simulate(snn, torch.randn(2, 3, 8, 8), 4)
