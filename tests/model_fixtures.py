"""Small models the CLI tests load through the ``package.module:factory`` spec."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class DataDependent(nn.Module):
    """Python control flow on a tensor value: torch.fx cannot trace it."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.gate = Gate()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gate(self.conv(x))


class Gate(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:
            return x
        return -x


def untraceable() -> nn.Module:
    return DataDependent()


def tiny() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU6(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5))


def zero_head_gray() -> nn.Module:
    """A 1-channel, 4-class net whose classifier starts at zero, as some recipes initialise it."""
    net = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))
    nn.init.zeros_(net[5].weight)
    return net


#: a module instance (not a factory function) a spec can name
TINY_INSTANCE = tiny()


class SqueezeExcite(nn.Module):
    """Channel gating by a pooled bottleneck: a pattern the zoo networks do not have."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Conv2d(channels, 4, 1), nn.Conv2d(4, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = torch.sigmoid(self.fc2(torch.relu(self.fc1(x.mean((2, 3), keepdim=True)))))
        return x * gate


def gray_se_net() -> nn.Module:
    """A non-zoo classifier for the synthetic set (1×16×16, 4 classes) with a residual SE block
    (seeded, so its untrained accuracy is the same in every process)."""
    torch.manual_seed(0)
    return _GraySENet()


class _GraySENet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        self.body = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
                                  SqueezeExcite(16))
        self.head = nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = torch.relu(x + self.body(x))
        return self.head(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


def sized_net() -> nn.Module:
    """A classifier whose forward reads tensor sizes (``x.shape``, ``x.size(0)``): those nodes
    give ints, which shape propagation records without a tensor shape (seeded weights)."""
    torch.manual_seed(0)
    return _SizedNet().eval()


class _SizedNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(3, 16, 3, padding=1), nn.Conv2d(16, 16, 3, padding=1)
        self.squeeze, self.excite = nn.Linear(16, 4), nn.Linear(4, 16)
        self.head = nn.Linear(16, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv1(x))
        y = torch.relu(self.conv2(x))
        b, c = y.shape[:2]
        gate = torch.sigmoid(self.excite(torch.relu(self.squeeze(y.mean((2, 3)))))).view(b, c, 1, 1)
        y = y * gate + x
        return self.head(y.mean((2, 3)).view(y.size(0), -1))


def cumsum_net() -> nn.Module:
    """A cumulative sum over channels between two convs: prunec cannot prune through it."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), _ChannelCumsum(), nn.Conv2d(8, 8, 3, padding=1),
                         nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4)).eval()


class _ChannelCumsum(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cumsum(x, dim=1)


class _LiteralSizes(nn.Module):
    def __init__(self, outputs: str) -> None:
        super().__init__()
        self.outputs = outputs
        self.conv, self.fc = nn.Conv2d(3, 8, 3, padding=1), nn.Linear(32, 4)

    def forward(self, x: torch.Tensor) -> Any:
        y = torch.relu(self.conv(x))
        logits = self.fc(nn.functional.adaptive_avg_pool2d(y, 2).view(-1, 32) if self.outputs == "literal"
                         else torch.flatten(nn.functional.adaptive_avg_pool2d(y, 2), 1))
        return {"logits": logits, "extra": (logits.softmax(-1),)} if self.outputs == "nested" else logits


def literal_view_net() -> nn.Module:
    """Flattens with ``view(-1, 32)``, a channel count written as a number: pruning rewrites it in the
    traced graph, which a checkpoint does not keep (3×16×16 inputs)."""
    torch.manual_seed(0)
    return _LiteralSizes("literal")


def nested_output_net() -> nn.Module:
    """Returns a dict holding the logits and a tuple of probabilities (3×16×16 inputs)."""
    torch.manual_seed(0)
    return _LiteralSizes("nested")


def signal_net() -> nn.Module:
    """A 1-D (Conv1d) classifier: --input-shape N,C,L."""
    return nn.Sequential(nn.Conv1d(3, 8, 5, padding=2), nn.ReLU(), nn.AdaptiveAvgPool1d(1), nn.Flatten(),
                         nn.Linear(8, 4))


def conv_only_net() -> nn.Module:
    """Convolutions only: torch runs it on an unbatched C,H,W sample too."""
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 4, 1))


def conv1d_only_net() -> nn.Module:
    """1-D convolutions only: torch runs it on an unbatched C,L sample too."""
    return nn.Sequential(nn.Conv1d(3, 8, 3), nn.ReLU(), nn.Conv1d(8, 4, 1))


def generator_net() -> nn.Module:
    """Features to an image, then a convolution: --input-shape N,F, and the conv's input is batched."""
    return _Generator()


class _Generator(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc, self.conv = nn.Linear(16, 4 * 8 * 8), nn.Conv2d(4, 3, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.conv(self.fc(z).view(-1, 4, 8, 8))
