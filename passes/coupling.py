"""Channel-coupling analysis: which output channels must be removed together.

Every tensor's channel dimension carries an array of *atom* ids. An atom is one output
channel of a convolution or linear layer (a *source*), or an opaque channel (graph input,
result of an op we do not understand). Ops propagate these arrays (identity for BN,
activations and pooling; concatenation for ``cat``; repetition for ``flatten``; a generic
replay for reshape/permute), and ops that force positions to go together (residual
``add``/``mul``, grouped convolutions, ``chunk``, channel shuffle) add edges between atoms
in a networkx graph. Connected atoms form a *unit* (removed whole); units sharing a source
form a *group* (pruned at one ratio). A group containing an atom that must stay (graph
input or output, an op we do not understand, a user-ignored layer) is kept whole.

The analysis only reads the graph and its ``tensor_meta`` shapes (run ShapeProp first).
"""

from __future__ import annotations

import operator
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import networkx as nx
import numpy as np
import torch
import torch.nn.functional as F
from torch import fx, nn

from prunec.errors import UserError

# ----------------------------------------------------------------------------- data


@dataclass
class ChannelState:
    """The channel atoms a tensor carries: ``labels`` spans tensor dims ``axes`` (sorted)."""

    axes: tuple[int, ...]
    labels: np.ndarray


@dataclass
class Source:
    """A layer whose output channels are new atoms ``start .. start+size-1``."""

    node: str
    module: str
    start: int
    size: int


@dataclass
class ChannelGroup:
    """Sources whose channels are coupled; ``units`` are atom sets removed together."""

    sources: list[str]
    modules: list[str]
    unit_ids: np.ndarray
    prunable: bool
    reason: str | None = None

    @property
    def size(self) -> int:
        return len(self.unit_ids)


@dataclass
class CouplingReport:
    """Result of :func:`analyze`: groups, unprunable ops, and per-node channel states."""

    groups: list[ChannelGroup]
    unprunable: list[tuple[str, str]]
    states: dict[str, Any]
    sources: dict[str, Source]
    n_atoms: int
    unit_id: np.ndarray  # atom -> representative atom of its unit
    blocked: np.ndarray  # atom -> bool, atom may not be removed
    module_io: dict[str, tuple[np.ndarray | None, np.ndarray | None]] = field(default_factory=dict)
    reshapes: dict[str, ChannelState] = field(default_factory=dict)
    splits: dict[str, list[np.ndarray]] = field(default_factory=dict)
    # the unprunable ops that do keep some layer's channels whole (an op that only blocks its own
    # constant output, say torch.zeros, keeps nothing whole)
    keeping_whole: list[tuple[str, str]] = field(default_factory=list)

    def unit_atoms(self, unit: int) -> np.ndarray:
        return np.flatnonzero(self.unit_id == unit)

    def summary(self) -> str:
        prunable = sum(g.prunable for g in self.groups)
        return (f"{len(self.groups)} channel groups ({prunable} prunable), "
                f"{len(self.keeping_whole)} ops keep channels whole")


# ----------------------------------------------------------------------------- op tables

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_NORM = (nn.modules.batchnorm._BatchNorm, nn.modules.instancenorm._InstanceNorm)
#: Methods through which a subclass of a torch layer changes what the layer computes.
_COMPUTING = {"forward", "_conv_forward", "__call__", "_call_impl"}


def _own_computation(mod: nn.Module) -> str:
    """What in ``mod`` computes otherwise than the torch layer it subclasses ("" for nothing): a
    weight-standardised Conv2d (its own ``forward`` or ``_conv_forward``) or a parametrized weight
    is not a Conv2d to prune, while a subclass that only builds or initialises the layer is."""
    from torch.nn.utils import parametrize

    if parametrize.is_parametrized(mod):
        return "parametrized weights"
    own: list[str] = []
    for cls in type(mod).__mro__:
        if cls.__module__.startswith("torch."):
            if cls is nn.Module:  # not a torch layer at all: an unknown layer type
                return ""
            break
        own += [name for name in vars(cls) if name in _COMPUTING]
    return ", ".join(f"{name}()" for name in sorted(set(own)))


_IDENTITY_MODULES = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish,
    nn.Sigmoid, nn.Tanh, nn.Hardswish, nn.Hardsigmoid, nn.Hardtanh, nn.Softplus, nn.Identity,
    nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout,
    nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
    nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d,
    nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d,
    nn.Upsample, nn.LPPool1d, nn.LPPool2d, nn.LPPool3d, nn.ZeroPad1d, nn.ZeroPad2d, nn.ZeroPad3d,
    nn.ConstantPad1d, nn.ConstantPad2d, nn.ConstantPad3d, nn.ReflectionPad1d, nn.ReflectionPad2d,
    nn.ReflectionPad3d, nn.ReplicationPad1d, nn.ReplicationPad2d, nn.ReplicationPad3d,
)
_IDENTITY_FUNCS = {
    F.relu, F.relu6, F.leaky_relu, F.elu, F.selu, F.gelu, F.silu, F.mish, F.hardswish,
    F.hardsigmoid, F.hardtanh, F.softplus, F.sigmoid, F.tanh, torch.relu, torch.sigmoid,
    torch.tanh, torch.abs, torch.neg, torch.exp, torch.clamp, torch.square, operator.neg,
    F.dropout, F.dropout1d, F.dropout2d, F.dropout3d, F.max_pool1d, F.max_pool2d, F.max_pool3d,
    F.avg_pool1d, F.avg_pool2d, F.avg_pool3d, F.adaptive_avg_pool1d, F.adaptive_avg_pool2d,
    F.adaptive_avg_pool3d, F.adaptive_max_pool1d, F.adaptive_max_pool2d, F.interpolate,
    F.relu_, F.elu_, F.leaky_relu_, F.hardtanh_, F.celu, F.rrelu, F.logsigmoid, F.softsign,
    F.tanhshrink, F.hardshrink, F.softshrink, F.alpha_dropout, F.feature_alpha_dropout,
    torch.clip, torch.selu, torch.celu, torch.rrelu, torch.dropout,
    F.adaptive_max_pool3d, F.lp_pool1d, F.lp_pool2d, F.lp_pool3d,
    # the same ops called from the torch namespace (torch.max_pool2d is not F.max_pool2d)
    torch.max_pool1d, torch.max_pool2d, torch.max_pool3d, torch.avg_pool1d, torch.adaptive_avg_pool1d,
    # tensors shaped like their input: removing an input channel removes the same output channel
    torch.zeros_like, torch.ones_like, torch.full_like, torch.empty_like, torch.rand_like, torch.randn_like,
}
# poolings (and paddings) among them, by how many trailing dims they act on: on an input with fewer batch
# dims than expected (torch treats (C, L) as an unbatched 1-d input) they would mix channels
_POOLED_DIMS = {
    F.max_pool1d: 1, F.max_pool2d: 2, F.max_pool3d: 3, F.avg_pool1d: 1, F.avg_pool2d: 2, F.avg_pool3d: 3,
    F.adaptive_avg_pool1d: 1, F.adaptive_avg_pool2d: 2, F.adaptive_avg_pool3d: 3, F.adaptive_max_pool1d: 1,
    F.adaptive_max_pool2d: 2, F.adaptive_max_pool3d: 3, torch.max_pool1d: 1, torch.max_pool2d: 2,
    torch.max_pool3d: 3, torch.avg_pool1d: 1, torch.adaptive_avg_pool1d: 1, F.lp_pool1d: 1, F.lp_pool2d: 2,
    F.lp_pool3d: 3,
}
_POOLED_DIMS_MODULES = {
    nn.MaxPool1d: 1, nn.MaxPool2d: 2, nn.MaxPool3d: 3, nn.AvgPool1d: 1, nn.AvgPool2d: 2, nn.AvgPool3d: 3,
    nn.AdaptiveAvgPool1d: 1, nn.AdaptiveAvgPool2d: 2, nn.AdaptiveAvgPool3d: 3, nn.AdaptiveMaxPool1d: 1,
    nn.AdaptiveMaxPool2d: 2, nn.AdaptiveMaxPool3d: 3, nn.LPPool1d: 1, nn.LPPool2d: 2, nn.LPPool3d: 3,
    # paddings: on fewer batch dims than expected they would pad (and so change) the channel dim
    nn.ZeroPad1d: 1, nn.ZeroPad2d: 2, nn.ZeroPad3d: 3, nn.ConstantPad1d: 1, nn.ConstantPad2d: 2,
    nn.ConstantPad3d: 3, nn.ReflectionPad1d: 1, nn.ReflectionPad2d: 2, nn.ReflectionPad3d: 3,
    nn.ReplicationPad1d: 1, nn.ReplicationPad2d: 2, nn.ReplicationPad3d: 3,
}
_IDENTITY_METHODS = {
    "relu", "relu_", "sigmoid", "sigmoid_", "tanh", "tanh_", "abs", "neg", "exp", "clamp",
    "clamp_", "contiguous", "clone", "float", "double", "half", "detach", "square",
    "expand_as", "type_as",
}
_BINARY_FUNCS = {
    operator.add, operator.sub, operator.mul, operator.truediv, operator.iadd, operator.isub,
    operator.imul, operator.itruediv, torch.add, torch.sub, torch.mul, torch.div,
    torch.maximum, torch.minimum,
}
_BINARY_METHODS = {"add", "add_", "sub", "sub_", "mul", "mul_", "div", "div_"}
_RESHAPE_FUNCS = {torch.flatten, torch.reshape, torch.squeeze, torch.unsqueeze}
_RESHAPE_METHODS = {"view", "reshape", "flatten", "squeeze", "unsqueeze", "expand"}
_SIZED_METHODS = {"view", "reshape", "expand"}  # their literal size arguments may need rewriting
_PERMUTE_FUNCS = {torch.permute: "permute", torch.transpose: "transpose", torch.movedim: "movedim"}
_PERMUTE_METHODS = {"permute", "transpose", "movedim"}
_REDUCE = {torch.mean: "mean", torch.sum: "sum", torch.amax: "amax", torch.amin: "amin"}
_REDUCE_METHODS = {"mean", "sum", "amax", "amin"}
_SHAPE_QUERIES = {"size", "dim", "numel"}


# ----------------------------------------------------------------------------- helpers


def _meta(node: Any) -> Any:
    return node.meta.get("tensor_meta") if isinstance(node, fx.Node) else None


def _shape(node: Any) -> tuple[int, ...] | None:
    meta = _meta(node)
    return tuple(meta.shape) if hasattr(meta, "shape") else None


def _arg(node: fx.Node, index: int, name: str, default: Any = None) -> Any:
    if len(node.args) > index:
        return node.args[index]
    return node.kwargs.get(name, default)


def _nodes_in(value: Any) -> list[fx.Node]:
    found: list[fx.Node] = []
    fx.node.map_arg(value, lambda n: found.append(n) or n)
    return found


def _iter_states(state: Any) -> Iterable[ChannelState]:
    if isinstance(state, ChannelState):
        yield state
    elif isinstance(state, (tuple, list)):
        for item in state:
            yield from _iter_states(item)


def _norm_dim(dim: int, ndim: int) -> int:
    return dim + ndim if dim < 0 else dim


# ----------------------------------------------------------------------------- analyzer


class _Analyzer:
    """One forward walk over the graph, propagating channel states node by node."""

    def __init__(self, gm: fx.GraphModule, ignore: Iterable[str]) -> None:
        self.gm = gm
        self.modules = dict(gm.named_modules())
        self.ignore = set(ignore)
        self.n_atoms = 0
        self.edges: list[np.ndarray] = []
        self.blocked_atoms: list[tuple[np.ndarray, str]] = []
        self.unprunable: list[tuple[str, str]] = []
        self.states: dict[str, Any] = {}
        self.sources: dict[str, Source] = {}
        self.module_io: dict[str, tuple[np.ndarray | None, np.ndarray | None]] = {}
        self.reshapes: dict[str, ChannelState] = {}
        self.splits: dict[str, list[np.ndarray]] = {}
        calls = Counter(n.target for n in gm.graph.nodes if n.op == "call_module")
        attrs = [n.target for n in gm.graph.nodes if n.op == "get_attr"]
        self.shared = {t for t, c in calls.items() if c > 1}
        self.shared |= {t for t in calls if any(a.startswith(f"{t}.") for a in attrs)}

    # -- atoms -------------------------------------------------------------------------

    def fresh(self, n: int) -> np.ndarray:
        ids = np.arange(self.n_atoms, self.n_atoms + n, dtype=np.int64)
        self.n_atoms += n
        return ids

    def unify(self, a: np.ndarray, b: np.ndarray) -> None:
        a, b = np.asarray(a).ravel(), np.asarray(b).ravel()
        differ = a != b
        if differ.any():
            self.edges.append(np.stack([a[differ], b[differ]], axis=1))

    def unify_columns(self, labels: np.ndarray) -> None:
        """Tie every position along the last axis across all other axes (aligned removal)."""
        cols = labels.reshape(-1, labels.shape[-1])
        for row in cols[1:]:
            self.unify(cols[0], row)

    def block(self, node: fx.Node, reason: str, states: Any) -> None:
        atoms = [s.labels.ravel() for s in _iter_states(states)]
        if atoms:
            self.blocked_atoms.extend((a, f"{node.name}: {reason}") for a in atoms)
            if (node.name, reason) not in self.unprunable:
                self.unprunable.append((node.name, reason))

    def unknown(self, node: fx.Node, reason: str) -> Any:
        """An op we cannot see through: its inputs stay whole and its output is opaque."""
        self.block(node, reason, [self.states.get(n.name) for n in _nodes_in((node.args, node.kwargs))])
        if (node.name, reason) not in self.unprunable:
            self.unprunable.append((node.name, reason))
        return self.opaque(node, reason)

    def opaque(self, node: fx.Node, reason: str) -> Any:
        meta = _meta(node)

        def make(m: Any) -> Any:
            if hasattr(m, "shape"):
                if len(m.shape) < 2:
                    return None
                st = ChannelState((1,), self.fresh(int(m.shape[1])))
                self.blocked_atoms.append((st.labels, f"{node.name}: {reason}"))
                return st
            if isinstance(m, (tuple, list)):
                return tuple(make(x) for x in m)
            return None

        return make(meta)

    # -- walk --------------------------------------------------------------------------

    def run(self) -> None:
        for node in self.gm.graph.nodes:
            self.states[node.name] = self.visit(node)

    def state(self, value: Any) -> Any:
        return self.states.get(value.name) if isinstance(value, fx.Node) else None

    def visit(self, node: fx.Node) -> Any:
        if node.op == "placeholder":
            return self.opaque_input(node)
        if node.op == "get_attr":
            return None
        if node.op == "output":
            self.block(node, "network output (its channels are kept)",
                       [self.state(n) for n in _nodes_in(node.args)])
            return None
        if node.op == "call_module":
            return self.visit_module(node)
        if node.op == "call_function":
            return self.visit_function(node)
        if node.op == "call_method":
            return self.visit_method(node)
        return self.unknown(node, f"unsupported node kind {node.op}")

    def opaque_input(self, node: fx.Node) -> Any:
        shape = _shape(node)
        if shape is None or len(shape) < 2:
            return None
        st = ChannelState((1,), self.fresh(shape[1]))
        self.blocked_atoms.append((st.labels, f"{node.name}: graph input"))
        return st

    # -- modules -----------------------------------------------------------------------

    def visit_module(self, node: fx.Node) -> Any:
        target = str(node.target)
        mod = self.modules[target]
        st = self.state(node.args[0]) if node.args else None
        if target in self.shared and any(True for _ in mod.parameters(recurse=False)):
            return self.unknown(node, "layer is called more than once or its weights are shared")
        if overridden := _own_computation(mod):
            return self.unknown(node, f"{type(mod).__name__} computes with its own {overridden}")
        if isinstance(mod, _CONV):
            out = self.conv(node, mod, st)
        elif isinstance(mod, nn.Linear):
            out = self.linear(node, mod, st)
        elif isinstance(mod, _NORM):
            out = self.channel_norm(node, mod, st)
        elif isinstance(mod, nn.LayerNorm):
            out = self.layer_norm(node, mod, st)
        elif isinstance(mod, nn.GroupNorm):
            self.block(node, "GroupNorm statistics mix channels", st)
            out = st
        elif isinstance(mod, (nn.Softmax, nn.LogSoftmax)):
            out = self.softmax(node, st, mod.dim)
        elif isinstance(mod, nn.PReLU) and mod.num_parameters == 1:
            out = self.identity(node, st)
        elif isinstance(mod, _IDENTITY_MODULES):
            out = self.identity(node, st, _POOLED_DIMS_MODULES.get(type(mod), 0))
        elif isinstance(mod, nn.Flatten):
            out = self.reshape(node, st)
        else:
            return self.unknown(node, f"unknown layer type {type(mod).__name__}")
        if target in self.ignore:
            self.block(node, "ignored by user", out)
        return out

    def conv(self, node: fx.Node, mod: nn.Module, st: Any) -> Any:
        g, cin, cout = mod.groups, mod.in_channels, mod.out_channels
        in_labels = None
        if st is not None:
            if st.axes == (1,) and st.labels.shape == (cin,):
                in_labels = st.labels
            else:
                self.block(node, "convolution input channels are not on dim 1", st)
        if g == cin and g > 1:  # depthwise: output channel o reads input channel o // m
            if in_labels is None:
                return self.opaque(node, "depthwise convolution of an opaque input")
            out = np.repeat(in_labels, cout // g)
        else:
            if g > 1 and in_labels is not None:
                self.unify_columns(in_labels.reshape(g, cin // g))
            out = self.fresh(cout)
            self.sources[node.name] = Source(node.name, str(node.target), int(out[0]), cout)
            if g > 1:
                self.unify_columns(out.reshape(g, cout // g))
        self.module_io[node.name] = (in_labels, out)
        return ChannelState((1,), out)

    def linear(self, node: fx.Node, mod: nn.Linear, st: Any) -> Any:
        shape = _shape(node)
        if shape is None:
            return self.unknown(node, "linear layer without shape information")
        last = len(shape) - 1
        in_labels = None
        if st is not None:
            if st.axes == (last,) and st.labels.shape == (mod.in_features,):
                in_labels = st.labels
            elif last not in st.axes:
                return st  # channels ride along another dim; this layer mixes features only
            else:
                self.block(node, "linear layer input mixes channels with other dims", st)
        out = self.fresh(mod.out_features)
        self.sources[node.name] = Source(node.name, str(node.target), int(out[0]), mod.out_features)
        self.module_io[node.name] = (in_labels, out)
        return ChannelState((last,), out)

    def channel_norm(self, node: fx.Node, mod: nn.Module, st: Any) -> Any:
        if st is None:
            return None
        if st.axes != (1,) or st.labels.shape != (mod.num_features,):
            self.block(node, "normalisation channels are not on dim 1", st)
            return st
        self.module_io[node.name] = (st.labels, st.labels)
        return st

    def layer_norm(self, node: fx.Node, mod: nn.LayerNorm, st: Any) -> Any:
        shape = _shape(node)
        if st is None or shape is None:
            return st
        normalized = set(range(len(shape) - len(mod.normalized_shape), len(shape)))
        if normalized & set(st.axes):
            self.block(node, "LayerNorm statistics mix these channels", st)
        return st

    # -- functions and methods ---------------------------------------------------------

    def visit_function(self, node: fx.Node) -> Any:
        fn = node.target
        first = self.state(node.args[0]) if node.args else None
        if fn in _IDENTITY_FUNCS:
            return self.identity(node, first, _POOLED_DIMS.get(fn, 0))
        if fn is F.pad:  # pads the last len(pad) // 2 dims, which must not hold channels
            pad = node.args[1] if len(node.args) > 1 else node.kwargs.get("pad")
            if isinstance(pad, (tuple, list)) and pad and all(isinstance(v, int) for v in pad):
                return self.identity(node, first, (len(pad) + 1) // 2)
            return self.unknown(node, "padding by computed amounts")
        if fn in _BINARY_FUNCS:
            return self.binary(node)
        if fn in _RESHAPE_FUNCS:
            return self.reshape(node, first)
        if fn in _PERMUTE_FUNCS:
            return self.permute(node, first, _PERMUTE_FUNCS[fn], node.args[1:])
        if fn in _REDUCE:
            return self.reduce(node, first)
        if fn in (torch.cat, torch.concat):
            return self.cat(node)
        if fn in (torch.chunk, torch.split):
            return self.split(node, first, "chunk" if fn is torch.chunk else "split")
        if fn in (F.softmax, F.log_softmax, torch.softmax):
            return self.softmax(node, first, _arg(node, 1, "dim"))
        if fn is operator.getitem:
            return self.getitem(node)
        if fn is getattr:
            return None
        if _meta(node) is None and not any(self.state(n) for n in _nodes_in(node.args)):
            return None  # arithmetic on sizes and other non-tensors
        return self.unknown(node, f"unknown function {getattr(fn, '__name__', fn)}")

    def visit_method(self, node: fx.Node) -> Any:
        name = str(node.target)
        first = self.state(node.args[0])
        if name in _SHAPE_QUERIES:
            return None
        if name in _IDENTITY_METHODS:
            return self.identity(node, first)
        if name in _BINARY_METHODS:
            return self.binary(node)
        if name in _RESHAPE_METHODS:
            return self.reshape(node, first)
        if name in _PERMUTE_METHODS:
            return self.permute(node, first, name, node.args[1:])
        if name in _REDUCE_METHODS:
            return self.reduce(node, first)
        if name in ("chunk", "split"):
            return self.split(node, first, name)
        if name in ("softmax", "log_softmax"):
            return self.softmax(node, first, _arg(node, 1, "dim"))
        return self.unknown(node, f"unknown method .{name}()")

    # -- op families -------------------------------------------------------------------

    def identity(self, node: fx.Node, st: Any, pooled: int = 0) -> Any:
        """A channel-wise op; ``pooled``: how many trailing dims it pools over (none may hold channels).

        With another tensor among its arguments (``clamp(max=t)``, ``expand_as(t)``) it is an elementwise
        op of both, whose channels go together (``type_as`` reads only the other's dtype)."""
        if node.target != "type_as" and any(_shape(n) is not None for n in _nodes_in((node.args[1:], node.kwargs))):
            return self.binary(node)
        if st is None:
            return None
        shape = _shape(node)
        sizes = zip(st.axes, st.labels.shape, strict=True)
        if shape is None or any(d >= len(shape) or shape[d] != n for d, n in sizes):
            return self.unknown(node, "op changes the channel dimension")
        if pooled and any(d >= len(shape) - pooled for d in st.axes):
            return self.unknown(node, "pooling or padding over the channel dimension")
        return st

    def softmax(self, node: fx.Node, st: Any, dim: Any) -> Any:
        shape = _shape(node)
        if st is None or shape is None:
            return st
        if not isinstance(dim, int) or _norm_dim(dim, len(shape)) in st.axes:
            self.block(node, "softmax normalises over these channels", st)
        return st

    def binary(self, node: fx.Node) -> Any:
        shape = _shape(node)
        if shape is None:
            return None
        out: ChannelState | None = None
        constants: list[tuple[int, ...]] = []
        for arg in _nodes_in((node.args, node.kwargs)):
            arg_shape = _shape(arg)
            if arg_shape is None:
                continue
            st, offset = self.state(arg), len(shape) - len(arg_shape)
            if st is None:
                constants.append((1,) * offset + arg_shape)
                continue
            axes = tuple(a + offset for a in st.axes)
            if any(arg_shape[a] != shape[a + offset] for a in st.axes):
                self.block(node, "channels broadcast against a larger tensor", st)
                continue
            mapped = ChannelState(axes, st.labels)
            if out is None:
                out = mapped
            elif out.axes == mapped.axes and out.labels.shape == mapped.labels.shape:
                self.unify(out.labels, mapped.labels)
            else:
                return self.unknown(node, "operands carry channels on different dims")
        if out is not None and any(c[a] > 1 for c in constants for a in out.axes):
            self.block(node, "a constant tensor spans these channels", out)
        return out

    def ids(self, st: ChannelState, shape: tuple[int, ...]) -> torch.Tensor:
        view = [1] * len(shape)
        for axis, n in zip(st.axes, st.labels.shape, strict=True):
            view[axis] = n
        return torch.from_numpy(st.labels).reshape(view).expand(shape)

    def derive(self, node: fx.Node, st: ChannelState, ids: torch.Tensor, moved: bool = False) -> Any:
        """Read the channel state of a tensor of atom ids produced by a shape op.

        A channel dim split over several dims must lose the same inner indices in every
        outer slice, so those atoms are tied; a pure permutation (``moved``) keeps the ties.
        """
        if np.unique(st.labels).size < 2:
            self.block(node, "shape op on a single channel", st)
            return None
        axes = tuple(d for d in range(ids.dim())
                     if ids.shape[d] > 1 and bool((ids != ids.narrow(d, 0, 1)).any()))
        index = tuple(slice(None) if d in axes else 0 for d in range(ids.dim()))
        labels = ids[index].numpy().copy()
        if len(axes) > 1:
            if np.unique(labels).size != labels.size:
                return self.unknown(node, "reshape mixes channels with other dims")
            if not moved:
                self.unify_columns(labels)
        return ChannelState(axes, labels)

    def reshape(self, node: fx.Node, st: Any) -> Any:
        if st is None:
            return None
        shape, in_shape = _shape(node), _shape(node.args[0])
        if shape is None or in_shape is None:
            return self.unknown(node, "reshape without shape information")
        out = self.derive(node, st, self.ids(st, in_shape).reshape(shape))
        if isinstance(out, ChannelState) and (node.op == "call_method" and node.target in _SIZED_METHODS
                                              or node.target is torch.reshape):
            self.reshapes[node.name] = out
        return out

    def permute(self, node: fx.Node, st: Any, name: str, args: tuple) -> Any:
        if st is None:
            return None
        flat = [a for a in args for a in (a if isinstance(a, (tuple, list)) else [a])]
        if not all(isinstance(a, int) for a in flat) or node.kwargs:
            return self.unknown(node, f"{name} with computed dims")
        ids = getattr(self.ids(st, _shape(node.args[0])), name)(*args)
        return self.derive(node, st, ids, moved=True)

    def reduce(self, node: fx.Node, st: Any) -> Any:
        if st is None:
            return None
        in_shape = _shape(node.args[0])
        dim = _arg(node, 1, "dim")
        keep = bool(_arg(node, 2, "keepdim", False))
        if dim is None or in_shape is None:
            return self.unknown(node, "reduction over all dims mixes channels")
        dims = {_norm_dim(d, len(in_shape)) for d in (dim if isinstance(dim, (tuple, list)) else [dim])}
        if dims & set(st.axes):
            return self.unknown(node, "reduction over the channel dim")
        axes = st.axes if keep else tuple(a - sum(d < a for d in dims) for a in st.axes)
        return ChannelState(axes, st.labels)

    def cat(self, node: fx.Node) -> Any:
        tensors = _arg(node, 0, "tensors")
        shape = _shape(node)
        states = [self.state(t) for t in tensors]
        if shape is None or not states:
            return self.unknown(node, "cat without shape information")
        if all(s is None for s in states):
            return None
        dim = _norm_dim(_arg(node, 1, "dim", 0), len(shape))
        if any(s is None or len(s.axes) != 1 or s.axes != states[0].axes for s in states):
            return self.unknown(node, "cat of tensors with different channel layouts")
        if dim in states[0].axes:
            return ChannelState(states[0].axes, np.concatenate([s.labels for s in states]))
        for s in states[1:]:
            if s.labels.shape != states[0].labels.shape:
                return self.unknown(node, "cat of tensors with different channel counts")
            self.unify(states[0].labels, s.labels)
        return states[0]

    def split(self, node: fx.Node, st: Any, kind: str) -> Any:
        metas = _meta(node)
        if st is None or not isinstance(metas, (tuple, list)):
            return None if st is None else self.unknown(node, f"{kind} without shape information")
        in_shape = _shape(node.args[0])
        dim = _norm_dim(_arg(node, 2, "dim", 0), len(in_shape))
        if dim not in st.axes:
            return tuple(st for _ in metas)
        if len(st.axes) != 1:
            return self.unknown(node, f"{kind} of a reshaped channel dim")
        sizes = [int(m.shape[dim]) for m in metas]
        bounds = np.cumsum([0, *sizes])
        parts = [st.labels[bounds[i]:bounds[i + 1]] for i in range(len(sizes))]
        sections = _arg(node, 1, "split_size_or_sections")
        if kind == "chunk" or isinstance(sections, int):
            if len(set(sizes)) != 1:
                return self.unknown(node, f"{kind} into unequal parts")
            for part in parts[1:]:
                self.unify(parts[0], part)
        elif not all(isinstance(s, int) for s in sections):
            return self.unknown(node, "split with computed sizes")
        if kind == "split":
            self.splits[node.name] = parts
        return tuple(ChannelState(st.axes, p) for p in parts)

    def getitem(self, node: fx.Node) -> Any:
        base, index = node.args
        st = self.state(base)
        if isinstance(st, tuple):
            return st[index] if isinstance(index, int) else self.unknown(node, "computed index")
        if st is None:
            return None
        shape = _shape(base)
        parts = index if isinstance(index, tuple) else (index,)
        if shape is None or _nodes_in(index) or any(isinstance(i, torch.Tensor) for i in parts):
            return self.unknown(node, "tensor indexing with computed indices")
        if any(isinstance(i, (list, range)) for i in parts):  # positions written as numbers, which pruning moves
            return self.unknown(node, "tensor indexing with a list of positions")
        try:
            out = self.derive(node, st, self.ids(st, shape)[index])
        except (IndexError, TypeError) as exc:
            return self.unknown(node, f"tensor indexing ({exc})")
        if not isinstance(out, ChannelState) or not np.array_equal(np.sort(out.labels.ravel()),
                                                                    np.sort(st.labels.ravel())):
            return self.unknown(node, "indexing selects a subset of channels")
        return out

    # -- result ------------------------------------------------------------------------

    def report(self) -> CouplingReport:
        n = self.n_atoms
        unit_id = np.arange(n, dtype=np.int64)
        graph = nx.Graph()
        if self.edges:
            pairs = np.unique(np.sort(np.concatenate(self.edges), axis=1), axis=0)
            graph.add_edges_from(pairs.tolist())
        for comp in nx.connected_components(graph):
            members = np.fromiter(comp, dtype=np.int64)
            unit_id[members] = members.min()
        blocked_units = np.zeros(n, dtype=bool)
        if self.blocked_atoms:
            blocked_units[unit_id[np.concatenate([a for a, _ in self.blocked_atoms])]] = True
        blocked = blocked_units[unit_id]

        # sources joined by a shared multi-atom unit form one group
        sizes = np.bincount(unit_id, minlength=n)
        joins = nx.Graph()
        joins.add_nodes_from(("s", s) for s in self.sources)
        for name, src in self.sources.items():
            units = np.unique(unit_id[src.start:src.start + src.size])
            joins.add_edges_from((("s", name), ("u", int(u))) for u in units[sizes[units] > 1])
        reasons = self.block_reasons(unit_id)
        groups = []
        for comp in nx.connected_components(joins):
            names = sorted((k for kind, k in comp if kind == "s"),
                           key=lambda s: self.sources[s].start)
            atoms = np.concatenate([np.arange(self.sources[s].start,
                                              self.sources[s].start + self.sources[s].size)
                                    for s in names])
            units = np.unique(unit_id[atoms])
            bad = units[blocked_units[units]]
            groups.append(ChannelGroup(
                sources=names, modules=[self.sources[s].module for s in names], unit_ids=units,
                prunable=bad.size == 0, reason=reasons.get(int(bad[0])) if bad.size else None))
        groups.sort(key=lambda g: self.sources[g.sources[0]].start)
        return CouplingReport(groups, self.unprunable, self.states, self.sources, n, unit_id,
                              blocked, self.module_io, self.reshapes, self.splits,
                              self.keeping_whole(unit_id))

    def keeping_whole(self, unit_id: np.ndarray) -> list[tuple[str, str]]:
        """The unprunable ops whose blocked atoms share a unit with some layer's output channels."""
        source_units = np.unique(unit_id[np.concatenate(
            [np.arange(s.start, s.start + s.size) for s in self.sources.values()] or [np.zeros(0, np.int64)])])
        blocking: set[str] = set()
        for atoms, message in self.blocked_atoms:
            if message not in blocking and np.isin(unit_id[atoms], source_units).any():
                blocking.add(message)
        return [(name, why) for name, why in self.unprunable if f"{name}: {why}" in blocking]

    def block_reasons(self, unit_id: np.ndarray) -> dict[int, str]:
        """The first reason that blocked each blocked unit."""
        reasons: dict[int, str] = {}
        for atoms, reason in self.blocked_atoms:
            for u in np.unique(unit_id[atoms]).tolist():
                reasons.setdefault(u, reason)
        return reasons


def analyze(gm: fx.GraphModule, ignore: Iterable[str] = ()) -> CouplingReport:
    """Find the coupled channel groups of ``gm`` (needs ShapeProp's ``tensor_meta``).

    ``ignore`` names modules (qualified names) whose output channels must be kept.
    """
    if not any("tensor_meta" in n.meta for n in gm.graph.nodes if n.op == "placeholder"):
        raise UserError("channel analysis needs shapes: trace the model with example inputs first")
    analyzer = _Analyzer(gm, ignore)
    analyzer.run()
    return analyzer.report()


__all__ = ["analyze", "CouplingReport", "ChannelGroup", "ChannelState", "Source"]
