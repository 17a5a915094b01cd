"""neurons.py: the step equations by hand, the clip-floor identity, the fast scan, gradients, errors."""
import pytest
import torch
from torch import nn

from snnlab import neurons as neurons_module
from snnlab.analysis import expected_error
from snnlab.neurons import (Neuron, SharedDropout, TimeBatched, boxcar, clip_floor, if_step,
                            learn_threshold_and_leak, reset, triangle)


def run(neuron, x):
    """Spike counts of a fresh neuron over the T steps of x [T, ...] (no autograd: the fast scan)."""
    with torch.no_grad():
        return reset(neuron)(x)


# ------------------------------------------------------------------ one step, by hand
def test_if_step_soft_reset_by_hand():
    x, v = torch.tensor([0.3, 0.9, -0.2]), torch.tensor([0.8, 0.2, 0.1])
    spike, v_new = if_step(x, v, threshold=1.0)
    # H = V + X = [1.1, 1.1, -0.1]; S = H ≥ 1; V = H − S
    assert spike.tolist() == [1.0, 1.0, 0.0]
    assert torch.allclose(v_new, torch.tensor([0.1, 0.1, -0.1]))


def test_if_step_hard_reset_and_leak_by_hand():
    x, v = torch.tensor([0.5, 0.5]), torch.tensor([0.8, 0.4])
    spike, v_new = if_step(x, v, threshold=1.0, leak=0.5, reset="hard")
    # H = 0.5·V + X = [0.9, 0.7]: no spike, so V = H
    assert spike.tolist() == [0.0, 0.0] and torch.allclose(v_new, torch.tensor([0.9, 0.7]))
    spike, v_new = if_step(torch.tensor([1.5]), torch.tensor([0.4]), threshold=1.0, leak=0.5, reset="hard")
    assert spike.item() == 1.0 and v_new.item() == 0.0  # H = 1.7 fires, reset to zero


def test_fire_at_equality():
    spike, v = if_step(torch.tensor([1.0]), torch.tensor([0.0]), threshold=1.0)
    assert spike.item() == 1.0 and v.item() == 0.0  # Θ(0) = 1


# ------------------------------------------------------------------ the clip-floor identity
@pytest.mark.parametrize("timesteps", [1, 2, 3, 4, 7, 8, 16])
@pytest.mark.parametrize("v_init", [0.0, 0.5])
@pytest.mark.parametrize("threshold", [1.0, 0.5, 2.0])
def test_soft_reset_if_is_a_clip_floor_quantizer(timesteps, v_init, threshold):
    # dyadic inputs make every sum exact in float32, so the identity must hold bit for bit
    z = torch.arange(-64, 3 * 64 + 1, dtype=torch.float32) / 64 * threshold  # [−θ, 3θ]
    neuron = Neuron(threshold=threshold, v_init=v_init)
    counts = run(neuron, z.expand(timesteps, -1)).sum(0) / threshold  # spikes carry θ
    expected = torch.clamp(torch.floor((timesteps * z + v_init * threshold) / threshold), 0, timesteps)
    assert torch.equal(counts, expected)
    assert torch.allclose(clip_floor(z, threshold, timesteps, v_init), threshold * expected / timesteps)


def test_clip_floor_levels_shrink_with_t():
    z = torch.linspace(0, 1, 10_001)
    for timesteps in (1, 2, 4, 8):
        assert len(torch.unique(clip_floor(z, 1.0, timesteps))) == timesteps + 1


# ------------------------------------------------------------------ the fast scan = the readable scan
@pytest.mark.parametrize("reset_mode,leak", [("soft", 1.0), ("soft", 0.9), ("hard", 1.0), ("hard", 0.8)])
@pytest.mark.parametrize("spike_value", [1.0, None])
@pytest.mark.parametrize("block", [None, 150])  # 150 neurons: blocks of 2, 2 and 1 samples
def test_fast_scan_matches_readable_scan(reset_mode, leak, spike_value, block, monkeypatch):
    if block is not None:
        monkeypatch.setattr(neurons_module, "BLOCK", block)
    torch.manual_seed(0)
    x = torch.randn(6, 5, 3, 5, 5)  # 75 neurons per sample
    threshold = torch.rand(3, 1, 1) + 0.5  # per channel
    fast = Neuron(threshold=threshold, leak=leak, v_init=0.3, reset=reset_mode, spike_value=spike_value)
    slow = Neuron(threshold=threshold, leak=leak, v_init=0.3, reset=reset_mode, spike_value=spike_value)
    with torch.no_grad():
        out_fast = fast(x.clone())
    out_slow = slow(x.clone().requires_grad_())  # grad enabled → readable `if_step` scan
    assert torch.equal(out_fast, out_slow.detach())
    assert torch.allclose(fast.v, slow.v.detach(), atol=1e-6)


def test_fast_scan_keeps_the_memory_format_of_direct_input(monkeypatch):
    monkeypatch.setattr(neurons_module, "BLOCK", 100)  # 4 blocks of one sample
    image = torch.randn(4, 4, 5, 5).contiguous(memory_format=torch.channels_last)
    x = image.unsqueeze(0).expand(6, *image.shape)  # what direct encoding gives: stride 0 in time
    out = run(Neuron(threshold=0.7, v_init=0.5), x)
    assert out.flatten(0, 1).is_contiguous(memory_format=torch.channels_last)  # what the next conv wants
    readable = Neuron(threshold=0.7, v_init=0.5)(x.clone().requires_grad_())
    assert torch.equal(out, readable.detach())


def test_state_carries_over_until_reset():
    x = torch.rand(8, 2, 5) * 0.7
    whole = run(Neuron(v_init=0.5), x)
    chunked = Neuron(v_init=0.5)
    with torch.no_grad():
        reset(chunked)
        parts = torch.cat([chunked(x[:3]), chunked(x[3:])])
    assert torch.equal(whole, parts)
    assert chunked.v is not None and reset(chunked).v is None
    assert torch.equal(run(chunked, x[:3]), whole[:3])  # after reset it starts from V[0] again


def test_spike_value():
    x = torch.full((4, 1), 0.6)
    assert set(run(Neuron(threshold=0.5), x).unique().tolist()) <= {0.0, 0.5}  # carries θ
    assert set(run(Neuron(threshold=0.5, spike_value=1.0), x).unique().tolist()) <= {0.0, 1.0}


# ------------------------------------------------------------------ threshold scaling ≡ weight normalization
def test_threshold_scaling_equals_weight_normalization():
    torch.manual_seed(0)
    l1, l2 = nn.Linear(6, 5), nn.Linear(5, 3)
    th1, th2 = 2.0, 0.5  # powers of two: the rescaled weights are exact
    snn = nn.Sequential(TimeBatched(l1), Neuron(th1), TimeBatched(l2), Neuron(th2))
    n1, n2 = nn.Linear(6, 5), nn.Linear(5, 3)
    with torch.no_grad():
        n1.weight.copy_(l1.weight / th1), n1.bias.copy_(l1.bias / th1)  # W̃¹ = W¹/θ¹
        n2.weight.copy_(l2.weight * th1 / th2), n2.bias.copy_(l2.bias / th2)  # W̃² = W²·θ¹/θ²
    normalized = nn.Sequential(TimeBatched(n1), Neuron(1.0, spike_value=1.0), TimeBatched(n2),
                               Neuron(1.0, spike_value=1.0))
    x = torch.randn(16, 32, 6)
    spikes_scaled = run(snn, x) / th2
    spikes_normalized = run(normalized, x)
    assert spikes_normalized.sum() > 0
    assert torch.equal(spikes_scaled, spikes_normalized)


# ------------------------------------------------------------------ V[0] = θ/2: zero mean error on uniform input
@pytest.mark.parametrize("timesteps", [1, 2, 4, 8])
def test_half_threshold_init_has_zero_mean_error(timesteps):
    torch.manual_seed(0)
    threshold = 1.5
    z = torch.rand(200_000) * threshold
    error_half = run(Neuron(threshold, v_init=0.5), z.expand(timesteps, -1)).mean(0) - z
    error_zero = run(Neuron(threshold, v_init=0.0), z.expand(timesteps, -1)).mean(0) - z
    step = threshold / timesteps
    assert abs(error_half.mean().item()) < 0.01 * step
    assert error_half.pow(2).mean().item() == pytest.approx(threshold**2 / (12 * timesteps**2), rel=0.02)
    assert error_zero.mean().item() == pytest.approx(-threshold / (2 * timesteps), rel=0.02)
    assert error_zero.pow(2).mean().item() == pytest.approx(threshold**2 / (3 * timesteps**2), rel=0.02)
    for v_init, err in ((0.5, error_half), (0.0, error_zero)):
        mean, mse = expected_error(timesteps, threshold, v_init)
        assert err.mean().item() == pytest.approx(mean, abs=0.01 * step)
        assert err.pow(2).mean().item() == pytest.approx(mse, rel=0.02)


# ------------------------------------------------------------------ surrogate gradients
def test_triangle_surrogate_gradients_by_hand():
    h = torch.tensor([0.5, 0.9, 1.0, 1.4, 2.5], requires_grad=True)
    threshold = torch.tensor(1.0, requires_grad=True)
    spike, _ = if_step(h, torch.zeros(5), threshold)
    spike.sum().backward()
    z = h.detach() / 1.0 - 1
    g = 0.3 * torch.clamp(1 - z.abs(), min=0)
    assert torch.allclose(h.grad, g / 1.0)
    assert torch.allclose(threshold.grad, (-g * h.detach()).sum())
    assert triangle(torch.tensor(0.0)).item() == pytest.approx(0.3)


def smooth_spike(h, threshold, gamma=0.3):
    """Φ(H/θ − 1), Φ' = the triangle surrogate: autograd of Φ is an independent check of _Spike's backward."""
    u = torch.clamp(h / threshold - 1, -1, 1)
    return gamma * torch.where(u < 0, (u + 1) ** 2 / 2, 1 - (1 - u) ** 2 / 2)


@pytest.mark.parametrize("threshold", [torch.tensor(0.5), torch.tensor(2.5), torch.tensor([[0.4], [1.7], [3.0]])])
def test_spike_gradients_match_autograd_of_the_surrogates_antiderivative(threshold):
    """∂S/∂H = s(z)/θ and ∂S/∂θ = −s(z)·H/θ² (z = H/θ − 1), where 1/θ and 1/θ² do not vanish (θ ≠ 1)."""
    h = (torch.rand(3, 40, generator=torch.Generator().manual_seed(1)) * 7).requires_grad_()  # [C, N]
    weights = torch.rand(3, 40, generator=torch.Generator().manual_seed(2))  # a non-uniform upstream gradient
    ours = threshold.clone().requires_grad_()
    spike, _ = if_step(h, torch.zeros_like(h), ours)
    (spike * weights).sum().backward()
    h_ref, theirs = h.detach().clone().requires_grad_(), threshold.clone().requires_grad_()
    (smooth_spike(h_ref, theirs) * weights).sum().backward()
    assert torch.allclose(h.grad, h_ref.grad, atol=1e-6)
    assert ours.grad.shape == threshold.shape
    assert torch.allclose(ours.grad, theirs.grad, atol=1e-5)


def test_boxcar_surrogate():
    z = torch.tensor([-1.5, -0.5, 0.0, 0.99, 1.0])
    assert boxcar(z).tolist() == [0.0, 1.0, 1.0, 1.0, 0.0]


def test_learned_threshold_and_leak_receive_gradients():
    net = nn.Sequential(TimeBatched(nn.Linear(4, 8)), Neuron(1.0, leak=0.9, spike_value=1.0),
                        TimeBatched(nn.Linear(8, 2)))
    learn_threshold_and_leak(net)
    neuron = net[1]
    assert isinstance(neuron.threshold, nn.Parameter) and isinstance(neuron.leak, nn.Parameter)
    reset(net)
    net(torch.randn(5, 16, 4) * 3).sum().backward()
    assert neuron.threshold.grad is not None and neuron.threshold.grad.abs() > 0
    assert neuron.leak.grad is not None and neuron.leak.grad.abs() > 0


# ------------------------------------------------------------------ time-batched helpers
def test_time_batched_constant_input_runs_once_and_matches():
    conv = nn.Conv2d(3, 4, 3)
    x = torch.randn(2, 3, 8, 8)
    wrapped = TimeBatched(conv)
    constant = wrapped(x.unsqueeze(0).expand(5, *x.shape))
    materialized = wrapped(x.unsqueeze(0).repeat(5, 1, 1, 1, 1))
    assert constant.stride(0) == 0  # still a view: computed once
    assert torch.allclose(constant, materialized, atol=1e-6)


def test_shared_dropout_mask_is_the_same_at_every_step():
    drop = SharedDropout(0.5).train()
    out = drop(torch.ones(6, 3, 10))
    assert torch.equal(out[0], out[5]) and (out[0] == 0).any()
    assert torch.equal(drop.eval()(torch.ones(6, 3, 10)), torch.ones(6, 3, 10))


# ------------------------------------------------------------------ bad input
@pytest.mark.parametrize("kwargs,match", [
    (dict(reset="zero"), "reset must be one of"),
    (dict(surrogate="sigmoid"), "surrogate must be one of"),
    (dict(threshold=0.0), "threshold must be > 0"),
    (dict(threshold=torch.tensor([1.0, -1.0])), "threshold must be > 0"),
])
def test_neuron_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Neuron(**kwargs)


def test_neuron_rejects_input_without_time():
    with pytest.raises(ValueError, match=r"\[T, B, ...\]"):
        Neuron()(torch.ones(3))
