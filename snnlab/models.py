"""CPU-sized VGG, VGG-11/16 and ResNet-20, built from configuration lists, pluggable activation.

Conventions that `convert.py` relies on (keep them when adding a model):
1. every activation is a fresh module made by calling `activation_layer()` where it is used
   (one module is never used twice, never `inplace=True`);
2. every shape change is a module (`nn.Flatten`, pools), so `forward` holds only module calls
   and the `+` of a residual block;
3. each BatchNorm is registered right after the conv it normalizes (`net.modules()` order:
   conv, bn, activation, …; a shortcut is `nn.Sequential(conv, bn)`), so BN folding pairs them
   by order;
4. `pool="avg"` → `nn.AvgPool2d(2)`, `pool="max"` → `nn.MaxPool2d(2)`;
5. a conv has a bias only when no BatchNorm follows it;
6. `batch_norm=False` drops every BatchNorm; dropout, if any, only in the classifier.

Every model is an `nn.Sequential` of two parts, `features` (convolutions) and `classifier`.

Taught in notebook 00 (setup); the spiking sites are the activations (notebook 01).
"""
from collections import OrderedDict
from functools import partial
from typing import Callable

from torch import nn

# A number is a 3×3 conv with that many output channels (+ BN + activation); "P" is a 2×2 pool.
VGG_CONFIGS = {
    "vgg-mini": [32, 32, "P", 64, 64, "P", 128, "P"],
    "vgg11": [64, "P", 128, "P", 256, 256, "P", 512, 512, "P", 512, 512, "P"],
    "vgg16": [64, 64, "P", 128, 128, "P", 256, 256, 256, "P", 512, 512, 512, "P",
              512, 512, 512, "P"],
}
# Hidden widths of the classifier between the flattened features and the output layer.
VGG_HIDDEN = {"vgg-mini": [], "vgg11": [512], "vgg16": [512]}
RESNET20_STAGES = [(16, 1), (32, 2), (64, 2)]  # (channels, stride of the first block) per stage
RESNET20_BLOCKS_PER_STAGE = 3
POOLS = {"avg": nn.AvgPool2d, "max": nn.MaxPool2d}


def conv_bn(in_channels: int, out_channels: int, *, batch_norm: bool, kernel_size: int = 3,
            stride: int = 1) -> list:
    """A conv ('same' padding) and its BatchNorm, or a conv with bias if `batch_norm` is False.

    Shapes: [B, C_in, H, W] → [B, C_out, H / stride, W / stride].
    """
    conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride,
                     padding=kernel_size // 2, bias=not batch_norm)
    return [conv, nn.BatchNorm2d(out_channels)] if batch_norm else [conv]


def make_classifier(in_features: int, hidden: list, num_classes: int, *,
                    activation_layer: Callable[[], nn.Module], dropout: float) -> nn.Sequential:
    """Flatten, then (dropout → Linear → activation) per hidden width, then dropout → Linear.

    Shapes: [B, C, H, W] → [B, num_classes] with in_features = C·H·W.
    """
    def drop() -> list:
        return [nn.Dropout(dropout)] if dropout > 0 else []

    layers = [nn.Flatten()]  # [B, C·H·W]
    for width in hidden:
        layers += drop() + [nn.Linear(in_features, width), activation_layer()]  # [B, width]
        in_features = width
    layers += drop() + [nn.Linear(in_features, num_classes)]  # [B, num_classes]
    return nn.Sequential(*layers)


def make_vgg_features(cfg: list, in_channels: int, *, activation_layer: Callable[[], nn.Module],
                      batch_norm: bool, pool: str) -> nn.Sequential:
    """The convolutional part of a VGG from its configuration list (see `VGG_CONFIGS`).

    Shapes: [B, C_in, H, W] → [B, C_last, H / 2^p, W / 2^p] for p pools.
    """
    layers = []
    for item in cfg:
        if item == "P":
            layers.append(POOLS[pool](2))  # halves H and W
        else:
            layers += conv_bn(in_channels, item, batch_norm=batch_norm) + [activation_layer()]
            in_channels = item
    return nn.Sequential(*layers)


def vgg(name: str, *, num_classes: int, in_channels: int, image_size: int,
        activation_layer: Callable[[], nn.Module], batch_norm: bool, pool: str,
        dropout: float) -> nn.Sequential:
    """A CIFAR-style VGG (3×3 convs, 2×2 pools) named in `VGG_CONFIGS`, with a small classifier.

    "vgg-mini" (≈ 29 M MACs on 32×32) has a single Linear layer as classifier; "vgg11" and
    "vgg16" have Linear(512·s², 512) → activation → Linear(512, num_classes), s the final
    size (1 on 32×32).

    Shapes: [B, in_channels, image_size, image_size] → [B, num_classes].

    Reference: Simonyan & Zisserman, ICLR 2015; CIFAR variants as in Bu et al., ICLR 2022 (QCFS).
    """
    cfg = VGG_CONFIGS[name]
    pools = cfg.count("P")
    if image_size % 2 ** pools:
        raise ValueError(f"{name} halves the image {pools} times: image_size must be a multiple "
                         f"of {2 ** pools}, got {image_size}")
    features = make_vgg_features(cfg, in_channels, activation_layer=activation_layer,
                                 batch_norm=batch_norm, pool=pool)
    channels = [item for item in cfg if item != "P"][-1]
    classifier = make_classifier(channels * (image_size // 2 ** pools) ** 2, VGG_HIDDEN[name],
                                 num_classes, activation_layer=activation_layer, dropout=dropout)
    return nn.Sequential(OrderedDict(features=features, classifier=classifier))


class BasicBlock(nn.Module):
    """A residual block: a = f(BN(conv(f(BN(conv(x))))) + shortcut(x)), f the activation.

    The shortcut is the identity, or a strided 1×1 conv + BN where the shape changes.

    Args:
        in_channels, out_channels: channels of the input and the output.
        stride: stride of the first conv and the shortcut (2 halves H and W).
        activation_layer: called once per activation (two fresh modules).
        batch_norm: follow each conv by a BatchNorm.

    Shapes: x: [B, C_in, H, W] → [B, C_out, H / stride, W / stride].

    Reference: He et al., "Deep Residual Learning for Image Recognition", CVPR 2016.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, *,
                 activation_layer: Callable[[], nn.Module], batch_norm: bool):
        super().__init__()
        self.residual = nn.Sequential(
            *conv_bn(in_channels, out_channels, stride=stride, batch_norm=batch_norm),
            activation_layer(),
            *conv_bn(out_channels, out_channels, batch_norm=batch_norm))
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(*conv_bn(in_channels, out_channels, kernel_size=1,
                                                   stride=stride, batch_norm=batch_norm))
        else:
            self.shortcut = nn.Identity()
        self.activation = activation_layer()

    def forward(self, x):
        return self.activation(self.residual(x) + self.shortcut(x))  # [B, C_out, H/s, W/s]


def resnet20(*, num_classes: int, in_channels: int, image_size: int,
             activation_layer: Callable[[], nn.Module], batch_norm: bool, pool: str,
             dropout: float) -> nn.Sequential:
    """ResNet-20 for CIFAR: a 3×3 conv (16 channels), 3 stages × 3 `BasicBlock`s (16/32/64
    channels, stride 2 at the start of stages 2 and 3), global average pool, one Linear layer.

    It downsamples by strided convs, so `pool` is not used; `image_size` may be any size ≥ 4.

    Shapes: [B, in_channels, H, W] → [B, num_classes].

    Reference: He et al., CVPR 2016, section 4.2.
    """
    if image_size < 4:
        raise ValueError(f"resnet20 halves the image twice: image_size must be ≥ 4, "
                         f"got {image_size}")
    channels = RESNET20_STAGES[0][0]
    layers = conv_bn(in_channels, channels, batch_norm=batch_norm) + [activation_layer()]
    for width, stride in RESNET20_STAGES:
        for i in range(RESNET20_BLOCKS_PER_STAGE):
            layers.append(BasicBlock(channels, width, stride if i == 0 else 1,
                                     activation_layer=activation_layer, batch_norm=batch_norm))
            channels = width
    classifier = nn.Sequential(nn.AdaptiveAvgPool2d(1),  # [B, 64, 1, 1]
                               *make_classifier(channels, [], num_classes,
                                                activation_layer=activation_layer, dropout=dropout))
    return nn.Sequential(OrderedDict(features=nn.Sequential(*layers), classifier=classifier))


MODELS = {"vgg-mini": partial(vgg, "vgg-mini"), "vgg11": partial(vgg, "vgg11"),
          "vgg16": partial(vgg, "vgg16"), "resnet20": resnet20}


def build_model(name: str, *, num_classes: int, in_channels: int = 3, image_size: int = 32,
                activation_layer: Callable[[], nn.Module] = nn.ReLU, batch_norm: bool = True,
                pool: str = "avg", dropout: float = 0.0) -> nn.Module:
    """The model called `name` ("vgg-mini", "vgg11", "vgg16" or "resnet20"), freshly initialized.

    Args:
        name: a key of `MODELS`.
        num_classes: outputs of the last layer.
        in_channels, image_size: input shape (1 and 8 for digits, 3 and 32 for CIFAR).
        activation_layer: a callable returning a new activation module, e.g. `nn.ReLU` or
            `activations.activation_factory("qcfs", levels=4)`; called once per activation.
        batch_norm: follow every conv by a BatchNorm.
        pool: "avg" or "max", the 2×2 pools of the VGGs.
        dropout: dropout probability before each Linear layer of the classifier (0: none).

    Shapes: [B, in_channels, image_size, image_size] → [B, num_classes].

    Returns:
        An `nn.Sequential` with children `features` and `classifier`.
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")
    if pool not in POOLS:
        raise ValueError(f"pool must be one of {', '.join(POOLS)}, got {pool!r}")
    if not 0 <= dropout < 1:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")
    if isinstance(activation_layer, nn.Module) or not callable(activation_layer):
        raise TypeError("activation_layer must be a callable that returns a new module at "
                        "each call, e.g. nn.ReLU (the class, not an instance); "
                        f"got {activation_layer!r}")
    return MODELS[name](num_classes=num_classes, in_channels=in_channels, image_size=image_size,
                        activation_layer=activation_layer, batch_norm=batch_norm, pool=pool,
                        dropout=dropout)
