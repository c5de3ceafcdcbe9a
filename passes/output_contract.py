"""What a pass or pruner must keep: the model's outputs, their shapes and dtypes, on any batch.

Shapes are checked on the example inputs (as shape propagation recorded them) and again by a
forward pass on one more image: at a batch of one, a graph that sums over the batch or keeps
only the first image has the right output shape.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence

import torch
from torch import fx, nn

from prunec.errors import UserError

Signature = list[tuple[tuple[int, ...], torch.dtype] | None]


class OutputContract:
    """The outputs of ``gm`` on ``example_inputs`` (shapes propagated) and on a batch one image wider."""

    def __init__(self, gm: fx.GraphModule, example_inputs: torch.Tensor | Sequence[torch.Tensor]) -> None:
        self.expected = recorded_outputs(gm)
        self.structure = output_structure(gm)
        self.wider = wider_batch(example_inputs)
        self.expected_wider = forward_outputs(gm, self.wider)

    def check(self, module: fx.GraphModule, who: str) -> None:
        """Refuse ``module`` (shapes already propagated) in one line naming ``who`` changed what."""
        structure = output_structure(module)
        if structure != self.structure:
            raise UserError(f"{who} changed how the model's outputs are packed, from {self.structure} to {structure}")
        got = recorded_outputs(module)
        if got != self.expected:
            raise UserError(f"{who} changed the model's output from {describe(self.expected)} to {describe(got)}")
        if self.expected_wider is None:  # the original takes the example batch only: nothing more to check
            return
        size = len(self.wider[0])
        got_wider = forward_outputs(module, self.wider)
        if got_wider is None:
            raise UserError(f"{who} left a graph that runs on the example inputs but not on a batch of {size}")
        if got_wider != self.expected_wider:
            raise UserError(f"{who} changed the model's output on a batch of {size} from "
                            f"{describe(self.expected_wider)} to {describe(got_wider)}")


def recorded_outputs(gm: fx.GraphModule) -> Signature:
    """Shape and dtype of every output, as shape propagation recorded them (None: not a tensor)."""
    out = next(n for n in gm.graph.nodes if n.op == "output")
    found: Signature = []
    fx.node.map_arg(out.args, lambda n: found.append(
        (tuple(meta.shape), meta.dtype) if hasattr(meta := n.meta.get("tensor_meta"), "shape") else None))
    return found


def output_structure(gm: fx.GraphModule) -> str:
    """How the graph packs its outputs: ``T`` for a value, ``(T, T)``, ``[T]``, ``{'logits': T}``. Caller code
    unpacks them by position or key, so a pass must not wrap a tensor in a tuple or a dict."""
    def skeleton(value: object) -> str:
        if isinstance(value, dict):
            return "{" + ", ".join(f"{k!r}: {skeleton(v)}" for k, v in value.items()) + "}"
        if isinstance(value, list):
            return "[" + ", ".join(skeleton(v) for v in value) + "]"
        if isinstance(value, tuple):
            return "(" + ", ".join(skeleton(v) for v in value) + ("," if len(value) == 1 else "") + ")"
        return "T"

    out = next(n for n in gm.graph.nodes if n.op == "output")
    return skeleton(out.args[0])


def wider_batch(inputs: torch.Tensor | Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
    """The example inputs with one more image each (their first one again)."""
    tensors = (inputs,) if isinstance(inputs, torch.Tensor) else tuple(inputs)
    return tuple(torch.cat([t, t[:1]]) if isinstance(t, torch.Tensor) and t.dim() > 0 and len(t) else t
                 for t in tensors)


def forward_outputs(module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> Signature | None:
    """Shape and dtype of every output of a forward pass in eval mode; None where it does not run."""
    from prunec.frontend import evaluating

    try:  # torch.fx prints the generated code's traceback itself: this failure is an answer, not news
        with torch.no_grad(), evaluating(module), contextlib.redirect_stderr(io.StringIO()):
            out = module(*inputs)
    except Exception:  # noqa: BLE001 - any failure of the graph is the finding; the caller says which
        return None
    found: Signature = []  # every leaf of nested tuples, lists and dicts, as recorded_outputs walks the graph's
    fx.node.map_aggregate(out, lambda t: found.append((tuple(t.shape), t.dtype) if isinstance(t, torch.Tensor)
                                                      else None))
    return found


def describe(signature: Signature | None) -> str:
    """``[1, 10] float32, ...`` for messages."""
    parts = [f"{list(s[0])} {str(s[1]).removeprefix('torch.')}" if s else "?" for s in signature or []]
    return ", ".join(parts) or "nothing"
