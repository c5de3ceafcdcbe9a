"""Lowering targets, installed as ``prunec.backends``.

A target is an object with ``name``, ``description`` and
``lower(gm, *, batch, hw, activation_sparsity, routed_share, **options) -> LoweredProgram``.
The built-in Eyeriss target is always available; other packages add theirs through the
``prunec.backends`` entry-point group (``name = "package.module:TargetClass"``).
"""

from __future__ import annotations

from importlib import metadata
from typing import Any

from prunec.errors import UserError

ENTRY_POINT_GROUP = "prunec.backends"
_BUILTIN = {"eyeriss": "prunec.backends.eyeriss:EyerissTarget"}


def _entry_points() -> dict[str, metadata.EntryPoint]:
    try:
        eps = metadata.entry_points(group=ENTRY_POINT_GROUP)
    except Exception:  # noqa: BLE001 - a broken installed distribution must not break the CLI
        return {}
    return {ep.name: ep for ep in eps}


def available_targets() -> dict[str, str]:
    """Target name -> ``module:attr`` it resolves to (built-ins, then entry points)."""
    out = dict(_BUILTIN)
    for name, ep in _entry_points().items():
        out.setdefault(name, ep.value)
    return dict(sorted(out.items()))


def get_target(name: str) -> Any:
    """The target instance registered as ``name``; an unknown name is a :class:`UserError`."""
    known = available_targets()
    if name not in known:
        raise UserError(f"unknown target {name!r}; known targets: {', '.join(known)}")
    module_name, _, attr = known[name].partition(":")
    try:
        import importlib

        obj = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise UserError(f"target {name!r} ({known[name]}) cannot be loaded: {exc}") from None
    return obj() if isinstance(obj, type) else obj


__all__ = ["get_target", "available_targets", "ENTRY_POINT_GROUP"]
