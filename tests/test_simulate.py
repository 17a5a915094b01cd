"""simulate.py: one pass gives every t ≤ T, chunks give that pass bitwise, encoding, the fast configuration,
the probe, bad input."""
import copy
import importlib
import platform
import re

import pytest
import torch
from torch import nn

from snnlab.convert import convert
from snnlab.data import get_loaders
from snnlab.models import build_model
from snnlab.neurons import Neuron, TimeBatched, if_step, neurons, reset
from snnlab.simulate import Probe, encode, evaluate_snn, keep_freed_memory, simulate
from snnlab.train import seed_everything, train_ann

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
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in snn.modules())  # the probe cleans up


def test_probe_refuses_mixed_timesteps(snn):
    with Probe(snn):
        simulate(snn, torch.randn(2, 1, 8, 8), 4)
        with pytest.raises(ValueError, match="open a new Probe"):
            simulate(snn, torch.randn(2, 1, 8, 8), 5)
    with pytest.raises(ValueError, match="T=4, then one of T=3"):  # a shorter run is caught when it ends
        with Probe(snn):
            simulate(snn, torch.randn(2, 1, 8, 8), 4)
            simulate(snn, torch.randn(2, 1, 8, 8), 3, chunk=2)


def _probed(snn, x, timesteps, **kwargs):
    """simulate inside a Probe tracing 5 neurons per layer: (out, probe)."""
    with Probe(snn, trace=5) as probe:
        out = simulate(snn, x, timesteps, **kwargs)
    return out, probe


def _assert_same_record(a: Probe, b: Probe):
    assert a.spikes.keys() == b.spikes.keys() and a.events.keys() == b.events.keys()
    assert all(torch.equal(a.spikes[n], b.spikes[n]) for n in a.spikes)
    assert all(torch.equal(a.events[n], b.events[n]) for n in a.events)
    assert a.samples == b.samples and a.spike_rate() == b.spike_rate() and a.event_rate() == b.event_rate()
    assert a.traces.keys() == b.traces.keys()
    assert all(torch.equal(a.traces[n][k], b.traces[n][k]) for n in a.traces for k in "hvs")


@pytest.mark.parametrize("chunk", [1, 3, 10, 16])
@pytest.mark.parametrize("encoding", ["direct", "rate"])
def test_chunked_simulation_is_bitwise_one_pass(tiny, chunk, encoding):
    _, images, _, snn = tiny
    x = images[:8] if encoding == "direct" else images[:8].sigmoid()  # the rate code needs [0, 1]
    out, probe = _probed(snn, x, 10, encoding=encoding)
    chunked, chunked_probe = _probed(snn, x, 10, encoding=encoding, chunk=chunk)
    assert torch.equal(out, chunked)
    _assert_same_record(probe, chunked_probe)
    assert all(len(p) == 10 for p in chunked_probe.spikes.values())
    assert all(t["v"].shape == (10, 5) for t in chunked_probe.traces.values())


def test_chunked_simulation_of_a_trained_digits_network_is_bitwise_one_pass():
    seed_everything(0)
    train_loader, test_loader = get_loaders("digits", batch_size=64, test_size=128)
    ann = build_model("vgg-mini", num_classes=10, in_channels=1, image_size=8)
    train_ann(ann, train_loader, epochs=2, lr=0.05, progress=False)
    snn = convert(ann.eval(), train_loader.x[:256], threshold="p99", v_init=0.5)
    with Probe(snn) as probe:
        accuracy = evaluate_snn(snn, test_loader, 40, progress=False)  # two batches of 64
    with Probe(snn) as chunked_probe:
        chunked = evaluate_snn(snn, test_loader, 40, progress=False, chunk=16)  # 16 + 16 + 8 steps
    assert torch.equal(accuracy, chunked) and accuracy[-1] > 90  # a trained network (≈ 96 %)
    _assert_same_record(probe, chunked_probe)
    assert chunked_probe.samples[next(iter(chunked_probe.spikes))] == 128
    x = test_loader.x[:64]
    _, traced = _probed(snn, x, 40)
    _, chunked_traced = _probed(snn, x, 40, chunk=16)
    _assert_same_record(traced, chunked_traced)


def test_rate_code_drawn_in_parts_is_the_code_drawn_at_once():
    x = torch.rand(4, 1, 8, 8)
    generator = torch.Generator().manual_seed(7)
    parts = torch.cat([encode(x, steps, "rate", generator=generator) for steps in (3, 1, 8)])
    assert torch.equal(parts, encode(x, 12, "rate", seed=7))


@pytest.mark.parametrize("bad", [0, -1, 2.0, True])
def test_bad_chunk(snn, bad):
    with pytest.raises(ValueError, match="chunk must be None"):
        simulate(snn, torch.randn(2, 1, 8, 8), 4, chunk=bad)


@pytest.mark.parametrize("bad", [0, -3, 2.0, True])
def test_bad_timesteps(snn, bad):
    with pytest.raises(ValueError, match="timesteps must be an integer"):
        simulate(snn, torch.randn(2, 1, 8, 8), bad)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("count", [1, 128])
def test_non_finite_input_is_refused(snn, value, count):
    x = torch.randn(2, 1, 8, 8)
    x.view(-1)[:count] = value  # one pixel, or every pixel
    with pytest.raises(ValueError, match=rf"x holds {count} NaN or infinite values \(of 128\); check the data"):
        simulate(snn, x, 4)
    with pytest.raises(ValueError, match=rf"x holds {count} NaN or infinite values"):
        evaluate_snn(snn, [(x, torch.zeros(2, dtype=torch.long))], 4, progress=False)


@pytest.mark.parametrize("bad", [2.5, True, "4", -1, 0])
def test_evaluate_snn_refuses_bad_timesteps(snn, bad):
    batches = [(torch.randn(2, 1, 8, 8), torch.zeros(2, dtype=torch.long))]
    with pytest.raises(ValueError, match=rf"timesteps must be an integer ≥ 1, got {re.escape(repr(bad))}"):
        evaluate_snn(snn, batches, bad, progress=False)


@pytest.mark.parametrize("dtype", [torch.float64, torch.int64, torch.uint8])
def test_input_of_another_dtype_asks_for_float32(snn, dtype):
    with pytest.raises(TypeError, match=rf"x is a {dtype} tensor, but the network computes in torch.float32: "
                                        r"pass torch.float32 images, e.g. x\.float\(\) after scaling and normalizing"):
        simulate(snn, torch.zeros(2, 1, 8, 8, dtype=dtype), 4)


@pytest.mark.parametrize("shape", [(2, 3, 8, 8), (2, 1, 9, 9), (2, 64), (4, 2, 1, 8, 8)])
def test_wrong_input_shape_names_the_calibration_shape(snn, shape):
    assert snn.input_shape == (1, 8, 8)
    with pytest.raises(ValueError, match=r"the SNN expects input x of shape \[B, 1, 8, 8\] \(no time dimension: "
                                         rf"simulate adds it\), got shape {re.escape(str(shape))}; resize x"):
        simulate(snn, torch.randn(shape), 4)


def test_flatten_first_network_takes_images_of_its_calibration_shape():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10), nn.ReLU(), nn.Linear(10, 10))
    images, x = torch.randn(32, 1, 8, 8), torch.randn(4, 1, 8, 8)
    snn, flat = convert(model, images), convert(model[1:], images.flatten(1))
    assert torch.equal(simulate(snn, x, 4), simulate(flat, x.flatten(1), 4))  # Flatten in the SNN = flattened input
    with pytest.raises(ValueError, match=r"shape \[B, 1, 8, 8\].*got shape \(4, 1, 9, 9\)"):
        simulate(snn, torch.randn(4, 1, 9, 9), 4)


def test_hand_built_snn_is_checked_against_its_first_layer():
    snn = nn.Sequential(TimeBatched(nn.Conv2d(2, 4, 3)), Neuron())  # not converted: no input_shape
    assert simulate(snn, torch.randn(1, 2, 5, 5), 2).shape == (2, 1, 4, 3, 3)  # any image size
    with pytest.raises(ValueError, match=r"shape \[B, 2, H, W\].*got shape \(1, 3, 5, 5\)"):
        simulate(snn, torch.randn(1, 3, 5, 5), 2)
