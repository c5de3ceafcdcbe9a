"""Structured pruning: remove whole output channels and physically shrink the layers.

Three steps, each one job: :func:`.coupling.analyze` finds the units that must go
together; :func:`select_units` picks the least important units (per group or globally);
:func:`apply_removal` slices every affected weight with ``index_select``, rewrites literal
channel counts in ``view``/``reshape``/``split`` calls, and records per-layer kept/removed
indices in ``node.meta["pruning"]``.
"""

from __future__ import annotations

import contextlib
import copy
import fnmatch
import inspect
import io
import math
import numbers
from collections import Counter
from collections.abc import Callable, Iterable, Sequence

import numpy as np
import torch
from torch import fx, nn
from torch.fx.passes.infra.pass_base import PassResult
from torch.fx.passes.shape_prop import ShapeProp

from prunec.errors import UserError, check_seed
from prunec.passes.output_contract import recorded_outputs

from . import register_pass
from .coupling import ChannelGroup, ChannelState, CouplingReport, analyze
from .importance import IMPORTANCES, unit_scores

SCOPES = ("uniform", "global")

# ----------------------------------------------------------------------------- validation


def check_ratio(ratio: float) -> float:
    """A pruning ratio must be a number in [0, 1)."""
    if isinstance(ratio, (bool, np.bool_)) or not isinstance(ratio, numbers.Real) or not 0 <= ratio < 1:
        raise UserError(f"pruning ratio must be a number in [0, 1), got {ratio!r}")
    return float(ratio)


def check_choice(kind: str, value: str, choices: Iterable[str]) -> str:
    choices = list(choices)
    if value not in choices:
        raise UserError(f"unknown pruning {kind} {value!r}; choose one of: {', '.join(choices)}")
    return value


def resolve_ignore(gm: fx.GraphModule, patterns: Sequence[str] | str) -> set[str]:
    """Layers (call_module targets) matched by fnmatch ``patterns`` on them or a parent name.

    A pattern that matches nothing is a user error: it is almost always a typo.
    """
    if isinstance(patterns, str):
        patterns = [patterns]
    targets = [str(n.target) for n in gm.graph.nodes if n.op == "call_module"]
    matched: set[str] = set()
    for pattern in patterns:
        hits = {t for t in targets
                if any(fnmatch.fnmatchcase(".".join(t.split(".")[:k]), pattern)
                       for k in range(1, t.count(".") + 2))}
        if not hits:
            raise UserError(f"ignore pattern {pattern!r} matches no layer of the model "
                            f"(layer names look like {targets[0] if targets else '...'!r})")
        matched |= hits
    return matched


# ----------------------------------------------------------------------------- selection


def _keep_count(n: int, removed: int, step: int) -> int:
    """Units to keep of ``n``: at least one, rounded up to a multiple of ``step`` (all ``n`` when none fits)."""
    keep = max(1, n - removed)
    if step > 1:
        keep = min(n, math.ceil(keep / step) * step)
    return keep


def _unit_step(report: CouplingReport, group: ChannelGroup, round_to: int) -> int:
    """The multiple of units that keeps every layer of ``group`` at a multiple of ``round_to`` channels.

    A unit can hold several channels of one layer (a grouped convolution ties channel i of every
    group together): with ``m`` channels a unit, ``round_to / gcd(round_to, m)`` units make a multiple.
    """
    step = 1
    for name in group.sources:
        source = report.sources[name]
        counts = Counter(report.unit_id[source.start:source.start + source.size].tolist())
        per_unit = math.gcd(*counts.values()) if counts else 1
        step = math.lcm(step, round_to // math.gcd(round_to, per_unit))
    return step


def select_units(
    report: CouplingReport, scores: np.ndarray, ratio: float, scope: str = "uniform",
    round_to: int = 1, rounded_whole: list[tuple[str, int]] | None = None,
) -> np.ndarray:
    """Boolean mask over unit ids: the units to remove.

    ``uniform`` removes ``floor(ratio * n)`` units of every prunable group; ``global`` ranks
    all units by their score normalised by their group's mean score and removes the lowest
    ``floor(ratio * N)``, always leaving each group at least one unit. ``round_to`` rounds each
    layer's kept channels up to a multiple; the groups it keeps whole though some were to go
    (no smaller multiple fits) are appended to ``rounded_whole`` as (first layer, channels).
    """
    removed = np.zeros(report.n_atoms, dtype=bool)
    groups = [g for g in report.groups if g.prunable and g.size > 1]
    if ratio == 0 or not groups:
        return removed
    if scope == "uniform":
        quota = [int(math.floor(ratio * g.size + 1e-9)) for g in groups]
    else:
        quota = _global_quota(groups, scores, ratio)
    for group, count in zip(groups, quota, strict=True):
        keep = _keep_count(group.size, count, _unit_step(report, group, round_to) if round_to > 1 else 1)
        order = np.argsort(scores[group.unit_ids], kind="stable")
        removed[group.unit_ids[order[: group.size - keep]]] = True
    _keep_every_layer_fed(report, removed, scores)
    if round_to > 1:
        for group, count in zip(groups, quota, strict=True):
            _round_layers(report, group, removed, scores, round_to)
            if count > 0 and not removed[group.unit_ids].any() and rounded_whole is not None:
                first = group.sources[0]
                rounded_whole.append((group.modules[0] if group.modules else first, report.sources[first].size))
    return removed


def _round_layers(report: CouplingReport, group: ChannelGroup, removed: np.ndarray, scores: np.ndarray,
                  round_to: int) -> None:
    """Restore the best removed units of ``group`` until each of its layers (its sources) that shrinks keeps
    a multiple of ``round_to`` channels: a unit restored to feed a layer, or units of uneven width (a
    concatenation chunked across its parts), can leave a count the unit rounding did not foresee. A layer
    that follows its input (depthwise) after a concatenation of several groups may still not be one."""
    units_of = [report.unit_id[s.start:s.start + s.size] for s in (report.sources[n] for n in group.sources)]
    gone = list(group.unit_ids[removed[group.unit_ids]][np.argsort(-scores[group.unit_ids[removed[group.unit_ids]]],
                                                                   kind="stable")])
    while gone and any(removed[u].any() and int((~removed[u]).sum()) % round_to for u in units_of):
        removed[gone.pop(0)] = False


def _keep_every_layer_fed(report: CouplingReport, removed: np.ndarray, scores: np.ndarray) -> None:
    """A layer's input, output or a split part may hold only part of a group; never empty it.

    Restoring a unit only adds channels, so one sweep leaves every such slice non-empty.
    """
    slices = [a for io in report.module_io.values() for a in io if a is not None]
    slices += [p for parts in report.splits.values() for p in parts]
    for labels in slices:
        units = np.unique(report.unit_id[labels])
        if removed[units].all():
            removed[units[np.argmax(scores[units])]] = False


def _global_quota(groups: list, scores: np.ndarray, ratio: float) -> list[int]:
    normed, owner = [], []
    for i, g in enumerate(groups):
        s = scores[g.unit_ids]
        mean = float(s.mean())
        normed.append(s / mean if mean > 0 else s)
        owner.append(np.full(g.size, i))
    all_scores, all_owner = np.concatenate(normed), np.concatenate(owner)
    budget = int(math.floor(ratio * all_scores.size + 1e-9))
    quota = [0] * len(groups)
    for i in all_owner[np.argsort(all_scores, kind="stable")].tolist():
        if budget == 0:
            break
        if quota[i] < groups[i].size - 1:
            quota[i] += 1
            budget -= 1
    return quota


# ----------------------------------------------------------------------------- surgery


def _idx(mask: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.flatnonzero(mask))


def _set(module: nn.Module, name: str, value: torch.Tensor) -> None:
    old = getattr(module, name)
    if isinstance(old, nn.Parameter):
        setattr(module, name, nn.Parameter(value.contiguous(), requires_grad=old.requires_grad))
    else:
        module.register_buffer(name, value.contiguous())


def _shrink_conv(m: nn.Module, in_mask: np.ndarray | None, out_mask: np.ndarray | None) -> None:
    weight, g = m.weight.detach(), m.groups
    if out_mask is not None and not out_mask.all():
        weight = weight.index_select(0, _idx(out_mask))
        if m.bias is not None:
            _set(m, "bias", m.bias.detach().index_select(0, _idx(out_mask)))
        m.out_channels = int(out_mask.sum())
    if in_mask is not None and not in_mask.all():
        kept = int(in_mask.sum())
        if g == m.in_channels:  # depthwise: groups follow the channels, filters already cut
            m.groups = kept
        elif g == 1:
            weight = weight.index_select(1, _idx(in_mask))
        else:  # grouped: the coupling made every group keep the same local indices
            weight = weight.index_select(1, _idx(in_mask.reshape(g, -1)[0]))
        m.in_channels = kept
    _set(m, "weight", weight)


def _shrink_linear(m: nn.Linear, in_mask: np.ndarray | None, out_mask: np.ndarray | None) -> None:
    weight = m.weight.detach()
    if out_mask is not None and not out_mask.all():
        weight = weight.index_select(0, _idx(out_mask))
        if m.bias is not None:
            _set(m, "bias", m.bias.detach().index_select(0, _idx(out_mask)))
        m.out_features = int(out_mask.sum())
    if in_mask is not None and not in_mask.all():
        weight = weight.index_select(1, _idx(in_mask))
        m.in_features = int(in_mask.sum())
    _set(m, "weight", weight)


def _shrink_norm(m: nn.Module, mask: np.ndarray) -> None:
    index = _idx(mask)
    for name in ("weight", "bias", "running_mean", "running_var"):
        value = getattr(m, name, None)
        if isinstance(value, torch.Tensor):
            _set(m, name, value.detach().index_select(0, index))
    m.num_features = int(mask.sum())


def _extents(state: ChannelState, keep: np.ndarray) -> list[int]:
    """Kept size along each of ``state``'s axes (removal is rectangular by construction)."""
    mask = keep[state.labels]
    extents = []
    for k in range(mask.ndim):
        other = tuple(a for a in range(mask.ndim) if a != k)
        extents.append(int(mask.any(axis=other).sum()) if other else int(mask.sum()))
    return extents


def _rewrite_sizes(node: fx.Node, state: ChannelState, keep: np.ndarray) -> None:
    extents = dict(zip(state.axes, _extents(state, keep), strict=True))
    args = list(node.args)
    keyword = next((k for k in ("shape", "size") if k in node.kwargs), None)  # torch.reshape(x, shape=...)
    packed = keyword is not None or len(args) == 2 and isinstance(args[1], (tuple, list))
    given = node.kwargs[keyword] if keyword else args[1] if packed else args[1:]
    sizes = [extents[i] if i in extents and isinstance(s, int) and s != -1 else s
             for i, s in enumerate(given)]
    if keyword:
        node.kwargs = {**node.kwargs, keyword: type(given)(sizes)}
    else:
        node.args = (args[0], type(given)(sizes)) if packed else (args[0], *sizes)


def _rewrite_split(node: fx.Node, parts: list[np.ndarray], keep: np.ndarray) -> None:
    kept = [int(keep[p].sum()) for p in parts]
    args = list(node.args)
    key = 1 if len(args) > 1 else None
    value = args[1] if key else node.kwargs.get("split_size_or_sections")
    new = kept[0] if isinstance(value, int) else kept
    if key:
        args[1] = new
        node.args = tuple(args)
    else:
        node.kwargs = {**node.kwargs, "split_size_or_sections": new}


def apply_removal(gm: fx.GraphModule, report: CouplingReport, removed_units: np.ndarray) -> int:
    """Shrink ``gm`` in place; returns the number of layers changed."""
    keep = ~removed_units[report.unit_id]
    changed = 0
    for node in gm.graph.nodes:
        if node.name in report.module_io:
            in_labels, out_labels = report.module_io[node.name]
            in_mask = keep[in_labels] if in_labels is not None else None
            out_mask = keep[out_labels] if out_labels is not None else None
            if (in_mask is None or in_mask.all()) and (out_mask is None or out_mask.all()):
                continue
            module = gm.get_submodule(str(node.target))
            if isinstance(module, nn.Linear):
                _shrink_linear(module, in_mask, out_mask)
            elif isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
                _shrink_conv(module, in_mask, out_mask)
            else:
                _shrink_norm(module, out_mask)
            record = {}
            if out_mask is not None:
                record.update(kept=np.flatnonzero(out_mask).tolist(),
                              removed=np.flatnonzero(~out_mask).tolist())
            if in_mask is not None:
                record.update(in_kept=np.flatnonzero(in_mask).tolist(),
                              in_removed=np.flatnonzero(~in_mask).tolist())
            node.meta["pruning"] = record
            changed += 1
        elif node.name in report.reshapes:
            _rewrite_sizes(node, report.reshapes[node.name], keep)
        elif node.name in report.splits:
            _rewrite_split(node, report.splits[node.name], keep)
    gm.recompile()
    return changed


# ----------------------------------------------------------------------------- the pass


def placeholder_inputs(gm: fx.GraphModule) -> list[torch.Tensor]:
    """Zero tensors shaped like the recorded inputs, to re-check a pruned graph."""
    from prunec.frontend import recorded_inputs

    inputs = recorded_inputs(gm)
    if inputs is None:
        raise UserError("pruning needs shapes: trace the model with example inputs first")
    return list(inputs)


def _propagate_on_meta(gm: fx.GraphModule) -> bool:
    """ShapeProp with weights and inputs on the meta device: shapes without arithmetic."""
    try:
        from torch.nn.utils.stateless import _reparametrize_module

        state = {k: torch.empty_like(v, device="meta") for k, v in gm.state_dict(keep_vars=True).items()}
        inputs = [t.to("meta") for t in placeholder_inputs(gm)]
        # ShapeProp prints a traceback of its own on failure, which is not the user's to read
        with _reparametrize_module(gm, state), torch.no_grad(), contextlib.redirect_stderr(io.StringIO()):
            ShapeProp(gm).propagate(*inputs)
        return True
    except Exception:  # noqa: BLE001 - an op without a meta kernel: check on real tensors
        return False


def reshape_check(gm: fx.GraphModule, expected: list) -> None:
    """Re-propagate shapes; the pruned graph must run and keep its output shapes."""
    from prunec.frontend import propagate_shapes

    gm.graph.lint()
    if not _propagate_on_meta(gm):
        try:
            propagate_shapes(gm, placeholder_inputs(gm))
        except UserError as exc:  # it blames the input shape, which fit the unpruned graph
            raise UserError("structured pruning left a graph that does not run: an op the channel analysis "
                            f"passed does not follow the removed channels ({str(exc).split(': ', 1)[-1]})") from None
    got = recorded_outputs(gm)
    if got != expected:
        raise RuntimeError(f"structured pruning changed the output shape {expected} -> {got}")


def prune_structured(
    gm: fx.GraphModule, ratio: float, method: str = "l1", scope: str = "uniform",
    ignore: Sequence[str] = (), round_to: int = 1, seed: int = 0, inplace: bool = False,
) -> fx.GraphModule:
    """Remove ``ratio`` of the channels of every prunable group (or globally) by importance.

    Returns a shrunken copy of ``gm`` (``inplace=True`` edits ``gm``); ``gm`` must carry
    ShapeProp shapes. The network output channels are never removed.
    """
    ratio = check_ratio(ratio)
    check_choice("method", method, IMPORTANCES)
    check_choice("scope", scope, SCOPES)
    if not isinstance(round_to, int) or round_to < 1:
        raise UserError(f"round_to must be a positive integer, got {round_to!r}")
    seed = check_seed(seed)
    placeholder_inputs(gm)
    ignored = resolve_ignore(gm, ignore) if ignore else set()
    if not inplace:
        gm = copy.deepcopy(gm)
    expected = recorded_outputs(gm)
    report = analyze(gm, ignored)
    gm.meta["coupling"] = report.summary()
    # ops prunec cannot prune through, once each with their first reason (not the network output,
    # whose channels always stay, nor the layers the user asked to keep)
    kept: dict[str, str] = {}
    for name, why in report.keeping_whole:
        if name != "output" and why != "ignored by user":
            kept.setdefault(name, why)
    gm.meta["kept_whole"] = list(kept.items())
    if ratio == 0:
        return gm
    rounded_whole: list[tuple[str, int]] = []
    removed = select_units(report, unit_scores(method, gm, report, seed), ratio, scope, round_to, rounded_whole)
    gm.meta["rounded_whole"] = rounded_whole
    if removed.any():
        apply_removal(gm, report, removed)
        reshape_check(gm, expected)
    return gm


def pruning_pass(name: str, prune_fn: Callable[..., fx.GraphModule]) -> Callable[..., Callable]:
    """A registry factory: ``factory(ratio=..., **options)`` returns a pass running ``prune_fn``."""

    known = [p for p in inspect.signature(prune_fn).parameters.values()
             if p.kind is p.POSITIONAL_OR_KEYWORD and p.name not in ("gm", "ratio", "inplace")]

    def factory(ratio: float = 0.5, **options: object) -> Callable[[fx.GraphModule], PassResult]:
        if isinstance(ratio, fx.GraphModule):
            raise UserError(f"pass '{name}' needs options, e.g. ratio=0.5")
        check_ratio(ratio)
        unknown = sorted(set(options) - {p.name for p in known})
        if unknown:
            raise UserError(f"pass '{name}' has no option {', '.join(map(repr, unknown))}; it takes ratio, "
                            f"{', '.join(p.name for p in known)}")

        def run(gm: fx.GraphModule) -> PassResult:
            return PassResult(prune_fn(gm, ratio, inplace=True, **options), ratio > 0)

        run.__name__ = name
        return run

    return factory


register_pass("prune_structured", "Remove whole channels (options: ratio, method, scope, ignore, round_to, seed).")(
    pruning_pass("prune_structured", prune_structured))


__all__ = ["prune_structured", "select_units", "apply_removal", "resolve_ignore", "check_ratio",
           "SCOPES"]
