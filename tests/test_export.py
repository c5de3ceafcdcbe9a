"""Saving/loading the compiled model without source or pickle, and ONNX export."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from prunec.artifact import CompiledModel, load_compiled, save_compiled
from prunec.calibration import SweepPoint
from prunec.data import load_split
from prunec.errors import UserError
from prunec.export import export_onnx, run_onnx
from prunec.passes.insert_selector import insert_selector
from tests.test_selector import Tiny, train_tiny

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def compiled() -> CompiledModel:
    """A learned-selector model whose threshold routes the first test samples both ways."""
    aggressive, mild = train_tiny(4, steps=6), train_tiny(8, steps=30, seed=1)
    torch.manual_seed(3)
    dyn = insert_selector(aggressive, mild, "learned", original=Tiny(12).eval(),
                          preprocess=load_split("synthetic", "test").info.preprocess)
    x = load_split("synthetic", "test").x[:16]
    _, scores = dyn.scores(x)
    ordered = scores.sort().values.tolist()
    # halfway across the widest gap between middle scores: no score sits near it, so a last-digit
    # difference in onnxruntime cannot flip a route
    gap = max(range(4, 12), key=lambda i: ordered[i + 1] - ordered[i])
    assert ordered[gap + 1] - ordered[gap] > 1e-4
    dyn.threshold = (ordered[gap] + ordered[gap + 1]) / 2
    point = SweepPoint(dyn.threshold, 0.5, 0.9, 1.0)
    return CompiledModel(dyn, sweep=[point], chosen=point, costs={"base": 1.0, "mild": 2.0, "original": 3.0})


@pytest.fixture(scope="module")
def saved(compiled: CompiledModel, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_compiled(compiled, tmp_path_factory.mktemp("artifact") / "model")


def _x(n: int) -> torch.Tensor:
    return load_split("synthetic", "test").x[:n]


def test_round_trip_any_batch_size(compiled: CompiledModel, saved: Path) -> None:
    manifest = json.loads((saved / "manifest.json").read_text())
    assert manifest["taps"] == compiled.model.taps
    assert manifest["preprocess"] == {"mean": [0.5], "std": [0.25]}
    loaded = load_compiled(saved)
    assert loaded.threshold == compiled.threshold and loaded.selector_kind == "learned"
    dump = [json.dumps([p.as_dict() for p in c.sweep]) for c in (loaded, compiled)]
    assert dump[0] == dump[1]
    assert loaded.chosen.threshold == compiled.chosen.threshold
    roles = {n.meta["role"] for n in loaded.model.graph_module.graph.nodes}
    assert roles == {"trunk", "head", "selector", "mild"}
    with torch.no_grad():
        for n in (1, 5, 16):
            want, want_route = compiled.model(_x(n), return_route=True)
            got, got_route = loaded.model(_x(n), return_route=True)
            torch.testing.assert_close(got, want, rtol=0, atol=1e-5)
            assert torch.equal(got_route, want_route)
            torch.testing.assert_close(loaded.original(_x(n)), compiled.original(_x(n)), rtol=0, atol=1e-5)
    pixels = torch.rand(2, 1, 16, 16)
    torch.testing.assert_close(loaded.preprocess(pixels), compiled.preprocess(pixels))


def test_loads_without_source_and_without_unpickling(saved: Path) -> None:
    """A fresh interpreter with pickle disabled and no access to this file's model class."""
    code = f"""
import pickle, torch
def refuse(*a, **k): raise RuntimeError("pickle used")
pickle.load = pickle.loads = refuse
class NoUnpickler:
    def __init__(self, *a, **k): raise RuntimeError("pickle used")
pickle.Unpickler = NoUnpickler
import prunec
c = prunec.load_compiled({str(saved)!r})
x = torch.zeros(2, *c.model.input_shape[1:])
print(tuple(c.model(x).shape))
"""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120,
                         cwd="/")
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().endswith("(2, 4)")


def test_refuses_pickled_or_broken_artifacts(saved: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    for f in saved.iterdir():
        (bad / f.name).write_bytes(f.read_bytes())
    archive = bad / "mild.pt2"
    with zipfile.ZipFile(saved / "mild.pt2") as src, zipfile.ZipFile(archive, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename.endswith("model_weights_config.json"):
                config = json.loads(data)
                next(iter(config["config"].values()))["use_pickle"] = True
                data = json.dumps(config).encode()
            dst.writestr(item, data)
    with pytest.raises(UserError, match="pickled"):
        load_compiled(bad)
    (bad / "mild.pt2").write_bytes(b"not a zip")
    with pytest.raises(UserError, match="mild.pt2"):
        load_compiled(bad)
    with pytest.raises(UserError, match="manifest"):
        load_compiled(tmp_path / "nowhere")


@pytest.mark.parametrize(("edit", "needle"), [
    ({"schema_version": "2"}, "schema_version must be an integer, got '2'"),
    ({"taps": None}, "taps must be a list of node names"),
    ({"threshold": "abc"}, "threshold must be a finite number, got 'abc'"),
    ({"threshold": float("nan")}, "threshold must be a finite number, got nan"),  # would route nothing, silently
    ({"preprocess": [0.5, 0.25]}, "preprocess must hold lists of numbers"),
    ({"parts": ["mild.pt2"]}, "'parts' must map each part to its file name"),
    ({"input_shape": 28}, "input_shape must be a list of positive integers, got 28"),
    ({"num_classes": "4"}, "num_classes must be a positive integer"),
    ({"chosen": {"threshold": 0.5, "colour": "red"}}, "unexpected keyword argument 'colour'"),
])
def test_an_edited_manifest_is_one_clear_error(saved: Path, tmp_path: Path, edit: dict, needle: str) -> None:
    bad = tmp_path / "bad"
    shutil.copytree(saved, bad)
    manifest = json.loads((bad / "manifest.json").read_text())
    (bad / "manifest.json").write_text(json.dumps({**manifest, **edit}))
    with pytest.raises(UserError, match=re.escape(needle)):
        load_compiled(bad)
    del manifest["taps"]
    (bad / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(UserError, match="incomplete or inconsistent \\(missing field 'taps'\\)"):
        load_compiled(bad)


def test_save_refuses_foreign_directory(compiled: CompiledModel, tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("mine")
    with pytest.raises(UserError, match="not a prunec compiled-model directory"):
        save_compiled(compiled, tmp_path)
    assert (tmp_path / "keep.txt").read_text() == "mine"


def test_onnx_parts_and_if_model_match_pytorch(saved: Path, tmp_path: Path) -> None:
    loaded = load_compiled(saved)  # export works from the loaded artefact too
    paths = export_onnx(loaded, tmp_path)
    assert set(paths) == {"aggressive", "selector", "mild", "original", "dynamic_batch1"}
    for path in paths.values():
        onnx.checker.check_model(onnx.load(path), full_check=True)
    model = loaded.model
    x = _x(16)
    with torch.no_grad():
        front = model.front(x)
        want = {"aggressive": [t.numpy() for t in front], "mild": [model.mild(x).numpy()],
                "original": [model.original(x).numpy()]}
        want_score = model.selector(*front).numpy()
        want_logits, want_route = model(x, return_route=True)
    for name in ("aggressive", "mild", "original"):
        for batch in (1, 16):
            got = run_onnx(paths[name], x=x[:batch])
            for g, w in zip(got, want[name], strict=True):
                np.testing.assert_allclose(g, w[:batch], rtol=0, atol=1e-4)
            assert (got[0].argmax(1) == want[name][0][:batch].argmax(1)).all()
    feeds = {"logits": front[0], **{f"tap{i}": t for i, t in enumerate(front[1:])}}
    np.testing.assert_allclose(run_onnx(paths["selector"], **feeds)[0], want_score, rtol=0, atol=1e-4)
    assert want_route.any() and (~want_route).any()
    for i in range(len(x)):
        logits, route, score = run_onnx(paths["dynamic_batch1"], x=x[i:i + 1])
        assert bool(route) == bool(want_route[i])
        np.testing.assert_allclose(logits, want_logits[i:i + 1].numpy(), rtol=0, atol=1e-4)
        assert logits.argmax() == int(want_logits[i].argmax())
