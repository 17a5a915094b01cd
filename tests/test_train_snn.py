"""Tests of snnlab.train_snn: the unit-spike fold, BPTT, the IIR chain, resuming, the T = 1 binary network."""
import copy

import pytest
import torch

from snnlab import train_snn as ts
from snnlab.convert import convert
from snnlab.data import get_loaders
from snnlab.models import build_model
from snnlab.neurons import Neuron, neurons
from snnlab.simulate import Probe, encode, evaluate_snn, simulate
from snnlab.train import seed_everything, train_ann


@pytest.fixture(scope="module")
def digits():
    """A VGG-mini with dropout trained on digits (≈ 98 %), its loaders and 300 calibration images."""
    seed_everything(0)
    train_loader, test_loader = get_loaders("digits", batch_size=64, seed=0)
    ann = build_model("vgg-mini", num_classes=10, in_channels=1, image_size=8, dropout=0.2)
    train_ann(ann, train_loader, epochs=3, lr=0.05, progress=False)
    return ann.eval(), train_loader, test_loader, train_loader.x[:300]


def _small_loader(size=256, seed=0):
    return get_loaders("digits", batch_size=64, train_size=size, seed=seed)[0]


def _spikes(snn, x, timesteps):
    with Probe(snn) as probe:
        out = simulate(snn, x, timesteps)
    return out, probe.spikes


@pytest.mark.parametrize("recipe", ["p99.7", "datta"])
def test_fold_to_unit_spikes_changes_no_spike_and_no_output(digits, recipe):
    ann, _, test_loader, images = digits
    snn = convert(ann, images, threshold=recipe, timesteps=4, v_init=0.0)
    first_value = next(iter(neurons(snn).values())).spike_value
    first_value = next(iter(neurons(snn).values())).threshold if first_value is None else first_value
    second_weight = snn.features[3].layer.weight.clone()  # the conv after the first neuron layer
    folded = ts.fold_unit_spikes(copy.deepcopy(snn))
    x = test_loader.x[:100]
    out, spikes = _spikes(snn, x, 6)
    out_folded, spikes_folded = _spikes(folded, x, 6)
    assert all(torch.equal(spikes[name], spikes_folded[name]) for name in spikes)
    assert torch.allclose(out, out_folded, rtol=1e-5, atol=1e-5)
    assert all(m.spike_value.item() == 1.0 for m in neurons(folded).values())
    assert torch.allclose(folded.features[3].layer.weight, second_weight * first_value)


def test_fold_refuses_a_residual_network():
    net = build_model("resnet20", num_classes=10, in_channels=1, image_size=8).eval()
    snn = convert(net, torch.randn(32, 1, 8, 8), threshold="p99.7", timesteps=2)
    with pytest.raises(ValueError, match="sequential.*BasicBlock"):
        ts.fold_unit_spikes(snn)


def test_diet_init_scales_thresholds_and_makes_them_trainable(digits):
    ann, _, _, images = digits
    reference = ts.fold_unit_spikes(convert(ann, images, threshold="p99.7", timesteps=5, v_init=0.0))
    snn = ts.diet_init(ann, images, scale=0.4)
    for ref, m in zip(neurons(reference).values(), neurons(snn).values()):
        assert m.threshold.item() == pytest.approx(0.4 * ref.threshold.item())
        assert isinstance(m.threshold, torch.nn.Parameter) and isinstance(m.leak, torch.nn.Parameter)
        assert m.surrogate == "triangle" and m.v_init.item() == 0.0


def test_gradients_reach_threshold_and_leak(digits):
    ann, train_loader, _, images = digits
    snn = ts.diet_init(ann, images, scale=0.5).train()
    x, labels = next(iter(train_loader))
    loss = torch.nn.functional.cross_entropy(snn(encode(x, 5)).sum(0), labels)
    loss.backward()
    for name, m in neurons(snn).items():
        for p in (m.threshold, m.leak):
            assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_leak_is_clamped_to_one_and_threshold_kept_positive(digits):
    ann, _, _, images = digits
    snn = ts.diet_init(ann, images, scale=0.5)
    with torch.no_grad():
        for m in neurons(snn).values():
            m.leak.fill_(1.3)  # one epoch of Adam at lr 1e-3 moves λ by < 0.1: only the clamp brings it to ≤ 1
        next(iter(neurons(snn).values())).threshold.fill_(-0.5)
    ts.train_snn(snn, _small_loader(128), timesteps=3, epochs=1, lr=1e-3, progress=False)
    assert all(m.leak.item() <= 1.0 for m in neurons(snn).values())
    assert all(m.threshold.item() >= ts.MIN_THRESHOLD for m in neurons(snn).values())


def test_neuron_lr_sets_the_first_step_of_threshold_and_leak(digits):
    ann, _, _, images = digits
    snn = ts.diet_init(ann, images, scale=0.5)
    start = copy.deepcopy(snn)
    ts.train_snn(snn, _small_loader(64), timesteps=3, epochs=1, lr=1e-5, neuron_lr=0.05, progress=False)
    # Adam's first step is lr·g/|g| = ±lr for each parameter with a non-zero gradient
    for a, b in zip(neurons(start).values(), neurons(snn).values()):
        assert abs(b.threshold.item() - a.threshold.item()) == pytest.approx(0.05, rel=1e-3)
    weights = [(a - b).abs().max().item() for a, b in zip(start.parameters(), snn.parameters()) if a.dim() > 1]
    assert max(weights) == pytest.approx(1e-5, rel=1e-2)


def test_bptt_improves_a_poorly_scaled_start(digits):
    ann, _, test_loader, images = digits
    seed_everything(0)
    snn = ts.diet_init(ann, images, scale=0.5)  # thresholds too low: ≈ 75 % at T = 5 (ANN ≈ 98 %)
    before = evaluate_snn(snn, test_loader, 5, progress=False)[-1].item()
    history = ts.train_snn(snn, _small_loader(512), timesteps=5, epochs=1, lr=1e-3, test_loader=test_loader,
                           progress=False)
    assert history["test_acc"][-1] >= max(before + 10, 90.0)
    assert not snn.training and len(history["threshold"]) == 1 and len(history["threshold"][0]) == 5


def test_iir_stages_start_from_the_previous_stage(digits, monkeypatch):
    ann, _, _, images = digits
    start = ts.diet_init(ann, images, scale=0.7)
    original = copy.deepcopy(start.state_dict())
    seen, train = [], ts.train_snn

    def recording(snn, *args, **kwargs):
        seen.append((kwargs["timesteps"], copy.deepcopy(snn.state_dict())))
        return train(snn, *args, **kwargs)

    monkeypatch.setattr(ts, "train_snn", recording)
    stages = ts.iir_schedule(start, _small_loader(128), timesteps=(3, 2, 1), epochs=1, lr=1e-3, progress=False)
    assert list(stages) == [3, 2, 1] and [t for t, _ in seen] == [3, 2, 1]
    previous = [original] + [stages[t][0].state_dict() for t in (3, 2)]
    for (_, at_start), before in zip(seen, previous):
        assert all(torch.equal(at_start[key], before[key]) for key in before)  # W, θ, λ carried over
    assert all(torch.equal(start.state_dict()[key], original[key]) for key in original)  # start untouched
    assert not torch.equal(stages[1][0].state_dict()["features.2.threshold"], original["features.2.threshold"])


class Interrupted(Exception):
    """Raised by a forward hook to stop a training run midway, as a crash or Ctrl-C would."""


def _stop_at_call(n):
    calls = []

    def hook(*_):
        calls.append(1)
        if len(calls) == n:
            raise Interrupted

    return hook


def test_resume_after_an_interruption_ends_like_an_uninterrupted_run(digits, tmp_path):
    ann, _, _, images = digits
    start = ts.diet_init(ann, images, scale=0.7)

    def run(path, stop_at=None):
        seed_everything(1)  # a fresh process: same seeds, fresh network and loader
        snn, loader = copy.deepcopy(start), _small_loader(128, seed=1)  # 2 batches per epoch
        if stop_at is not None:
            snn.register_forward_hook(_stop_at_call(stop_at))
        history = ts.train_snn(snn, loader, timesteps=2, epochs=2, lr=1e-3, checkpoint=path, progress=False)
        return snn, history

    whole, history = run(tmp_path / "whole.pt")
    with pytest.raises(Interrupted):
        run(tmp_path / "cut.pt", stop_at=4)  # the second batch of epoch 2
    assert len(torch.load(tmp_path / "cut.pt", weights_only=True)["meta"]["history"]["loss"]) == 1
    resumed, resumed_history = run(tmp_path / "cut.pt")
    assert resumed_history["loss"] == history["loss"]
    assert all(torch.equal(a, b) for a, b in zip(whole.state_dict().values(), resumed.state_dict().values()))
    again, _ = run(tmp_path / "cut.pt")  # a finished run only loads
    assert all(torch.equal(a, b) for a, b in zip(whole.state_dict().values(), again.state_dict().values()))


def test_binary_network_is_the_snn_at_one_step(digits):
    ann, _, test_loader, images = digits
    snn = ts.diet_init(ann, images, scale=0.7)
    binary = ts.binary_network(snn)
    x = test_loader.x[:200]
    with torch.no_grad():
        assert torch.allclose(binary(x), simulate(snn, x, 1)[0], atol=1e-6)
    assert not any(isinstance(m, Neuron) for m in binary.modules())


def test_per_image_correctness_agrees_with_the_accuracy(digits):
    ann, _, test_loader, images = digits
    snn = ts.diet_init(ann, images, scale=0.7)
    right = ts.per_image_correct(snn, test_loader, 3)
    assert right.shape == (len(test_loader.x),) and right.dtype == torch.bool
    assert right.float().mean().item() * 100 == pytest.approx(evaluate_snn(snn, test_loader, 3, progress=False)[-1].item())


def test_paired_test_is_the_exact_mcnemar_test():
    a = torch.tensor([True] * 19 + [False] * 2 + [True] * 50)  # 19 images only a gets right, 2 only b
    b = torch.tensor([False] * 19 + [True] * 2 + [True] * 50)
    result = ts.paired_test(a, b)
    assert (result["a_only"], result["b_only"], result["images"]) == (19, 2, 71)
    assert result["p_value"] == pytest.approx(2 * (1 + 21 + 210) / 2 ** 21)  # 2·P(Binomial(21, ½) ≤ 2)
    assert result["difference"] == pytest.approx(100 * 17 / 71)
    swapped = ts.paired_test(b, a)
    assert swapped["p_value"] == result["p_value"] and swapped["difference"] == -result["difference"]
    assert ts.paired_test(a, a)["p_value"] == 1.0  # no disagreement: no evidence
    assert ts.paired_test(a[:20], b[:20])["p_value"] < 0.05 < ts.paired_test(a[15:25], b[15:25])["p_value"]
    with pytest.raises(ValueError, match="same images"):
        ts.paired_test(a, b[:-1])


def test_cache_names_follow_the_start_the_data_and_the_arguments(digits, tmp_cache):
    ann, _, _, images = digits
    start = ts.diet_init(ann, images, scale=0.7)
    config = {"timesteps": 2, "epochs": 1, "lr": 1e-3}
    path = ts.cache_path("diet", start, _small_loader(128), config)
    assert path.parent == tmp_cache / "checkpoints" and path.name.startswith("snn-diet-")
    assert path == ts.cache_path("diet", copy.deepcopy(start), _small_loader(128), dict(config))  # same run
    moved = copy.deepcopy(start)
    with torch.no_grad():
        moved.features[2].threshold.mul_(1.001)
    others = [ts.cache_path("diet", moved, _small_loader(128), config),  # another start
              ts.cache_path("diet", start, _small_loader(128, seed=1), config),  # other images
              ts.cache_path("diet", start, _small_loader(128), {**config, "timesteps": 3}),  # another T
              ts.cache_path("direct", start, _small_loader(128), config)]  # another name
    assert len({path, *others}) == 5
    with pytest.raises(ValueError, match="cache='diet' fingerprints .* got a list: pass checkpoint="):
        ts.cache_path("diet", start, [(images, images)], config)


def test_cached_run_is_found_again_and_iir_stages_are_cached_by_their_start(digits, tmp_cache, monkeypatch):
    ann, _, _, images = digits
    start = ts.diet_init(ann, images, scale=0.7)
    first = ts.iir_schedule(start, _small_loader(128), timesteps=(2, 1), epochs=1, lr=1e-3, cache="iir",
                            progress=False)
    assert len(list((tmp_cache / "checkpoints").glob("snn-iir-*.pt"))) == 2
    monkeypatch.setattr(ts, "_train_epoch", lambda *a, **k: pytest.fail("a cached stage was trained again"))
    again = ts.iir_schedule(start, _small_loader(128), timesteps=(2, 1), epochs=1, lr=1e-3, cache="iir",
                            progress=False)
    for t in (2, 1):
        assert all(torch.equal(a, b) for a, b in zip(first[t][0].state_dict().values(),
                                                      again[t][0].state_dict().values()))


@pytest.mark.parametrize("call, match", [
    (lambda snn, loader: ts.train_snn(snn, loader, timesteps=0, epochs=1), "timesteps"),
    (lambda snn, loader: ts.train_snn(snn, loader, timesteps=2, epochs=0), "epochs"),
    (lambda snn, loader: ts.train_snn(snn, loader, timesteps=2, epochs=1, lr=0), "lr"),
    (lambda snn, loader: ts.train_snn(snn, loader, timesteps=2, epochs=1, neuron_lr=-1.0), "neuron_lr"),
    (lambda snn, loader: ts.make_trainable(snn, surrogate="sigmoid"), "surrogate.*boxcar"),
    (lambda snn, loader: ts.iir_schedule(snn, loader, timesteps=(2, 0), epochs=1), "timesteps"),
])
def test_bad_arguments_raise_clear_errors(digits, call, match):
    ann, _, _, images = digits
    with pytest.raises(ValueError, match=match):
        call(ts.diet_init(ann, images, scale=0.5), _small_loader(64))


def test_bad_scale_and_an_unconverted_network_raise(digits):
    ann, _, _, images = digits
    with pytest.raises(ValueError, match="scale"):
        ts.diet_init(ann, images, scale=0.0)
    with pytest.raises(ValueError, match="convert"):
        ts.make_trainable(ann)


def test_broken_or_foreign_checkpoints_name_the_file(digits, tmp_path):
    ann, _, _, images = digits
    snn, loader = ts.diet_init(ann, images, scale=0.5), _small_loader(64)
    path = tmp_path / "snn-broken.pt"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(RuntimeError, match="snn-broken.pt"):
        ts.train_snn(snn, loader, timesteps=2, epochs=1, checkpoint=path, progress=False)
    path.unlink()
    ts.train_snn(snn, loader, timesteps=2, epochs=1, checkpoint=path, progress=False)
    with pytest.raises(ValueError, match="snn-broken.pt.*another checkpoint path"):
        ts.train_snn(snn, loader, timesteps=3, epochs=1, checkpoint=path, progress=False)


def test_unwritable_checkpoint_folder_is_refused_before_training(tiny, tmp_path, monkeypatch):
    snn = ts.make_trainable(copy.deepcopy(tiny[3]))
    (tmp_path / "blocked").write_text("a file where the folder should be")

    def train_epoch(*args):
        raise AssertionError("training started")
    monkeypatch.setattr(ts, "_train_epoch", train_epoch)
    with pytest.raises(OSError, match=r"cannot write to .*blocked .*SNNLAB_CACHE="):
        ts.train_snn(snn, [(tiny[1], tiny[2])], timesteps=2, epochs=1, checkpoint=tmp_path / "blocked" / "snn.pt",
                     progress=False)
