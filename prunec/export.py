"""ONNX export of a compiled model.

* :func:`export_onnx_parts` -- ``aggressive.onnx`` (x -> logits, taps), ``selector.onnx``
  ((logits, taps) -> score), ``mild.onnx`` and ``original.onnx``, batch axis dynamic.
  A runtime composes them exactly like :class:`prunec.dynamic.MildRouter`.
* :func:`export_onnx_if` -- one self-contained model for batch size 1: the aggressive
  network and the selector in the main graph, then ``If(score > threshold)`` whose
  then-branch is the mild network's graph (reading the outer input) and whose
  else-branch passes the aggressive logits through. The mild network's weights live in
  the main graph, as outer-scope values of the branch.

Each part comes from the same ``torch.export`` programs as the saved artefact (dynamo
ONNX exporter), so loaded and freshly compiled models export alike. Every file is
checked with ``onnx.checker`` before it is returned.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper

from prunec.artifact import CompiledModel, example_batch, exported_parts, preprocess_spec


def _to_onnx(ep: torch.export.ExportedProgram, inputs: tuple[torch.Tensor, ...], input_names: list[str],
             output_names: list[str]) -> onnx.ModelProto:
    # the exporter logs about optional torchvision ops and deprecations: noise for our users
    quiet = logging.getLogger("torch.onnx")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            program = torch.onnx.export(ep, inputs, dynamo=True, input_names=input_names,
                                        output_names=output_names, verbose=False, optimize=True)
    finally:
        quiet.setLevel(level)
    return program.model_proto


def onnx_parts(compiled: CompiledModel) -> dict[str, onnx.ModelProto]:
    """The parts as in-memory ONNX models (see module docstring)."""
    model = compiled.model if isinstance(compiled, CompiledModel) else compiled
    parts = exported_parts(model)
    x = example_batch(model)
    with torch.no_grad():
        front_out = tuple(model.front(x))
    tap_names = [f"tap{i}" for i in range(len(front_out) - 1)]
    protos = {
        "aggressive": _to_onnx(parts["aggressive"], (x,), ["x"], ["logits", *tap_names]),
        "selector": _to_onnx(parts["selector"], front_out, ["logits", *tap_names], ["score"]),
        "mild": _to_onnx(parts["mild"], (x,), ["x"], ["logits"]),
    }
    if "original" in parts:
        protos["original"] = _to_onnx(parts["original"], (x,), ["x"], ["logits"])
    return protos


def export_onnx_parts(compiled: CompiledModel, directory: str | os.PathLike,
                      protos: dict[str, onnx.ModelProto] | None = None) -> dict[str, Path]:
    """Write each part as ``<directory>/<part>.onnx``; returns the paths by part."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, proto in (protos or onnx_parts(compiled)).items():
        onnx.checker.check_model(proto, full_check=True)
        paths[name] = out / f"{name}.onnx"
        onnx.save(proto, paths[name])
    return paths


# --------------------------------------------------------------------------- the If model


def _renamed_graph(graph: onnx.GraphProto, prefix: str, keep: dict[str, str]
                   ) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """Nodes and initializers of ``graph`` with every value name prefixed (``keep`` maps
    names that must connect to the outside, e.g. the graph input)."""

    def rename(name: str) -> str:
        if not name:
            return name  # an omitted optional input
        return keep.get(name, prefix + name)

    def rename_subgraphs(node: onnx.NodeProto) -> None:
        for attr in node.attribute:
            subs = [attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs)
            for sub in subs:
                for inner in sub.node:
                    inner.input[:] = [rename(n) for n in inner.input]
                    inner.output[:] = [rename(n) for n in inner.output]
                    rename_subgraphs(inner)
                for value in list(sub.input) + list(sub.output):
                    value.name = rename(value.name)

    nodes = []
    for node in graph.node:
        new = onnx.NodeProto()
        new.CopyFrom(node)
        new.input[:] = [rename(n) for n in node.input]
        new.output[:] = [rename(n) for n in node.output]
        new.name = prefix + (node.name or node.op_type)
        rename_subgraphs(new)
        nodes.append(new)
    inits = []
    for init in graph.initializer:
        new = onnx.TensorProto()
        new.CopyFrom(init)
        new.name = rename(init.name)
        inits.append(new)
    return nodes, inits


def build_if_model(compiled: CompiledModel, protos: dict[str, onnx.ModelProto] | None = None
                   ) -> onnx.ModelProto:
    """The batch-1 ONNX model whose routing is an ``If`` (see module docstring).

    Outputs: ``logits`` (1, classes), ``route`` (bool scalar: True = mild answered),
    ``score`` (1,).
    """
    model = compiled.model if isinstance(compiled, CompiledModel) else compiled
    protos = protos or onnx_parts(compiled)
    agg, sel, mild = protos["aggressive"], protos["selector"], protos["mild"]
    n_taps = len(agg.graph.output) - 1
    agg_nodes, agg_inits = _renamed_graph(agg.graph, "aggressive/", {"x": "x"})
    sel_keep = {"logits": "aggressive/logits",
                **{f"tap{i}": f"aggressive/tap{i}" for i in range(n_taps)}}
    sel_nodes, sel_inits = _renamed_graph(sel.graph, "selector/", sel_keep)
    mild_nodes, mild_inits = _renamed_graph(mild.graph, "mild/", {"x": "x"})
    num_classes = int(model.num_classes or agg.graph.output[0].type.tensor_type.shape.dim[1].dim_value)

    routing_inits = [
        numpy_helper.from_array(np.array([model.threshold], dtype=np.float32), "route/threshold"),
        numpy_helper.from_array(np.array([], dtype=np.int64), "route/scalar_shape"),
    ]
    routing = [
        helper.make_node("Greater", ["selector/score", "route/threshold"], ["route/above"],
                         name="route/Greater"),
        helper.make_node("Reshape", ["route/above", "route/scalar_shape"], ["route"], name="route/Reshape"),
    ]
    then_graph = helper.make_graph(
        mild_nodes + [helper.make_node("Identity", ["mild/logits"], ["mild_answer"], name="mild/answer")],
        "mild_branch", [],
        [helper.make_tensor_value_info("mild_answer", TensorProto.FLOAT, [1, num_classes])])
    else_graph = helper.make_graph(
        [helper.make_node("Identity", ["aggressive/logits"], ["aggressive_answer"],
                          name="aggressive/answer")],
        "aggressive_branch", [],
        [helper.make_tensor_value_info("aggressive_answer", TensorProto.FLOAT, [1, num_classes])])
    if_node = helper.make_node("If", ["route"], ["logits"], name="route/If",
                               then_branch=then_graph, else_branch=else_graph)
    in_shape = [1, *list(model.input_shape[1:])]
    graph = helper.make_graph(
        agg_nodes + sel_nodes + routing + [if_node], "prunec_dynamic_batch1",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, in_shape)],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, num_classes]),
         helper.make_tensor_value_info("route", TensorProto.BOOL, []),
         helper.make_tensor_value_info("selector/score", TensorProto.FLOAT, [1])],
        initializer=agg_inits + sel_inits + mild_inits + routing_inits)
    opsets: dict[str, int] = {}
    for proto in (agg, sel, mild):
        for op in proto.opset_import:
            opsets[op.domain] = max(opsets.get(op.domain, 0), op.version)
    functions: list[onnx.FunctionProto] = []
    for proto in (agg, sel, mild):
        functions += list(proto.functions)
    merged = helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets.items()],
                               producer_name="prunec", functions=functions)
    merged.ir_version = max(p.ir_version for p in (agg, sel, mild))
    spec = preprocess_spec(compiled.preprocess)
    if spec is not None:  # the graph takes normalized inputs: say which normalization
        helper.set_model_props(merged, normalization_props(spec))
    onnx.checker.check_model(merged, full_check=True)
    return merged


def normalization_props(spec: dict[str, list[float]]) -> dict[str, str]:
    """model.onnx's metadata naming the input normalization its graph expects (mean, std per channel)."""
    return {"prunec.input": "(pixel - mean) / std per channel, pixels on the 0-1 scale",
            "prunec.mean": json.dumps(spec["mean"]), "prunec.std": json.dumps(spec["std"])}


def export_onnx_if(compiled: CompiledModel, path: str | os.PathLike,
                   protos: dict[str, onnx.ModelProto] | None = None) -> Path:
    """Write the batch-1 ``If`` model to ``path`` (checked by onnx.checker)."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(build_if_model(compiled, protos), out)
    return out


def export_onnx(compiled: CompiledModel, directory: str | os.PathLike) -> dict[str, Path]:
    """All ONNX files: the parts plus ``dynamic_batch1.onnx`` (the If model)."""
    protos = onnx_parts(compiled)
    paths = export_onnx_parts(compiled, directory, protos)
    paths["dynamic_batch1"] = export_onnx_if(compiled, Path(directory) / "dynamic_batch1.onnx", protos)
    return paths


def run_onnx(path: str | os.PathLike, **inputs: Any) -> list[np.ndarray]:
    """Run an ONNX file in onnxruntime on CPU (inputs as tensors or arrays)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = {k: (v.detach().numpy() if isinstance(v, torch.Tensor) else v) for k, v in inputs.items()}
    return session.run(None, feeds)


__all__ = ["onnx_parts", "export_onnx_parts", "export_onnx_if", "export_onnx", "build_if_model", "run_onnx"]
