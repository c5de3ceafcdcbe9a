"""Where ``prunec compile --checkpoint-dir`` keeps each level's fine-tuning checkpoints.

Fine-tuning the levels is most of a compile's time (hours on a CPU for CIFAR-10 networks).
With a checkpoint directory every fine-tune writes its state after each epoch to a folder of
its own, and a rerun of the same compile resumes there instead of starting over.

A folder is named by what the fine-tune's result depends on: the pruned network as it starts
(so the original's weights, the ratio, the method and the pruner), the teacher, the training
images and labels, and the training settings. Another model, level or setting therefore gets
another folder and can never resume from a stranger's checkpoint; the same compile finds its
own. The fine-tuning loop resumes bit for bit (``prunec.training.finetune``).
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from prunec.data import Split


def fingerprint(*parts: nn.Module | torch.Tensor | None) -> str:
    """A SHA-256 over the modules' state dicts (names, shapes, dtypes, values) and tensors."""
    digest = hashlib.sha256()
    for part in parts:
        tensors = part.state_dict().items() if isinstance(part, nn.Module) else [("", part)]
        for name, tensor in tensors:
            if tensor is None:
                continue
            digest.update(f"{name}|{tuple(tensor.shape)}|{tensor.dtype}|".encode())
            digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())  # no copy
    return digest.hexdigest()


def _definition(module: nn.Module | None) -> str:
    """What a module computes besides its weights: its structure (dropout rates, BatchNorm
    eps and momentum, ...) and, for a traced graph, its code."""
    if module is None:
        return ""
    return repr(module) + str(getattr(module, "code", ""))


def level_checkpoint_dir(root: str | Path, model: nn.Module, teacher: nn.Module | None, train: Split,
                         settings: dict[str, Any], description: str) -> Path:
    """The folder under ``root`` for fine-tuning ``model`` (before any training) as described.

    Besides ``settings``, the key holds what else changes the trained weights: the prunec
    version, the device the fine-tune runs on and, on a CPU, its thread count (float sums
    depend on it)."""
    from prunec import __version__
    from prunec.training import default_device

    device = default_device(None)
    run = {"prunec": __version__, "torch": torch.__version__, "device": device.type,
           "threads": torch.get_num_threads() if device.type == "cpu" else None}
    key = hashlib.sha256(json.dumps({**settings, **run}, sort_keys=True, default=str).encode())
    key.update(_definition(model).encode() + b"|" + _definition(teacher).encode())
    key.update(fingerprint(model, teacher, train.x, train.y).encode())
    slug = re.sub(r"[^A-Za-z0-9.]+", "-", description).strip("-") or "level"
    return Path(root) / f"{slug}-{key.hexdigest()[:16]}"


__all__ = ["fingerprint", "level_checkpoint_dir"]
