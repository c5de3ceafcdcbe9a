"""insert_selector and the selectors: roles, taps, score conventions, a trained selector."""

from __future__ import annotations

import pytest
import torch
from torch import fx, nn

from prunec import zoo
from prunec.calibration import roc_auc
from prunec.data import load_split
from prunec.dynamic import MildRouter
from prunec.errors import UserError
from prunec.frontend import trace
from prunec.passes import resolve_pass
from prunec.passes.insert_selector import default_tap, insert_selector
from prunec.selectors import (
    LearnedSelector,
    cross_fitted_scores,
    entropy_score,
    fit_selector,
    front_outputs,
    make_selector,
    margin_score,
    max_softmax_score,
    train_selector,
)


class Tiny(nn.Module):
    """A small CNN for the synthetic set (16x16, 1 channel, 4 classes)."""

    def __init__(self, width: int = 8, num_classes: int = 4) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(1, width, 3, padding=1)
        self.bn = nn.BatchNorm2d(width)
        self.c2 = nn.Conv2d(width, width, 3, stride=2, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.c2(torch.relu(self.bn(self.c1(x)))))
        return self.fc(torch.flatten(self.pool(x), 1))


def train_tiny(width: int, steps: int, seed: int = 0) -> fx.GraphModule:
    """A few SGD steps on the synthetic train split: accurate, but not perfectly."""
    torch.manual_seed(seed)
    model = Tiny(width)
    split = load_split("synthetic", "train")
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, len(split), (64,), generator=gen)
        loss = nn.functional.cross_entropy(model(split.x[idx]), split.y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return trace(model.eval(), split.x[:1])


def resnet_pair() -> tuple[fx.GraphModule, fx.GraphModule]:
    example = torch.zeros(1, 1, 28, 28)
    torch.manual_seed(0)
    aggressive = trace(zoo.build("resnet20", 1, 10), example)
    torch.manual_seed(1)
    mild = trace(zoo.build("resnet20", 1, 10), example)
    return aggressive, mild


def test_default_tap_and_roles_on_resnet20() -> None:
    aggressive, mild = resnet_pair()
    assert default_tap(aggressive) == "layer3_2_relu_1"
    dyn = insert_selector(aggressive, mild, "learned")
    groups = dyn.nodes_by_role()
    assert all(n.meta["role"] in ("trunk", "head", "selector", "mild") for n in dyn.graph_module.graph.nodes)
    assert [n.name for n in groups["head"]] == ["avgpool", "flatten", "fc"]
    taps = [n for n in dyn.graph_module.graph.nodes if n.meta.get("tap")]
    assert [n.name for n in taps] == ["layer3_2_relu_1"] and taps[0].meta["role"] == "trunk"
    routers = [n for n in groups["mild"] if n.op == "call_module"]
    assert len(routers) == 1
    router = dyn.graph_module.get_submodule(routers[0].target)
    assert isinstance(router, MildRouter) and router.routed_subgraph is mild
    assert dyn.mild is mild and dyn.aggressive is aggressive
    assert [n.op for n in groups["selector"]] == ["call_module"]
    assert isinstance(dyn.selector, LearnedSelector) and dyn.selector.tap_channels == [64]
    assert dyn.input_shape == (1, 1, 28, 28) and dyn.num_classes == 10
    # parameters are shared with the aggressive network, not copied
    assert dyn.graph_module.get_submodule("front.conv1").weight is aggressive.conv1.weight


def test_several_taps_and_unknown_tap() -> None:
    aggressive, mild = resnet_pair()
    dyn = insert_selector(aggressive, mild, "learned", taps="layer2_2_relu_1,layer3_2_relu_1")
    assert dyn.selector.tap_channels == [32, 64]
    with torch.no_grad():
        logits, route = dyn(torch.randn(3, 1, 28, 28), return_route=True)
    assert logits.shape == (3, 10) and route.dtype == torch.bool
    with pytest.raises(UserError, match="unknown tap 'nope'.*layer3_2_conv2"):
        insert_selector(aggressive, mild, "max-softmax", taps=["nope"])


def test_a_network_with_no_convolution_is_told_so_without_naming_a_tap_it_never_gave() -> None:
    """A network that flattens its input at once: no feature map to tap (the input is none), and no
    command has the --tap option the message once named."""
    from prunec.frontend import trace

    x = torch.randn(2, 1, 8, 8)
    nets = [trace(nn.Sequential(nn.Flatten(), nn.Linear(64, 4)).eval(), x) for _ in range(2)]
    with pytest.raises(UserError, match="no convolution to tap: the selector reads convolutional features") as info:
        insert_selector(*nets, "max-softmax")
    assert "--tap" not in str(info.value)


def test_registered_pass() -> None:
    aggressive, mild = resnet_pair()
    run = resolve_pass("insert_selector", mild=mild, selector="entropy")
    result = run(aggressive)
    assert result.modified and result.graph_module is run.dynamic.graph_module


def test_score_conventions() -> None:
    confident = torch.tensor([[10.0, 0.0, 0.0]])
    unsure = torch.tensor([[1.0, 1.0, 0.9]])
    for fn in (max_softmax_score, margin_score, entropy_score):
        assert fn(unsure).item() > fn(confident).item()
    with pytest.raises(UserError, match="oracle"):
        make_selector("oracle")
    with pytest.raises(UserError, match="unknown selector"):
        make_selector("magic")


def test_learned_selector_ranks_errors() -> None:
    aggressive = train_tiny(4, steps=6)
    mild = train_tiny(8, steps=40, seed=1)
    dyn = insert_selector(aggressive, mild, "learned")
    calibration = load_split("synthetic", "calibration")
    train_selector(dyn, calibration, epochs=40, seed=0)
    test = load_split("synthetic", "test")
    logits, scores = dyn.scores(test.x)
    wrong = (logits.argmax(1) != test.y).numpy()
    assert 0 < wrong.sum() < len(wrong)
    assert roc_auc(scores.numpy(), wrong) > 0.6
    assert ((scores >= 0) & (scores <= 1)).all()


def test_learned_selector_fits_given_targets() -> None:
    """``targets`` replaces "the aggressive answer is wrong": here "it answers class 0", which the
    selector's softmax input determines, so it must be learned almost perfectly."""
    aggressive = train_tiny(4, steps=6)
    dyn = insert_selector(aggressive, train_tiny(8, steps=6, seed=1), "learned")
    calibration, test = load_split("synthetic", "calibration"), load_split("synthetic", "test")
    answers_zero = dyn.scores(calibration.x)[0].argmax(1) == 0
    train_selector(dyn, calibration, epochs=40, seed=0, targets=answers_zero)
    logits, scores = dyn.scores(test.x)
    target = (logits.argmax(1) == 0).numpy()
    assert 0 < target.sum() < len(target)
    assert roc_auc(scores.numpy(), target) > 0.9
    with pytest.raises(UserError, match="targets has shape"):
        train_selector(dyn, calibration, targets=answers_zero[:-1])


@pytest.fixture(scope="module")
def calibration_features():
    """A tiny aggressive network's logits and pooled taps on the synthetic calibration split."""
    dyn = insert_selector(train_tiny(4, steps=6), train_tiny(8, steps=6, seed=1), "learned")
    calibration = load_split("synthetic", "calibration")
    logits, pooled = front_outputs(dyn.front, calibration.x)
    return dyn.selector, logits, pooled, (logits.argmax(1) != calibration.y).float()


@pytest.mark.parametrize("sample", [0, 100, 255])
def test_cross_fitted_score_ignores_its_own_label(calibration_features, sample: int) -> None:
    """Out-of-fold means a sample's score cannot depend on its label: flipping that label leaves
    its score bit-identical. An in-sample fit (the selector trained on all samples) does move
    it, so this property is what the cross-fitting buys."""
    selector, logits, pooled, labels = calibration_features
    flipped = labels.clone()
    flipped[sample] = 1 - flipped[sample]
    oof = cross_fitted_scores(selector, logits, pooled, labels, folds=5, seed=3, epochs=15)
    oof_flipped = cross_fitted_scores(selector, logits, pooled, flipped, folds=5, seed=3, epochs=15)
    assert oof.shape == labels.shape and torch.isfinite(oof).all()
    assert oof[sample] == oof_flipped[sample]
    assert not torch.equal(oof, oof_flipped)  # the other folds' selectors did see the flip

    def in_sample(y: torch.Tensor) -> float:
        fitted = fit_selector(LearnedSelector(selector.tap_channels, selector.num_classes), logits, pooled, y,
                              epochs=15, seed=3, val_fraction=0.0)
        with torch.no_grad():
            return float(fitted(logits[sample:sample + 1], *[t[sample:sample + 1] for t in pooled]))

    assert in_sample(labels) != in_sample(flipped)


def test_cross_fitting_refuses_too_few_folds_or_samples(calibration_features) -> None:
    selector, logits, pooled, labels = calibration_features
    with pytest.raises(UserError, match="at least 2 folds"):
        cross_fitted_scores(selector, logits, pooled, labels, folds=1)
    with pytest.raises(UserError, match="sample per fold"):
        cross_fitted_scores(selector, logits[:3], [t[:3] for t in pooled], labels[:3], folds=5)
