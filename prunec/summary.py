"""Per-layer summary of a traced model: shapes, parameters and MACs (``prunec inspect``).

MACs are counted by running each node under torch's own
``torch.utils.flop_counter.FlopCounterMode`` (FLOPs / 2), so they agree with torch by
construction for every operator torch counts (convolutions, matmuls, linear layers).
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import Any

import torch
from torch import fx
from torch.utils.flop_counter import FlopCounterMode

SCHEMA_VERSION = 1

#: Nodes that only reshape, index or read attributes: no work, no row.
_NO_WORK_FUNCTIONS = {operator.getitem, getattr, torch.flatten, torch.reshape}
_NO_WORK_METHODS = {"size", "view", "reshape", "flatten", "contiguous", "dim", "unsqueeze",
                    "squeeze", "permute", "transpose"}


class _MacCounter(fx.Interpreter):
    """Runs the graph, recording each node's MACs and output shape."""

    def __init__(self, gm: fx.GraphModule) -> None:
        super().__init__(gm)
        self.macs: dict[str, int] = {}
        self.shapes: dict[str, Any] = {}

    def run_node(self, n: fx.Node) -> Any:
        with FlopCounterMode(display=False) as counter:
            result = super().run_node(n)
        self.macs[n.name] = counter.get_total_flops() // 2
        self.shapes[n.name] = _shape_of(result)
        return result


def _shape_of(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return list(value.shape)
    if isinstance(value, (tuple, list)):
        return [_shape_of(v) for v in value]
    return None


def does_work(node: fx.Node) -> bool:
    if node.op in ("placeholder", "output", "get_attr"):
        return False
    if node.op == "call_function" and node.target in _NO_WORK_FUNCTIONS:
        return False
    return not (node.op == "call_method" and node.target in _NO_WORK_METHODS)


def _op_name(gm: fx.GraphModule, node: fx.Node) -> str:
    if node.op == "call_module":
        return type(gm.get_submodule(str(node.target))).__name__
    if node.op == "call_function":
        return getattr(node.target, "__name__", str(node.target))
    return str(node.target)


def _params(gm: fx.GraphModule, node: fx.Node) -> int:
    if node.op != "call_module":
        return 0
    return sum(p.numel() for p in gm.get_submodule(str(node.target)).parameters())


def summarize(gm: fx.GraphModule, example_inputs: torch.Tensor | Sequence[torch.Tensor]) -> dict[str, Any]:
    """The inspect report: ``{"schema_version", "layers": [...], "totals": {"params", "macs"}}``."""
    inputs = (example_inputs,) if isinstance(example_inputs, torch.Tensor) else tuple(example_inputs)
    counter = _MacCounter(gm)
    with torch.no_grad():
        counter.run(*inputs)
    layers = []
    for node in gm.graph.nodes:
        if not does_work(node):
            continue
        in_shapes = [counter.shapes.get(a.name) for a in node.all_input_nodes]
        layers.append({
            "name": node.name,
            "op": _op_name(gm, node),
            "input_shape": in_shapes[0] if len(in_shapes) == 1 else in_shapes,
            "output_shape": counter.shapes.get(node.name),
            "params": _params(gm, node),
            "macs": counter.macs.get(node.name, 0),
        })
    total_params = sum(p.numel() for p in gm.parameters())
    total_macs = sum(counter.macs.values())
    return {"schema_version": SCHEMA_VERSION, "layers": layers,
            "totals": {"params": total_params, "macs": total_macs}}


def count_macs(model: torch.nn.Module, example_inputs: torch.Tensor | Sequence[torch.Tensor]) -> int:
    """Total MACs of one forward pass, as torch's FlopCounterMode counts them (FLOPs / 2)."""
    inputs = (example_inputs,) if isinstance(example_inputs, torch.Tensor) else tuple(example_inputs)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(*inputs)
    return counter.get_total_flops() // 2


__all__ = ["summarize", "count_macs", "does_work", "SCHEMA_VERSION"]
