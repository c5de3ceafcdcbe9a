"""Channel-coupling analysis on the zoo and on hand-written corner cases."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from prunec import zoo
from prunec.errors import UserError
from prunec.frontend import example_input, trace
from prunec.passes.coupling import analyze
from prunec.pruning import prune


def _report(name: str):
    shape = zoo.default_input_shape(name)
    x = example_input(shape if name == "alexnet" else (1, 3, 16, 16))
    return analyze(trace(zoo.build(name), x))


def _group_of(report, module: str):
    return next(g for g in report.groups if module in g.modules)


def test_resnet_residual_stream_is_one_group():
    report = _report("resnet20")
    stream = _group_of(report, "conv1")
    assert {"layer1.0.conv2", "layer1.1.conv2", "layer1.2.conv2"} <= set(stream.modules)
    assert stream.prunable and stream.size == 16
    # a shortcut conv starts a new residual stream shared by its stage's second convs
    stage2 = _group_of(report, "layer2.0.shortcut.0")
    assert "layer2.2.conv2" in stage2.modules
    assert _group_of(report, "layer1.0.conv1").modules == ["layer1.0.conv1"]


def test_classifier_outputs_are_never_prunable():
    for name in zoo.MODELS:
        report = _report(name)
        last = report.groups[-1]
        assert not last.prunable and "output" in last.reason
        assert sum(g.prunable for g in report.groups) >= 1


def test_depthwise_conv_is_not_a_source_and_grouped_conv_ties_groups():
    mobile = _report("mobilenetv2")
    assert "features.2.conv.1.0" not in mobile.sources  # depthwise follows its input
    alex = _report("alexnet")
    assert _group_of(alex, "features.0").size == 48  # 96 channels feeding groups=2: tied in pairs


def test_unknown_op_is_listed_and_its_group_kept_whole():
    class Odd(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b, self.fc = nn.Conv2d(3, 8, 3), nn.Conv2d(8, 8, 3), nn.Linear(8, 4)

        def forward(self, x):
            y = torch.cumsum(self.a(x), dim=1)
            return self.fc(self.b(y).mean((2, 3)))

    x = torch.randn(1, 3, 10, 10)
    model = Odd().eval()
    report = analyze(trace(model, x))
    assert any("cumsum" in reason for _, reason in report.unprunable)
    assert not _group_of(report, "a").prunable and _group_of(report, "b").prunable
    pruned = prune(model, x, 0.5)
    assert pruned.a.out_channels == 8 and pruned.b.out_channels == 4
    assert pruned(x).shape == model(x).shape


def test_shared_layer_is_kept_whole():
    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Conv2d(3, 6, 1), nn.Conv2d(6, 6, 1)

        def forward(self, x):
            return self.b(self.b(self.a(x))).mean((2, 3))

    report = analyze(trace(Twice(), torch.randn(1, 3, 4, 4)))
    assert not _group_of(report, "a").prunable
    assert any("more than once" in r for _, r in report.unprunable)


class _StandardizedConv(nn.Conv2d):
    """Weight standardisation: a Conv2d by type, another computation by its forward."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight
        w = (w - w.mean((1, 2, 3), keepdim=True)) / (w.std((1, 2, 3), keepdim=True) + 1e-5)
        return self._conv_forward(x, w, self.bias)


class _BuiltConv(nn.Conv2d):
    """A Conv2d that only chooses its own construction and initialisation."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(cin, cout, 3, padding=1, bias=False)
        self._init_weights()

    def _init_weights(self) -> None:
        nn.init.kaiming_normal_(self.weight)


@pytest.mark.parametrize(("layer", "pruned_a"), [(_StandardizedConv, False), (_BuiltConv, True)])
def test_a_torch_layer_subclass_is_pruned_only_when_it_computes_as_the_layer(layer, pruned_a):
    """Kept as a leaf, a Conv2d subclass with its own forward (or _conv_forward) is a layer prunec does not
    know: pruning its output channels as a Conv2d's would change what the network computes."""
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = layer(3, 8) if layer is _BuiltConv else layer(3, 8, 3, padding=1)
            self.b, self.fc = nn.Conv2d(8, 8, 3), nn.Linear(8, 4)

        def forward(self, x):
            return self.fc(self.b(torch.relu(self.a(x))).mean((2, 3)))

    x = torch.randn(1, 3, 10, 10)
    gm = trace(Net().eval(), x, leaf_modules=["a"])
    report = analyze(gm)
    assert not pruned_a or _group_of(report, "a").prunable
    assert any("_StandardizedConv computes with its own forward()" in r for _, r in report.unprunable) != pruned_a
    if pruned_a:  # a parametrized weight computes otherwise too
        from torch.nn.utils import parametrize

        parametrize.register_parametrization(gm.a, "weight", nn.Identity())
        assert any("parametrized weights" in r for _, r in analyze(gm).unprunable)
        parametrize.remove_parametrizations(gm.a, "weight")
    pruned = prune(gm, x, 0.5)
    assert pruned.a.out_channels == (4 if pruned_a else 8)


def test_analysis_needs_shapes():
    with pytest.raises(UserError, match="shapes"):
        analyze(trace(zoo.build("resnet20")))
