"""A user's own prunec pass: replace every ReLU6 (and hardtanh(0, 6)) with ReLU.

ReLU6 clamps activations at 6; accelerators without a clamp unit run plain ReLU, and a
model trained with ReLU6 rarely exceeds 6 after BatchNorm. The pass is an ordinary
``torch.fx.passes.infra`` pass: ``GraphModule -> PassResult``.

Run it:

    prunec inspect zoo:mobilenetv2 --input-shape 1,3,32,32 --pass examples.custom_pass:relu6_to_relu

(from the repository root: a ``module:callable`` resolves from the working directory
too, after anything installed), or register it for ``prunec passes`` through
the entry-point group ``prunec.passes`` in your own package's pyproject.toml:

    [project.entry-points."prunec.passes"]
    relu6_to_relu = "my_package.passes:relu6_to_relu"
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import fx, nn
from torch.fx.passes.infra.pass_base import PassResult


def _clamps_at_0_and_6(node: fx.Node) -> bool:
    """``F.relu6(x)``, or ``F.hardtanh(x, 0, 6)`` with its bounds given by position or by name."""
    if node.target is F.relu6:
        return True
    if node.target is not F.hardtanh:
        return False
    bounds = dict(zip(("min_val", "max_val"), node.args[1:3], strict=False)) | {
        k: v for k, v in node.kwargs.items() if k in ("min_val", "max_val")}
    return bounds.get("min_val", -1.0) == 0 and bounds.get("max_val", 1.0) == 6


def relu6_to_relu(gm: fx.GraphModule) -> PassResult:
    """Replace ReLU6 modules (and Hardtanh(0, 6) ones) and F.relu6 / F.hardtanh(0, 6) calls with ReLU."""
    changed = False
    for node in list(gm.graph.nodes):
        if node.op == "call_module":
            module = gm.get_submodule(node.target)
            if isinstance(module, nn.Hardtanh) and (module.min_val, module.max_val) == (0, 6):  # ReLU6 is one
                parent_name, _, child = node.target.rpartition(".")
                parent = gm.get_submodule(parent_name) if parent_name else gm
                setattr(parent, child, nn.ReLU())
                changed = True
        elif node.op == "call_function" and _clamps_at_0_and_6(node):
            node.target = F.relu
            node.args, node.kwargs = node.args[:1], {}
            changed = True
    if changed:
        gm.recompile()
    return PassResult(gm, changed)
