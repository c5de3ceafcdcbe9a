"""The model zoo: named architectures a model argument can refer to as ``zoo:NAME``."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from prunec.errors import UserError

from .alexnet import alexnet
from .mobilenetv2 import mobilenetv2
from .resnet import resnet20, resnet56
from .vgg import vgg11_bn, vgg16_bn

MODELS: dict[str, Callable[..., nn.Module]] = {
    "resnet20": resnet20,
    "resnet56": resnet56,
    "vgg11_bn": vgg11_bn,
    "vgg16_bn": vgg16_bn,
    "mobilenetv2": mobilenetv2,
    "alexnet": alexnet,
}

#: The input each architecture is meant for (CIFAR-style nets also run at 28x28).
DEFAULT_INPUT_SHAPES: dict[str, tuple[int, int, int, int]] = {
    "alexnet": (1, 3, 224, 224),
}


def build(name: str, in_channels: int = 3, num_classes: int = 10) -> nn.Module:
    """Build zoo architecture ``name`` (``zoo:`` prefix optional) with fresh weights."""
    key = name.removeprefix("zoo:")
    if key not in MODELS:
        raise UserError(f"unknown zoo model {name!r}; choose one of: {', '.join(MODELS)}")
    return MODELS[key](in_channels=in_channels, num_classes=num_classes)


def default_input_shape(name: str, in_channels: int = 3) -> tuple[int, int, int, int]:
    key = name.removeprefix("zoo:")
    n, _, h, w = DEFAULT_INPUT_SHAPES.get(key, (1, 3, 32, 32))
    return (n, in_channels, h, w)


__all__ = ["MODELS", "build", "default_input_shape"]
