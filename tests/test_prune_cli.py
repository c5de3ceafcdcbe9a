"""``prunec prune`` end to end, through a subprocess like a user runs it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

import prunec
from prunec import zoo
from prunec.cli import main
from prunec.frontend import example_input
from tests import model_fixtures


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "prunec", "prune", *args],
                          capture_output=True, text=True, timeout=300)


def test_prune_saves_a_loadable_checkpoint(tmp_path):
    out = tmp_path / "r.pt"
    proc = run("zoo:resnet20", "--ratio", "0.5", "--method", "l2", "--ignore", "layer3.*",
               "--round-to", "2", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "MACs" in proc.stdout
    ckpt = torch.load(out, weights_only=True)
    assert ckpt["pruning"]["ratio"] == 0.5 and ckpt["module_configs"]
    model = prunec.load(str(out))
    assert model.conv1.out_channels == 8 and model.layer3[0].conv1.out_channels == 64
    x = example_input((1, 3, 32, 32))
    assert model(x).shape == (1, 10)
    # a pruned checkpoint prunes again (here: unstructured on top)
    again = tmp_path / "r2.pt"
    proc = run(str(out), "--ratio", "0.5", "--pruner", "unstructured", "-o", str(again))
    assert proc.returncode == 0, proc.stderr
    assert prunec.load(str(again)).conv1.out_channels == 8


def test_bad_ratio_is_one_line_exit_2(tmp_path):
    out = tmp_path / "x.pt"
    proc = run("zoo:resnet20", "--ratio", "1", "-o", str(out))
    assert proc.returncode == 2 and "[0, 1)" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not out.exists()


@pytest.mark.parametrize("args, message", [
    (["--ratio", "-0.2"], "[0, 1)"),
    (["--ratio", "0.5", "--method", "taylor"], "unknown pruning method 'taylor'"),
    (["--ratio", "0.5", "--ignore", "nothing*"], "matches no layer"),
    (["--ratio", "0.5", "--pruner", "nope"], "unknown pruner"),
    (["--ratio", "0.5", "--scope", "local"], "unknown pruning scope"),
])
def test_bad_input_in_process(tmp_path, capsys, args, message):
    out = tmp_path / "x.pt"
    assert main(["prune", "zoo:resnet20", *args, "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and not out.exists()


def test_factory_model_prunes_to_a_checkpoint_that_loads_back(tmp_path):
    """A ``package.module:factory`` model's pruned checkpoint names the factory as its architecture:
    it loads back into the very network prunec.prune makes, and lowers through the CLI."""
    from tests import model_fixtures

    spec, shape = "tests.model_fixtures:sized_net", (1, 3, 16, 16)
    out = tmp_path / "sized.pt"
    proc = run(spec, "--ratio", "0.5", "--input-shape", "1,3,16,16", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "kept whole" not in proc.stdout  # every channel group of this network is prunable
    assert torch.load(out, weights_only=True)["arch"] == spec
    x = example_input(shape)
    expected = prunec.prune(prunec.trace(model_fixtures.sized_net(), x), x, 0.5)
    loaded = prunec.load(str(out), arch=spec)
    assert loaded.conv1.out_channels == expected.conv1.out_channels < 16
    torch.testing.assert_close(loaded(x), expected(x))
    lowered = subprocess.run([sys.executable, "-m", "prunec", "lower", str(out), "--arch", spec, "--format", "json"],
                             capture_output=True, text=True, timeout=300)
    assert lowered.returncode == 0, lowered.stderr


def test_a_checkpoint_the_models_own_code_cannot_run_is_not_written(tmp_path, capsys):
    """A channel count the model's code writes as a number (view(-1, 32)) is rewritten in the pruned graph
    only; the checkpoint rebuilds the model from its code, which would fail on every read: refused."""
    out = tmp_path / "x.pt"
    assert main(["prune", "tests.model_fixtures:literal_view_net", "--input-shape", "1,3,16,16", "--ratio", "0.5",
                 "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "literal sizes" in err and "--ignore" in err and len(err.strip().splitlines()) == 1 and not out.exists()
    assert main(["prune", "tests.model_fixtures:literal_view_net", "--input-shape", "1,3,16,16", "--ratio", "0.5",
                 "--ignore", "conv", "-o", str(out)]) == 0  # kept whole, it loads back
    x = example_input((1, 3, 16, 16))
    torch.testing.assert_close(prunec.load(str(out), arch="tests.model_fixtures:literal_view_net")(x),
                               model_fixtures.literal_view_net()(x))


def test_a_model_returning_a_dict_of_tensors_prunes_to_a_checkpoint(tmp_path):
    out = tmp_path / "x.pt"
    assert main(["prune", "tests.model_fixtures:nested_output_net", "--input-shape", "1,3,16,16", "--ratio", "0.5",
                 "-o", str(out)]) == 0
    loaded = prunec.load(str(out), arch="tests.model_fixtures:nested_output_net")
    assert loaded.conv.out_channels == 4 and loaded(example_input((1, 3, 16, 16)))["logits"].shape == (1, 4)


def test_a_checkpoint_naming_a_factory_is_not_imported_unasked(tmp_path):
    """A checkpoint is read with weights_only=True because it must not run code; the factory it
    names is code, so prunec imports it only when the user names it (--arch) or trusts the file."""
    from prunec.frontend import save_checkpoint
    from tests.model_fixtures import tiny

    (tmp_path / "planted.py").write_text("import pathlib\npathlib.Path('IMPORTED').write_text('x')\n"
                                         "from tests.model_fixtures import tiny as net\n")
    path = tmp_path / "ck.pt"
    save_checkpoint(tiny(), str(path), "planted:net", 3, 5, input_shape=[1, 3, 8, 8])
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    refused = subprocess.run([sys.executable, "-m", "prunec", "inspect", str(path)], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2 and "--arch planted:net" in refused.stderr and "Traceback" not in refused.stderr
    assert not (tmp_path / "IMPORTED").exists()
    asked = subprocess.run([sys.executable, "-m", "prunec", "inspect", str(path), "--arch", "planted:net"],
                           cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert asked.returncode == 0, asked.stderr
    assert (tmp_path / "IMPORTED").exists()


def test_model_without_architecture_cannot_be_saved(tmp_path):
    proc = run("torchvision_free.nope:factory", "--ratio", "0.5", "-o", str(tmp_path / "x.pt"))
    assert proc.returncode == 2
    whole = tmp_path / "whole.pt"
    torch.save(zoo.build("resnet20"), whole)  # a pickled module: no factory to rebuild it from
    proc = run(str(whole), "--trust-model", "--ratio", "0.5", "-o", str(tmp_path / "x.pt"))
    assert proc.returncode == 2 and "names no architecture" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "x.pt").exists()


def test_prune_says_which_ops_keep_channels_whole(tmp_path):
    """An op prunec cannot prune through (a cumulative sum over channels) keeps the convs around
    it whole; the summary names it instead of just showing less change than asked for."""
    proc = run("tests.model_fixtures:cumsum_net", "--ratio", "0.5", "--input-shape", "1,3,8,8",
               "-o", str(tmp_path / "c.pt"))
    assert proc.returncode == 0, proc.stderr
    said = " ".join(proc.stdout.split())
    assert "kept whole around 1 op" in said and "cumsum" in said and "unknown function cumsum" in said
    # layers the user keeps whole are not ops prunec cannot prune through
    proc = run("zoo:resnet20", "--ratio", "0.5", "--ignore", "layer1.*", "-o", str(tmp_path / "r.pt"))
    assert proc.returncode == 0 and "kept whole" not in proc.stdout, proc.stdout


def test_a_pruned_checkpoint_drops_the_unpruned_test_accuracy_and_zero_sizes_are_refused(tmp_path):
    from prunec.frontend import load_with_meta
    from tests.conftest import assert_user_error, run_cli

    out = tmp_path / "p.pt"
    done = run_cli("prune", "examples/resnet20_fashion.pt", "--ratio", "0.5", "-o", str(out))
    assert done.returncode == 0, done.stderr
    _, meta = load_with_meta(str(out))
    assert "test_accuracy" not in meta and meta["pruning"]["ratio"] == 0.5
    for flag in ("--in-channels", "--num-classes"):
        assert_user_error(run_cli("prune", "zoo:resnet20", flag, "0", "--input-shape", "1,3,32,32", "--ratio", "0.5",
                                  "-o", str(tmp_path / "z.pt")), f"{flag} must be a positive integer, got 0")
