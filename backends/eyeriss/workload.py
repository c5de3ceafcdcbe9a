"""Workload extraction: walk an FX graph and turn it into the operations a target maps.

Convolutions (any stride, padding, dilation, groups) and linear layers become
:class:`ConvShape` operations (a linear layer is a 1x1 convolution on a 1x1 ifmap);
BatchNorm directly after one of them is folded into it (it only rescales weights and bias).
Pooling, residual adds and concatenations are data movement. Activations, reshapes and
dropout are fused/free. Anything else is reported as *unmapped* rather than dropped, so the
energy total never silently omits work.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn

from prunec.errors import UserError, is_number


@dataclass(frozen=True)
class ConvShape:
    """One (possibly grouped) convolution; C and M are per group, H/W include padding."""

    N: int
    G: int
    C: int
    M: int
    Hin: int
    Win: int
    R: int
    S: int
    E: int
    F: int
    U: int = 1
    V: int = 1
    Dh: int = 1
    Dw: int = 1
    pad_h: int = 0
    pad_w: int = 0
    #: one more padding row / column on the far side: ``padding='same'`` with an even kernel pads unevenly
    pad_h_extra: int = 0
    pad_w_extra: int = 0

    @property
    def H(self) -> int:
        return self.Hin + 2 * self.pad_h + self.pad_h_extra

    @property
    def W(self) -> int:
        return self.Win + 2 * self.pad_w + self.pad_w_extra

    @property
    def macs(self) -> int:
        return self.N * self.G * self.M * self.C * self.R * self.S * self.E * self.F

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ConvShape:
        """The shape :meth:`to_dict` recorded (an IR layer's ``shape``)."""
        (u, v), (dh, dw), (ph, pw) = (map(whole_number, d[k]) for k in ("stride", "dilation", "padding"))
        sizes = {k: whole_number(d[k]) for k in ("N", "G", "C", "M", "Hin", "Win", "R", "S", "E", "F")}
        if min(*sizes.values(), u, v, dh, dw) < 1 or min(ph, pw) < 0:
            raise ValueError(f"sizes, strides and dilations must be at least 1 and padding at least 0: {dict(d)}")
        recorded = d.get("padding_extra")
        if recorded is not None and (not isinstance(recorded, (list, tuple)) or len(recorded) != 2
                                     or any(whole_number(x) not in (0, 1) for x in recorded)):
            raise ValueError(f"padding_extra must be two numbers, each 0 or 1: {recorded!r}")
        extras = []
        axes = (("E", sizes["Hin"], ph, sizes["R"], dh, u, "height"),
                ("F", sizes["Win"], pw, sizes["S"], dw, v, "width"))
        for i, (out, size, pad, kernel, dilation, stride, axis) in enumerate(axes):
            fits = _output_sizes(size, pad, kernel, dilation, stride)
            extra = int(recorded[i]) if recorded is not None else None
            if sizes[out] not in (fits.values() if extra is None else [fits.get(extra)]):
                raise ValueError(f"{out}={sizes[out]} is not the output {axis} of a {kernel}-wide kernel (dilation "
                                 f"{dilation}, stride {stride}, padding {pad}) on {size}")
            # an IR written before padding_extra: the uneven pad is the one only it explains
            extras.append(extra if extra is not None else int(fits.get(0) != sizes[out]))
        return cls(**sizes, U=u, V=v, Dh=dh, Dw=dw, pad_h=ph, pad_w=pw, pad_h_extra=extras[0], pad_w_extra=extras[1])

    def to_dict(self) -> dict[str, int]:
        return {"N": self.N, "G": self.G, "C": self.C, "M": self.M, "H": self.H, "W": self.W,
                "Hin": self.Hin, "Win": self.Win, "R": self.R, "S": self.S, "E": self.E, "F": self.F,
                "stride": [self.U, self.V], "dilation": [self.Dh, self.Dw],
                "padding": [self.pad_h, self.pad_w],
                **({"padding_extra": [self.pad_h_extra, self.pad_w_extra]} if self.pad_h_extra or self.pad_w_extra
                   else {})}


def _output_sizes(size: int, pad: int, kernel: int, dilation: int, stride: int) -> dict[int, int]:
    """The output size a convolution gives with padding ``pad`` on both sides plus ``extra`` (0 or 1) more
    on the far side (``padding='same'`` with an even kernel pads unevenly), by ``extra``."""
    return {extra: (size + 2 * pad + extra - dilation * (kernel - 1) - 1) // stride + 1 for extra in (0, 1)
            if size + 2 * pad + extra >= dilation * (kernel - 1) + 1}


def whole_number(value: Any) -> int:
    """An integer a saved shape holds (2.0 is 2; 2.7, True or the text "2" is not an integer)."""
    if not is_number(value) or not float(value).is_integer():
        raise ValueError(f"{value!r} is not an integer")
    return int(value)


@dataclass
class Op:
    """One node of the model, as the backend sees it."""

    name: str
    kind: str                      # conv | depthwise | linear | pool | add | concat | unmapped
    role: str | None = None
    shape: ConvShape | None = None
    target: str = ""
    folded: list[str] = field(default_factory=list)
    in_elems: list[int] = field(default_factory=list)   # per input, whole batch
    out_elems: int = 0
    weight: torch.Tensor | None = None
    weight_sparsity: float | None = None
    next_layer: str | None = None  # the mapped layer that consumes this layer's (activated) ofmap


_FREE_MODULES = (nn.ReLU, nn.ReLU6, nn.Hardtanh, nn.Dropout, nn.Identity, nn.Flatten, nn.Unflatten)
_POOL_MODULES = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d,
                 nn.MaxPool1d, nn.AvgPool1d, nn.AdaptiveAvgPool1d, nn.AdaptiveMaxPool1d)
_FREE_FUNCS = {F.relu, torch.relu, torch.relu_, F.relu6, F.hardtanh, torch.flatten, F.dropout,
               getattr, operator.getitem, torch.reshape, torch.squeeze, torch.unsqueeze,
               torch.Tensor.size}
_POOL_FUNCS = {F.max_pool2d, F.avg_pool2d, F.adaptive_avg_pool2d, F.adaptive_max_pool2d,
               torch.mean, torch.max_pool2d, torch.adaptive_avg_pool1d, torch.amax}
_ADD_FUNCS = {operator.add, operator.iadd, torch.add}
_CAT_FUNCS = {torch.cat, torch.concat}
_FREE_METHODS = {"view", "reshape", "flatten", "size", "contiguous", "relu", "relu_", "squeeze",
                 "unsqueeze", "clamp_min", "dim"}
_CONV_FUNCS = {F.conv2d, torch.conv2d, F.conv1d, torch.conv1d}
_LINEAR_FUNCS = {F.linear}


def _shape(node: Any) -> tuple[int, ...] | None:
    if not isinstance(node, fx.Node):
        return None
    meta = node.meta.get("tensor_meta")
    shape = getattr(meta, "shape", None)
    return tuple(int(d) for d in shape) if shape is not None else None


def _numel_per_sample(shape: tuple[int, ...]) -> int:
    return math.prod(shape[1:]) if len(shape) > 1 else 1


def _pair(v: Any) -> tuple[int, int]:
    return (int(v[0]), int(v[-1])) if isinstance(v, (tuple, list)) else (int(v), int(v))


def conv_shape(batch: int, x: tuple[int, ...], y: tuple[int, ...], weight_shape: tuple[int, ...],
               groups: int, stride: Any, padding: Any, dilation: Any) -> ConvShape:
    """Shape of a Conv1d/Conv2d from its input/output/weight shapes (per-sample dims of x, y)."""
    if len(x) == 3:  # Conv1d: a 1-row image
        x, y = (x[0], x[1], 1, x[2]), (y[0], y[1], 1, y[2])
        weight_shape = (*weight_shape[:2], 1, weight_shape[2])
        stride, dilation = (1, _pair(stride)[0]), (1, _pair(dilation)[0])
        padding = padding if isinstance(padding, str) else (0, _pair(padding)[0])  # "same"/"valid" below
    extra_h = extra_w = 0
    if isinstance(padding, str):  # "same"/"valid": recover from the shapes (torch pads an odd total's extra last)
        (su, sv), (du, dv) = _pair(stride), _pair(dilation)
        total_h = max(0, (y[2] - 1) * su + (weight_shape[2] - 1) * du + 1 - x[2])
        total_w = max(0, (y[3] - 1) * sv + (weight_shape[3] - 1) * dv + 1 - x[3])
        padding, extra_h, extra_w = (total_h // 2, total_w // 2), total_h % 2, total_w % 2
    (u, v), (ph, pw), (dh, dw) = _pair(stride), _pair(padding), _pair(dilation)
    return ConvShape(N=batch, G=groups, C=x[1] // groups, M=y[1] // groups, Hin=x[2], Win=x[3],
                     R=weight_shape[2], S=weight_shape[3], E=y[2], F=y[3], U=u, V=v, Dh=dh, Dw=dw,
                     pad_h=ph, pad_w=pw, pad_h_extra=extra_h, pad_w_extra=extra_w)


def linear_shape(batch: int, x: tuple[int, ...], out_features: int) -> ConvShape:
    """A linear layer as a 1x1 convolution; leading dims beyond the first (``batch`` of them) become extra rows."""
    rows = batch * (math.prod(x[1:-1]) if len(x) > 2 else 1)
    return ConvShape(N=rows, G=1, C=x[-1], M=out_features, Hin=1, Win=1, R=1, S=1, E=1, F=1)


def _parameter(gm: fx.GraphModule, node: fx.Node) -> torch.Tensor | None:
    """The weight of a functional conv/linear call when it is the model's own tensor (a get_attr), for its
    zero share; None when it is computed in the graph."""
    weight = node.args[1] if len(node.args) > 1 else node.kwargs.get("weight")
    if not (isinstance(weight, fx.Node) and weight.op == "get_attr"):
        return None
    try:
        value = gm.get_parameter(str(weight.target))
    except AttributeError:
        try:
            value = gm.get_buffer(str(weight.target))
        except AttributeError:
            return None
    return value if isinstance(value, torch.Tensor) else None


class _Walker:
    def __init__(self, batch: int, traced: int) -> None:
        self.batch = batch
        self.traced = traced  # the batch the shapes were propagated at
        self.ops: list[Op] = []

    def _lead(self, shape: tuple[int, ...]) -> int:
        """A tensor's leading dim at ``batch`` samples. It is the batch only as traced: a model may fold
        other data into it (two views as 2N images, positions as rows of a per-position Linear)."""
        return max(1, round(self.batch * shape[0] / self.traced))

    def _elems(self, shape: tuple[int, ...]) -> int:
        """A tensor's elements at ``batch`` samples."""
        return self._lead(shape) * _numel_per_sample(shape) if shape else self.batch

    def walk(self, gm: fx.GraphModule, prefix: str = "", role: str | None = None) -> None:
        modules = dict(gm.named_modules())
        by_node: dict[fx.Node, Op] = {}
        for node in gm.graph.nodes:
            if node.op in ("placeholder", "output", "get_attr"):
                continue
            node_role = node.meta.get("role", role)
            name = prefix + node.name
            op = self._classify(gm, modules, node, name, node_role, by_node)
            if op is not None:
                by_node[node] = op
                self.ops.append(op)
        self._link_consumers(gm, by_node)

    # -- per node ------------------------------------------------------------------------------
    def _classify(self, gm: fx.GraphModule, modules: dict[str, nn.Module], node: fx.Node, name: str,
                  role: str | None, by_node: dict[fx.Node, Op]) -> Op | None:
        out = _shape(node)
        first = node.args[0] if node.args else None
        x = _shape(first)
        if node.op == "call_module":
            mod = modules[node.target]
            sub = getattr(mod, "routed_subgraph", None)
            if isinstance(sub, fx.GraphModule):
                return self._recurse(sub, node, name, role)
            if isinstance(mod, (nn.Conv2d, nn.Conv1d)):
                self._need(node, x, out)
                shape = conv_shape(self._lead(x), x, out, tuple(mod.weight.shape), mod.groups, mod.stride,
                                   mod.padding, mod.dilation)
                return self._layer(node, name, role, shape, mod.weight, str(node.target), "conv")
            if isinstance(mod, nn.Linear):
                self._need(node, x, out)
                return self._layer(node, name, role, linear_shape(self._lead(x), x, mod.out_features),
                                   mod.weight, str(node.target), "linear")
            if isinstance(mod, (nn.BatchNorm2d, nn.BatchNorm1d)):
                return self._fold_bn(node, name, role, by_node)
            if isinstance(mod, _FREE_MODULES):
                return None
            if isinstance(mod, _POOL_MODULES):
                return self._move(node, name, role, "pool", type(mod).__name__)
            if not type(mod).__module__.startswith("torch.nn"):
                traced = self._trace_custom(mod, node)
                if traced is not None:  # a user-defined leaf (e.g. the selector): lower what it holds
                    self.walk(traced, prefix=name + ".", role=role)
                    return None
            return self._unmapped(node, name, role, type(mod).__name__)
        if node.op == "call_function":
            fn = node.target
            if fn in _CONV_FUNCS:
                w = _shape(node.args[1] if len(node.args) > 1 else node.kwargs.get("weight"))
                self._need(node, x, out)
                if w is None:
                    return self._unmapped(node, name, role, getattr(fn, "__name__", str(fn)))
                names = ("bias", "stride", "padding", "dilation", "groups")
                kw = dict(zip(names, node.args[2:], strict=False))
                kw.update(node.kwargs)
                shape = conv_shape(self._lead(x), x, out, w, int(kw.get("groups", 1)), kw.get("stride", 1),
                                   kw.get("padding", 0), kw.get("dilation", 1))
                return self._layer(node, name, role, shape, _parameter(gm, node), fn.__name__, "conv")
            if fn in _LINEAR_FUNCS:
                w = _shape(node.args[1] if len(node.args) > 1 else node.kwargs.get("weight"))
                self._need(node, x, out)
                if w is None:
                    return self._unmapped(node, name, role, "linear")
                return self._layer(node, name, role, linear_shape(self._lead(x), x, w[0]), _parameter(gm, node),
                                   "linear", "linear")
            if fn in _FREE_FUNCS:
                return None
            if fn in _POOL_FUNCS:
                return self._move(node, name, role, "pool", getattr(fn, "__name__", str(fn)))
            if fn in _ADD_FUNCS:
                if sum(1 for a in node.args if isinstance(a, fx.Node) and _shape(a)) < 2:
                    return None  # adding a constant: an elementwise op folded into the ofmap path
                return self._move(node, name, role, "add", "add")
            if fn in _CAT_FUNCS:
                return self._move(node, name, role, "concat", "cat")
            return self._unmapped(node, name, role, getattr(fn, "__name__", str(fn)))
        if node.op == "call_method":
            if node.target in _FREE_METHODS:
                return None
            if node.target == "mean":
                return self._move(node, name, role, "pool", "mean")
            if node.target in ("add", "add_"):
                return self._move(node, name, role, "add", "add")
            return self._unmapped(node, name, role, f".{node.target}()")
        return self._unmapped(node, name, role, str(node.target))

    def _need(self, node: fx.Node, *shapes: Any) -> None:
        if any(s is None for s in shapes):
            raise UserError(f"node {node.name} has no shape: trace the model with example inputs "
                            "(prunec.frontend.trace(model, x)) before lowering")

    def _layer(self, node: fx.Node, name: str, role: str | None, shape: ConvShape,
               weight: torch.Tensor | None, target: str, kind: str) -> Op:
        if kind == "conv" and shape.G > 1 and shape.C == 1:
            kind = "depthwise"
        ws = node.meta.get("weight_sparsity")
        return Op(name=name, kind=kind, role=role, shape=shape, target=target, weight=weight,
                  weight_sparsity=float(ws) if ws is not None else None,
                  out_elems=self._elems(_shape(node) or (self.traced,)))

    def _fold_bn(self, node: fx.Node, name: str, role: str | None, by_node: dict[fx.Node, Op]) -> Op | None:
        src = node.args[0]
        prev = by_node.get(src) if isinstance(src, fx.Node) else None
        if prev is not None and prev.kind in ("conv", "depthwise", "linear") and len(src.users) == 1:
            prev.folded.append(name)
            by_node[node] = prev  # the folded conv now stands for the BN's output
            return None
        return self._unmapped(node, name, role, "BatchNorm (not after a conv/linear)")

    def _move(self, node: fx.Node, name: str, role: str | None, kind: str, target: str) -> Op:
        ins = []
        for a in node.args:
            for item in (a if isinstance(a, (list, tuple)) else [a]):
                s = _shape(item)
                if s is not None:  # a parameter or buffer is read once, whatever the batch
                    ins.append(math.prod(s) if item.op == "get_attr" else self._elems(s))
        out = _shape(node)
        return Op(name=name, kind=kind, role=role, target=target, in_elems=ins,
                  out_elems=self._elems(out) if out else 0)

    def _unmapped(self, node: fx.Node, name: str, role: str | None, target: str) -> Op:
        return Op(name=name, kind="unmapped", role=role, target=f"{node.op}:{target}")

    def _trace_custom(self, mod: nn.Module, node: fx.Node) -> fx.GraphModule | None:
        """Trace a custom submodule that was kept as a leaf, with shapes from its call site."""
        from prunec.frontend import propagate_shapes

        shapes = [_shape(a) for a in node.args]
        if not shapes or any(s is None for s in shapes) or node.kwargs:
            return None
        try:
            sub = fx.symbolic_trace(_fixed_arity(mod, len(shapes)))
            propagate_shapes(sub, [torch.zeros(s) for s in shapes])
        except Exception:  # noqa: BLE001 - untraceable: reported as unmapped instead
            return None
        return sub

    def _recurse(self, sub: fx.GraphModule, node: fx.Node, name: str, role: str | None) -> None:
        """Lower the routed mild network in place; its layers get role 'mild'."""
        from prunec.frontend import propagate_shapes

        x = _shape(node.args[0]) if node.args else None
        if x is None:
            raise UserError(f"routed node {node.name} has no input shape: propagate shapes first")
        needs = any(n.op != "placeholder" and n.op != "output" and "tensor_meta" not in n.meta
                    for n in sub.graph.nodes)
        if needs:
            dtype = getattr(node.args[0].meta.get("tensor_meta"), "dtype", torch.float32)
            propagate_shapes(sub, torch.zeros(x, dtype=dtype))
        self.walk(sub, prefix=name + ".", role=role or "mild")
        return None

    def _link_consumers(self, gm: fx.GraphModule, by_node: dict[fx.Node, Op]) -> None:
        """For each mapped layer, the mapped layer that reads its ofmap (through free ops/pools)."""
        for node, op in by_node.items():
            if op.kind not in ("conv", "depthwise", "linear") or op.next_layer is not None:
                continue
            frontier, seen = list(node.users), set()
            while frontier:
                user = frontier.pop(0)
                if user in seen:
                    continue
                seen.add(user)
                nxt = by_node.get(user)
                if nxt is op:
                    frontier.extend(user.users)
                elif nxt is not None and nxt.kind in ("conv", "depthwise", "linear"):
                    op.next_layer = nxt.name
                    break
                elif nxt is None or nxt.kind == "pool":
                    frontier.extend(user.users)


def _fixed_arity(mod: nn.Module, n: int) -> nn.Module:
    """Wrap ``mod`` in a module whose forward takes exactly ``n`` positional tensors.

    torch.fx cannot trace a ``forward(self, *args)``; at a call site the arity is known.
    """
    names = ", ".join(f"x{i}" for i in range(n))
    namespace: dict[str, Any] = {}
    exec(f"def forward(self, {names}):\n    return self.inner({names})\n", namespace)  # noqa: S102
    wrapper = type("FixedArity", (nn.Module,), {"forward": namespace["forward"]})()
    wrapper.inner = mod
    return wrapper


def extract_ops(gm: fx.GraphModule, batch: int) -> list[Op]:
    """The operations of ``gm`` (shapes already propagated), scaled to ``batch`` samples."""
    inputs = [s for n in gm.graph.nodes if n.op == "placeholder" and (s := _shape(n))]
    walker = _Walker(batch, inputs[0][0] if inputs else batch)
    walker.walk(gm)
    return walker.ops


__all__ = ["ConvShape", "Op", "extract_ops", "conv_shape", "linear_shape"]
