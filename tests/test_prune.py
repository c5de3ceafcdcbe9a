"""Structured and unstructured pruning: the zeroed-reference contract, options, API, saving."""

from __future__ import annotations

import copy
import functools
import operator

import pytest
import torch
from torch import fx, nn
from torch.utils.flop_counter import FlopCounterMode

import prunec
from prunec import zoo
from prunec.errors import UserError
from prunec.frontend import example_input, save_checkpoint, trace
from prunec.passes import resolve_pass, run_passes
from prunec.passes.structured import prune_structured
from prunec.pruning import (
    PRUNERS,
    module_configs,
    prune,
    prune_two_levels,
    resolve_pruner,
    zeroed_reference,
)

RATIOS = (0.3, 0.5, 0.7, 0.9)


def macs(model: nn.Module, x: torch.Tensor) -> int:
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    return counter.get_total_flops() // 2


@functools.cache
def zoo_model(name: str) -> tuple[nn.Module, torch.Tensor]:
    """A zoo model with non-trivial BatchNorm statistics, so zeroing is really tested."""
    model = zoo.build(name).eval()
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
                m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
    return model, example_input(zoo.default_input_shape(name))


def _params(model: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.state_dict().values()]


ZOO = [pytest.param(n, marks=pytest.mark.slow) if n == "alexnet" else n for n in zoo.MODELS]


@pytest.mark.parametrize("name", ZOO)
def test_zoo_contract(name):
    """Ratio 0 is bit-identical; every ratio equals the zeroed reference; MACs fall."""
    model, x = zoo_model(name)
    if x.shape[-1] == 32:
        x = x[..., :16, :16]  # the contract does not depend on image size; keep the test fast
    before = _params(model)
    gm = trace(model, x)
    same = prune_structured(gm, 0.0)
    with torch.no_grad():
        assert torch.equal(same(x), model(x))
    assert all(torch.equal(a, b) for a, b in zip(_params(same), before, strict=True))
    last_macs = macs(model, x)
    for ratio in RATIOS:
        pruned = prune_structured(gm, ratio)
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            got = copy.deepcopy(pruned).double()(x.double())
        pruned_macs = counter.get_total_flops() // 2
        with torch.no_grad():
            want = zeroed_reference(model, pruned).double()(x.double())
        assert got.shape == want.shape
        assert float((got - want).abs().max()) <= 1e-5, (name, ratio)
        assert pruned_macs < last_macs, (name, ratio)
        last_macs = pruned_macs
    assert all(torch.equal(a, b) for a, b in zip(before, _params(model), strict=True))  # input untouched


def test_macs_fall_with_ratio_and_meta_is_recorded():
    model, x = zoo_model("vgg11_bn")
    pruned = prune(model, x, 0.5)
    assert macs(pruned, x) <= 0.3 * macs(model, x)  # ~ (1 - 0.5)^2 on conv-dominated nets
    record = next(n.meta["pruning"] for n in pruned.graph.nodes if n.target == "features.0")
    assert len(record["kept"]) == 32 and len(record["removed"]) == 32
    assert all("tensor_meta" in n.meta for n in pruned.graph.nodes if n.op != "output")
    assert isinstance(pruned, fx.GraphModule)


@pytest.mark.parametrize("method", ["l1", "l2", "bn_scale", "random"])
@pytest.mark.parametrize("scope", ["uniform", "global"])
def test_methods_and_scopes(method, scope):
    model, x = zoo_model("resnet20")
    pruned = prune(model, x, 0.5, method=method, scope=scope)
    with torch.no_grad():
        diff = zeroed_reference(model, pruned).double()(x.double()) - pruned.double()(x.double())
    assert float(diff.abs().max()) <= 1e-5
    assert sum(p.numel() for p in pruned.parameters()) < sum(p.numel() for p in model.parameters())


def test_random_is_seeded_and_l1_prefers_large_filters():
    model, x = zoo_model("vgg11_bn")
    a, b = (prune(model, x, 0.5, method="random", seed=s) for s in (1, 1))
    assert torch.equal(a.get_submodule("features.0").weight, b.get_submodule("features.0").weight)
    pruned = prune(model, x, 0.5)
    kept = next(n.meta["pruning"]["kept"] for n in pruned.graph.nodes if n.target == "features.0")
    norms = model.features[0].weight.abs().flatten(1).sum(1)
    assert norms[kept].min() >= norms[[i for i in range(64) if i not in kept]].max()


def test_round_to_and_ignore():
    model, x = zoo_model("vgg11_bn")
    pruned = prune(model, x, 0.3, round_to=8, ignore=["features.4"])
    convs = [m for m in pruned.modules() if isinstance(m, nn.Conv2d)]
    assert all(c.out_channels % 8 == 0 for c in convs)
    assert pruned.get_submodule("features.4").out_channels == 128
    assert pruned.get_submodule("features.0").out_channels == 48  # 64 - 19 -> 45 -> 48


class _Grouped(nn.Module):
    """32 channels into a 4-group conv: each unit ties one channel of every group, 4 channels a unit."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 32, 3, padding=1), nn.Conv2d(32, 32, 3, padding=1, groups=4)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.b(torch.relu(self.a(x)))))


def test_round_to_counts_channels_not_units_and_says_what_it_kept_whole():
    """round_to=8 on a grouped conv keeps 16 of 32 channels (it rounded 4 units up to 8 units, all 32,
    before); a K no smaller multiple fits keeps the layer whole and names it."""
    x = torch.randn(1, 3, 8, 8)
    pruned = prune(_Grouped(), x, 0.5, round_to=8)
    assert (pruned.a.out_channels, pruned.b.out_channels) == (16, 16) and pruned.meta["rounded_whole"] == []
    whole = prune(_Grouped(), x, 0.5, round_to=64)
    assert (whole.a.out_channels, whole.b.out_channels) == (32, 32)
    assert whole.meta["rounded_whole"] == [("a", 32), ("b", 32)]
    with pytest.raises(UserError, match="round_to=4 rounds channel counts, which unstructured pruning keeps"):
        prune(_Grouped(), x, 0.5, round_to=4, pruner="unstructured")


def test_unstructured_records_sparsity():
    model, x = zoo_model("resnet20")
    for scope in ("uniform", "global"):
        pruned = prune(model, x, 0.6, pruner="unstructured", scope=scope)
        sparsity = {n.target: n.meta["weight_sparsity"] for n in pruned.graph.nodes
                    if n.op == "call_module" and "weight_sparsity" in n.meta}
        assert len(sparsity) == 22  # 21 convs + fc
        zeros = sum(float((m.weight == 0).sum()) for m in pruned.modules()
                    if isinstance(m, (nn.Conv2d, nn.Linear)))
        total = sum(m.weight.numel() for m in pruned.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))
        assert abs(zeros / total - 0.6) < 0.01
        if scope == "uniform":
            assert all(abs(s - 0.6) < 0.02 for s in sparsity.values())
    assert prune(model, x, 0.0, pruner="unstructured")(x).equal(model(x))


def halve_classifier_input(gm: fx.GraphModule, ratio: float) -> fx.GraphModule:
    """A user pruner: zero the first input column of the classifier."""
    with torch.no_grad():
        gm.fc.weight[:, 0] = 0
    return gm


def test_pluggable_pruners():
    model, x = zoo_model("resnet20")
    for spec in (halve_classifier_input, "tests.test_prune:halve_classifier_input"):
        pruned = prune(model, x, 0.5, pruner=spec)
        assert float(pruned.fc.weight.detach()[:, 0].abs().sum()) == 0
    assert set(PRUNERS) >= {"structured", "unstructured"}
    with pytest.raises(UserError, match="unknown pruner"):
        resolve_pruner("nope")


def _raising_pruner(gm, ratio):
    raise KeyError("conv9")


def test_a_user_pruner_that_raises_is_a_user_error():
    model, x = zoo_model("resnet20")
    with pytest.raises(UserError, match=r"pruner .*_raising_pruner.* failed: KeyError: 'conv9'"):
        prune(model, x, 0.5, pruner=_raising_pruner)


def test_random_scores_follow_the_seed_and_a_seed_numpy_refuses_is_one_clear_error():
    """Every command seeds numpy beside torch, so seeds are 0 .. 2**32 - 1 everywhere (prune took -5 once)."""
    model, x = zoo_model("resnet20")
    widths = {s: [m.out_channels for m in prune(model, x, 0.5, method="random", scope="global", seed=s).modules()
                  if isinstance(m, torch.nn.Conv2d)] for s in (5, 2**32 - 1)}
    assert widths[5] != widths[2**32 - 1]
    for bad in (-5, 2**32, 2.5, "5", True):
        with pytest.raises(UserError, match="seed must be an integer from 0 to 4294967295"):
            prune(model, x, 0.5, method="random", seed=bad)


def test_two_levels_share_one_original():
    model, x = zoo_model("resnet20")
    mild, aggressive = prune_two_levels(model, x, mild=0.3, aggressive=0.7,
                                        aggressive_method="bn_scale")
    assert macs(aggressive, x) < macs(mild, x) < macs(model, x)
    with pytest.raises(UserError, match="must not exceed"):
        prune_two_levels(model, x, mild=0.7, aggressive=0.3)


@pytest.mark.parametrize("kwargs, match", [
    ({"ratio": 1.0}, r"\[0, 1\)"), ({"ratio": -0.1}, r"\[0, 1\)"),
    ({"ratio": 0.5, "method": "l7"}, "unknown pruning method"),
    ({"ratio": 0.5, "scope": "local"}, "unknown pruning scope"),
    ({"ratio": 0.5, "ignore": ["layer9.*"]}, "matches no layer"),
    ({"ratio": 0.5, "round_to": 0}, "round_to"),
])
def test_bad_options_are_user_errors(kwargs, match):
    model, x = zoo_model("resnet20")
    with pytest.raises(UserError, match=match):
        prune(model, x, **kwargs)


def test_registered_passes():
    model, x = zoo_model("resnet20")
    gm = run_passes(trace(model, x), [resolve_pass("prune_structured", ratio=0.5, method="l2")], x)
    assert gm.conv1.out_channels == 8
    gm = run_passes(trace(model, x), [resolve_pass("prune_unstructured", ratio=0.5)], x)
    assert 0.45 < next(n.meta["weight_sparsity"] for n in gm.graph.nodes if n.target == "conv1")


def test_checkpoint_round_trip(tmp_path):
    model, x = zoo_model("mobilenetv2")
    pruned = prune(model, x, 0.5, scope="global")
    path = str(tmp_path / "m.pt")
    configs = module_configs(pruned, zoo.build("mobilenetv2"))
    assert configs and all(isinstance(v, dict) for v in configs.values())
    save_checkpoint(pruned, path, "zoo:mobilenetv2", 3, 10, module_configs=configs)
    torch.load(path, weights_only=True)
    loaded = prunec.load(path)
    with torch.no_grad():
        assert torch.allclose(loaded(x), pruned(x), atol=1e-6)


def _first_image_only(gm: fx.GraphModule, ratio: float) -> fx.GraphModule:
    """A broken user pruner: the output keeps the first image of the batch, whatever its size."""
    out = next(n for n in gm.graph.nodes if n.op == "output")
    with gm.graph.inserting_before(out):
        out.args = (gm.graph.call_function(operator.getitem, (out.args[0], slice(0, 1))),)
    gm.recompile()
    return gm


def _to_half(gm: fx.GraphModule, ratio: float) -> nn.Module:
    return gm.half()


@pytest.mark.parametrize("pruner, message", [
    (_first_image_only, r"output on a batch of 2 from \[2, 10\] float32 to \[1, 10\] float32"),
    (_to_half, "left a graph that no longer runs: .*Half"),
])
def test_a_user_pruner_must_keep_the_outputs_on_every_batch_and_their_dtype(pruner, message):
    model, x = zoo_model("resnet20")
    with pytest.raises(UserError, match=f"pruner .*{pruner.__name__}.*" + message):
        prune(model, x, 0.5, pruner=pruner)


def test_a_numpy_ratio_is_a_ratio():
    """np.float32(0.5) is what a sweep over np.linspace hands over: the same network as 0.5."""
    import numpy as np

    model, x = zoo_model("resnet20")
    assert prune(model, x, np.float32(0.5))(x).equal(prune(model, x, 0.5)(x))
    with pytest.raises(UserError, match="pruning ratio"):
        prune(model, x, np.bool_(True))


class _TrainTimeDropout(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv, self.fc = nn.Conv2d(3, 8, 3), nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.nn.functional.dropout(self.conv(x), 0.5, self.training).mean((2, 3)))


def test_a_model_left_in_train_mode_is_traced_for_inference():
    """A forward reading self.training bakes the bool into the graph: tracing a model the user left in
    train mode must record the inference branch, or every pruned network drops activations at random."""
    torch.manual_seed(0)
    x = torch.randn(2, 3, 8, 8)
    for make in (lambda m: trace(m, x), lambda m: prunec.prune(m, x, 0.5)):
        model = _TrainTimeDropout()
        assert model.training
        gm = make(model)
        assert "training = True" not in gm.code and torch.equal(gm(x), gm(x))
        assert model.training  # the caller's own flag as it was
