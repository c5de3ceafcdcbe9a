"""Frontend through the CLI: every model-argument form, and each user error as one line, exit 2."""

from __future__ import annotations

import json

import pytest
import torch

from prunec import zoo
from prunec.frontend import save_checkpoint
from tests.conftest import assert_user_error, run_cli


def test_zoo_inspect_json_totals(tmp_path):
    out = tmp_path / "r.json"
    result = run_cli("inspect", "zoo:resnet20", "--input-shape", "1,3,32,32", "--format", "json",
                     "-o", str(out))
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    assert report["schema_version"] == 1
    assert report["totals"]["params"] == sum(p.numel() for p in zoo.build("resnet20").parameters())
    first = report["layers"][0]
    assert first["op"] == "Conv2d" and first["output_shape"] == [1, 16, 32, 32]
    assert first["macs"] == 16 * 32 * 32 * 3 * 9


def test_state_dict_with_arch_and_prunec_checkpoint(tmp_path):
    model = zoo.build("resnet20", in_channels=1, num_classes=7)
    plain = tmp_path / "plain.pt"
    torch.save(model.state_dict(), plain)
    result = run_cli("inspect", str(plain), "--arch", "zoo:resnet20", "--input-shape", "2,1,28,28",
                     "--format", "json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["layers"][-1]["output_shape"] == [2, 7]

    ckpt = tmp_path / "ckpt.pt"
    save_checkpoint(model, str(ckpt), "zoo:resnet20", 1, 7, input_shape=[1, 1, 28, 28])
    result = run_cli("inspect", str(ckpt), "--format", "json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["layers"][-1]["output_shape"] == [1, 7]


def test_pickled_module_needs_trust(tmp_path):
    path = tmp_path / "whole.pt"
    torch.save(zoo.build("resnet20"), path)
    refused = run_cli("inspect", str(path), "--input-shape", "1,3,32,32")
    assert_user_error(refused, "--trust-model", "arbitrary code")
    trusted = run_cli("inspect", str(path), "--input-shape", "1,3,32,32", "--trust-model",
                      "--format", "json")
    assert trusted.returncode == 0, trusted.stderr


_MODULE = """
import torch
from torch import nn

class MyNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.fc = nn.Conv2d(3, 4, 3), nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(self.conv(x).mean((2, 3)))
"""


def test_pickled_module_whose_class_cannot_be_imported(tmp_path):
    """A module saved from a script (class in __main__), or whose module is not importable where
    prunec runs: one line saying what to save instead; a module next to the user resolves."""
    import subprocess
    import sys

    here, elsewhere = tmp_path / "here", tmp_path / "elsewhere"
    here.mkdir()
    elsewhere.mkdir()
    (here / "mynet.py").write_text(_MODULE)
    script = "import torch, mynet; torch.save(mynet.MyNet(), 'module.pt')"
    main_script = _MODULE + "\ntorch.save(MyNet(), 'main.pt')\n"
    for code in (script, main_script):
        subprocess.run([sys.executable, "-c", code], cwd=here, check=True, timeout=120)
    args = ["--trust-model", "--input-shape", "1,3,8,8", "--format", "json"]
    assert_user_error(run_cli("inspect", str(here / "main.pt"), *args, cwd=here), "__main__", "state_dict",
                      "--arch package.module:factory")
    assert_user_error(run_cli("inspect", str(here / "module.pt"), *args, cwd=elsewhere), "cannot be imported",
                      "mynet", "PYTHONPATH")
    found = run_cli("inspect", str(here / "module.pt"), *args, cwd=here)
    assert found.returncode == 0, found.stderr
    assert json.loads(found.stdout)["layers"][-1]["output_shape"] == [1, 2]


def test_state_dict_with_a_factory_arch(tmp_path):
    """``--arch package.module:factory`` names the network a bare state dict's weights go into."""
    from tests.model_fixtures import sized_net

    trained = sized_net()
    with torch.no_grad():
        for p in trained.parameters():
            p.add_(1.0)  # weights the factory's fresh network does not have
    path = tmp_path / "weights.pt"
    torch.save(trained.state_dict(), path)
    result = run_cli("inspect", str(path), "--arch", "tests.model_fixtures:sized_net", "--input-shape",
                     "1,3,16,16", "--format", "json")
    assert result.returncode == 0, result.stderr
    from prunec.frontend import load

    loaded = load(str(path), arch="tests.model_fixtures:sized_net")
    x = torch.randn(1, 3, 16, 16)
    torch.testing.assert_close(loaded(x), trained(x))


def test_a_module_instance_named_as_architecture_is_copied(tmp_path):
    """``--arch pkg.mod:instance`` (a module, not a function): loading weights must not change
    the importer's object, nor make two loads one network."""
    from prunec.frontend import load
    from tests import model_fixtures

    path = tmp_path / "w.pt"
    torch.save({k: v + 1 for k, v in model_fixtures.TINY_INSTANCE.state_dict().items()}, path)
    before = {k: v.clone() for k, v in model_fixtures.TINY_INSTANCE.state_dict().items()}
    first, second = (load(str(path), arch="tests.model_fixtures:TINY_INSTANCE") for _ in range(2))
    assert first is not second and first is not model_fixtures.TINY_INSTANCE
    for k, v in model_fixtures.TINY_INSTANCE.state_dict().items():
        assert torch.equal(v, before[k])


def test_missing_file(tmp_path):
    assert_user_error(run_cli("inspect", str(tmp_path / "nope.pt")), "not found")


def test_truncated_file(tmp_path):
    good = tmp_path / "good.pt"
    torch.save(zoo.build("resnet20").state_dict(), good)
    bad = tmp_path / "bad.pt"
    bad.write_bytes(good.read_bytes()[: good.stat().st_size // 3])
    assert_user_error(run_cli("inspect", str(bad), "--arch", "zoo:resnet20"), "corrupted or truncated")


def test_bare_state_dict_without_arch(tmp_path):
    path = tmp_path / "sd.pt"
    torch.save(zoo.build("resnet20").state_dict(), path)
    assert_user_error(run_cli("inspect", str(path)), "--arch")


def test_untraceable_model_names_module_and_line():
    result = run_cli("inspect", "tests.model_fixtures:untraceable", "--input-shape", "1,3,8,8")
    assert_user_error(result, "gate", "model_fixtures.py", "--leaf-module")
    # the advice works: with the gate as a leaf the model traces
    ok = run_cli("inspect", "tests.model_fixtures:untraceable", "--input-shape", "1,3,8,8",
                 "--leaf-module", "gate", "--format", "json")
    assert ok.returncode == 0, ok.stderr
    # a leaf named wrong is said, not ignored (the trace would fail as before, or run unasked-for)
    assert_user_error(run_cli("inspect", "tests.model_fixtures:untraceable", "--input-shape", "1,3,8,8",
                              "--leaf-module", "gates"), "leaf module 'gates' is not a submodule")


@pytest.mark.parametrize("shape", ["1,1,32,32", "1,3,32", "a,b,c,d", "0,3,32,32"])
def test_wrong_input_shape(shape):
    assert_user_error(run_cli("inspect", "zoo:resnet20", "--input-shape", shape), "shape")


def test_unknown_zoo_model_and_factory():
    assert_user_error(run_cli("inspect", "zoo:resnet21"), "unknown zoo model")
    assert_user_error(run_cli("inspect", "no_such_pkg.mod:make"), "cannot import")


def test_python_dash_m_and_version():
    result = run_cli("--version")
    assert result.returncode == 0 and "prunec" in result.stdout


@pytest.mark.parametrize("body, needle", [
    ("raise RuntimeError('no GPU here')", "raised RuntimeError: no GPU here"),
    ("def p(:\n    pass", "raised SyntaxError"),
])
def test_a_user_module_that_fails_to_import_is_one_line(tmp_path, body, needle):
    """A factory, pass or pruner module that raises while importing (not an ImportError) is named
    with its error, in one line, for every option that imports user code."""
    (tmp_path / "broken_plugin.py").write_text(body + "\n")
    for args in (["inspect", "broken_plugin:make"],
                 ["inspect", "zoo:resnet20", "--pass", "broken_plugin:p"],
                 ["prune", "zoo:resnet20", "--ratio", "0.5", "--pruner", "broken_plugin:p",
                  "-o", str(tmp_path / "out.pt")]):
        assert_user_error(run_cli(*args, cwd=tmp_path), "broken_plugin", needle)
    assert not (tmp_path / "out.pt").exists()


@pytest.mark.parametrize("spec", [":make", ".relative:make", "module_only:"])
def test_a_malformed_import_spec_is_one_line(spec):
    assert_user_error(run_cli("inspect", "zoo:resnet20", "--pass", spec), "package.module:object")


@pytest.mark.parametrize("kind", ["TorchScript", "torch.export"])
def test_a_torchscript_or_exported_archive_is_named_not_called_corrupted(tmp_path, kind):
    """Both are zip archives torch.load cannot read; they used to be reported as corrupted files."""
    from prunec.errors import UserError
    from prunec.frontend import load

    model, x = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU()).eval(), torch.randn(1, 3, 8, 8)
    path = tmp_path / ("model.pt" if kind == "TorchScript" else "model.pt2")
    if kind == "TorchScript":
        torch.jit.save(torch.jit.trace(model, x), str(path))
    else:
        torch.export.save(torch.export.export(model, (x,)), str(path))
    for trust in (False, True):
        with pytest.raises(UserError, match=f"is a {kind} archive, which prunec does not read.*state_dict"):
            load(str(path), trust_model=trust)


class _TwoInputs(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3)

    def forward(self, x: torch.Tensor, y: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
        return (self.conv(x) + self.conv(y)).mean((2, 3)) * scale


def test_a_model_taking_two_inputs_is_told_so():
    """It used to read "input shape does not fit the model: StopIteration"."""
    from prunec.errors import UserError
    from prunec.frontend import trace

    with pytest.raises(UserError, match=r"forward takes 2 inputs \(x, y\); prunec feeds it 1 image tensor"):
        trace(_TwoInputs(), torch.randn(1, 3, 8, 8))
    assert trace(_TwoInputs(), (torch.randn(1, 3, 8, 8), torch.randn(1, 3, 8, 8))) is not None  # the default stays

    class Variadic(torch.nn.Module):  # *args and **kwargs take nothing: one image is all it needs
        def forward(self, x: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:
            return x.mean((2, 3))

    assert trace(Variadic(), torch.randn(1, 3, 8, 8)) is not None
