"""Unstructured magnitude pruning: zero individual weights, keep every shape.

Nothing gets faster on a CPU, but the Eyeriss backend skips zero operands (data gating),
so each conv/linear node records ``node.meta["weight_sparsity"]`` for it to read.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence

import torch
from torch import fx, nn

from . import register_pass
from .structured import SCOPES, check_choice, check_ratio, pruning_pass, resolve_ignore

METHODS = ("l1", "l2", "random")  # l1 and l2 rank single weights identically, by |w|
_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


def _scores(weight: torch.Tensor, method: str, generator: torch.Generator) -> torch.Tensor:
    if method == "random":
        return torch.rand(weight.shape, generator=generator, dtype=torch.float64)
    return weight.detach().abs().double()


def prune_unstructured(
    gm: fx.GraphModule, ratio: float, method: str = "l1", scope: str = "uniform",
    ignore: Sequence[str] = (), seed: int = 0, inplace: bool = False, **_: object,
) -> fx.GraphModule:
    """Zero the ``ratio`` smallest-magnitude weights of each conv/linear layer (``uniform``)
    or of all of them ranked together (``global``). Returns a copy unless ``inplace``.
    """
    ratio = check_ratio(ratio)
    check_choice("method for unstructured pruning", method, METHODS)
    check_choice("scope", scope, SCOPES)
    ignored = resolve_ignore(gm, ignore) if ignore else set()
    if not inplace:
        gm = copy.deepcopy(gm)
    generator = torch.Generator().manual_seed(seed)
    layers = [(n, gm.get_submodule(str(n.target))) for n in gm.graph.nodes if n.op == "call_module"]
    layers = [(n, m) for n, m in layers if isinstance(m, _LAYERS)]
    chosen = [m for n, m in layers if str(n.target) not in ignored]
    scores = [_scores(m.weight, method, generator) for m in chosen]
    if ratio > 0 and chosen:
        if scope == "global":
            flat = torch.cat([s.flatten() for s in scores])
            k = int(math.floor(ratio * flat.numel() + 1e-9))
            cut = torch.zeros(flat.numel(), dtype=torch.bool)
            cut[torch.argsort(flat, stable=True)[:k]] = True
            masks = list(torch.split(cut, [s.numel() for s in scores]))
        else:
            masks = []
            for s in scores:
                k = int(math.floor(ratio * s.numel() + 1e-9))
                cut = torch.zeros(s.numel(), dtype=torch.bool)
                cut[torch.argsort(s.flatten(), stable=True)[:k]] = True
                masks.append(cut)
        with torch.no_grad():
            for module, cut in zip(chosen, masks, strict=True):
                module.weight.view(-1)[cut] = 0
    for node, module in layers:
        node.meta["weight_sparsity"] = float((module.weight == 0).double().mean())
    return gm


register_pass("prune_unstructured", "Zero the smallest weights (options: ratio, method, scope, ignore, seed).")(
    pruning_pass("prune_unstructured", prune_unstructured))


__all__ = ["prune_unstructured", "METHODS"]
