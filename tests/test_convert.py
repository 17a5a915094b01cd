"""convert.py: exact BN folding, each threshold recipe against an independent computation,
conversion end to end on real data with accuracy floors, and the errors for what cannot convert."""
import math
import os
import re

import numpy as np
import pytest
import torch
from torch import nn

from snnlab.activations import QCFS, ClipReLU
from snnlab.convert import (RECIPE_LABELS, RECIPES, T_FREE_RECIPES, LayerRecord, adjusted, convert, diet_scaled,
                            distribution_aware, fold_batchnorm, max_threshold, mse_threshold, percentile_threshold,
                            record_preactivations, relu_to_qcfs)
from snnlab.data import get_loaders
from snnlab.models import build_model
from snnlab.neurons import Neuron, clip_floor, neurons, reset
from snnlab.simulate import evaluate_snn, simulate
from snnlab.train import get_ann, train_ann


def randomize_batchnorm(model):
    torch.manual_seed(0)
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            m.running_mean.uniform_(-1, 1), m.running_var.uniform_(0.5, 2)
            m.weight.data.uniform_(0.5, 1.5), m.bias.data.uniform_(-0.5, 0.5)
    return model.eval()


# ------------------------------------------------------------------ 1. BN folding
@pytest.mark.parametrize("name", ["vgg-mini", "resnet20"])
def test_batchnorm_folding_is_exact(name):
    model = randomize_batchnorm(build_model(name, num_classes=10))
    folded = fold_batchnorm(model)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())  # the original is untouched
    x = torch.randn(8, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(folded(x), model(x), atol=1e-5, rtol=1e-5)


def test_batchnorm_folding_linear_layers():
    model = randomize_batchnorm(nn.Sequential(nn.Linear(5, 4, bias=True), nn.BatchNorm1d(4), nn.ReLU()))
    x = torch.randn(16, 5)
    with torch.no_grad():
        assert torch.allclose(fold_batchnorm(model)(x), model(x), atol=1e-5)


def test_batchnorm_without_conv_before_it_is_refused():
    model = nn.Sequential(nn.ReLU(), nn.BatchNorm2d(3))
    with pytest.raises(ValueError, match=r"BatchNorm '\.1'.*ReLU"):
        fold_batchnorm(model)


# ------------------------------------------------------------------ 2. recipes
def record_of(z, activation=None):
    activation = activation or nn.ReLU()
    return LayerRecord("layer", activation, z, z.max().item())


def test_t_free_recipes_give_one_threshold_for_every_t_and_the_others_do_not():
    """`snnlab compare` converts a T-free recipe once for all T: its θ must not move with T or V[0]."""
    z = torch.randn(20_000, generator=torch.Generator().manual_seed(0)) * 0.7 + 0.2
    record = record_of(z, ClipReLU(bound=1.5))
    assert set(RECIPE_LABELS) == set(RECIPES) and set(T_FREE_RECIPES) <= set(RECIPES)
    for name, recipe in RECIPES.items():
        settings = {(t, v): recipe(record, t, v)["threshold"] for t in (1, 4, 16) for v in (0.0, 0.5)}
        assert (len(set(settings.values())) == 1) == (name in T_FREE_RECIPES), (name, settings)


def test_max_and_percentile_recipes_match_numpy():
    z = torch.randn(50_000)
    assert max_threshold(record_of(z), 4)["threshold"] == z.max().item()
    positive = z[z > 0].numpy()
    for p in (99.0, 99.9):
        expected = np.percentile(positive, p)
        assert percentile_threshold(record_of(z), 4, p=p)["threshold"] == pytest.approx(expected, rel=1e-4)
    with pytest.raises(ValueError, match="p must be in"):
        percentile_threshold(record_of(z), 4, p=0)


def test_bound_recipe_reads_lambda_and_refuses_relu():
    clip = ClipReLU(bound=2.5)
    assert RECIPES["bound"](record_of(torch.rand(10), clip), 4)["threshold"] == pytest.approx(2.5)
    with pytest.raises(ValueError, match="without a trained bound"):
        RECIPES["bound"](record_of(torch.rand(10)), 4)


def test_mse_recipe_minimizes_the_error_over_its_grid():
    torch.manual_seed(0)
    z = torch.randn(20_000).abs() ** 2
    chosen = mse_threshold(record_of(z), 2, v_init=0.5)["threshold"]

    def error(th):  # an independent brute force over the same grid
        return torch.mean((torch.relu(z) - clip_floor(z, th, 2, 0.5)) ** 2).item()

    grid = [z.max().item() * (1 - 0.01 * i) for i in range(95)]
    assert error(chosen) == pytest.approx(min(error(th) for th in grid))
    assert chosen < z.max().item()  # clipping the tail pays at T = 2


@pytest.mark.parametrize("timesteps,max_mse", [(1, 0.010), (2, 0.005)])
def test_distribution_aware_beats_the_uniform_assumption(timesteps, max_mse):
    """Bell-shaped z (methods digest §8.5): a fitted (θ, A) has far lower error than θ/2 with A = θ."""
    torch.manual_seed(0)
    z = torch.randn(200_000) * 0.25  # N(0, (0.25θ)²) with a loose clip θ = 1
    record = LayerRecord("layer", ClipReLU(bound=1.0), z, 1.0)
    uniform = torch.mean((record.activation(z) - clip_floor(z, 1.0, timesteps, 0.5)) ** 2).item()
    fit = distribution_aware(record, timesteps, v_init=0.5)
    fitted = torch.mean((record.activation(z) - clip_floor(z, fit["threshold"], timesteps, 0.5,
                                                            fit["spike_value"])) ** 2).item()
    assert fitted < max_mse < uniform


def test_unknown_recipe_lists_the_valid_ones():
    with pytest.raises(ValueError, match="unknown threshold recipe 'robust'.*percentile"):
        convert(nn.Sequential(nn.Linear(2, 2), nn.ReLU()), torch.randn(4, 2), threshold="robust")


def test_recipe_can_be_a_function():
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    snn = convert(model, torch.randn(64, 3), threshold=lambda record, T, v0: {"threshold": 0.75})
    assert [n.threshold.item() for n in neurons(snn).values()] == [0.75]


def test_adjusted_scales_threshold_and_spike_value_on_a_copy():
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    snn = convert(model, torch.randn(64, 3), threshold="datta", timesteps=2)  # a recipe with A ≠ θ
    (neuron,) = neurons(snn).values()
    scaled = neurons(adjusted(snn, threshold_scale=0.5, v_init=0.25))["1"]
    assert scaled.threshold.item() == pytest.approx(0.5 * neuron.threshold.item())
    assert scaled.spike_value.item() == pytest.approx(0.5 * neuron.spike_value.item())
    assert scaled.v_init.item() == 0.25 and neuron.v_init.item() == 0.5  # the original is unchanged
    for bad in (0.0, -1, math.nan, math.inf, "2"):
        with pytest.raises(ValueError, match=rf"threshold_scale must be a finite number > 0, got {re.escape(repr(bad))}"):
            adjusted(snn, threshold_scale=bad)
    for bad in (5, -1, math.nan, "bogus"):
        with pytest.raises(ValueError, match=r"v_init must be a number in \[0, 1\] \(V\[0\] as a fraction of θ\) or "
                                             rf"None \(keep each layer's\), got {re.escape(repr(bad))}"):
            adjusted(snn, v_init=bad)


@pytest.mark.parametrize("v_init", [0.0, 0.5])
def test_adjusted_keeps_the_level_and_diet_scaling_multiplies_it_by_one_over_s(v_init):
    """Constant input 0.3, θ = 1, T = 100: 0.300 before, 0.300 with θ and A × 0.5, 0.600 with θ × 0.5 alone."""
    snn = nn.Sequential(Neuron(threshold=1.0, v_init=v_init))
    x = torch.full((100, 1, 1), 0.3)  # [T, B, 1]

    def rate(net):
        with torch.no_grad():
            return reset(net)(x).mean().item()

    assert rate(snn) == pytest.approx(0.300, abs=1e-6)
    assert rate(adjusted(snn, threshold_scale=0.5)) == pytest.approx(0.300, abs=1e-6)
    assert rate(diet_scaled(snn, threshold_scale=0.5)) == pytest.approx(0.600, abs=1e-6)
    assert rate(diet_scaled(snn, threshold_scale=2.0)) == pytest.approx(0.150, abs=0.01)  # 15 spikes of 1.0 in 100
    scaled = neurons(diet_scaled(snn, threshold_scale=0.5))["0"]
    assert scaled.threshold.item() == 0.5 and scaled.spike_value.item() == 1.0  # unit spikes kept
    assert snn[0].spike_value is None and snn[0].threshold.item() == 1.0  # the original is unchanged
    with pytest.raises(ValueError, match="threshold_scale must be a finite number > 0"):
        diet_scaled(snn, threshold_scale=0)


# ------------------------------------------------------------------ 3. what cannot be converted
def test_unsupported_layer_is_named():
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Sequential(nn.Linear(4, 4), nn.Sigmoid()))
    with pytest.raises(ValueError, match=r"layer '2\.1' \(Sigmoid\) cannot be converted"):
        convert(model, torch.randn(8, 3))


def test_maxpool_needs_a_policy():
    model = build_model("vgg-mini", num_classes=10, pool="max").eval()
    images = torch.randn(8, 3, 32, 32)
    with pytest.raises(ValueError, match="MaxPool2d.*maxpool='avg'"):
        convert(model, images)
    snn = convert(model, images, maxpool="avg")
    assert not any(isinstance(m, nn.MaxPool2d) for m in snn.modules())


def test_bad_timesteps_and_v_init_policy():
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="timesteps must be an integer"):
            convert(model, torch.randn(8, 3), timesteps=bad)


@pytest.mark.parametrize("bad", [5, -1, math.nan, "bogus", True])
def test_convert_refuses_v_init_outside_0_1(bad):
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    with pytest.raises(ValueError, match=r"v_init must be a number in \[0, 1\] \(V\[0\] as a fraction of θ\) or "
                                         rf"'optimal', got {re.escape(repr(bad))}"):
        convert(model, torch.randn(8, 3), v_init=bad)


@pytest.mark.parametrize("recipe", ["max", "mse", "datta"])
def test_a_layer_without_positive_input_is_named(recipe):
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2), nn.ReLU(), nn.Linear(2, 2))
    with torch.no_grad():
        model[2].weight.zero_(), model[2].bias.fill_(-5.0)  # layer '3' only ever sees −5
    with pytest.raises(ValueError, match=r"layer '3': the threshold recipe gave θ = .*; its largest input on the "
                                         "calibration images is -5, so it would never fire: calibrate on more"):
        convert(model, torch.randn(16, 4), threshold=recipe)
    with pytest.raises(ValueError, match=r"layer '3' never had a positive input on the calibration images: calibrate"):
        convert(model, torch.randn(16, 4), threshold="percentile")


def test_a_recipe_that_returns_no_usable_threshold_is_named():
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    with pytest.raises(ValueError, match=r"layer '1': the threshold recipe gave θ = inf; a threshold recipe must return"):
        convert(model, torch.randn(64, 3), threshold=lambda record, T, v0: {"threshold": math.inf})


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_non_finite_calibration_images_are_named_before_recording(value):
    model = build_model("vgg-mini", num_classes=10, in_channels=1, image_size=8).eval()
    images = torch.randn(4, 1, 8, 8)
    images[1, 0, 2, 3] = value
    with pytest.raises(ValueError, match=r"images holds 1 NaN or infinite values \(of 256\); check the data pipeline"):
        convert(model, images)
    with pytest.raises(TypeError, match=r"images is a torch.uint8 tensor, .* e.g. images\.float\(\)"):
        record_preactivations(model, torch.zeros(4, 1, 8, 8, dtype=torch.uint8))


def test_records_hold_the_true_preactivations():
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2), nn.ReLU())
    x = torch.randn(100, 3)
    records = record_preactivations(model, x, max_samples=10_000)
    assert list(records) == ["1", "3"]
    with torch.no_grad():
        z = model[0](x)
    assert records["1"].max == pytest.approx(z.max().item())
    assert len(records["1"].samples) == 400 and set(records["1"].samples.tolist()) <= set(z.flatten().tolist())


# ------------------------------------------------------------------ 4. end to end on real data
CALLERS_CACHE = os.environ.get("SNNLAB_CACHE")  # as pytest was started, e.g. SNNLAB_CACHE=$(mktemp -d) pytest


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:  # restores the caller's SNNLAB_CACHE (deleting it sent later runs to data/)
        mp.setenv("SNNLAB_CACHE", str(tmp_path_factory.mktemp("cache")))
        train, test = get_loaders("digits", batch_size=256, augment=False)
        images = torch.cat([x for x, _ in train])[:500]
        relu, relu_info = get_ann(dataset="digits", epochs=15, lr=0.05, progress=False)
        qcfs, qcfs_info = get_ann(dataset="digits", activation="qcfs", levels=4, epochs=15, lr=0.05, progress=False)
    return dict(images=images, test=test, relu=(relu, relu_info), qcfs=(qcfs, qcfs_info))


def test_digits_fixture_gives_back_the_callers_cache_folder(digits):
    assert os.environ.get("SNNLAB_CACHE") == CALLERS_CACHE


def test_digits_conversion_keeps_accuracy(digits):
    model, info = digits["relu"]
    assert info["test_accuracy"] >= 90
    snn = convert(model, digits["images"], threshold="p99", v_init=0.5)
    accuracy = evaluate_snn(snn, digits["test"], timesteps=8, progress=False)
    assert accuracy[-1] >= info["test_accuracy"] - 3
    assert accuracy[-1] > accuracy[0]  # more steps, finer staircase


def test_digits_half_threshold_beats_zero_init(digits):
    model, _ = digits["relu"]
    acc = {v0: evaluate_snn(convert(model, digits["images"], threshold="percentile", v_init=v0),
                            digits["test"], timesteps=4, progress=False)[-1] for v0 in (0.0, 0.5)}
    assert acc[0.5] > acc[0.0] + 5


def test_digits_qcfs_converts_almost_exactly_at_t_equal_l(digits):
    model, info = digits["qcfs"]
    snn = convert(model, digits["images"], threshold="bound", v_init=0.5)
    assert all(isinstance(n, Neuron) for n in neurons(snn).values())
    accuracy = evaluate_snn(snn, digits["test"], timesteps=8, progress=False)
    # 360 test images: one image is 0.28 pt, so "almost exactly" is read as ≤ 7 images lost
    assert accuracy[3] >= info["test_accuracy"] - 2  # T = 4 = L
    assert accuracy[7] >= info["test_accuracy"] - 2


@pytest.mark.cifar
def test_cifar_subset_conversion(tmp_path_factory):
    """The notebooks' vgg-mini (8 epochs on 5,000 images, also in CI) converts on the real CIFAR-10 subset."""
    model, info = get_ann(dataset="cifar10", epochs=8, train_size=5000, progress=False)  # notebooks 01–05's knobs
    train, test = get_loaders("cifar10", batch_size=256, train_size=5000, test_size=1000, augment=False)
    images = next(iter(train))[0]
    snn = convert(model, images, threshold="p99", v_init=0.5)
    accuracy = evaluate_snn(snn, test, timesteps=8, progress=False)
    assert info["test_accuracy"] >= 50  # 58.8 % (AVX-512), … on other CPUs
    assert accuracy[-1] >= info["test_accuracy"] - 5


def test_qcfs_l1_ann_and_its_t1_snn_agree_image_by_image():
    """At T = 1 with V[0] = θ/2 an IF layer is a QCFS layer with L = 1:
    H = θ/2 + z ≥ θ ⇔ floor(z/λ_clip + ½) ≥ 1."""
    torch.manual_seed(0)
    relu = build_model("vgg-mini", num_classes=10, in_channels=1, image_size=8).eval()
    images = torch.randn(512, 1, 8, 8)
    qcfs = relu_to_qcfs(relu, images[:256], levels=1)
    assert all(isinstance(m, QCFS) and m.levels == 1 for m in qcfs.modules() if isinstance(m, (QCFS, nn.ReLU)))
    record = record_preactivations(fold_batchnorm(relu), images[:256])["features.2"]  # λ_clip = the MSE search at T = 1
    assert qcfs.features[2].bound.item() == pytest.approx(mse_threshold(record, 1, 0.5)["threshold"])
    snn = convert(qcfs, images[:256], threshold="bound", v_init=0.5)
    with torch.no_grad():
        ann_logits = qcfs(images[256:])
        snn_logits = simulate(snn, images[256:], 1).mean(0)
        firing = (qcfs.features[:3](images[256:]) > 0).float().mean().item()
    assert 0.05 < firing < 0.95  # the layers are neither silent nor saturated
    assert torch.equal(ann_logits.argmax(1), snn_logits.argmax(1))
    assert torch.allclose(ann_logits, snn_logits, atol=1e-4)
    with pytest.raises(ValueError, match="levels must be an integer ≥ 1"):
        relu_to_qcfs(relu, images, levels=0)
    with pytest.raises(TypeError, match="not nn.ReLU"):
        relu_to_qcfs(qcfs, images)


def test_digits_relu_to_qcfs_l1_fine_tune_converts_exactly_at_t_1(digits):
    """The third route to T = 1 on digits: ReLU ANN → QCFS L = 1 (λ_clip per layer) → 3 epochs → SNN at T = 1."""
    relu, info = digits["relu"]
    qcfs = relu_to_qcfs(relu, digits["images"], levels=1)
    train, _ = get_loaders("digits", batch_size=64, augment=False, seed=0)
    torch.manual_seed(0)
    train_ann(qcfs, train, epochs=3, lr=0.02, progress=False)
    qcfs.eval()
    snn = convert(qcfs, digits["images"], threshold="bound", v_init=0.5)
    per_image = {"ann": torch.cat([qcfs(x).argmax(1) for x, _ in digits["test"]]),
                 "snn": torch.cat([simulate(snn, x, 1).mean(0).argmax(1) for x, _ in digits["test"]])}
    assert torch.equal(per_image["ann"], per_image["snn"])
    accuracy = evaluate_snn(snn, digits["test"], timesteps=1, progress=False)[-1].item()
    direct = evaluate_snn(convert(relu, digits["images"], threshold="mse", timesteps=1, v_init=0.5), digits["test"],
                          timesteps=1, progress=False)[-1].item()
    assert accuracy >= direct and accuracy >= info["test_accuracy"] - 10, (accuracy, direct, info["test_accuracy"])
