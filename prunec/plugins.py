"""Import what a user names as ``package.module:attribute`` (model factories, passes, pruners)."""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
from collections.abc import Iterator
from typing import Any

from prunec.errors import UserError


@contextlib.contextmanager
def working_directory_importable() -> Iterator[None]:
    """Modules next to the user resolve, after anything installed, as under ``python -m``."""
    try:
        cwd = os.getcwd()
    except OSError:  # the working directory was deleted
        cwd = None
    added = cwd is not None and cwd not in sys.path and "" not in sys.path
    if added:
        sys.path.append(cwd)
    try:
        yield
    finally:
        if added and cwd in sys.path:
            sys.path.remove(cwd)


def import_object(spec: str, what: str) -> Any:
    """The object ``spec`` names; a bad spec is a :class:`UserError` saying which ``what`` failed."""
    module_name, _, attr = spec.partition(":")
    try:
        with working_directory_importable():
            return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise UserError(f"cannot import {what} {spec!r}: {exc}") from None
