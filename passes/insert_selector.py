"""``insert_selector``: join the aggressive and mild networks into one dynamic graph.

The aggressive network is cut at its tap(s) into a trunk (input .. taps) and a head
(the rest), a selector reads the taps (and the aggressive logits), and the mild network
hangs off the graph as one routed sub-module. The default tap is the last convolutional
feature map before global pooling: the richest features the aggressive network has
already paid for, so the selector costs almost nothing extra.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import fx, nn
from torch.fx.passes.infra.pass_base import PassResult

from prunec.dynamic import DynamicModel
from prunec.errors import UserError
from prunec.passes import register_pass
from prunec.selectors import make_selector

_GLOBAL_POOL_MODULES = (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)
_GLOBAL_POOL_FUNCTIONS = {torch.nn.functional.adaptive_avg_pool2d, torch.nn.functional.adaptive_max_pool2d,
                          torch.mean, torch.flatten}


def conv_nodes(gm: fx.GraphModule) -> list[str]:
    """Names of the nodes that run a convolution (the natural tap candidates)."""
    names = []
    for node in gm.graph.nodes:
        if node.op == "call_module" and isinstance(gm.get_submodule(node.target), nn.modules.conv._ConvNd):
            names.append(node.name)
        elif node.op == "call_function" and node.target in (torch.conv2d, torch.nn.functional.conv2d):
            names.append(node.name)
    return names


def _is_global_pool(gm: fx.GraphModule, node: fx.Node) -> bool:
    if node.op == "call_module":
        mod = gm.get_submodule(node.target)
        if isinstance(mod, _GLOBAL_POOL_MODULES):
            size = mod.output_size
            return size in (1, (1, 1), [1, 1])
        return False
    if node.op == "call_function" and node.target in _GLOBAL_POOL_FUNCTIONS:
        return True
    return node.op == "call_method" and node.target in ("mean", "flatten", "view", "reshape")


def _is_4d(node: fx.Node) -> bool:
    meta = node.meta.get("tensor_meta")
    return meta is not None and hasattr(meta, "shape") and len(meta.shape) == 4


def default_tap(gm: fx.GraphModule) -> str:
    """The last convolutional feature map before global pooling (a node name).

    That is the input of the first global pool / flatten that leaves the 4-D part of the
    network; without shapes or such a node, the last convolution's node.
    """
    for node in gm.graph.nodes:
        if _is_global_pool(gm, node) and node.args and isinstance(node.args[0], fx.Node):
            src = node.args[0]
            if src.op != "placeholder" and (_is_4d(src) or "tensor_meta" not in src.meta):
                return src.name
    four_d = [n.name for n in gm.graph.nodes if _is_4d(n) and n.op != "placeholder"]
    if four_d:
        return four_d[-1]
    convs = conv_nodes(gm)
    if not convs:
        raise UserError("the aggressive network has no convolution to tap: the selector reads convolutional "
                        "features (insert_selector's taps= names other nodes)")
    return convs[-1]


def _check_taps(gm: fx.GraphModule, taps: Sequence[str]) -> list[str]:
    names = {n.name: n for n in gm.graph.nodes}
    out = []
    for tap in taps:
        if tap not in names or names[tap].op in ("placeholder", "output"):
            candidates = ", ".join(conv_nodes(gm)) or "(none)"
            raise UserError(f"unknown tap {tap!r}; conv nodes of the aggressive network: {candidates}")
        out.append(tap)
    if len(set(out)) != len(out):
        raise UserError(f"a tap is given twice: {', '.join(out)}")
    return out


def front_module(aggressive_gm: fx.GraphModule, taps: Sequence[str]) -> fx.GraphModule:
    """A copy of the aggressive graph returning ``(logits, *taps)``; parameters are shared."""
    graph = fx.Graph()
    val_map: dict[fx.Node, fx.Node] = {}
    output_value = graph.graph_copy(aggressive_gm.graph, val_map)
    if not isinstance(output_value, fx.Node):
        raise UserError("the aggressive network must return one logits tensor")
    by_name = {n.name: n for n in aggressive_gm.graph.nodes}
    graph.output((output_value, *[val_map[by_name[t]] for t in taps]))
    front = fx.GraphModule(aggressive_gm, graph, "AggressiveFront")
    for old, new in val_map.items():
        new.meta.update(old.meta)
    return front


def _example_input(gm: fx.GraphModule) -> torch.Tensor | None:
    for node in gm.graph.nodes:
        if node.op == "placeholder":
            meta = node.meta.get("tensor_meta")
            if meta is not None and hasattr(meta, "shape"):
                return torch.zeros(tuple(meta.shape), dtype=meta.dtype)
    return None


def _num_classes(gm: fx.GraphModule, example: torch.Tensor | None) -> int | None:
    for node in gm.graph.nodes:
        if node.op == "output":
            arg = node.args[0]
            meta = arg.meta.get("tensor_meta") if isinstance(arg, fx.Node) else None
            if meta is not None and hasattr(meta, "shape"):
                return int(meta.shape[-1])
    if example is not None:
        with torch.no_grad():
            return int(gm(example).shape[-1])
    return None


def insert_selector(aggressive_gm: fx.GraphModule, mild_gm: fx.GraphModule, selector: str | nn.Module,
                    taps: Sequence[str] | str | None = None, threshold: float = 0.5, *,
                    original: nn.Module | None = None, preprocess: nn.Module | None = None,
                    use_logits: bool = True, hidden: int = 32) -> DynamicModel:
    """Build the dynamic model: aggressive trunk + head, selector on the tap(s), routed mild.

    ``selector`` is a kind (``learned``, ``max-softmax``, ``margin``, ``entropy``) or a
    ready selector module ``(logits, *taps) -> score``. ``taps`` are node names of
    ``aggressive_gm`` (default: :func:`default_tap`). A learned selector comes back
    untrained: see :func:`prunec.selectors.train_selector`.
    """
    if isinstance(taps, str):
        taps = [t for t in taps.split(",") if t]
    taps = _check_taps(aggressive_gm, list(taps) if taps else [default_tap(aggressive_gm)])
    example = _example_input(aggressive_gm)
    num_classes = _num_classes(aggressive_gm, example)
    kind = selector if isinstance(selector, str) else getattr(selector, "kind", type(selector).__name__)
    if isinstance(selector, str):
        selector = make_selector(selector, aggressive_gm, taps, num_classes, use_logits, hidden)
    front = front_module(aggressive_gm, taps)
    input_shape = tuple(example.shape) if example is not None else None
    return DynamicModel(front, selector, mild_gm, taps, threshold, aggressive=aggressive_gm,
                        original=original, preprocess=preprocess, selector_kind=kind,
                        input_shape=input_shape, num_classes=num_classes, example_input=example)


@register_pass("insert_selector")
class InsertSelector:
    """Join an aggressive and a mild network into one dynamic graph with a selector."""

    def __init__(self, mild: fx.GraphModule, selector: str | nn.Module = "max-softmax",
                 taps: Sequence[str] | str | None = None, threshold: float = 0.5, **options: Any) -> None:
        self.mild, self.selector, self.taps, self.threshold = mild, selector, taps, threshold
        self.options = options
        self.dynamic: DynamicModel | None = None

    def __call__(self, gm: fx.GraphModule) -> PassResult:
        """Run on the aggressive GraphModule; the result is the dynamic graph.

        The whole :class:`DynamicModel` stays available as ``self.dynamic``.
        """
        self.dynamic = insert_selector(gm, self.mild, self.selector, self.taps, self.threshold,
                                       **self.options)
        return PassResult(self.dynamic.graph_module, True)


__all__ = ["insert_selector", "default_tap", "conv_nodes", "front_module", "InsertSelector"]
