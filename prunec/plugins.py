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
    if not module_name or module_name.startswith(".") or not attr:
        raise UserError(f"cannot import {what} {spec!r}: name it as package.module:object (an absolute module)")
    try:
        with working_directory_importable():
            module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UserError(f"cannot import {what} {spec!r}: {exc}") from None
    except Exception as exc:  # the user's module failed while importing: name its error, not ours
        raise UserError(f"cannot import {what} {spec!r}: importing {module_name} raised "
                        f"{type(exc).__name__}: {exc}") from None
    try:
        return getattr(module, attr)
    except AttributeError as exc:
        raise UserError(f"cannot import {what} {spec!r}: {exc}") from None
