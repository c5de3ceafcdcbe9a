"""Graph passes: the registry, and the runner that checks the graph after every pass.

A pass is a ``torch.fx.passes.infra`` pass: a callable ``GraphModule -> PassResult``
(often a :class:`~torch.fx.passes.infra.pass_base.PassBase`). Passes are found by

* a registered name (``prunec passes`` lists them; :func:`register_pass` adds one),
* ``package.module:callable`` (a user's own pass, no registration needed), or
* the entry-point group ``prunec.passes`` of any installed distribution.

A registered entry may be a pass or a factory taking keyword options and returning one,
so parametrised passes (``prune_structured`` with a ratio) share the same registry.
"""

from __future__ import annotations

import ast
import copy
import importlib
import inspect
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

import torch
from torch import fx
from torch.fx.passes.infra.pass_base import PassResult
from torch.fx.passes.infra.pass_manager import PassManager

from prunec.errors import UserError
from prunec.passes.output_contract import OutputContract
from prunec.plugins import import_object

PassFn = Callable[[fx.GraphModule], PassResult | None]
ENTRY_POINT_GROUP = "prunec.passes"


@dataclass(frozen=True)
class RegisteredPass:
    name: str
    factory: Callable[..., Any]
    doc: str


_REGISTRY: dict[str, RegisteredPass] = {}
_BUILTINS_LOADED = False


def register_pass(name: str, doc: str | None = None) -> Callable[[Any], Any]:
    """Decorator: register a pass (or pass factory) under ``name``."""

    def decorate(obj: Any) -> Any:
        text = doc or (inspect.getdoc(obj) or "").split("\n", 1)[0]
        earlier = _REGISTRY.get(name)
        if earlier is not None and _is_builtin(obj) and not _is_builtin(earlier.factory):
            return obj  # a user's pass of this name replaces the built-in, whichever was imported first
        _REGISTRY[name] = RegisteredPass(name, obj, text)
        return obj

    return decorate


def _is_builtin(obj: Any) -> bool:
    return getattr(obj, "__module__", None) in (__name__, *BUILTIN_MODULES)


def _load_builtins() -> None:
    global _BUILTINS_LOADED
    if _BUILTINS_LOADED:
        return
    _BUILTINS_LOADED = True
    for module in BUILTIN_MODULES:
        importlib.import_module(module)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name not in _REGISTRY:
            try:
                obj = ep.load()
            except Exception as exc:  # noqa: BLE001 - a broken plugin must not break prunec
                _REGISTRY[ep.name] = RegisteredPass(ep.name, None, f"(failed to load: {exc})")
                continue
            register_pass(ep.name)(obj)


def available_passes() -> dict[str, RegisteredPass]:
    """Every pass prunec can find: built-in, registered and entry-point passes."""
    _load_builtins()
    return dict(sorted(_REGISTRY.items()))


# key=value, the value a quoted string, a bracketed list or anything up to the next blank
_OPTION = re.compile(r"""\s*([A-Za-z_]\w*)=("[^"]*"|'[^']*'|\[[^\]]*\]|\([^)]*\)|[^\s\[\]()"',{}]+)(?=\s|$)""")


def parse_pass_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """Split ``name{key=value key=value}`` (MLIR's pass-option syntax) into the name and its
    options. Values are Python literals (``0.5``, ``['fc']``) or else plain strings (``l2``)."""
    match = re.fullmatch(r"\s*([^{}\s]+)\s*(?:\{(.*)\})?\s*", spec, flags=re.DOTALL)
    if match is None:
        raise UserError(f"cannot read pass {spec!r}: write NAME or NAME{{key=value ...}}")
    name, body = match.group(1), match.group(2) or ""
    options: dict[str, Any] = {}
    rest = body
    while rest.strip():
        item = _OPTION.match(rest)
        if item is None:
            raise UserError(f"pass {name!r}: cannot read option {rest.split()[0]!r}: write key=value, "
                            "options separated by spaces")
        key, text = item.group(1), item.group(2)
        if key in options:
            raise UserError(f"pass {name!r}: option {key!r} given twice")
        try:
            options[key] = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            options[key] = text
        rest = rest[item.end():]
    return name, options


def resolve_pass(spec: str | PassFn, **options: Any) -> PassFn:
    """Turn a name, ``module:callable``, either with ``{key=value ...}`` options, or a callable
    into a runnable pass. A callable given with ``options`` is a factory of passes, called with them."""
    braces = False
    if callable(spec):
        if not options:
            return spec
        obj, spec = spec, getattr(spec, "__name__", repr(spec))
    else:
        braces = "{" in spec  # NAME{} calls a factory without options
        if braces:
            spec, parsed = parse_pass_spec(spec)
            options = {**parsed, **options}
        obj = _named_pass(spec)
    if options or braces or inspect.isclass(obj):
        try:
            inspect.signature(obj).bind(**options)
        except TypeError as exc:
            if not _takes_a_graph(obj):
                raise UserError(f"pass {spec!r} does not take the options {', '.join(map(repr, options))}: {exc}"
                                ) from None
            if options:
                raise UserError(f"pass {spec!r} takes no options (it is a pass, not a factory of passes); got "
                                f"{', '.join(map(repr, options))}") from None
            return obj  # NAME{} of a plain pass: nothing to configure
        except ValueError:  # no signature to check against (a builtin): let the call tell
            pass
        obj = obj(**options)
    if not callable(obj):
        raise UserError(f"pass {spec!r} is not callable")
    return obj


def _named_pass(spec: str) -> Any:
    """The object ``module:callable`` or a registered pass's name stands for."""
    if ":" in spec:
        return import_object(spec, "pass")
    registry = available_passes()
    if spec not in registry:
        raise UserError(f"unknown pass {spec!r}; `prunec passes` lists the available ones")
    if registry[spec].factory is None:
        raise UserError(f"pass {spec!r} {registry[spec].doc}")
    return registry[spec].factory


def _takes_a_graph(obj: Any) -> bool:
    """A plain pass: a function of one required positional argument (the GraphModule)."""
    if inspect.isclass(obj):
        return False
    try:
        params = inspect.signature(obj).parameters.values()
    except (TypeError, ValueError):
        return False
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return sum(1 for p in params if p.kind in positional and p.default is p.empty) == 1


def run_passes(
    gm: fx.GraphModule,
    passes: Sequence[str | PassFn],
    example_inputs: torch.Tensor | Sequence[torch.Tensor] | None = None,
) -> fx.GraphModule:
    """Run ``passes`` with torch's ``PassManager``; after each: ``graph.lint()``, then a
    shape re-check (ShapeProp on the example inputs; the output shape must not change).
    Without example inputs, a graph that has shapes is re-checked on zeros of its input shapes,
    so that a pass that resizes a layer never leaves stale shapes for lowering.

    The passes work on a copy: a traced GraphModule shares its submodules with the model it
    was traced from, and a pass that edits modules in place must not reach back into it.
    """
    gm = copy.deepcopy(gm)
    from prunec.frontend import propagate_shapes, recorded_inputs

    fns = [_normalise(resolve_pass(p)) for p in passes]
    if example_inputs is None:  # shapes the graph already has stay true after the passes
        example_inputs = recorded_inputs(gm)
    contract = None
    if example_inputs is not None:
        propagate_shapes(gm, example_inputs)
        contract = OutputContract(gm, example_inputs)

    def check(module: torch.nn.Module) -> None:
        if not isinstance(module, fx.GraphModule):
            raise UserError(f"a pass must return a GraphModule (or a PassResult holding one), not "
                            f"{type(module).__name__}")
        module.graph.lint()
        if contract is not None:
            try:
                propagate_shapes(module, example_inputs)
            except UserError as exc:  # the input ran before the pass: the pass broke the graph
                raise UserError(f"a pass left a graph that no longer runs: {exc}") from None
            contract.check(module, "a pass")

    manager = PassManager(passes=fns, run_checks_after_each_pass=True, suppress_check_failures=False)
    manager.add_checks(check)
    try:
        result = manager(gm)
    except UserError:
        raise
    except SystemExit as exc:  # not a clean exit of prunec, whose command did not finish
        raise UserError(f"a pass called sys.exit({exc.code!r}) instead of returning a graph") from None
    except Exception as exc:  # noqa: BLE001 - PassManager wraps pass errors
        cause = exc.__cause__ or exc
        if isinstance(cause, UserError):
            raise cause from None
        where = str(exc).strip().splitlines()[0] if str(exc).strip() else "a pass raised"
        why = str(cause).strip().splitlines()[0] if str(cause).strip() else ""
        detail = f"; {type(cause).__name__}: {why}" if cause is not exc else ""
        raise UserError(f"pass failed: {where}{detail}") from None
    out = result.graph_module
    out.recompile()
    return out


def _normalise(fn: PassFn) -> Callable[[fx.GraphModule], PassResult]:
    """Accept passes that return a PassResult, a GraphModule or None (in-place)."""

    def run(gm: fx.GraphModule) -> PassResult:
        result = fn(gm)
        if isinstance(result, PassResult):
            return result
        if isinstance(result, fx.GraphModule):
            return PassResult(result, True)
        if result is not None:  # silently ignoring it would make a mistaken pass a no-op
            name = getattr(fn, "__name__", repr(fn))
            hint = f"; {name} looks like a factory: give its options, NAME{{...}}" if callable(result) else ""
            raise UserError(f"pass {name} returned {type(result).__name__}; a pass returns a PassResult, a "
                            f"GraphModule or None (edited in place){hint}")
        return PassResult(gm, True)

    run.__name__ = getattr(fn, "__name__", type(fn).__name__)
    return run


@register_pass("eliminate_dead_code")
def eliminate_dead_code(gm: fx.GraphModule) -> PassResult:
    """Remove nodes whose results nothing uses (torch.fx's own dead-code elimination)."""
    changed = gm.graph.eliminate_dead_code()
    gm.recompile()
    return PassResult(gm, changed)


#: Modules whose import registers the built-in passes. Append when adding a pass module.
BUILTIN_MODULES: list[str] = []
BUILTIN_MODULES.append("prunec.passes.insert_selector")
BUILTIN_MODULES.append("prunec.passes.structured")
BUILTIN_MODULES.append("prunec.passes.unstructured")

__all__ = ["register_pass", "available_passes", "resolve_pass", "run_passes", "PassResult"]
