"""Import what a user names as ``package.module:attribute`` (model factories, passes, pruners)."""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

from prunec.errors import UserError


def import_object(spec: str, what: str) -> Any:
    """The object ``spec`` names; a bad spec is a :class:`UserError` saying which ``what`` failed."""
    module_name, _, attr = spec.partition(":")
    try:
        cwd = os.getcwd()
    except OSError:  # the working directory was deleted
        cwd = None
    added = cwd is not None and cwd not in sys.path and "" not in sys.path
    if added:  # as `python -m` would: a module next to the user resolves, after anything installed
        sys.path.append(cwd)
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise UserError(f"cannot import {what} {spec!r}: {exc}") from None
    finally:
        if added and cwd in sys.path:
            sys.path.remove(cwd)
