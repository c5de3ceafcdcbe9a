"""Mistakes first-time users made, on the command line and in Python, each ending in one clear
message (and exit 2, nothing written, on the command line), and the surprises found with them
(unseeded zoo weights, a pass module next to the user that did not import, tables cut to 80
columns in a log, a report that named the default chip whatever --hw said)."""

from __future__ import annotations

import argparse
import sys

import numpy as np
import pytest
import torch

from prunec import zoo
from prunec.errors import UserError
from tests.conftest import assert_user_error, run_cli

UNWRITABLE = "/proc/prunec-test/out"  # a directory nobody can create, root included


def _leftovers(directory) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_prune_and_finetune_outputs_that_cannot_be_written(tmp_path):
    (tmp_path / "taken").mkdir()
    for args in (["prune", "zoo:resnet20", "--ratio", "0.5"],
                 ["finetune", "zoo:resnet20", "--data", "synthetic", "--in-channels", "1", "--num-classes", "4",
                  "--epochs", "0.1"]):
        assert_user_error(run_cli(*args, "-o", UNWRITABLE + ".pt"), "cannot write", "does not exist")
        assert_user_error(run_cli(*args, "-o", "/proc/x.pt"), "cannot write", "not writable")
        assert_user_error(run_cli(*args, "-o", str(tmp_path / "taken")), "is a directory")
        assert _leftovers(tmp_path) == ["taken"] and _leftovers(tmp_path / "taken") == []


def test_a_failed_checkpoint_save_leaves_no_temporary_file(tmp_path, monkeypatch):
    import errno
    from pathlib import Path

    from prunec.frontend import save_checkpoint

    def full_disk(self, data):  # the temporary file exists, then the disk fills up
        open(self, "wb").close()
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", full_disk)
    with pytest.raises(UserError, match="cannot write .*No space left on device"):
        save_checkpoint(zoo.build("resnet20", 1, 4), str(tmp_path / "m.pt"), "zoo:resnet20", 1, 4)
    assert _leftovers(tmp_path) == []


def test_compile_output_that_cannot_be_created_is_refused_before_any_work(tmp_path):
    result = run_cli("compile", "zoo:resnet20", "--data", "synthetic", "-o", "/proc/prunec-out")
    assert_user_error(result, "cannot write /proc/prunec-out", "not writable")
    (tmp_path / "precious.txt").write_text("keep me")
    result = run_cli("compile", "zoo:resnet20", "--data", "synthetic", "-o", str(tmp_path / "precious.txt"))
    assert_user_error(result, "exists and is not a directory")
    assert (tmp_path / "precious.txt").read_text() == "keep me"


@pytest.mark.parametrize(("args", "needle"), [
    (["--data", ""], "--data is empty"),
    (["--data", "synthetic", "--mean", "128", "--std", "64"], "0-1 pixel scale"),
    (["--data", "synthetic", "--mean", "0.5,0.5"], "give 1"),
    (["--data", "synthetic", "--mean", "abc"], "expected comma-separated numbers"),
    (["--data", "synthetic", "--no-such-option"], "unrecognized arguments"),
    (["--data", "synthetic", "--confidence", "90"], "strictly between 0 and 1, got 90 (did you mean 0.9?)"),
    (["--data", "synthetic", "--confidence", "1"], "--confidence must be a probability strictly between 0 and 1"),
    (["--data", "synthetic", "--confidence", "nan"], "--confidence must be a probability"),
    (["--data", "synthetic", "--max-accuracy-drop", "nan"], "--max-accuracy-drop must be a finite number"),
    (["--data", "synthetic", "--max-accuracy-drop", "-1"], "--max-accuracy-drop must be a finite number"),
    (["--data", "synthetic", "--confidence", "0.9", "--mild-rate", "0.3"], "it does not apply to --mild-rate"),
    # numpy is seeded beside torch: a seed it refuses is an option error, not a traceback mid-run
    (["--data", "synthetic", "--seed", "-1"], "argument --seed: must be an integer from 0 to 4294967295, got '-1'"),
    (["--data", "synthetic", "--seed", str(2**64)], "argument --seed: must be an integer from 0 to 4294967295"),
])
def test_bad_options_are_one_line(tmp_path, args, needle):
    """argparse's own errors too: one line naming the option, not the whole usage block."""
    out = tmp_path / "out"
    assert_user_error(run_cli("compile", "zoo:resnet20", *args, "-o", str(out)), needle)
    assert not out.exists()


def test_files_that_are_not_what_they_claim(tmp_path):
    text = tmp_path / "model.pt"
    text.write_text("not a model\n")
    for extra in ([], ["--trust-model"]):
        assert_user_error(run_cli("inspect", str(text), *extra), "is not a PyTorch file")
    weights = tmp_path / "seven.pt"
    torch.save(zoo.build("resnet20", 3, 7).state_dict(), weights)
    assert_user_error(run_cli("inspect", str(weights), "--arch", "zoo:resnet20", "--num-classes", "10"),
                      "do not fit zoo:resnet20",
                      "2 of another shape (fc.weight (7, 64) in the file, (10, 64) in the model")
    deeper = tmp_path / "deeper.pt"  # a deeper net's weights: named in a few words, not 216 keys
    torch.save(zoo.build("resnet56", 3, 10).state_dict(), deeper)
    said = run_cli("inspect", str(deeper), "--arch", "zoo:resnet20")
    assert_user_error(said, "216 unexpected (layer1.3.conv1.weight")
    assert len(said.stderr) < 300
    objects = tmp_path / "objects.npz"
    np.savez(objects, x_train=np.array([object()]), y_train=np.zeros(1), x_test=np.zeros(1), y_test=np.zeros(1))
    assert_user_error(run_cli("finetune", "zoo:resnet20", "--data", str(objects), "-o", str(tmp_path / "f.pt")),
                      "holds Python objects")


def test_fresh_zoo_weights_are_seeded():
    """The same command builds the same network (compile's --reuse-levels relies on it);
    another --seed builds another."""
    from prunec.cli.common import load_model

    earlier = iter(range(100, 200))

    def weights(seed: int) -> torch.Tensor:
        torch.manual_seed(next(earlier))  # whatever the process drew before differs every time
        args = argparse.Namespace(model="zoo:resnet20", arch=None, trust_model=False, in_channels=3,
                                  num_classes=10, seed=seed)
        return load_model(args)[0].conv1.weight.detach().clone()

    assert torch.equal(weights(0), weights(0)) and not torch.equal(weights(0), weights(1))


def test_a_pass_module_in_the_working_directory_imports(tmp_path, monkeypatch):
    """`prunec ...` (a console script, unlike `python -m`) does not put the working directory on
    sys.path; the README's `--pass examples.custom_pass:relu6_to_relu` run from a checkout needs it."""
    from prunec.plugins import import_object

    (tmp_path / "my_passes_here.py").write_text("def identity(gm):\n    return gm\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    assert import_object("my_passes_here:identity", "pass").__name__ == "identity"
    assert str(tmp_path) not in sys.path  # added for that import only, after everything installed


def test_tables_in_a_log_are_not_cut_to_80_columns(monkeypatch):
    from prunec.terminal import LOG_WIDTH, make_console

    monkeypatch.delenv("COLUMNS", raising=False)
    console = make_console()
    assert not console.is_terminal and console.width == LOG_WIDTH
    with console.capture() as captured:
        console.print("word " * 100)
    assert captured.get().count("\n") == 1  # one message, one line
    monkeypatch.setenv("COLUMNS", "100")
    assert make_console().width == 100


def test_lower_routed_share_needs_a_dynamic_model_and_o_says_where(tmp_path):
    assert_user_error(run_cli("lower", "zoo:resnet20", "--input-shape", "1,3,32,32", "--routed-share", "0.3"),
                      "routed_share applies only to a dynamic model")
    out = tmp_path / "ir.json"
    result = run_cli("lower", "zoo:resnet20", "--input-shape", "1,3,32,32", "--format", "json", "-o", str(out))
    assert result.returncode == 0 and f"wrote {out}" in result.stderr and out.exists()


def test_normalize_refuses_raw_pixels():
    from prunec.data import Normalize

    norm = Normalize((0.5,), (0.25,))
    for raw in (torch.full((1, 1, 2, 2), 200, dtype=torch.uint8), np.zeros((1, 1, 2, 2))):
        with pytest.raises(TypeError, match="float tensor of 0-1 pixels"):
            norm(raw)
    assert torch.allclose(norm(torch.full((1, 1, 2, 2), 0.75)), torch.ones(1, 1, 2, 2))


@pytest.mark.parametrize(("points", "shown"), [(-0.0, "+0.00"), (-0.004, "+0.00"), (0.004, "+0.00"),
                                               (-1.236, "-1.24"), (2.5, "+2.50")])
def test_accuracy_changes_never_read_minus_zero(points, shown):
    from prunec.report import _signed

    assert _signed(points) == shown


def test_progress_bars_leave_no_empty_lines_in_a_log(capsys):
    """A rich bar that cannot redraw (stderr not a terminal) printed one empty line per bar."""
    from prunec.training import _Progress

    bar = _Progress("fine-tune", total=3, done=0, show=True)
    bar.update(3, 0.5, 50.0, 1)
    bar.close()
    captured = capsys.readouterr()
    assert bar.progress is None and captured.out == "" and captured.err == ""


def test_a_loaded_model_names_the_input_shape_it_takes():
    """The exported parts fail on a torch.export guard for any other image size; the user
    should read the shape the model takes instead."""
    import prunec
    from tests.conftest import ROOT

    compiled = prunec.load_compiled(ROOT / "benchmarks" / "results" / "artifacts" / "resnet20_fashion-mnist" / "model")
    assert compiled.model(torch.rand(2, 1, 28, 28)).shape == (2, 10)
    for shape in ((2, 1, 16, 16), (2, 3, 28, 28)):
        with pytest.raises(ValueError, match=r"takes N x 1 x 28 x 28 inputs, got 2 x \d x \d+ x \d+"):
            compiled.model(torch.rand(*shape))
    logits, route = compiled.model(torch.rand(0, 1, 28, 28), return_route=True)  # the parts take no empty batch
    assert logits.shape == (0, 10) and route.shape == (0,)
    with pytest.raises(TypeError, match="takes a torch.Tensor, got ndarray"):
        compiled.model(np.zeros((2, 1, 28, 28), np.float32))


def test_python_api_mistakes_fail_before_any_work():
    import prunec

    model = zoo.build("resnet20", 1, 4)
    with pytest.raises(TypeError, match="takes an nn.Module, got str.*prunec.load"):
        prunec.compile("zoo:resnet20", "synthetic")
    with pytest.raises(TypeError, match="data must be"):
        prunec.compile(model, 3)
    with pytest.raises(UserError, match="mild must be a number, got '0.3'"):
        prunec.compile(model, "synthetic", mild="0.3", aggressive=0.7)
    with pytest.raises(UserError, match="sparsity_samples"):
        prunec.compile(model, "synthetic", sparsity_samples=0)
    with pytest.raises(UserError, match="seed must be an integer from 0 to 4294967295, got 4294967296"):
        prunec.compile(model, "synthetic", seed=2**32)
    from prunec.pipeline import _config  # a mild rate alone replaces the default budget, as on the CLI

    assert _config("synthetic", None, {"mild_rate": 0.3}).max_accuracy_drop is None
    assert type(_config("synthetic", None, {"seed": 2.0}).seed) is int  # numpy refuses the float
    with pytest.raises(UserError, match="not both"):
        _config("synthetic", None, {"mild_rate": 0.3, "max_accuracy_drop": 1.0})
    from prunec.pipeline import CompileConfig, _validate  # numpy scalars are numbers too

    _validate(CompileConfig(data="synthetic", mild=np.float32(0.3), aggressive=np.float64(0.7), seed=np.int64(1)))
    pruned = prunec.prune(model, torch.rand(1, 1, 16, 16), 0.5, ignore="conv1")  # one pattern, not 5 letters
    assert pruned.conv1.out_channels == model.conv1.out_channels


def test_a_failing_pass_says_why(tmp_path):
    (tmp_path / "breaks.py").write_text("def boom(gm):\n    raise RuntimeError('the reason, in my words')\n")
    assert_user_error(run_cli("inspect", "zoo:resnet20", "--pass", "breaks:boom", cwd=tmp_path),
                      "'boom' pass", "RuntimeError: the reason, in my words")


def test_the_report_names_the_hardware_it_was_costed_on(tmp_path):
    """A custom --hw in pJ: report.json records it and report.md's reading guide quotes its
    costs, not the shipped chip's."""
    import json

    import yaml

    from prunec.backends.eyeriss.hardware import DEFAULT_HW
    from prunec.report import render_markdown

    hw = yaml.safe_load(open(DEFAULT_HW))
    hw.update(name="my_chip")
    hw["energy"].update(unit="pJ", dram=50.0, glb=3.0)
    (tmp_path / "chip.yaml").write_text(yaml.safe_dump(hw))
    out = tmp_path / "out"
    result = run_cli("compile", "zoo:resnet20", "--data", "synthetic", "--mild", "0.3", "--aggressive", "0.7",
                     "--epochs", "0.1", "--selector", "max-softmax", "--hw", str(tmp_path / "chip.yaml"), "--quiet",
                     "-o", str(out))
    assert result.returncode == 0, result.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["hardware"]["name"] == "my_chip" and report["hardware"]["energy_unit"] == "pJ"
    text = (out / "report.md").read_text()
    assert "costed on my_chip" in text and "DRAM 50 per access" in text and "DRAM 200" not in text
    del report["hardware"]  # a report made before the field: the shipped chip's costs, as then
    assert "costed on eyeriss_v1" in render_markdown(report) and "DRAM 200 per access" in render_markdown(report)


def test_lower_checks_what_the_backend_would_ignore():
    import prunec

    model, x = zoo.build("resnet20", 1, 4), torch.rand(1, 1, 16, 16)
    for kwargs, needle in ((dict(activation_sparsity={"conv1": 1.5}), r"\[0, 1\], got 1.5"),
                           (dict(routed_share=0.3), "only to a dynamic model"),
                           (dict(hw={"name": "x"}), "hw must be a hardware YAML path")):
        with pytest.raises(UserError, match=needle):
            prunec.lower(model, x, **kwargs)
    dense = prunec.lower(model, x)
    sparse = prunec.lower(model, x, activation_sparsity={"layer1_0_conv1": np.float32(0.5)})
    assert sparse.totals["energy"] < dense.totals["energy"]  # a numpy share is a share, and it is applied


def test_passes_that_return_something_else_are_refused(tmp_path):
    (tmp_path / "odd.py").write_text("def forty_two(gm):\n    return 42\n\n"
                                     "def factory(scale=1):\n    return lambda gm: None\n")
    assert_user_error(run_cli("inspect", "zoo:resnet20", "--pass", "odd:forty_two", cwd=tmp_path),
                      "returned int")
    assert_user_error(run_cli("inspect", "zoo:resnet20", "--pass", "odd:factory", cwd=tmp_path),
                      "looks like a factory")
    assert run_cli("inspect", "zoo:resnet20", "--pass", "odd:factory{}", cwd=tmp_path).returncode == 0


def test_a_data_file_mean_on_the_0_255_scale_names_the_file(tmp_path):
    path = tmp_path / "d.npz"
    x = np.zeros((20, 8, 8), np.uint8)
    np.savez(path, x_train=x, y_train=np.arange(20) % 2, x_test=x[:2], y_test=np.zeros(2, int), mean=np.array([120.0]),
             std=np.array([60.0]))
    from prunec.data import load_split

    with pytest.raises(UserError, match=r"d\.npz: mean is on the 0-1 pixel scale"):
        load_split(str(path), "train")


def test_learned_selector_without_enough_calibration_images_stops_before_fine_tuning(tmp_path):
    """The learned selector is cross-fitted in folds of the calibration images: with fewer images
    than folds the compile says so (and what to do) before hours of fine-tuning."""
    rng = np.random.default_rng(0)
    data = tmp_path / "few.npz"
    np.savez(data, x_train=rng.integers(0, 255, (40, 8, 8, 3), dtype=np.uint8), y_train=np.arange(40) % 5,
             x_test=rng.integers(0, 255, (10, 8, 8, 3), dtype=np.uint8), y_test=np.arange(10) % 5,
             x_calibration=rng.integers(0, 255, (3, 8, 8, 3), dtype=np.uint8), y_calibration=np.arange(3))
    out = tmp_path / "out"
    result = run_cli("compile", "tests.model_fixtures:tiny", "--data", str(data), "--mild", "0.3", "--aggressive",
                     "0.7", "-o", str(out))
    assert_user_error(result, "at least 5", "has 3", "--selector max-softmax")
    assert not out.exists()
