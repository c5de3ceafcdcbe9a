"""prunec: compile a trained CNN into a dynamic two-level pruned model and report its
energy on the Eyeriss accelerator.

Public API (imported lazily so ``import prunec`` stays cheap):

* :func:`load`, :func:`trace` -- the frontend;
* :func:`prune` -- structured / unstructured pruning passes;
* :func:`lower` -- lowering to a hardware target (Eyeriss); :func:`relower` and
  :func:`recost_compiled` -- a saved IR, or a compiled model's, costed again on other hardware;
  :func:`compare_chips` -- one of them on several chips side by side;
* :func:`compile`, :func:`load_compiled` -- the whole pipeline and its artefact.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_API = {
    "load": "prunec.frontend",
    "trace": "prunec.frontend",
    "prune": "prunec.pruning",
    "lower": "prunec.lowering",
    "relower": "prunec.recost",
    "recost_compiled": "prunec.recost",
    "compare_chips": "prunec.chip_compare",
    "compile": "prunec.pipeline",
    "load_compiled": "prunec.artifact",
    "UserError": "prunec.errors",
}


def __getattr__(name: str) -> Any:
    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'prunec' has no attribute {name!r}")


__all__ = list(_API)
