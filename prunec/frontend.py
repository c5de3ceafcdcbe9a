"""Frontend: turn what the user hands us into an ``nn.Module`` and a shaped FX graph.

A model argument is one of

* ``zoo:NAME`` -- a fresh zoo architecture;
* ``FILE.pt`` holding a prunec checkpoint (``{"format": "prunec-checkpoint", "arch",
  "arch_kwargs", "state_dict", ...}``) or a plain state dict with ``arch="zoo:NAME"``;
  both are read with ``weights_only=True``, so loading them runs no code;
* ``FILE.pt`` holding a whole pickled ``nn.Module`` -- only with ``trust_model=True``,
  because unpickling runs arbitrary code;
* ``package.module:factory`` -- a callable returning a module.
"""

from __future__ import annotations

import contextlib
import copy
import io
import os
import pickle
import traceback
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import torch
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from prunec import zoo
from prunec.errors import UserError
from prunec.plugins import import_object, working_directory_importable

CHECKPOINT_FORMAT = "prunec-checkpoint"


# --------------------------------------------------------------------------- loading


def load(
    spec: str,
    arch: str | None = None,
    trust_model: bool = False,
    in_channels: int | None = None,
    num_classes: int | None = None,
) -> nn.Module:
    """Load a model from ``spec`` (see module docstring) in eval mode."""
    model, _ = load_with_meta(spec, arch, trust_model, in_channels, num_classes)
    return model


def load_with_meta(
    spec: str,
    arch: str | None = None,
    trust_model: bool = False,
    in_channels: int | None = None,
    num_classes: int | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """Like :func:`load`, also returning the checkpoint's metadata (dataset, preprocessing)."""
    if spec.startswith("zoo:"):
        model = zoo.build(spec, in_channels or 3, num_classes or 10)
        return model.eval(), {"arch": spec}
    if os.path.exists(spec) or spec.endswith((".pt", ".pth")):
        return _load_file(spec, arch, trust_model, in_channels, num_classes)
    if ":" in spec:
        return _load_factory(spec).eval(), {"factory": spec}
    raise UserError(
        f"cannot read model {spec!r}: give zoo:NAME, a .pt file or package.module:factory"
    )


def _load_factory(spec: str) -> nn.Module:
    factory = import_object(spec, "model factory")
    try:
        # a module instance is copied: loading weights into it must not change the importer's object
        model = copy.deepcopy(factory) if isinstance(factory, nn.Module) else factory() if callable(factory) \
            else factory
    except Exception as exc:  # noqa: BLE001 - the user's factory failed: say so in one line
        raise UserError(f"model factory {spec!r} failed: {_first_line(exc)}") from None
    if not isinstance(model, nn.Module):
        raise UserError(f"{spec!r} returned {type(model).__name__}, not a torch.nn.Module")
    return model


def _archive_kind(path: str) -> str | None:
    """"TorchScript" or "torch.export" for those archives, which torch.load cannot read (None otherwise)."""
    try:
        with zipfile.ZipFile(path) as archive:
            entries = {name.split("/", 1)[-1] for name in archive.namelist()}
    except (OSError, zipfile.BadZipFile):
        return None
    if "archive_format" in entries:
        return "torch.export"
    return "TorchScript" if "constants.pkl" in entries and any(e.startswith("code/") for e in entries) else None


def _torch_load(path: str, weights_only: bool) -> Any:
    if kind := _archive_kind(path):
        raise UserError(f"{path} is a {kind} archive, which prunec does not read: it traces the model's Python code "
                        "with torch.fx; save model.state_dict() and pass it with --arch (or a package.module:factory "
                        "that builds the model)")
    try:
        with working_directory_importable():  # a pickled module's class may live next to the user
            return torch.load(path, map_location="cpu", weights_only=weights_only)
    except (ImportError, AttributeError) as exc:  # unpickling could not find the model's class
        raise UserError(_unimportable_class(path, exc)) from None
    except FileNotFoundError:
        raise UserError(f"model file not found: {path}") from None
    except IsADirectoryError:
        raise UserError(f"model path is a directory, not a .pt file: {path}") from None
    except pickle.UnpicklingError as exc:
        if not _looks_like_torch_file(path):
            raise UserError(f"{path} is not a PyTorch file (neither a torch.save archive nor a pickle)") from None
        text = str(exc)
        if weights_only and ("Weights only load failed" in text or "GLOBAL" in text):
            raise UserError(
                f"{path} holds a pickled Python object (e.g. a whole nn.Module), not a state "
                "dict; unpickling runs arbitrary code, so prunec refuses it. If you trust the "
                "file, pass --trust-model; otherwise save model.state_dict() and use --arch"
            ) from None
        raise UserError(f"{path} is not a readable PyTorch file ({_first_line(exc)})") from None
    except (KeyError, IndexError) as exc:  # e.g. a text file: pickle reads its first byte as an opcode
        what = "is not a PyTorch file (neither a torch.save archive nor a pickle)" if not _looks_like_torch_file(
            path) else f"is corrupted or truncated, not a readable PyTorch file ({_first_line(exc)})"
        raise UserError(f"{path} {what}") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as exc:
        raise UserError(
            f"{path} is corrupted or truncated, not a readable PyTorch file ({_first_line(exc)})"
        ) from None


def _unimportable_class(path: str, exc: BaseException) -> str:
    """Why a pickled module's class cannot be found, and what to save instead."""
    instead = ("save model.state_dict() and give it with --arch package.module:factory (a function that "
               "builds the network), or torch.save the module from a class defined in an importable module")
    if "__main__" in str(exc):
        return (f"{path} holds a module whose class was defined in the script that saved it (__main__), "
                f"which prunec cannot import: {instead}")
    return (f"{path} holds a module whose class cannot be imported here ({_first_line(exc)}): make that module "
            f"importable (install the package it belongs to, or run prunec from the folder that holds it or with "
            f"that folder on PYTHONPATH); or {instead}")


def _looks_like_torch_file(path: str) -> bool:
    """A zip archive (torch.save's format) or a pickle stream: not, say, a text file named .pt."""
    try:
        with open(path, "rb") as fh:
            if zipfile.is_zipfile(fh):
                return True
            fh.seek(0)
            return fh.read(1) == b"\x80"  # pickle's PROTO opcode, protocol 2 and later
    except OSError:
        return False


def _load_file(
    path: str, arch: str | None, trust_model: bool, in_channels: int | None,
    num_classes: int | None,
) -> tuple[nn.Module, dict[str, Any]]:
    if not os.path.exists(path):
        raise UserError(f"model file not found: {path}")
    obj = _torch_load(path, weights_only=not trust_model)
    if isinstance(obj, nn.Module):
        return obj.eval(), {"source": path}
    meta: dict[str, Any] = {"source": path}
    state = obj
    if isinstance(obj, dict) and obj.get("format") == CHECKPOINT_FORMAT:
        state = obj["state_dict"]
        meta.update({k: v for k, v in obj.items() if k != "state_dict"})
        recorded = obj.get("arch")
        if arch is None and _is_factory(recorded) and not trust_model:
            raise UserError(f"{path} names its architecture as the factory {recorded!r}, and importing it runs that "
                            f"code: if you trust the file, pass --arch {recorded} (or --trust-model)")
        arch = arch or recorded
        kwargs = dict(obj.get("arch_kwargs", {}))
        in_channels = in_channels or kwargs.get("in_channels")
        num_classes = num_classes or kwargs.get("num_classes")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"{path} holds neither a state dict nor a prunec checkpoint")
    if arch is None:
        raise UserError(f"{path} holds a bare state dict: name its architecture with --arch zoo:NAME or "
                        "--arch package.module:factory")
    in_channels = in_channels or _infer_in_channels(state)
    num_classes = num_classes or _infer_num_classes(state)
    model = build_architecture(arch, in_channels, num_classes)
    if isinstance(obj, dict) and obj.get("module_configs"):  # a pruned checkpoint: reshape layers
        from prunec.pruning import rebuild_pruned

        model = rebuild_pruned(model, obj["module_configs"])
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise UserError(f"the weights in {path} do not fit {arch}: "
                        f"{_state_mismatch(model.state_dict(), state) or _first_line(exc)}") from None
    meta["arch"] = arch
    meta.setdefault("arch_kwargs", {"in_channels": in_channels, "num_classes": num_classes})
    return model.eval(), meta


def build_architecture(arch: str, in_channels: int, num_classes: int) -> nn.Module:
    """A network of architecture ``arch`` to load weights into: ``zoo:NAME`` built fresh for the
    channels and classes, or a ``package.module:factory`` called as it is (it fixes its own shape)."""
    if _is_factory(arch):
        return _load_factory(arch)
    return zoo.build(arch, in_channels, num_classes)


def _state_mismatch(expected: dict[str, torch.Tensor], given: dict[str, Any]) -> str:
    """Which tensors a state dict lacks, adds or shapes otherwise, a few of each (torch lists all)."""
    def some(names: list[str]) -> str:
        return ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")

    missing = [k for k in expected if k not in given]
    unexpected = [k for k in given if k not in expected]
    reshaped = [f"{k} {tuple(given[k].shape)} in the file, {tuple(v.shape)} in the model" for k, v in expected.items()
                if k in given and hasattr(given[k], "shape") and tuple(given[k].shape) != tuple(v.shape)]
    parts = [f"{len(names)} {what} ({some(names)})" for what, names in
             (("missing", missing), ("unexpected", unexpected), ("of another shape", reshaped)) if names]
    return "; ".join(parts)


def _is_factory(arch: Any) -> bool:
    return isinstance(arch, str) and ":" in arch and not arch.startswith("zoo:")


def _infer_in_channels(state: dict[str, torch.Tensor]) -> int:
    for tensor in state.values():
        if tensor.dim() == 4:
            return int(tensor.shape[1])
    return 3


def _infer_num_classes(state: dict[str, torch.Tensor]) -> int:
    weights = [t for k, t in state.items() if k.endswith("weight") and t.dim() == 2]
    return int(weights[-1].shape[0]) if weights else 10


def save_checkpoint(
    model: nn.Module, path: str, arch: str, in_channels: int, num_classes: int, **meta: Any
) -> None:
    """Save a prunec checkpoint: weights plus what is needed to rebuild and feed the model.

    Written to a temporary file and renamed, so an interrupted save never leaves half a file.
    """
    payload = {"format": CHECKPOINT_FORMAT, "arch": arch,
               "arch_kwargs": {"in_channels": in_channels, "num_classes": num_classes},
               "state_dict": model.state_dict(), **meta}
    from prunec.outdir import write_atomic

    buffer = io.BytesIO()
    torch.save(payload, buffer)
    write_atomic(path, buffer.getvalue())


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


# --------------------------------------------------------------------------- shapes


def parse_input_shape(text: str) -> tuple[int, ...]:
    """Parse ``N,C,H,W`` (images), ``N,C,L`` (1-D signals: Conv1d) or ``N,F`` (features) into a tuple of
    positive ints."""
    try:
        dims = tuple(int(part) for part in text.replace("x", ",").split(","))
    except ValueError:
        raise UserError(f"--input-shape must be integers N,C,H,W (or N,C,L, or N,F), got {text!r}") from None
    if not 2 <= len(dims) <= 4 or any(d <= 0 for d in dims):
        raise UserError(f"--input-shape must be 2 to 4 positive integers: N,C,H,W for images, N,C,L for 1-D "
                        f"signals, N,F for features; got {text!r}")
    return dims


# --------------------------------------------------------------------------- tracing


class _LocatingTracer(fx.Tracer):
    """A tracer that remembers which submodule it is in, to name it when tracing fails."""

    def __init__(self, leaf_modules: Iterable[str] = ()) -> None:
        super().__init__()
        self.leaf_names = set(leaf_modules)
        self.prunec_stack: list[str] = []
        self.failed_in: str | None = None

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return qualname in self.leaf_names or super().is_leaf_module(m, qualname)

    def call_module(self, m, forward, args, kwargs):  # noqa: ANN001 - fx signature
        self.prunec_stack.append(self.path_of_module(m))
        try:
            return super().call_module(m, forward, args, kwargs)
        except Exception:
            if self.failed_in is None:  # the innermost module is the one to name
                self.failed_in = self.prunec_stack[-1]
            raise
        finally:
            self.prunec_stack.pop()


def trace(
    model: nn.Module,
    example_inputs: torch.Tensor | Sequence[torch.Tensor] | None = None,
    leaf_modules: Iterable[str] = (),
) -> fx.GraphModule:
    """Trace ``model`` with ``torch.fx`` and, given example inputs, record shapes in node.meta.

    Shapes land in ``node.meta["tensor_meta"]`` (ShapeProp). A model FX cannot trace raises
    a :class:`UserError` naming the submodule and source line that stopped it. The graph is an
    inference graph, traced in eval mode; it shares ``model``'s submodules, which it leaves in eval mode.
    """
    if isinstance(model, fx.GraphModule):
        gm = model
    else:
        leaf_modules = list(leaf_modules)
        names = {name for name, _ in model.named_modules()}
        unknown = [name for name in leaf_modules if name not in names]
        if unknown:
            raise UserError(f"leaf module {unknown[0]!r} is not a submodule of {type(model).__name__} (its "
                            f"submodules are named like {', '.join(sorted(names - {''})[:4]) or 'none'})")
        tracer = _LocatingTracer(leaf_modules)
        # in eval mode: a forward that reads self.training (F.dropout(y, p, self.training)) bakes the bool into
        # the graph, which gm.eval() below cannot change; the graph must hold the inference branch
        was_training = model.training
        model.eval()
        try:
            graph = tracer.trace(model)
        except Exception as exc:  # noqa: BLE001 - any tracing failure is reported the same way
            where = tracer.failed_in or ""
            raise UserError(
                f"torch.fx cannot trace {type(model).__name__}: {_first_line(exc)} "
                f"(in submodule '{where or '<top level>'}', {_user_frame(exc)}). Remove the "
                "data-dependent Python control flow there, or treat that submodule as a leaf "
                f"(--leaf-module {where or 'NAME'})"
            ) from None
        finally:  # the module's own flag as the caller left it (its submodules are the graph's, put in eval)
            model.training = was_training
        gm = fx.GraphModule(tracer.root, graph, type(model).__name__)
    gm.eval()
    if example_inputs is not None:
        propagate_shapes(gm, example_inputs)
    return gm


def propagate_shapes(
    gm: fx.GraphModule, example_inputs: torch.Tensor | Sequence[torch.Tensor]
) -> fx.GraphModule:
    """Run ShapeProp; a shape the model rejects becomes a one-line :class:`UserError`."""
    inputs = (example_inputs,) if isinstance(example_inputs, torch.Tensor) else tuple(example_inputs)
    # args: a default; "*args"/"**kwargs" placeholders take nothing
    required = [n.target for n in gm.graph.nodes if n.op == "placeholder" and not n.args
                and not str(n.target).startswith("*")]
    if len(required) > len(inputs):
        raise UserError(f"the model's forward takes {len(required)} inputs ({', '.join(map(str, required))}); prunec "
                        f"feeds it {len(inputs)} image tensor{'s' * (len(inputs) != 1)}: wrap it in a module whose "
                        "forward(x) takes the image alone")
    try:
        # ShapeProp prints a traceback of its own on failure; the one-line error says it all
        with torch.no_grad(), contextlib.redirect_stderr(io.StringIO()), evaluating(gm):
            ShapeProp(gm).propagate(*inputs)
    except Exception as exc:  # noqa: BLE001
        shapes = ", ".join(str(tuple(t.shape)) for t in inputs)
        raise UserError(
            f"input shape {shapes} does not fit the model: {_first_line(_root_cause(exc))}"
        ) from None
    return gm


def recorded_inputs(gm: fx.GraphModule) -> tuple[torch.Tensor, ...] | None:
    """Zeros shaped as the inputs shape propagation recorded, on the graph's own device, to propagate
    again after the graph changed; None where a placeholder has no recorded shape."""
    metas = [n.meta.get("tensor_meta") for n in gm.graph.nodes if n.op == "placeholder"]
    if not metas or any(not hasattr(m, "shape") for m in metas):
        return None
    device = next((t.device for t in (*gm.parameters(), *gm.buffers())), torch.device("cpu"))
    return tuple(torch.zeros(m.shape, dtype=m.dtype, device=device) for m in metas)


@contextlib.contextmanager
def evaluating(module: nn.Module) -> Iterator[nn.Module]:
    """Eval mode for the block, each submodule's own mode back after it: a forward run only to
    read shapes must not move batch-norm statistics, nor fail on a batch of one in train mode."""
    modes = {m: m.training for m in module.modules()}
    module.eval()
    try:
        yield module
    finally:
        for m, training in modes.items():
            m.training = training


def _root_cause(exc: BaseException) -> BaseException:
    while exc.__cause__ is not None:
        exc = exc.__cause__
    return exc


def _user_frame(exc: BaseException) -> str:
    """The innermost frame of the traceback that is not torch's own code."""
    frames = traceback.extract_tb(exc.__traceback__)
    torch_dir = os.path.dirname(torch.__file__)
    own_dir = os.path.dirname(__file__)
    for frame in reversed(frames):
        if not frame.filename.startswith((torch_dir, own_dir)) and "<" not in frame.filename:
            return f"{frame.filename}:{frame.lineno}: {frame.line}"
    return "source line unknown"


def example_input(shape: Sequence[int]) -> torch.Tensor:
    """A deterministic example input of ``shape``."""
    return torch.randn(*shape, generator=torch.Generator().manual_seed(0))


__all__ = ["load", "load_with_meta", "save_checkpoint", "trace", "propagate_shapes",
           "parse_input_shape", "example_input", "CHECKPOINT_FORMAT"]
