"""The pruning API: one call per level, pluggable pruners, and saving what they produce.

A *pruner* is any callable ``(gm, ratio, **options) -> GraphModule``; ``structured`` and
``unstructured`` ship built in, and ``"package.module:callable"`` names a user's own.
A pruned model's layer shapes differ from its zoo architecture, so a checkpoint carries
``module_configs`` (constructor arguments per layer) and :func:`rebuild_pruned` replays them.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import fx, nn

from prunec.errors import UserError, check_seed
from prunec.passes.importance import IMPORTANCES
from prunec.passes.output_contract import OutputContract
from prunec.passes.structured import check_choice, check_ratio, prune_structured
from prunec.passes.unstructured import prune_unstructured
from prunec.plugins import import_object

Pruner = Callable[..., fx.GraphModule]

#: Pruners by name; add your own with ``PRUNERS["mine"] = fn``.
PRUNERS: dict[str, Pruner] = {"structured": prune_structured, "unstructured": prune_unstructured}
_BUILTIN = set(PRUNERS)


def resolve_pruner(spec: str | Pruner) -> Pruner:
    """A registered name, ``module:callable`` or a callable -> the pruner callable."""
    if callable(spec):
        return spec
    if not isinstance(spec, str):
        raise UserError(f"a pruner is a name or a callable, got {type(spec).__name__}")
    if spec in PRUNERS:
        return PRUNERS[spec]
    if ":" in spec:
        fn = import_object(spec, "pruner")
        if not callable(fn):
            raise UserError(f"pruner {spec!r} is not callable")
        return fn
    raise UserError(f"unknown pruner {spec!r}; choose one of: {', '.join(PRUNERS)} "
                    "or give package.module:callable")


def _call(fn: Pruner, gm: fx.GraphModule, ratio: float, options: dict[str, Any]) -> Any:
    """Call a pruner with the options its signature accepts (user pruners may take few)."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return fn(gm, ratio, **options)
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        options = {k: v for k, v in options.items() if k in params}
    return fn(gm, ratio, **options)


def _as_inputs(example_inputs: torch.Tensor | Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
    return (example_inputs,) if isinstance(example_inputs, torch.Tensor) else tuple(example_inputs)


def prune(
    model: nn.Module, example_inputs: torch.Tensor | Sequence[torch.Tensor], ratio: float,
    method: str = "l1", scope: str = "uniform", ignore: Sequence[str] = (), round_to: int = 1,
    pruner: str | Pruner = "structured", seed: int = 0,
) -> fx.GraphModule:
    """Prune a copy of ``model`` (never the model itself) and return it traced, with shapes.

    ``ratio`` in [0, 1) is the share of channels (structured) or weights (unstructured) to
    remove; ``method`` ranks them (``l1``, ``l2``, ``bn_scale``, ``random``); ``scope`` is
    ``uniform`` (same ratio per group) or ``global``; ``ignore`` holds fnmatch patterns of
    layer names to keep whole; ``round_to`` keeps channel counts multiples of K.
    """
    from prunec.frontend import propagate_shapes, trace

    ratio, seed = check_ratio(ratio), check_seed(seed)
    fn = resolve_pruner(pruner)
    if fn in (prune_structured, prune_unstructured):
        check_choice("method", method, IMPORTANCES)
    if fn is prune_unstructured and round_to != 1:
        raise UserError(f"round_to={round_to} rounds channel counts, which unstructured pruning keeps as they are "
                        "(it zeroes single weights): drop it, or prune structured")
    inputs = _as_inputs(example_inputs)
    gm = trace(copy.deepcopy(model), inputs)
    contract = OutputContract(gm, inputs)
    ignore = (ignore,) if isinstance(ignore, str) else tuple(ignore)  # one pattern, not its characters
    options = dict(method=method, scope=scope, ignore=ignore, round_to=round_to, seed=seed,
                   inplace=True)
    if fn in (prune_structured, prune_unstructured):
        result = _call(fn, gm, ratio, options)
    else:
        try:
            result = _call(fn, gm, ratio, options)
        except UserError:
            raise
        except SystemExit as exc:  # not a clean exit of prunec, whose command did not finish
            raise UserError(f"pruner {pruner!r} called sys.exit({exc.code!r}) instead of returning a model") from None
        except Exception as exc:  # the user's pruner broke: say so in one line, as for a failing pass
            raise UserError(f"pruner {pruner!r} failed: {type(exc).__name__}: {exc}") from None
    if not isinstance(result, nn.Module):
        raise UserError(f"pruner {pruner!r} returned {type(result).__name__}, not a module")
    if not isinstance(result, fx.GraphModule):
        result = trace(result)
    if fn not in (prune_structured, prune_unstructured):  # built-ins re-check shapes themselves
        try:
            propagate_shapes(result, inputs)
        except UserError as exc:  # the input ran before pruning: the pruner broke the graph
            raise UserError(f"pruner {pruner!r} left a graph that no longer runs: {exc}") from None
    contract.check(result, f"pruner {pruner!r}")
    return result


def prune_two_levels(
    model: nn.Module, example_inputs: torch.Tensor | Sequence[torch.Tensor], mild: float = 0.3,
    aggressive: float = 0.7, mild_method: str | None = None, aggressive_method: str | None = None,
    method: str = "l1", **options: Any,
) -> tuple[fx.GraphModule, fx.GraphModule]:
    """The mild and the aggressive network, both pruned from the same original ``model``."""
    check_ratio(mild)
    check_ratio(aggressive)
    if mild > aggressive:
        raise UserError(f"the mild ratio ({mild}) must not exceed the aggressive one ({aggressive})")
    return (prune(model, example_inputs, mild, method=mild_method or method, **options),
            prune(model, example_inputs, aggressive, method=aggressive_method or method, **options))


# ----------------------------------------------------------------------------- checkpoints

_CONFIG_TYPES: dict[str, type[nn.Module]] = {
    cls.__name__: cls for cls in (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear, nn.BatchNorm1d,
                                  nn.BatchNorm2d, nn.BatchNorm3d, nn.LayerNorm)
}


def _config(m: nn.Module) -> dict[str, Any] | None:
    """Constructor arguments that rebuild ``m`` with its current shapes (plain data only)."""
    name = type(m).__name__
    if name not in _CONFIG_TYPES:
        return None
    if isinstance(m, nn.Linear):
        args = dict(in_features=m.in_features, out_features=m.out_features, bias=m.bias is not None)
    elif isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
        args = dict(in_channels=m.in_channels, out_channels=m.out_channels,
                    kernel_size=list(m.kernel_size), stride=list(m.stride),
                    padding=m.padding if isinstance(m.padding, str) else list(m.padding),
                    dilation=list(m.dilation), groups=m.groups, bias=m.bias is not None,
                    padding_mode=m.padding_mode)
    elif isinstance(m, nn.LayerNorm):
        args = dict(normalized_shape=list(m.normalized_shape), eps=m.eps,
                    elementwise_affine=m.elementwise_affine)
    else:
        args = dict(num_features=m.num_features, eps=m.eps, affine=m.affine,
                    track_running_stats=m.track_running_stats)
        if m.momentum is not None:
            args["momentum"] = m.momentum
    return {"type": name, **args}


def module_configs(pruned: nn.Module, reference: nn.Module | None = None) -> dict[str, dict[str, Any]]:
    """Per-layer constructor arguments of ``pruned``; with ``reference`` (the unpruned
    architecture), only the layers whose configuration differs from it.
    """
    ref = dict(reference.named_modules()) if reference is not None else {}
    configs = {}
    for name, m in pruned.named_modules():
        cfg = _config(m)
        if cfg is not None and (name not in ref or _config(ref[name]) != cfg):
            configs[name] = cfg
    return configs


def rebuild_pruned(arch_model: nn.Module, configs: dict[str, dict[str, Any]]) -> nn.Module:
    """Replace the layers named in ``configs`` by fresh ones of the recorded shapes (in place)."""
    for name, cfg in configs.items():
        cfg = dict(cfg)
        cls = _CONFIG_TYPES.get(cfg.pop("type", None))
        if cls is None:
            raise UserError(f"pruned checkpoint names an unsupported layer type for {name!r}")
        parent_name, _, attr = name.rpartition(".")
        try:
            parent = arch_model.get_submodule(parent_name)
            getattr(parent, attr)
            setattr(parent, attr, cls(**cfg))
        except (AttributeError, TypeError, ValueError) as exc:
            raise UserError(f"pruned checkpoint does not fit the architecture at {name!r}: {exc}") \
                from None
    return arch_model


# ----------------------------------------------------------------------------- checking


def zeroed_reference(original: nn.Module, pruned: fx.GraphModule) -> nn.Module:
    """A copy of ``original`` in which exactly the channels ``pruned`` removed output zero.

    Zeroes removed output rows (weight, bias, BN affine) and the input columns that read
    removed channels. Structured pruning's contract: ``pruned(x) == zeroed_reference(x)``.
    """
    ref = copy.deepcopy(original)
    with torch.no_grad():
        for node in pruned.graph.nodes:
            record = node.meta.get("pruning")
            if node.op != "call_module" or not record:
                continue
            m = ref.get_submodule(str(node.target))
            removed = torch.tensor(record.get("removed", []), dtype=torch.long)
            if removed.numel():
                for name in ("weight", "bias"):
                    if getattr(m, name, None) is not None:
                        getattr(m, name)[removed] = 0
            in_removed = torch.tensor(record.get("in_removed", []), dtype=torch.long)
            if in_removed.numel() and isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)):
                groups = getattr(m, "groups", 1)
                if groups == 1:
                    m.weight[:, in_removed] = 0
                elif groups != m.in_channels:
                    m.weight[:, in_removed % (m.in_channels // groups)] = 0
    return ref


__all__ = ["prune", "prune_two_levels", "PRUNERS", "resolve_pruner", "module_configs",
           "rebuild_pruned", "zeroed_reference"]
