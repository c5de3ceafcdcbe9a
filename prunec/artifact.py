"""The compiled-model artefact: save it, and load it without the model's source or pickle.

A saved model is a directory::

    manifest.json     threshold, taps, selector kind, preprocessing, input shape,
                      classes, chosen operating point, costs, versions
    sweep.json        the whole calibration sweep (for reports)
    aggressive.pt2    torch.export of x -> (logits, *taps)   (trunk + head)
    selector.pt2      torch.export of (logits, *taps) -> score
    mild.pt2          torch.export of x -> logits
    original.pt2      (when the compiled model carries the original)

``torch.export`` archives hold a graph (JSON) and raw tensor bytes, so loading runs no
model code. Their loader can fall back to unrestricted unpickling for exotic tensors;
:func:`load_compiled` refuses archives that ask for it and forces ``weights_only``
loading, so a tampered file fails instead of running code. Every part is exported with
a dynamic batch dimension, so the loaded model runs at any batch size, 1 included.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from prunec.calibration import SweepPoint
from prunec.dynamic import DynamicModel, set_eval
from prunec.errors import UserError, is_number

FORMAT = "prunec-compiled"
SCHEMA_VERSION = 1
PARTS = ("aggressive", "selector", "mild", "original")


@dataclass
class CompiledModel:
    """A compiled dynamic model and how it was calibrated."""

    model: DynamicModel
    sweep: list[SweepPoint] = field(default_factory=list)
    chosen: SweepPoint | None = None
    costs: dict[str, float] | None = None
    original_accuracy: float | None = None
    constraint: dict[str, Any] = field(default_factory=dict)
    manifest: dict[str, Any] = field(default_factory=dict)

    @property
    def aggressive(self) -> nn.Module:
        return self.model.aggressive

    @property
    def mild(self) -> nn.Module:
        return self.model.mild

    @property
    def original(self) -> nn.Module | None:
        return self.model.original

    @property
    def threshold(self) -> float:
        return self.model.threshold

    @property
    def preprocess(self) -> nn.Module:
        return self.model.preprocess

    @property
    def selector_kind(self) -> str:
        return self.model.selector_kind


# --------------------------------------------------------------------------- export


def example_batch(model: DynamicModel, batch: int = 2) -> torch.Tensor:
    """A deterministic input of the model's shape; batch 2 so export keeps the batch symbolic."""
    if model.input_shape is None:
        raise UserError("the compiled model does not record its input shape; trace it with example inputs")
    gen = torch.Generator().manual_seed(0)
    return torch.randn(batch, *model.input_shape[1:], generator=gen)


def exported_parts(model: DynamicModel, example: torch.Tensor | None = None
                   ) -> dict[str, torch.export.ExportedProgram]:
    """``torch.export`` programs of the parts, batch dimension dynamic (a loaded model's own, which it keeps;
    a fresh model's are exported anew, not cached on it: lowering tells a loaded model by them)."""
    cached = getattr(model, "_exported_parts", None)
    if cached is not None:
        return cached
    x = example if example is not None else example_batch(model)
    batch = torch.export.Dim("batch", min=1)
    parts: dict[str, torch.export.ExportedProgram] = {}
    with torch.no_grad():
        front_out = tuple(model.front(x))
        parts["aggressive"] = torch.export.export(model.front, (x,), dynamic_shapes=({0: batch},))
        parts["selector"] = torch.export.export(
            model.selector, front_out,
            dynamic_shapes=({0: batch}, tuple({0: batch} for _ in front_out[1:])))
        parts["mild"] = torch.export.export(model.mild, (x,), dynamic_shapes=({0: batch},))
        if model.original is not None:
            parts["original"] = torch.export.export(model.original, (x,), dynamic_shapes=({0: batch},))
    return parts


def preprocess_spec(pre: nn.Module) -> dict[str, list[float]] | None:
    """The mean/std of a Normalize preprocessing module (None for any other)."""
    mean, std = getattr(pre, "mean", None), getattr(pre, "std", None)
    if isinstance(mean, torch.Tensor) and isinstance(std, torch.Tensor):
        return {"mean": mean.flatten().tolist(), "std": std.flatten().tolist()}
    return None


def save_compiled(compiled: CompiledModel, directory: str | os.PathLike) -> Path:
    """Write ``compiled`` to ``directory`` (see module docstring); returns the directory.

    Written to a temporary sibling and renamed into place, so a failure never leaves a
    half-written directory. An existing compiled-model directory is replaced; any other
    non-empty directory is refused.
    """
    import prunec

    target = Path(directory)
    if target.exists() and (not target.is_dir() or (any(target.iterdir())
                                                    and not (target / "manifest.json").is_file())):
        raise UserError(f"{target} exists and is not a prunec compiled-model directory; choose another")
    model = compiled.model
    parts = exported_parts(model)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        files = {}
        for name, ep in parts.items():
            files[name] = f"{name}.pt2"
            torch.export.save(ep, tmp / files[name])
        manifest = {
            "format": FORMAT, "schema_version": SCHEMA_VERSION,
            "threshold": model.threshold, "taps": model.taps, "selector_kind": model.selector_kind,
            "num_classes": model.num_classes, "input_shape": list(model.input_shape or []),
            "preprocess": preprocess_spec(model.preprocess), "parts": files,
            "aggressive_outputs": ["logits", *model.taps],
            "chosen": compiled.chosen.as_dict() if compiled.chosen else None,
            "costs": compiled.costs, "original_accuracy": compiled.original_accuracy,
            "constraint": compiled.constraint,
            "versions": {"prunec": prunec.__version__, "torch": torch.__version__},
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        (tmp / "sweep.json").write_text(json.dumps([p.as_dict() for p in compiled.sweep]) + "\n")
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


# --------------------------------------------------------------------------- load


@contextmanager
def _weights_only_torch_load() -> Iterator[None]:
    """Within the block, every ``torch.load`` is forced to ``weights_only=True``."""
    original = torch.load

    def safe_load(*args: Any, **kwargs: Any) -> Any:
        kwargs["weights_only"] = True
        return original(*args, **kwargs)

    torch.load = safe_load
    try:
        yield
    finally:
        torch.load = original


def _safe_export_load(path: Path) -> torch.export.ExportedProgram:
    try:
        with zipfile.ZipFile(path) as archive:
            for name in archive.namelist():
                if name.endswith(("model_weights_config.json", "model_constants_config.json")):
                    config = json.loads(archive.read(name)).get("config", {})
                    if any(entry.get("use_pickle") for entry in config.values()):
                        raise UserError(f"{path} stores pickled tensors; prunec does not unpickle "
                                        "compiled models (re-save it with plain tensors)")
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise UserError(f"{path} is not a readable torch.export archive ({exc})") from None
    try:
        with _weights_only_torch_load():
            return torch.export.load(path)
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001 - any corrupt archive is reported the same way
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise UserError(f"cannot load {path}: {first}") from None


INFERENCE_ONLY = ("a loaded compiled model runs inference only (its parts are torch.export graphs with "
                  "batch norm in eval form); fine-tune the networks before compiling")


def _inference_only(module: nn.Module) -> nn.Module:
    """An exported part whose ``.eval()`` works, as users call it first thing after loading
    (torch's own refuses ``train()`` in both modes), and whose ``.train()`` says why not."""
    def train(mode: bool = True) -> nn.Module:
        if mode:
            raise RuntimeError(INFERENCE_ONLY)
        return set_eval(module)

    module.train = train  # type: ignore[method-assign]
    module.eval = lambda: train(False)  # type: ignore[method-assign]
    return set_eval(module)


def _manifest_fields(manifest: dict[str, Any], where: Path) -> dict[str, Any]:
    """The fields a compiled model is rebuilt from, checked: an edited manifest is one clear error, and a
    threshold that is not a finite number (NaN routes nothing, silently) is refused."""
    try:
        threshold = manifest["threshold"]
        if not is_number(threshold) or not math.isfinite(threshold):
            raise ValueError(f"threshold must be a finite number, got {threshold!r}")
        taps = manifest["taps"]
        if not isinstance(taps, list) or not all(isinstance(t, str) for t in taps):
            raise ValueError(f"taps must be a list of node names, got {taps!r}")
        pre = manifest.get("preprocess")
        if pre and not (isinstance(pre, dict) and all(isinstance(pre.get(k), list) and pre[k]
                                                      and all(is_number(v) for v in pre[k]) for k in ("mean", "std"))):
            raise ValueError(f"preprocess must hold lists of numbers 'mean' and 'std', got {pre!r}")
        shape = manifest.get("input_shape") or None
        if shape is not None and not (isinstance(shape, list) and shape
                                      and all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in shape)):
            raise ValueError(f"input_shape must be a list of positive integers, got {shape!r}")
        classes = manifest.get("num_classes")
        if classes is not None and not (isinstance(classes, int) and not isinstance(classes, bool) and classes > 0):
            raise ValueError(f"num_classes must be a positive integer, got {classes!r}")
        kind = manifest.get("selector_kind")
        if kind is not None and not isinstance(kind, str):
            raise ValueError(f"selector_kind must be text, got {kind!r}")
        chosen = SweepPoint(**manifest["chosen"]) if manifest.get("chosen") else None
    except (KeyError, TypeError, ValueError) as exc:
        detail = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc)
        raise UserError(f"{where} is incomplete or inconsistent ({detail}); save the compiled model again") from None
    return {"threshold": float(threshold), "taps": taps, "preprocess": pre, "input_shape": shape,
            "num_classes": classes, "selector_kind": kind, "chosen": chosen}


def load_compiled(path: str | os.PathLike) -> CompiledModel:
    """Load a model saved by :func:`save_compiled` (a directory or its manifest.json).

    Needs neither the model's Python source nor ``--trust-model``: the parts are
    torch.export archives. ``.model.front``/``.selector``/``.mild`` are the loaded
    programs' modules; the dynamic graph is rebuilt around them with the same roles.
    """
    from prunec.data import Normalize

    root = Path(path)
    if root.is_file() and root.name == "manifest.json":
        root = root.parent
    manifest_path = root / "manifest.json"
    if not manifest_path.is_file():
        raise UserError(f"{root} is not a prunec compiled-model directory (no manifest.json)")
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"{manifest_path} is not valid JSON ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise UserError(f"{manifest_path} is not a prunec compiled-model manifest")
    version = manifest.get("schema_version", 0)
    if not isinstance(version, int) or isinstance(version, bool):
        raise UserError(f"{manifest_path}: schema_version must be an integer, got {version!r}")
    if version > SCHEMA_VERSION:
        raise UserError(f"{root} was written by a newer prunec (schema {version}); upgrade prunec")
    files = manifest.get("parts", {})
    if not isinstance(files, dict) or not all(isinstance(f, str) for f in files.values()):
        raise UserError(f"{manifest_path}: 'parts' must map each part to its file name")
    fields = _manifest_fields(manifest, manifest_path)
    missing = [p for p in ("aggressive", "selector", "mild") if p not in files]
    if missing:
        raise UserError(f"{manifest_path} lacks the parts: {', '.join(missing)}")
    programs = {}
    for name, file in files.items():
        part = root / file
        if name not in PARTS or Path(file).name != file or not part.is_file():
            raise UserError(f"compiled model part {name!r} ({file}) is missing or invalid in {root}")
        programs[name] = _safe_export_load(part)
    modules = {name: _inference_only(ep.module()) for name, ep in programs.items()}
    for module in modules.values():
        for p in module.parameters():
            p.requires_grad_(False)
    pre, shape = fields["preprocess"], fields["input_shape"]
    preprocess = Normalize(tuple(pre["mean"]), tuple(pre["std"])) if pre else nn.Identity()
    example = torch.zeros(1, *shape[1:]) if shape else None
    model = DynamicModel(
        modules["aggressive"], modules["selector"], modules["mild"], fields["taps"],
        fields["threshold"], original=modules.get("original"), preprocess=preprocess,
        selector_kind=fields["selector_kind"], input_shape=shape,
        num_classes=fields["num_classes"], example_input=example)
    model._exported_parts = programs
    sweep_path = root / "sweep.json"
    points = []
    if sweep_path.is_file():
        try:
            points = [SweepPoint(**p) for p in json.loads(sweep_path.read_text())]
        except (ValueError, TypeError) as exc:
            raise UserError(f"{sweep_path} is malformed ({exc})") from None
    return CompiledModel(model=model, sweep=points, chosen=fields["chosen"], costs=manifest.get("costs"),
                         original_accuracy=manifest.get("original_accuracy"),
                         constraint=manifest.get("constraint") or {}, manifest=manifest)


__all__ = ["CompiledModel", "save_compiled", "load_compiled", "exported_parts", "example_batch"]
