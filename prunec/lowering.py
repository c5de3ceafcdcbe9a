"""Lowering: a model -> a hardware target's program (per-layer mapping, accesses, energy).

The IR (``LoweredProgram.to_dict()``)::

    {"schema_version": 1, "target": "eyeriss", "batch": N, "hardware": {...}, "options": {...},
     "layers": [{"name", "kind", "role", "shape", "macs", "active_pes", "mapping",
                 "accesses": {"dram", "glb", "array", "rf"},          # 16-bit words, all types
                 "accesses_by_type": {"ifmap"|"filter"|"psum": {level: words}},
                 "energy": {"mac", "rf", "array", "glb", "dram", "static", "total"},  # whole batch
                 "energy_per_inference", "cycles", "latency_ms", "sparsity", ...}, ...],
     "unmapped": [{"name", "node", "role"}],
     "totals": {"macs", "energy", "energy_per_inference", "cycles", "latency_ms", ...}}

Energy is in the hardware file's unit (normalized: one MAC = 1). ``totals.energy`` is for
the whole batch, ``totals.energy_per_inference`` = energy / batch. A dynamic model (nodes
with ``meta["role"]``) also gets ``totals.by_role`` and, given ``routed_share``,
``totals.expected_energy_per_inference``. Cycles and latency are per batch; ``latency_ms``
(every layer, so for a dynamic model every input sent to mild) and, given ``routed_share``,
``expected_latency_ms`` appear only when the hardware names its ``clock_hz``.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import fx, nn

from prunec.backends.eyeriss.ir import LoweredProgram
from prunec.errors import UserError, is_number
from prunec.terminal import make_console

_MAPPED_MODULES = (nn.Conv1d, nn.Conv2d, nn.Linear)


def _as_tuple(x: torch.Tensor | Sequence[torch.Tensor] | None) -> tuple[torch.Tensor, ...]:
    if x is None:
        return ()
    return (x,) if isinstance(x, torch.Tensor) else tuple(x)


def _has_shapes(gm: fx.GraphModule) -> bool:
    """Every node shape propagation ran on: a tensor's shape, or the type of a non-tensor value
    (``x.size()`` gives an int, which has no shape to record)."""
    return all("tensor_meta" in n.meta or _is_non_tensor(n.meta.get("type"))
               for n in gm.graph.nodes if n.op not in ("placeholder", "output"))


def _conv_output_size(module: nn.modules.conv._ConvNd, size: Sequence[int]) -> tuple[int, ...]:
    """The spatial output size ``module`` gives on an input of spatial ``size`` (torch's formula)."""
    if module.padding == "same":
        return tuple(size)
    pad = (0,) * len(size) if module.padding == "valid" else module.padding
    return tuple((n + 2 * p - d * (k - 1) - 1) // s + 1 for n, p, d, k, s in
                 zip(size, pad, module.dilation, module.kernel_size, module.stride, strict=True))


def _stale_shapes(gm: fx.GraphModule) -> bool:
    """Whether a convolution, linear or batch-norm module no longer has the channels its recorded
    input and output shapes say, or a convolution the output size (a pass replaced it after shape
    propagation)."""
    modules = dict(gm.named_modules())
    for node in gm.graph.nodes:
        module = modules.get(node.target) if node.op == "call_module" else None
        if not isinstance(module, (nn.modules.conv._ConvNd, nn.Linear, nn.modules.batchnorm._BatchNorm)):
            continue
        arg = node.args[0] if node.args else None
        shapes = [getattr(n.meta.get("tensor_meta"), "shape", None) if isinstance(n, fx.Node) else None
                  for n in (arg, node)]
        if any(shape is None or len(shape) < 2 for shape in shapes):
            return True
        (_, c_in, *_), (_, c_out, *_) = shapes
        if isinstance(module, nn.Linear):
            c_in, c_out, want = shapes[0][-1], shapes[1][-1], (module.in_features, module.out_features)
        elif isinstance(module, nn.modules.conv._ConvNd):
            want = (module.in_channels, module.out_channels)
            if not isinstance(module, nn.modules.conv._ConvTransposeMixin) and len(shapes[0]) == len(shapes[1]) and \
                    tuple(shapes[1][2:]) != _conv_output_size(module, shapes[0][2:]):
                return True
        else:
            want = (module.num_features, module.num_features)
        if (c_in, c_out) != want:
            return True
    return False


def _is_non_tensor(kind: Any) -> bool:
    return isinstance(kind, type) and not issubclass(kind, torch.Tensor)



@contextlib.contextmanager
def naming_chip_file(hw: Any) -> Iterator[None]:
    """A :class:`UserError` raised inside (a layer no mapping fits, costs that overflow) names the chip
    file ``hw``: a chip comparison costs on several, and the chip's own name may be the shipped one's."""
    try:
        yield
    except UserError as exc:
        if isinstance(hw, (str, os.PathLike)) and os.fspath(hw) not in str(exc):
            raise UserError(f"{exc} (chip file {os.fspath(hw)})") from None
        name = getattr(hw, "name", None)  # a Hardware object, from the Python API
        if name and not isinstance(hw, (str, os.PathLike)) and str(name) not in str(exc):
            raise UserError(f"{exc} (chip {name})") from None
        raise


def lower(model: nn.Module | fx.GraphModule, example_inputs: torch.Tensor | Sequence[torch.Tensor] | None,
          target: str = "eyeriss", batch: int = 1, hw: Any = None,
          activation_sparsity: Mapping[str, float] | None = None, routed_share: float | None = None,
          **options: Any) -> Any:
    """Lower ``model`` onto ``target`` for ``batch`` inputs shaped like ``example_inputs``.

    ``hw`` is a hardware YAML path (default: the target's shipped chip). ``activation_sparsity``
    maps layer (node) names to the share of zeros in their inputs (see
    :func:`measure_activation_sparsity`); without it no zeros are assumed. Target options
    (Eyeriss: ``zero_gating=True``, ``rlc=True``, ``weight_sparsity=False``) pass through.
    Returns the target's :class:`LoweredProgram`.
    """
    from prunec.backends import get_target
    from prunec.frontend import propagate_shapes, recorded_inputs, trace

    tgt = get_target(target)
    inputs = _as_tuple(example_inputs)
    if getattr(model, "_exported_parts", None) is not None:  # prunec.load_compiled's model
        raise UserError(EXPORTED)
    if isinstance(model, fx.GraphModule):
        gm = model
        if not inputs and (not _has_shapes(gm) or _stale_shapes(gm)):
            inputs = recorded_inputs(gm) or ()  # a pass changed the graph after its shapes were recorded
        if inputs:
            propagate_shapes(gm, inputs)
        elif not _has_shapes(gm):
            raise UserError("the graph has no shapes: pass example_inputs to lower()")
    else:
        if not inputs:
            raise UserError("lowering an nn.Module needs example_inputs to trace it")
        gm = trace(model, inputs)
    if not isinstance(batch, int) or batch < 1:
        raise UserError(f"batch must be a positive integer, got {batch!r}")
    _check_lowering_inputs(gm, activation_sparsity, routed_share)
    with naming_chip_file(hw):
        program = tgt.lower(gm, batch=batch, hw=hw, activation_sparsity=activation_sparsity,
                            routed_share=routed_share, **options)
    if not program.layers and any(n.op == "call_function" and ("aten.conv" in str(n.target)
                                                                or "aten.linear" in str(n.target)
                                                                or "convolution" in str(n.target))
                                  for n in gm.graph.nodes):
        raise UserError(EXPORTED)  # a graph of aten ops: every layer would be silently unmapped
    return program


def read_json(path: str | os.PathLike[str], what: str) -> Any:
    """The JSON file ``path`` (an IR, mappings, zero shares: ``what``), or one clear error."""
    try:
        with open(path) as fh:
            return json.load(fh)
    except FileNotFoundError:
        raise UserError(f"{what} file not found: {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError, OSError) as exc:
        raise UserError(f"{path} is not a readable JSON file: {exc}") from None


def load_ir(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The lowered IR saved in the JSON file ``path``, or one clear error."""
    ir = read_json(path, "IR")
    if isinstance(ir, dict) and ir.get("kind") == "chip_comparison":
        raise UserError(f"{path} is a comparison of chips (`prunec lower --hw A --hw B`), not one IR: its \"irs\" "
                        "list holds the IR on each chip")
    if not isinstance(ir, dict) or not isinstance(ir.get("layers"), list) or not {"target", "batch"} <= set(ir):
        raise UserError(f"{path} is not a lowered IR (it needs 'target', 'batch' and a list of 'layers'); make one "
                        "with `prunec lower -o`, or give a compile's ir.json")
    return ir


def _check_lowering_inputs(gm: fx.GraphModule, activation_sparsity: Mapping[str, float] | None,
                           routed_share: float | None) -> None:
    """What a caller can get wrong and the backend would silently ignore or misuse."""
    for name, share in (activation_sparsity or {}).items():
        if not is_number(share) or not 0 <= share <= 1:
            raise UserError(f"activation_sparsity[{name!r}] must be a share of zeros in [0, 1], got {share!r}")
    if routed_share is not None:
        if not is_number(routed_share) or not 0 <= routed_share <= 1:
            raise UserError(f"routed_share must be between 0 and 1, got {routed_share!r}")
        if not any(n.meta.get("role") for n in gm.graph.nodes):
            raise UserError("routed_share applies only to a dynamic model (mild and aggressive networks); this is "
                            "a single network")


EXPORTED = ("this model holds torch.export (aten-level) graphs, which prunec does not lower: lower the "
            "nn.Module before exporting it; a compile's lowered IR is its DIR/ir.json (`prunec lower DIR --hw FILE` "
            "costs it again)")


def measure_activation_sparsity(model: nn.Module | fx.GraphModule,
                                images: torch.Tensor | Iterable[torch.Tensor],
                                example_inputs: torch.Tensor | None = None) -> dict[str, float]:
    """Share of exact zeros in each mapped layer's input, over calibration ``images``.

    ``images`` is one batch tensor or an iterable of batches (e.g. a DataLoader yielding
    tensors or (tensor, label) pairs). Names match the lowering's layer names, including
    ``<routed node>.<node>`` for the layers of a dynamic model's routed mild network.
    """
    from prunec.frontend import trace

    batches = [images] if isinstance(images, torch.Tensor) else images
    gm: fx.GraphModule | None = model if isinstance(model, fx.GraphModule) else None
    zeros: dict[str, float] = {}
    counts: dict[str, float] = {}
    with torch.no_grad():
        for item in batches:
            x = item[0] if isinstance(item, (tuple, list)) else item
            if gm is None:
                gm = trace(model)
            _SparsityProbe(gm, zeros, counts, "").run(x)
    return {name: zeros[name] / counts[name] for name in zeros if counts[name]}


class _SparsityProbe(fx.Interpreter):
    """Runs the graph and tallies zeros in the first input of each conv/linear node."""

    def __init__(self, gm: fx.GraphModule, zeros: dict, counts: dict, prefix: str) -> None:
        super().__init__(gm)
        self.zeros, self.counts, self.prefix = zeros, counts, prefix
        self.mods = dict(gm.named_modules())

    def run_node(self, n: fx.Node) -> Any:
        if n.op in ("call_module", "call_function") and n.args:
            mapped = (n.op == "call_module" and isinstance(self.mods.get(n.target), _MAPPED_MODULES)) or (
                n.op == "call_function" and n.target in (torch.nn.functional.conv2d,
                                                         torch.nn.functional.conv1d,
                                                         torch.nn.functional.linear, torch.conv2d))
            sub = getattr(self.mods.get(n.target), "routed_subgraph", None) if n.op == "call_module" else None
            if mapped or isinstance(sub, fx.GraphModule):
                x = self.env[n.args[0]] if isinstance(n.args[0], fx.Node) else None
                if isinstance(x, torch.Tensor) and mapped:
                    name = self.prefix + n.name
                    self.zeros[name] = self.zeros.get(name, 0.0) + float((x == 0).sum())
                    self.counts[name] = self.counts.get(name, 0.0) + x.numel()
                elif isinstance(x, torch.Tensor):
                    _SparsityProbe(sub, self.zeros, self.counts, f"{self.prefix}{n.name}.").run(x)
        return super().run_node(n)


_LAYER_NUMBERS = ("macs", "active_pes", "cycles")
_ACCESS_LEVELS = ("dram", "glb", "array", "rf")


def _check_records(layers: list[Any], totals: Mapping[str, Any]) -> None:
    """Refuse, in one line, an IR whose records a table cannot show truthfully: a missing or
    non-numeric field, a negative count, or totals that are not the sums of the layers."""
    def number(value: Any) -> bool:
        return is_number(value) and value >= 0

    for i, rec in enumerate(layers):
        name = rec.get("name") if isinstance(rec, Mapping) else None
        what = f"layer record {name if isinstance(name, str) else i} of the IR"
        if not isinstance(rec, Mapping) or not isinstance(name, str) or not isinstance(rec.get("kind"), str):
            raise UserError(f"{what} is incomplete (each needs a name, kind, {', '.join(_LAYER_NUMBERS)}, "
                            "accesses and energy); lower the model again")
        accesses, energy, mapping = rec.get("accesses"), rec.get("energy"), rec.get("mapping")
        if not (all(number(rec.get(k)) for k in _LAYER_NUMBERS)
                and isinstance(accesses, Mapping) and all(number(accesses.get(k)) for k in _ACCESS_LEVELS)
                and isinstance(energy, Mapping) and number(energy.get("total"))
                and (not mapping or isinstance(mapping, Mapping) and all(k in mapping for k in "mnepqrt"))
                and isinstance(rec.get("role"), (str, type(None)))):
            raise UserError(f"{what} is incomplete or not numbers (needs non-negative {', '.join(_LAYER_NUMBERS)}, "
                            f"accesses {'/'.join(_ACCESS_LEVELS)} and energy total, a text role); lower the model "
                            "again")
    optional = ("energy_per_inference", "latency_ms", "expected_latency_ms", "original_latency_ms", "routed_share",
                "expected_energy_per_inference", "original_energy_per_inference", "energy_reduction")
    by_role = totals.get("by_role") or {}
    if (any(totals.get(k) is not None and not is_number(totals[k]) for k in optional)
            or not isinstance(by_role, Mapping)
            or not all(isinstance(v, Mapping) and is_number(v.get("energy_per_inference")) for v in by_role.values())):
        raise UserError(f"the IR's totals hold a value that is not a number (among {', '.join(optional)}, by_role); "
                        "lower the model again")
    # energies, latencies and shares are never negative (a reduction can be: a dynamic model may cost more)
    negative = [k for k in optional if k != "energy_reduction" and is_number(totals.get(k)) and totals[k] < 0]
    negative += [f"by_role.{role}" for role, v in by_role.items() if v["energy_per_inference"] < 0]
    if negative:
        raise UserError(f"the IR's totals hold a negative {negative[0]}: edited by hand? lower the model again")
    for key, field in (("macs", "macs"), ("energy", None), ("cycles", "cycles")):
        recorded = totals.get(key)
        summed = sum(rec[field] if field else rec["energy"]["total"] for rec in layers)
        if not number(recorded) or not math.isclose(recorded, summed, rel_tol=1e-6, abs_tol=1e-6):
            raise UserError(f"the IR's total {key} ({recorded!r}) is not the sum of its layers' ({summed:.6g}): "
                            "edited by hand? `prunec lower IR.json -o FILE` writes it costed anew")


def check_ir(ir: Mapping[str, Any]) -> tuple[list[Any], Mapping[str, Any]]:
    """The IR's layers and totals, once every record is complete, numeric and summed as lowering
    writes it; one clear error otherwise (a hand-edited IR is shown only when it adds up)."""
    try:
        layers, totals = ir["layers"], ir["totals"]
    except (KeyError, TypeError):
        raise UserError("not a prunec lowered IR: it needs 'layers' and 'totals'") from None
    if not isinstance(layers, list) or not isinstance(totals, Mapping):
        raise UserError("not a prunec lowered IR: 'layers' must be a list and 'totals' an object")
    _check_records(layers, totals)
    if not isinstance(ir.get("unmapped") or [], list):
        raise UserError(f"the IR's unmapped must be a list of nodes, got {ir.get('unmapped')!r}")
    return layers, totals


def render_ir(ir: Mapping[str, Any], console: Any = None) -> None:
    """Print a saved IR (``LoweredProgram.to_dict()``) as rich tables: layers, then totals."""
    from rich.markup import escape
    from rich.table import Table

    console = console or make_console()
    layers, totals = check_ir(ir)
    hardware = ir.get("hardware") if isinstance(ir.get("hardware"), Mapping) else {}
    unit = hardware.get("energy_unit", "normalized")
    dynamic = any(rec.get("role") for rec in layers)
    chip = hardware.get("name")
    # names come from the model and the chip file: printed as written, never read as rich markup
    table = Table(title=escape(f"{ir.get('target', '?')} lowering{f' on {chip}' if chip else ''}, batch "
                               f"{ir.get('batch', '?')} (energy: {unit}, whole batch)"))
    cols = ["layer", *(["role"] if dynamic else []), "kind", "MACs", "PEs", "mapping m/n/e/p/q/r/t",
            "DRAM", "GLB", "array", "RF", "energy", "cycles"]
    for c in cols:
        table.add_column(c, justify="left" if c in ("layer", "role", "kind", "mapping m/n/e/p/q/r/t")
                         else "right")
    for rec in layers:
        mp = rec.get("mapping")
        mtxt = "/".join(str(mp[k]) for k in "mnepqrt") if mp else "-"
        acc = rec["accesses"]
        table.add_row(escape(str(rec["name"])), *([escape(str(rec.get("role") or "-"))] if dynamic else []),
                      escape(str(rec["kind"])),
                      f"{rec['macs']:,}", str(rec["active_pes"]), mtxt,
                      *(f"{acc[k]:.3g}" for k in ("dram", "glb", "array", "rf")),
                      f"{rec['energy']['total']:.4g}", f"{rec['cycles']:.4g}")
    console.print(table)
    tot = Table(title="totals", show_header=False)
    tot.add_column("field")
    tot.add_column("value", justify="right")
    tot.add_row("MACs", f"{totals['macs']:,}")
    tot.add_row("energy (batch)", f"{totals['energy']:.5g}")
    if totals.get("energy_per_inference") is not None:
        tot.add_row("energy per inference", f"{totals['energy_per_inference']:.5g}")
    tot.add_row("cycles", f"{totals['cycles']:.5g}")
    routed = f"routed {totals['routed_share']:.3g}" if totals.get("routed_share") is not None else ""
    every = ", every layer (a dynamic model: every input sent to mild)" if totals.get("by_role") else ""
    latency = [("latency_ms", f"latency per batch (ms){every}"),
               ("expected_latency_ms", f"expected latency per batch (ms, {routed})"),
               ("original_latency_ms", "original network's latency per batch (ms)")]
    energy = [("expected_energy_per_inference", f"expected energy per inference ({routed})"),
              ("original_energy_per_inference", "original network's energy per inference")]
    for key, label in latency:  # the optional totals, where the IR has them
        if totals.get(key) is not None:
            tot.add_row(label, f"{totals[key]:.4g}")
    for role, v in (totals.get("by_role") or {}).items():
        tot.add_row(escape(f"energy per inference, {role}"), f"{v['energy_per_inference']:.5g}")
    for key, label in energy:
        if totals.get(key) is not None:
            tot.add_row(label, f"{totals[key]:.5g}")
    if totals.get("energy_reduction") is not None:
        tot.add_row("energy reduction against the original", f"{totals['energy_reduction']:.1%}")
    unmapped = ir.get("unmapped") or []
    if unmapped:
        tot.add_row("unmapped nodes", escape(", ".join(str(u.get("name", u)) if isinstance(u, Mapping) else str(u)
                                                       for u in unmapped)))
    console.print(tot)


__all__ = ["lower", "load_ir", "read_json", "measure_activation_sparsity", "check_ir", "render_ir",
           "LoweredProgram"]
