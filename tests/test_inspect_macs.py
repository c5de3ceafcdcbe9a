"""``prunec inspect`` MACs agree with torch's FlopCounterMode (FLOPs / 2) for every zoo model."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import prunec
from prunec import zoo
from prunec.summary import summarize
from tests.conftest import run_cli


def _flop_counter_macs(model, x) -> int:
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    return counter.get_total_flops() // 2


@pytest.mark.parametrize("name", sorted(zoo.MODELS))
def test_total_macs_match_flop_counter(name):
    shapes = [zoo.default_input_shape(name)]
    if name != "alexnet":
        shapes.append((2, 1, 28, 28))
    for shape in shapes:
        model = zoo.build(name, in_channels=shape[1]).eval()
        x = torch.randn(shape)
        report = summarize(prunec.trace(model, x), x)
        assert report["totals"]["macs"] == _flop_counter_macs(model, x)
        assert report["totals"]["params"] == sum(p.numel() for p in model.parameters())


def test_conv_macs_by_formula_including_groups():
    """An independent check of the per-layer numbers: Cout*Hout*Wout*(Cin/groups)*k*k."""
    model = zoo.build("alexnet").eval()
    x = torch.randn(1, 3, 224, 224)
    report = summarize(prunec.trace(model, x), x)
    convs = [row for row in report["layers"] if row["op"] == "Conv2d"]
    modules = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    for row, conv in zip(convs, modules, strict=True):
        _, cout, h, w = row["output_shape"]
        k = conv.kernel_size[0] * conv.kernel_size[1]
        assert row["macs"] == cout * h * w * (conv.in_channels // conv.groups) * k
    assert [row["output_shape"][2] for row in convs] == [55, 27, 13, 13, 13]


def test_cli_json_matches_flop_counter_for_resnet20():
    import json

    result = run_cli("inspect", "zoo:resnet20", "--input-shape", "1,3,32,32", "--format", "json")
    assert result.returncode == 0, result.stderr
    model = zoo.build("resnet20").eval()
    assert json.loads(result.stdout)["totals"]["macs"] == _flop_counter_macs(model, torch.randn(1, 3, 32, 32))


@pytest.mark.parametrize("padding", ["same", "valid", 1])
@pytest.mark.parametrize("dims", [1, 2])
def test_lowered_macs_match_flop_counter_for_string_padding(dims, padding):
    """Conv1d and Conv2d with padding "same" / "valid" (shapes recovered from the graph) lower,
    and the IR's MACs are torch's."""
    conv = torch.nn.Conv1d if dims == 1 else torch.nn.Conv2d
    model = torch.nn.Sequential(conv(3, 8, 3, padding=padding), torch.nn.ReLU(),
                                conv(8, 4, 5, padding=padding, dilation=2)).eval()
    x = torch.randn(2, 3, *([20] * dims))
    program = prunec.lower(model, x, batch=2)
    assert sum(layer["macs"] for layer in program.layers) == _flop_counter_macs(model, x)


class _FoldsIntoTheBatch(torch.nn.Module):
    """Puts other data in the leading dim: two 3-channel views of a 6-channel image run as 2N images, and
    every position of a feature map as a row of a per-position Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.fc = torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.Linear(8, 4)

    def forward(self, x):
        n, _, h, w = x.shape
        y = torch.relu(self.conv(x.reshape(2 * n, 3, h, w)))
        return self.fc(y.permute(0, 2, 3, 1).reshape(-1, 8)).reshape(n, -1).mean(1)


@pytest.mark.parametrize(("traced", "batch"), [(1, 1), (1, 3), (2, 2), (2, 5)])
def test_lowered_macs_count_data_folded_into_the_leading_dim(traced, batch):
    """The leading dim is the batch only as traced: scaled to ``batch`` samples, the lowered layers do the
    MACs torch counts (they used to be counted once per sample, not once per view or position)."""
    model = _FoldsIntoTheBatch().eval()
    x = torch.randn(traced, 6, 8, 8)
    program = prunec.lower(model, x, batch=batch)
    layers = {layer["name"]: layer["macs"] for layer in program.layers}
    assert sum(layers.values()) * traced == _flop_counter_macs(model, x) * batch
    assert layers["fc"] == batch * 2 * 8 * 8 * 8 * 4
    again = prunec.relower(program.to_dict())  # its IR reads back: a layer holds a multiple of the batch
    assert [layer["energy"] for layer in again.layers] == [layer["energy"] for layer in program.layers]
