"""Tests of snnlab.models: shapes, the conversion conventions, and the size of vgg-mini."""
import pytest
import torch
from torch import nn

from snnlab.activations import activation_factory
from snnlab.models import MODELS, build_model


@pytest.mark.parametrize("name", sorted(MODELS))
def test_models_give_one_logit_per_class(name):
    model = build_model(name, num_classes=7).eval()
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 7)


@pytest.mark.parametrize("name", ["vgg-mini", "resnet20"])
def test_models_run_on_digits(name):
    model = build_model(name, num_classes=10, in_channels=1, image_size=8).eval()
    assert model(torch.randn(2, 1, 8, 8)).shape == (2, 10)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_activation_is_a_distinct_module(name):
    model = build_model(name, num_classes=10, activation_layer=activation_factory("qcfs", levels=4))
    sites = [m for m in model.modules() if type(m).__name__ == "QCFS"]
    assert len(sites) == len({id(m) for m in sites}) >= 5
    every = list(model.modules())  # modules() skips repeats: count children of every parent
    children = [c for m in every for c in m.children()]
    assert len(children) == len({id(c) for c in children})


@pytest.mark.parametrize("name", sorted(MODELS))
def test_batch_norm_follows_its_conv(name):
    modules = list(build_model(name, num_classes=10).modules())
    for i, m in enumerate(modules):
        if isinstance(m, nn.BatchNorm2d):
            conv = modules[i - 1]
            assert isinstance(conv, nn.Conv2d) and conv.out_channels == m.num_features
            assert conv.bias is None


def test_without_batch_norm_convs_have_bias_and_max_pool_is_used():
    model = build_model("vgg-mini", num_classes=10, batch_norm=False, pool="max")
    modules = list(model.modules())
    assert not any(isinstance(m, nn.BatchNorm2d) for m in modules)
    assert all(m.bias is not None for m in modules if isinstance(m, nn.Conv2d))
    assert sum(isinstance(m, nn.MaxPool2d) for m in modules) == 3


def _macs(model, x):
    """Multiply-accumulates of one forward pass of a single image, counted from layer shapes."""
    total = []

    def hook(module, inputs, output):
        if isinstance(module, nn.Conv2d):
            kh, kw = module.kernel_size
            total.append(output[0].numel() * module.in_channels // module.groups * kh * kw)
        else:
            total.append(module.in_features * module.out_features)
    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (nn.Conv2d, nn.Linear))]
    model.eval()(x)
    for h in handles:
        h.remove()
    return sum(total)


def test_vgg_mini_costs_about_30_million_macs():
    macs = _macs(build_model("vgg-mini", num_classes=10), torch.randn(1, 3, 32, 32))
    assert 28e6 <= macs <= 32e6


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="vgg-mini.*resnet20"):
        build_model("alexnet", num_classes=10)
    with pytest.raises(ValueError, match="pool"):
        build_model("vgg-mini", num_classes=10, pool="median")
    with pytest.raises(ValueError, match="image_size"):
        build_model("vgg11", num_classes=10, in_channels=1, image_size=8)
    with pytest.raises(TypeError, match="activation_layer"):
        build_model("vgg-mini", num_classes=10, activation_layer=nn.ReLU())
