"""Pass infrastructure: registry, user passes by module:callable, checks after each pass."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import fx, nn
from torch.fx.passes.infra.pass_base import PassResult

import prunec
from examples.custom_pass import relu6_to_relu
from prunec.errors import UserError
from prunec.passes import available_passes, register_pass, resolve_pass, run_passes
from tests.conftest import run_cli
from tests.model_fixtures import tiny


def test_custom_pass_changes_graph_and_keeps_outputs_for_nonclamped_inputs():
    model = tiny().eval()
    x = torch.rand(4, 3, 8, 8) * 0.1
    gm = prunec.trace(model, x)
    out = run_passes(gm, [relu6_to_relu], x)
    kinds = {type(m) for m in out.modules()}
    assert nn.ReLU in kinds and nn.ReLU6 not in kinds
    torch.testing.assert_close(out(x), model(x))  # small activations never reach the clamp


def test_custom_pass_through_cli():
    base = run_cli("inspect", "zoo:mobilenetv2", "--input-shape", "1,3,32,32", "--format", "json")
    changed = run_cli("inspect", "zoo:mobilenetv2", "--input-shape", "1,3,32,32", "--format", "json",
                      "--pass", "examples.custom_pass:relu6_to_relu")
    assert base.returncode == 0 and changed.returncode == 0, changed.stderr
    ops_before = {row["op"] for row in json.loads(base.stdout)["layers"]}
    ops_after = {row["op"] for row in json.loads(changed.stdout)["layers"]}
    assert "ReLU6" in ops_before and "ReLU6" not in ops_after and "ReLU" in ops_after


def test_the_example_pass_turns_every_clamp_at_0_and_6_into_relu():
    """Its docstring promised hardtanh(0, 6) too; only F.relu6 and nn.ReLU6 were replaced."""
    import torch.nn.functional as F

    class Clamps(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.act, self.ht = nn.ReLU6(), nn.Hardtanh(0.0, 6.0)

        def forward(self, x):
            x = F.hardtanh(self.ht(self.act(x)), 0.0, 6.0)
            x = F.relu6(F.hardtanh(x, min_val=0.0, max_val=6.0))
            return F.hardtanh(x, -1.0, 1.0)  # another clamp: kept

    x = torch.randn(1, 3, 4, 4)
    gm = run_passes(prunec.trace(Clamps(), x), [relu6_to_relu], x)
    calls = [n.target for n in gm.graph.nodes if n.op == "call_function"]
    assert calls == [F.relu, F.relu, F.relu, F.hardtanh]
    assert all(type(m) is nn.ReLU for m in (gm.act, gm.ht))
    torch.testing.assert_close(gm(x * 0.1), Clamps()(x * 0.1))  # no value above 6: the same outputs


def test_pass_that_breaks_output_shape_is_caught():
    def drop_classifier(gm: fx.GraphModule) -> PassResult:
        for node in gm.graph.nodes:
            if node.op == "output":
                flatten = next(n for n in gm.graph.nodes if n.op == "call_module" and n.target == "4")
                node.args = (flatten,)
        gm.graph.eliminate_dead_code()
        gm.recompile()
        return PassResult(gm, True)

    x = torch.randn(1, 3, 8, 8)
    with pytest.raises(UserError, match=r"changed the model.s output from \[1, 5\] float32 to \[1, 8\] float32"):
        run_passes(prunec.trace(tiny(), x), [drop_classifier], x)


@pytest.mark.parametrize(("pack", "packed"), [(lambda y: {"logits": y}, "{'logits': T}"), (lambda y: (y,), "(T,)")])
def test_pass_that_repacks_the_outputs_is_caught(pack, packed):
    """Wrapping the logits in a dict or a 1-tuple keeps every tensor's shape, so the shape check passed
    it; callers unpack outputs by position or key."""
    def repack(gm: fx.GraphModule) -> PassResult:
        out = next(n for n in gm.graph.nodes if n.op == "output")
        out.args = (pack(out.args[0]),)
        gm.recompile()
        return PassResult(gm, True)

    x = torch.randn(1, 3, 8, 8)
    with pytest.raises(UserError, match=re.escape(f"changed how the model's outputs are packed, from T to {packed}")):
        run_passes(prunec.trace(tiny(), x), [repack], x)


def test_a_factory_given_as_a_callable_takes_its_options():
    """resolve_pass(factory, ratio=0.3) returned the factory itself and dropped the options."""
    factory = available_passes()["prune_structured"].factory
    made = resolve_pass(factory, ratio=0.3)
    assert made is not factory and _takes_a_graph_only(made)
    with pytest.raises(UserError, match="has no option 'bogus'"):
        resolve_pass(factory, bogus=1)
    assert resolve_pass(factory) is factory  # no options: the callable is the pass, as before


def _takes_a_graph_only(fn) -> bool:
    import inspect

    return len(inspect.signature(fn).parameters) == 1


def test_registry_lists_and_resolves():
    @register_pass("test_identity_pass")
    def identity(gm: fx.GraphModule) -> PassResult:
        """Do nothing (a test pass)."""
        return PassResult(gm, False)

    passes = available_passes()
    assert passes["test_identity_pass"].doc == "Do nothing (a test pass)."
    assert resolve_pass("test_identity_pass") is identity
    with pytest.raises(UserError, match="unknown pass"):
        resolve_pass("no_such_pass")
    with pytest.raises(UserError, match="cannot import"):
        resolve_pass("no.such.module:fn")


def test_cli_lists_passes():
    result = run_cli("passes")
    assert result.returncode == 0
    assert "eliminate_dead_code" in result.stdout


def test_unknown_pass_in_cli_is_one_line():
    from tests.conftest import assert_user_error

    assert_user_error(run_cli("inspect", "zoo:resnet20", "--pass", "nope"), "unknown pass")


@pytest.mark.parametrize(("spec", "name", "options"), [
    ("prune_structured", "prune_structured", {}),
    ("prune_structured{}", "prune_structured", {}),
    ("prune_structured{ratio=0.5 method=l2}", "prune_structured", {"ratio": 0.5, "method": "l2"}),
    ("pkg.mod:make{ratio=0.25 ignore=['fc', 'layer1*'] round_to=8}", "pkg.mod:make",
     {"ratio": 0.25, "ignore": ["fc", "layer1*"], "round_to": 8}),
    ("p{name='a b' flag=True pair=(1, 2)}", "p", {"name": "a b", "flag": True, "pair": (1, 2)}),
])
def test_pass_spec_options(spec, name, options):
    from prunec.passes import parse_pass_spec

    assert parse_pass_spec(spec) == (name, options)


@pytest.mark.parametrize("spec", ["p{ratio}", "p{ratio=0.5", "p{=1}", "p{a=[1, 2}", "p{ratio=0.5,method=l2}",
                                  "p{ratio=0.5, method=l2}", "p{ratio=0.5}{x=1}", "p{a=1 a=2}"])
def test_unreadable_pass_spec_is_a_user_error(spec):
    from prunec.passes import parse_pass_spec

    with pytest.raises(UserError):
        parse_pass_spec(spec)


def test_pass_options_from_the_cli_equal_the_api():
    """`--pass 'prune_structured{ratio=0.5 method=l2}'` prunes exactly as prunec.prune does."""
    result = run_cli("inspect", "zoo:resnet20", "--format", "json",
                     "--pass", "prune_structured{ratio=0.5 method=l2 ignore=['layer1*']}")
    assert result.returncode == 0, result.stderr
    from prunec import zoo

    model = zoo.build("resnet20")
    x = torch.zeros(1, 3, 32, 32)
    pruned = prunec.prune(model, x, 0.5, method="l2", ignore=["layer1*"])
    assert json.loads(result.stdout)["totals"]["params"] == sum(p.numel() for p in pruned.parameters())
    # the options reach the pass itself: same weights as the API, and method matters
    gm = run_passes(prunec.trace(model, x), ["prune_structured{ratio=0.5 method=random seed=3}"], x)
    api = prunec.prune(model, x, 0.5, method="random", seed=3)
    assert all(torch.equal(a, b) for a, b in zip(gm.state_dict().values(), api.state_dict().values(), strict=True))
    l1 = run_passes(prunec.trace(model, x), ["prune_structured{ratio=0.5}"], x)
    assert not all(torch.equal(a, b) for a, b in zip(gm.state_dict().values(), l1.state_dict().values(), strict=True))


@pytest.mark.parametrize(("spec", "needle"), [
    ("prune_structured{ratio=0.5 methd=l2}", "no option 'methd'"),
    ("prune_structured{ratio=1.5}", "ratio"),
    ("prune_structured{ratio=0.5 method=nope}", "nope"),
    ("examples.custom_pass:relu6_to_relu{strength=2}", "takes no options (it is a pass, not a factory of passes); "
     "got 'strength'"),
])
def test_bad_pass_options_in_cli_are_one_line(spec, needle):
    from tests.conftest import assert_user_error

    assert_user_error(run_cli("inspect", "zoo:resnet20", "--pass", spec), needle)


@pytest.mark.parametrize("spec", ["eliminate_dead_code", "examples.custom_pass:relu6_to_relu"])
def test_empty_braces_on_a_plain_pass_run_the_pass(spec):
    from prunec.passes import resolve_pass

    assert resolve_pass(spec + "{}") is resolve_pass(spec)


def test_run_passes_leaves_the_traced_model_alone():
    """A traced graph shares its modules with the model; an in-place pass must not prune the model."""
    from prunec import zoo

    model = zoo.build("resnet20")
    x = torch.zeros(1, 3, 32, 32)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    out = run_passes(prunec.trace(model, x), ["prune_structured{ratio=0.5}"], x)
    assert out.conv1.out_channels == 8 and model.conv1.out_channels == 16
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def _widen_first_conv(gm: fx.GraphModule) -> PassResult:
    """Double the first conv's filters (and the next conv's inputs): a consistent edit."""
    convs = [(n.target, m) for n in gm.graph.nodes if n.op == "call_module"
             for m in [gm.get_submodule(n.target)] if isinstance(m, nn.Conv2d)]
    (first_name, first), (second_name, second) = convs[:2]
    wide = nn.Conv2d(first.in_channels, 2 * first.out_channels, first.kernel_size, first.stride, first.padding)
    narrow_in = nn.Conv2d(2 * second.in_channels, second.out_channels, second.kernel_size, second.stride,
                          second.padding)
    for name, module in ((first_name, wide), (second_name, narrow_in)):
        parent, _, leaf = name.rpartition(".")
        setattr(gm.get_submodule(parent) if parent else gm, leaf, module)
    gm.recompile()
    return PassResult(gm, True)


def test_a_pass_without_example_inputs_leaves_no_stale_shapes():
    """run_passes without example inputs re-propagates the shapes the graph had, so lowering the
    result (without inputs either) costs the widened layer, not the shape recorded before."""
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 5, 3, padding=1)).eval()
    x = torch.randn(1, 3, 8, 8)
    widened = run_passes(prunec.trace(model, x), [_widen_first_conv])
    stale_free = [layer["macs"] for layer in prunec.lower(widened, None).layers]
    assert stale_free == [layer["macs"] for layer in prunec.lower(widened, x).layers]
    assert stale_free[0] == 8 * 3 * 9 * 64  # 8 filters now, not 4


@pytest.mark.parametrize("first", ["", "import prunec.pruning\n"])
def test_a_user_pass_named_like_a_built_in_replaces_it_whatever_was_imported_first(first):
    """Registering ``prune_structured`` before or after the built-in passes were imported gives the
    same registry (the built-in's import used to put itself back when it came second)."""
    import subprocess
    import sys

    script = first + (
        "from torch.fx.passes.infra.pass_base import PassResult\n"
        "from prunec.passes import available_passes, register_pass\n"
        "@register_pass('prune_structured')\n"
        "def mine(gm):\n"
        "    '''my override'''\n"
        "    return PassResult(gm, False)\n"
        "print(available_passes()['prune_structured'].doc)\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                         cwd=str(Path(__file__).resolve().parent.parent))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "my override"


@pytest.mark.parametrize("returned", [nn.Identity(), None])
def test_a_pass_result_without_a_graph_module_says_so(returned):
    """``PassResult(nn.Identity(), True)`` used to end in "pass failed: ... AssertionError: "."""
    model = nn.Sequential(nn.Conv2d(3, 4, 3)).eval()
    x = torch.randn(1, 3, 8, 8)
    with pytest.raises(UserError, match=f"must return a GraphModule .*not {type(returned).__name__}"):
        run_passes(prunec.trace(model, x), [lambda gm: PassResult(returned, True)], x)


def test_a_pass_or_pruner_calling_sys_exit_is_an_error_not_a_silent_success():
    """SystemExit is no Exception: it went past the one-line errors and ended prunec with exit 0 and no output."""
    import sys

    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.LazyLinear(2)).eval()
    x = torch.randn(1, 3, 8, 8)
    model(x)
    with pytest.raises(UserError, match=r"a pass called sys.exit\(0\)"):
        run_passes(prunec.trace(model, x), [lambda gm: sys.exit(0)], x)
    with pytest.raises(UserError, match=r"called sys.exit\(3\) instead of returning a model"):
        prunec.prune(model, x, 0.5, pruner=lambda gm, ratio, **options: sys.exit(3))


def _output_pass(change: Callable[[fx.Graph, fx.Node], fx.Node]) -> Callable[[fx.GraphModule], PassResult]:
    """A pass that routes the model's output through ``change`` (a new node built on the old output)."""

    def rewrite(gm: fx.GraphModule) -> PassResult:
        out = next(n for n in gm.graph.nodes if n.op == "output")
        with gm.graph.inserting_before(out):
            out.args = (change(gm.graph, out.args[0]),)
        gm.recompile()
        return PassResult(gm, True)

    return rewrite


@pytest.mark.parametrize("change, message", [
    # at one image, a sum over the batch keeps the (1, classes) shape: only a wider batch shows it
    (lambda g, y: g.call_method("sum", (y, 0), {"keepdim": True}), "on a batch of 2"),
    (lambda g, y: g.call_method("to", (y, torch.float64)), "float64"),
])
def test_pass_that_changes_the_batch_or_dtype_of_the_output_is_caught(change, message):
    x = torch.randn(1, 3, 8, 8)
    with pytest.raises(UserError, match=message):
        run_passes(prunec.trace(tiny(), x), [_output_pass(change)], x)


class _NestedOutputs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x: torch.Tensor) -> tuple:
        y = self.conv(x).flatten(1)
        return y, (y, {"logits": y})


def test_the_batch_check_reaches_outputs_nested_in_tuples_and_dicts():
    """A batch-mixing change two levels down in the outputs is caught too (the forward check once
    looked one level deep, where the shape check walks them all)."""
    x = torch.randn(1, 3, 8, 8)

    def mix_the_innermost(gm: fx.GraphModule) -> PassResult:
        out = next(n for n in gm.graph.nodes if n.op == "output")
        y, (same, inner) = out.args[0]
        with gm.graph.inserting_before(out):
            mixed = gm.graph.call_method("sum", (inner["logits"], 0), {"keepdim": True})
        out.args = ((y, (same, {"logits": mixed})),)
        gm.recompile()
        return PassResult(gm, True)

    with pytest.raises(UserError, match="on a batch of 2"):
        run_passes(prunec.trace(_NestedOutputs(), x), [mix_the_innermost], x)


def test_a_pass_keeping_the_output_passes_the_batch_check_and_leaves_batch_norm_statistics_alone():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Flatten()).train()
    x = torch.randn(1, 3, 8, 8)
    gm = prunec.trace(model, x).train()  # a graph a user trains: one image in train mode is no batch norm batch
    before = gm.get_submodule("1").running_mean.clone()
    out = run_passes(gm, [_output_pass(lambda g, y: g.call_function(torch.mul, (y, 1.0)))], x)
    assert out.training and torch.equal(out.get_submodule("1").running_mean, before)
