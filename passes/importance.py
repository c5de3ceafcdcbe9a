"""Channel importance criteria: one score per channel atom (see :mod:`.coupling`).

A unit's score is the sum of its atoms' scores, so a channel tied across a residual
stream counts every layer that produces it. Criteria are registered by name so users
can add their own: ``register_importance("mine")(fn)`` with
``fn(gm, report, seed) -> np.ndarray`` of length ``report.n_atoms``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import fx

from .coupling import CouplingReport

ImportanceFn = Callable[[fx.GraphModule, CouplingReport, int], np.ndarray]
IMPORTANCES: dict[str, ImportanceFn] = {}


def register_importance(name: str) -> Callable[[ImportanceFn], ImportanceFn]:
    """Decorator: make ``fn`` available as ``method=name``."""

    def decorate(fn: ImportanceFn) -> ImportanceFn:
        IMPORTANCES[name] = fn
        return fn

    return decorate


def _weight_norm(gm: fx.GraphModule, report: CouplingReport, p: int) -> np.ndarray:
    scores = np.zeros(report.n_atoms)
    for src in report.sources.values():
        weight = gm.get_submodule(src.module).weight.detach()
        norms = torch.linalg.vector_norm(weight.flatten(1).double(), ord=p, dim=1)
        scores[src.start:src.start + src.size] = norms.numpy()
    return scores


@register_importance("l1")
def l1(gm: fx.GraphModule, report: CouplingReport, seed: int = 0) -> np.ndarray:
    """L1 norm of each output channel's filter (Li et al. 2017)."""
    return _weight_norm(gm, report, 1)


@register_importance("l2")
def l2(gm: fx.GraphModule, report: CouplingReport, seed: int = 0) -> np.ndarray:
    """L2 norm of each output channel's filter."""
    return _weight_norm(gm, report, 2)


@register_importance("bn_scale")
def bn_scale(gm: fx.GraphModule, report: CouplingReport, seed: int = 0) -> np.ndarray:
    """|gamma| of the BatchNorm that normalises the channel (network slimming, Liu et al. 2017).

    Channels no BatchNorm sees score NaN; the selector then falls back to L1 for their group.
    """
    scores = np.full(report.n_atoms, np.nan)
    targets = {n.name: str(n.target) for n in gm.graph.nodes if n.op == "call_module"}
    for name, (labels, _) in report.module_io.items():
        node_mod = gm.get_submodule(targets[name])
        if isinstance(node_mod, torch.nn.modules.batchnorm._BatchNorm) and node_mod.affine:
            gamma = node_mod.weight.detach().abs().double().numpy()
            scores[labels] = np.fmax(scores[labels], gamma)
    return scores


@register_importance("random")
def random(gm: fx.GraphModule, report: CouplingReport, seed: int = 0) -> np.ndarray:
    """Uniform random scores: the baseline every criterion must beat."""
    # a negative seed maps to 2**64 + seed, as torch.manual_seed maps it (numpy refuses negatives)
    return np.random.default_rng(seed % 2**64).random(report.n_atoms)


def unit_scores(method: str, gm: fx.GraphModule, report: CouplingReport, seed: int = 0) -> np.ndarray:
    """Score of every unit (indexed by unit id); NaN-free."""
    atoms = IMPORTANCES[method](gm, report, seed)
    scores = np.bincount(report.unit_id, weights=np.nan_to_num(atoms, nan=0.0), minlength=report.n_atoms)
    missing = np.bincount(report.unit_id, weights=np.isnan(atoms), minlength=report.n_atoms) > 0
    if missing.any():
        fallback = np.bincount(report.unit_id, weights=l1(gm, report), minlength=report.n_atoms)
        for group in report.groups:
            if missing[group.unit_ids].any():
                scores[group.unit_ids] = fallback[group.unit_ids]
    return scores


__all__ = ["IMPORTANCES", "register_importance", "unit_scores", "l1", "l2", "bn_scale", "random"]
