"""The dynamic runtime: one graph that answers with the aggressive network where the
selector trusts it and with the mild network elsewhere.

:class:`DynamicModel` is an ``nn.Module`` (not itself a GraphModule, because the
``return_route`` flag changes the output's structure, which a graph cannot). It holds

* ``graph_module`` -- the ``fx.GraphModule`` that inspection, export and lowering walk.
  Its ``forward(x)`` returns ``(logits, route)``. Every node has ``node.meta["role"]`` in
  ``trunk`` (input .. taps), ``head`` (the rest of the aggressive network), ``selector``
  and ``mild``; tap nodes also have ``node.meta["tap"] = True``. The mild network is
  reached through one ``call_module`` node, role ``mild``, whose module is a
  :class:`MildRouter` with ``routed_subgraph`` = the mild GraphModule.
* ``front`` (x -> (logits, *taps)), ``selector`` ((logits, *taps) -> score),
  ``router``; and the standalone networks ``aggressive``, ``mild``, ``original`` (or None).
* ``threshold`` (lives in the router), ``taps``, ``selector_kind``, ``preprocess``
  (Normalize or Identity: [0, 1] pixels -> the input this model takes), ``input_shape``,
  ``num_classes``.

Samples whose score is ``> threshold`` go to mild: the router gathers them, runs the
mild network on that sub-batch only and scatters its answers back.
"""

from __future__ import annotations

import dataclasses
import math
import operator
from collections.abc import Sequence
from typing import Any

import torch
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from prunec.errors import UserError, is_number

ROLES = ("trunk", "head", "selector", "mild")


class MildRouter(nn.Module):
    """Gather the rejected samples, run the mild network on them, scatter back.

    A leaf for tracing (data-dependent batch size); holds the threshold.
    """

    def __init__(self, routed_subgraph: nn.Module, threshold: float = 0.5) -> None:
        super().__init__()
        self.routed_subgraph = routed_subgraph
        self.threshold = finite_threshold(threshold)

    def forward(self, x: torch.Tensor, aggressive_logits: torch.Tensor, selector_score: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        route = selector_score.reshape(-1) > self.threshold
        n_routed = int(route.sum())
        if n_routed == 0:
            return aggressive_logits, route
        if n_routed == route.numel():
            return self.routed_subgraph(x).to(aggressive_logits.dtype), route
        idx = route.nonzero().squeeze(1)
        mild = self.routed_subgraph(x.index_select(0, idx))
        return aggressive_logits.index_copy(0, idx, mild.to(aggressive_logits.dtype)), route

    def extra_repr(self) -> str:
        return f"threshold={self.threshold:.6g}"


class _FirstOutput(nn.Module):
    """The standalone aggressive network from a front returning (logits, *taps)."""

    def __init__(self, front: nn.Module) -> None:
        super().__init__()
        self.front = front

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.front(x)[0]


def build_graph(front: nn.Module, selector: nn.Module, router: MildRouter, taps: Sequence[str],
                example_input: torch.Tensor | None = None) -> fx.GraphModule:
    """Inline ``front``'s graph and append the selector and router call_module nodes.

    ``front`` is an fx.GraphModule whose output is ``(logits, *taps)`` (a traced network
    or ``ExportedProgram.module()``); its nodes are copied with their submodule/attribute
    targets re-homed under ``front.``, so parameters are shared, not copied.
    """
    if not isinstance(front, fx.GraphModule):
        raise TypeError("front must be an fx.GraphModule returning (logits, *taps)")
    root = nn.Module()
    root.front = front
    root.selector = selector
    root.router = router
    graph = fx.Graph()
    x = graph.placeholder("x")
    env: dict[fx.Node, fx.Node] = {}
    out_node = None
    for node in front.graph.nodes:
        if node.op == "placeholder":
            if x in env.values():
                raise ValueError("the aggressive network must take exactly one input tensor")
            env[node] = x
            x.meta.update(node.meta)
            continue
        if node.op == "output":
            out_node = node
            continue
        new = graph.node_copy(node, lambda n: env[n])
        if node.op in ("call_module", "get_attr"):
            new.target = f"front.{node.target}"
        env[node] = new
    assert out_node is not None
    outs = list(fx.node.map_arg(out_node.args[0], lambda n: env[n]))
    if outs and isinstance(outs[0], (tuple, list)):  # ExportedProgram graphs wrap the outputs
        outs = list(outs[0])
    logits, tap_nodes = outs[0], outs[1:]
    if len(tap_nodes) != len(taps):
        raise ValueError(f"front returns {len(tap_nodes)} taps, expected {len(taps)}")

    trunk = set(tap_nodes)
    stack = list(tap_nodes)
    while stack:
        for inp in stack.pop().all_input_nodes:
            if inp not in trunk:
                trunk.add(inp)
                stack.append(inp)
    x.meta["role"] = "trunk"
    for new in env.values():
        if new is not x:
            guard = new.op == "call_module" and str(new.target).endswith("_guards_fn")
            new.meta["role"] = "trunk" if new in trunk or guard else "head"
    for name, node in zip(taps, tap_nodes, strict=True):
        node.meta["tap"] = True
        node.meta["tap_name"] = name

    score = graph.call_module("selector", (logits, *tap_nodes))
    score.meta["role"] = "selector"
    routed = graph.call_module("router", (x, logits, score))
    routed.meta["role"] = "mild"
    final = graph.call_function(operator.getitem, (routed, 0))
    route = graph.call_function(operator.getitem, (routed, 1))
    out = graph.output((final, route))
    for node in (final, route, out):
        node.meta["role"] = "mild"
    graph.lint()
    gm = fx.GraphModule(root, graph, "DynamicGraph")
    if example_input is not None:
        with torch.no_grad():
            ShapeProp(gm).propagate(example_input)
    return gm


def set_eval(module: nn.Module) -> nn.Module:
    """Eval mode without calling ``.eval()``, which ExportedProgram modules refuse."""
    for m in module.modules():
        m.training = False
    return module


class DynamicModel(nn.Module):
    """The compiled dynamic model (see module docstring for its attributes)."""

    def __init__(self, front: fx.GraphModule, selector: nn.Module, mild: nn.Module,
                 taps: Sequence[str], threshold: float = 0.5, *, aggressive: nn.Module | None = None,
                 original: nn.Module | None = None, preprocess: nn.Module | None = None,
                 selector_kind: str | None = None, input_shape: Sequence[int] | None = None,
                 num_classes: int | None = None, example_input: torch.Tensor | None = None) -> None:
        super().__init__()
        self.router = MildRouter(mild, threshold)
        self.taps = list(taps)
        self.graph_module = build_graph(front, selector, self.router, self.taps, example_input)
        self.front = front
        self.selector = selector
        self.aggressive = aggressive if aggressive is not None else _FirstOutput(front)
        self.original = original
        self.preprocess = preprocess if preprocess is not None else nn.Identity()
        self.selector_kind = selector_kind or getattr(selector, "kind", type(selector).__name__)
        self.input_shape = tuple(int(d) for d in input_shape) if input_shape is not None else None
        self.num_classes = num_classes
        set_eval(self)

    @property
    def mild(self) -> nn.Module:
        return self.router.routed_subgraph

    @property
    def threshold(self) -> float:
        return self.router.threshold

    @threshold.setter
    def threshold(self, value: float) -> None:
        self.router.threshold = finite_threshold(value)

    def forward(self, x: torch.Tensor, return_route: bool = False
                ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"this model takes a torch.Tensor, got {type(x).__name__} (torch.from_numpy(...).float())")
        if x.dtype != torch.float32:  # the parts' weights are float32
            raise ValueError(f"this model takes float32 inputs, got {str(x.dtype).removeprefix('torch.')}: "
                             "convert them with .float()")
        expected = self.input_shape[1:] if self.input_shape else None
        if expected and tuple(x.shape[1:]) != expected:
            # the size it was compiled, costed and calibrated at; a loaded model's exported parts take no other
            raise ValueError(f"this model takes N x {' x '.join(map(str, expected))} inputs, got "
                             f"{' x '.join(map(str, x.shape)) or 'a scalar'}")
        if x.dim() and not len(x) and self.num_classes is not None:  # exported parts take batches of 1 and more
            logits, route = x.new_zeros(0, self.num_classes), torch.zeros(0, dtype=torch.bool, device=x.device)
        else:
            logits, route = self.graph_module(x)
        return (logits, route) if return_route else logits

    @torch.no_grad()
    def scores(self, x: torch.Tensor, batch_size: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
        """(aggressive logits, selector score) for ``x``, in batches, without routing."""
        logits, scores = [], []
        for i in range(0, len(x), batch_size):
            out = self.front(x[i:i + batch_size])
            logits.append(out[0])
            scores.append(self.selector(*out).reshape(-1))
        return torch.cat(logits), torch.cat(scores)

    def nodes_by_role(self) -> dict[str, list[fx.Node]]:
        """The graph's nodes grouped by ``node.meta["role"]``."""
        groups: dict[str, list[fx.Node]] = {r: [] for r in ROLES}
        for node in self.graph_module.graph.nodes:
            groups[node.meta["role"]].append(node)
        return groups


def finite_threshold(value: object) -> float:
    """A routing threshold: a finite number. NaN would route nothing, silently, and neither it nor
    an infinity can be saved as JSON (to route nothing, use a threshold above every score)."""
    if not is_number(value) or not math.isfinite(float(value)):
        raise UserError(f"the threshold must be a finite number, got {value!r}")
    return float(value)


@torch.no_grad()
def predict(module: nn.Module, x: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """Logits of a plain network, in batches."""
    return torch.cat([module(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])


#: Folds of the learned selector's cross-fitted threshold calibration.
SELECTOR_FOLDS = 5


def calibration_scheme(selector: str, folds: int = SELECTOR_FOLDS) -> str:
    """Which calibration scores a ``selector``'s threshold is chosen on, as reports record it."""
    if selector == "learned":
        return (f"the learned selector is thresholded on {folds}-fold cross-fitted scores and deployed "
                "as trained on all of them, each threshold set to route the same share of the calibration "
                "images under the deployed selector")
    return "the threshold is chosen on every calibration image"


def compile_dynamic(original: nn.Module, aggressive: nn.Module, mild: nn.Module, calibration: Any, *,
                    selector: str = "learned", taps: Sequence[str] | None = None,
                    max_accuracy_drop: float | None = None, mild_rate: float | None = None,
                    costs: dict[str, float] | None = None, preprocess: nn.Module | None = None,
                    selector_folds: int = SELECTOR_FOLDS, epochs: int = 60, seed: int = 0,
                    hidden: int = 32, confidence: float | None = None) -> Any:
    """Assemble, train and calibrate a dynamic model from already pruned/fine-tuned networks.

    ``calibration`` is a :class:`prunec.data.Split` neither pruned network was fine-tuned on.
    The deployed learned selector trains on all of it; the threshold is calibrated on
    out-of-fold scores from ``selector_folds`` copies each fitted without the samples it
    scores (:func:`prunec.selectors.cross_fitted_scores`), so the chosen operating point is
    neither flattered by the selector's training samples nor estimated from half the data.
    The fold copies and the deployed selector need not share a score scale, so each sweep point
    carries over by its share: its threshold becomes the one that routes that share of the
    calibration images under the deployed selector.
    Zero-parameter selectors calibrate on all of it directly.
    ``costs`` default to MACs (:func:`prunec.calibration.mac_costs`); pass the Eyeriss
    energies when the backend is available. With ``confidence`` the accuracy budget must hold
    for the drop's upper confidence bound (:mod:`prunec.accuracy_bound`), not its estimate.
    Returns a :class:`prunec.artifact.CompiledModel`.
    """
    from prunec.artifact import CompiledModel
    from prunec.calibration import choose_threshold, mac_costs, sweep, thresholds_for_shares
    from prunec.frontend import trace
    from prunec.passes.insert_selector import insert_selector as _insert
    from prunec.selectors import cross_fitted_scores, fit_selector, front_outputs

    if max_accuracy_drop is None and mild_rate is None:
        max_accuracy_drop = 1.0
    example = calibration.x[:1]
    gms = [m if isinstance(m, fx.GraphModule) else trace(m, example) for m in (aggressive, mild)]
    for gm in gms:
        if not any("tensor_meta" in n.meta for n in gm.graph.nodes):
            trace(gm, example)
    if preprocess is None:
        preprocess = calibration.info.preprocess
    dyn = _insert(gms[0], gms[1], selector, taps=taps, original=original.eval(), preprocess=preprocess)
    y = calibration.y
    if selector == "learned":
        logits, pooled = front_outputs(dyn.front, calibration.x)
        wrong = logits.argmax(1) != y
        scores = cross_fitted_scores(dyn.selector, logits, pooled, wrong, folds=selector_folds, seed=seed,
                                     epochs=epochs)
        fit_selector(dyn.selector, logits, pooled, wrong, epochs=epochs, seed=seed)
    else:
        logits, scores = dyn.scores(calibration.x)
    mild_logits = predict(dyn.mild, calibration.x)
    original_correct = predict(dyn.original, calibration.x).argmax(1) == y
    original_accuracy = float(original_correct.float().mean())
    cost = costs or mac_costs(dyn, example)
    points = sweep(scores, logits.argmax(1) == y, mild_logits.argmax(1) == y, original_accuracy, cost,
                   original_correct=original_correct)
    if selector == "learned":
        deployed = dyn.scores(calibration.x)[1]
        points = [dataclasses.replace(p, threshold=float(t)) for p, t in
                  zip(points, thresholds_for_shares(deployed, [p.mild_share for p in points],
                                                    whole_ties=mild_rate is None), strict=True)]
    chosen = choose_threshold(points, max_accuracy_drop=max_accuracy_drop, mild_rate=mild_rate,
                              confidence=confidence)
    dyn.threshold = chosen.threshold
    constraint = {"max_accuracy_drop": max_accuracy_drop, "mild_rate": mild_rate}
    if confidence is not None:
        constraint["confidence"] = confidence
    return CompiledModel(model=dyn, sweep=points, chosen=chosen, costs=cost,
                         original_accuracy=original_accuracy, constraint=constraint)


__all__ = ["DynamicModel", "MildRouter", "build_graph", "compile_dynamic", "calibration_scheme", "predict",
           "ROLES", "SELECTOR_FOLDS"]
