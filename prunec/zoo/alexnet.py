"""The original two-group AlexNet (Krizhevsky et al. 2012), as run on the Eyeriss chip.

conv2, conv4 and conv5 are grouped by two, as in the paper's two-GPU split; this is
the network the Eyeriss JSSC 2017 Table IV/V numbers are published for. LRN is left
out (it does no MACs and the chip figures cover the CONV layers). Input 3x224x224;
conv1's padding of 2 gives the 55x55 ofmap of the paper's 227x227 padded input.
"""

from __future__ import annotations

import torch
from torch import nn


class AlexNet(nn.Module):
    def __init__(self, in_channels: int = 3, num_classes: int = 1000) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 96, 11, stride=4, padding=2), nn.ReLU(),
            nn.MaxPool2d(3, 2),
            nn.Conv2d(96, 256, 5, padding=2, groups=2), nn.ReLU(),
            nn.MaxPool2d(3, 2),
            nn.Conv2d(256, 384, 3, padding=1), nn.ReLU(),
            nn.Conv2d(384, 384, 3, padding=1, groups=2), nn.ReLU(),
            nn.Conv2d(384, 256, 3, padding=1, groups=2), nn.ReLU(),
            nn.MaxPool2d(3, 2),
        )
        self.classifier = nn.Sequential(
            nn.Dropout(0.5), nn.Linear(256 * 6 * 6, 4096), nn.ReLU(),
            nn.Dropout(0.5), nn.Linear(4096, 4096), nn.ReLU(),
            nn.Linear(4096, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


def alexnet(in_channels: int = 3, num_classes: int = 1000) -> AlexNet:
    return AlexNet(in_channels, num_classes)
