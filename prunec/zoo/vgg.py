"""CIFAR-style VGG with BatchNorm (Simonyan & Zisserman 2015, CIFAR variant).

Max-pooling uses ceil_mode so five poolings work at 28x28 as well as 32x32
(28 -> 14 -> 7 -> 4 -> 2 -> 1); the classifier reads the 512 channels of the
final 1x1 map.
"""

from __future__ import annotations

import torch
from torch import nn

CONFIGS = {
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
              512, 512, 512, "M"],
}


class VGG(nn.Module):
    def __init__(self, config: str, in_channels: int = 3, num_classes: int = 10) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels
        for item in CONFIGS[config]:
            if item == "M":
                layers.append(nn.MaxPool2d(2, 2, ceil_mode=True))
            else:
                layers += [nn.Conv2d(channels, int(item), 3, padding=1, bias=False),
                           nn.BatchNorm2d(int(item)), nn.ReLU()]
                channels = int(item)
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.avgpool(self.features(x)), 1)
        return self.classifier(x)


def vgg11_bn(in_channels: int = 3, num_classes: int = 10) -> VGG:
    return VGG("vgg11", in_channels, num_classes)


def vgg16_bn(in_channels: int = 3, num_classes: int = 10) -> VGG:
    return VGG("vgg16", in_channels, num_classes)
