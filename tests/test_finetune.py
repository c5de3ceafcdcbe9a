"""The training / fine-tuning loop (prunec.training) and ``prunec finetune``."""

from __future__ import annotations

import math
import os
import shutil
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import fx, nn

from prunec.data import load_split
from prunec.errors import UserError
from prunec.frontend import load_with_meta, save_checkpoint
from prunec.training import augment_batch, distillation_loss, evaluate, finetune, predict
from tests.conftest import ROOT, assert_user_error, run_cli


def tiny_net(seed: int = 0) -> nn.Module:
    """Small enough to train in a blink; the 2x2 pool keeps the quadrant the label lives in."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(32, 4))


@pytest.fixture(scope="module")
def train():
    return load_split("synthetic", "train")


@pytest.fixture(scope="module")
def test_split():
    return load_split("synthetic", "test")


def weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


QUICK = dict(epochs=1.0, lr=0.05, batch_size=64, progress=False, device="cpu")


def test_same_seed_gives_identical_weights(train):
    runs = []
    for seed in (3, 3, 4):
        model = tiny_net()
        finetune(model, train, seed=seed, augment=True, **QUICK)
        runs.append(weights(model))
    assert same(runs[0], runs[1])
    assert not same(runs[0], runs[2])


def test_training_improves_accuracy_and_returns_eval_mode(train, test_split):
    model = tiny_net()
    before = evaluate(model, test_split, device="cpu")
    result = finetune(model, train, epochs=3, lr=0.1, batch_size=32, progress=False, device="cpu")
    after = evaluate(model, test_split, device="cpu")
    assert not model.training
    assert after > max(before + 30, 90), (before, after)
    assert result.steps == result.total_steps == 3 * (len(train) // 32)
    assert [round(h["epoch"]) for h in result.history] == [1, 2, 3]
    assert result.history[-1]["loss"] < result.history[0]["loss"]
    assert result.history[-1]["lr"] < 0.01  # the cosine schedule has decayed
    assert result.accuracy > 80


def test_fractional_epochs_and_max_steps(train):
    result = finetune(tiny_net(), train, epochs=0.5, batch_size=64, progress=False, device="cpu")
    assert result.total_steps == math.ceil(0.5 * (len(train) // 64)) == result.steps
    result = finetune(tiny_net(), train, epochs=5, max_steps=3, batch_size=64, progress=False,
                      device="cpu")
    assert result.steps == 3


def test_distillation_loss_matches_formula():
    torch.manual_seed(0)
    s, t, y = torch.randn(8, 4), torch.randn(8, 4), torch.randint(0, 4, (8,))
    ce = F.cross_entropy(s, y)
    assert torch.equal(distillation_loss(s, y, None, 0.5, 4.0), ce)
    assert torch.equal(distillation_loss(s, y, t, 0.0, 4.0), ce)
    p_t, p_s = F.softmax(t / 4, 1), F.softmax(s / 4, 1)
    kl = (p_t * (p_t.log() - p_s.log())).sum(1).mean()
    expected = 0.3 * ce + 0.7 * 16 * kl
    assert torch.allclose(distillation_loss(s, y, t, 0.7, 4.0), expected, atol=1e-6)


def test_teacher_pulls_the_student_towards_its_outputs(train):
    teacher = tiny_net(seed=7).eval()  # an arbitrary function the labels do not explain
    x = train.x[:256]

    def gap(model: nn.Module) -> float:
        with torch.no_grad():
            return F.kl_div(F.log_softmax(predict(model, x), 1), F.log_softmax(predict(teacher, x), 1),
                            reduction="batchmean", log_target=True).item()

    plain, distilled = tiny_net(), tiny_net()
    start = gap(plain)
    r_plain = finetune(plain, train, seed=0, **QUICK)
    r_kd = finetune(distilled, train, teacher=teacher, kd_alpha=1.0, kd_temperature=1.0, seed=0, **QUICK)
    assert r_plain.loss != r_kd.loss
    assert gap(distilled) < 0.5 * start
    assert gap(distilled) < gap(plain)
    assert not same(weights(plain), weights(distilled))


class Stop(Exception):
    pass


def test_checkpoint_resume_equals_uninterrupted_run(train, tmp_path):
    def graph_net() -> fx.GraphModule:  # pruned networks are GraphModules
        return fx.symbolic_trace(tiny_net())

    kwargs = dict(epochs=3, batch_size=64, seed=1, augment=True, lr=0.05, progress=False, device="cpu")
    whole = graph_net()
    finetune(whole, train, checkpoint_dir=str(tmp_path / "a"), **kwargs)
    assert sorted(os.listdir(tmp_path / "a")) == ["epoch_1.pt", "epoch_2.pt", "epoch_3.pt"]
    state = torch.load(tmp_path / "a" / "epoch_2.pt", weights_only=True)
    assert {"model", "optimizer", "scheduler", "step"} <= state.keys()
    assert state["step"] == 2 * (len(train) // 64)

    def interrupt(summary: dict[str, float]) -> None:
        if summary["epoch"] >= 2:
            raise Stop

    broken = graph_net()
    with pytest.raises(Stop):
        finetune(broken, train, checkpoint_dir=str(tmp_path / "b"), on_epoch=interrupt, **kwargs)
    assert sorted(os.listdir(tmp_path / "b")) == ["epoch_1.pt", "epoch_2.pt"]
    (tmp_path / "b" / "epoch_3.pt.tmp-99999").write_bytes(b"half a checkpoint: killed while saving")
    resumed = graph_net()
    result = finetune(resumed, train, checkpoint_dir=str(tmp_path / "b"), **kwargs)
    assert result.resumed_from_step == 2 * (len(train) // 64)
    assert sorted(os.listdir(tmp_path / "b")) == ["epoch_1.pt", "epoch_2.pt", "epoch_3.pt"]  # tmp gone
    assert len(result.history) == 3
    assert same(weights(resumed), weights(whole))

    again = graph_net()  # a finished run resumes to its final weights without training
    assert finetune(again, train, checkpoint_dir=str(tmp_path / "b"), **kwargs).resumed_from_step == \
        result.steps
    assert same(weights(again), weights(whole))
    with pytest.raises(UserError, match="different run"):
        finetune(graph_net(), train, checkpoint_dir=str(tmp_path / "b"), **{**kwargs, "epochs": 4})
    with pytest.raises(UserError, match="different run"):  # another learning rate is another run
        finetune(graph_net(), train, checkpoint_dir=str(tmp_path / "b"), **{**kwargs, "lr": 0.123})
    # so are another momentum, a teacher, and other starting weights of the same shapes
    with pytest.raises(UserError, match=r"different run \(momentum 0.9; now momentum 0.5\)"):
        finetune(graph_net(), train, checkpoint_dir=str(tmp_path / "b"), **{**kwargs, "momentum": 0.5})
    with pytest.raises(UserError, match=r"different run \(teacher None; now teacher '[0-9a-f]+'"):
        finetune(graph_net(), train, checkpoint_dir=str(tmp_path / "b"), teacher=graph_net(), **kwargs)
    other_start = graph_net()
    with torch.no_grad():
        next(other_start.parameters()).add_(1.0)
    with pytest.raises(UserError, match="different run \\(start "):
        finetune(other_start, train, checkpoint_dir=str(tmp_path / "b"), **kwargs)


def test_a_run_records_what_computed_each_epoch_and_a_resume_on_other_threads_says_so(train, tmp_path, capfd):
    kwargs = dict(epochs=3, batch_size=64, seed=1, lr=0.05, progress=False, device="cpu",
                  checkpoint_dir=str(tmp_path))
    threads = torch.get_num_threads()
    stop_after = {"epochs": 2}

    def interrupt(summary: dict[str, float]) -> None:
        if summary["epoch"] >= stop_after["epochs"]:
            raise Stop

    with pytest.raises(Stop):
        finetune(tiny_net(), train, on_epoch=interrupt, **kwargs)
    try:
        torch.set_num_threads(threads + 1)
        result = finetune(tiny_net(), train, **kwargs)
    finally:
        torch.set_num_threads(threads)
    assert result.computed_with == [{"epochs": [1, 2], "device": "cpu", "threads": threads},
                                    {"epochs": [3, 3], "device": "cpu", "threads": threads + 1}]
    note = capfd.readouterr().err
    was = f"{threads} thread{'' if threads == 1 else 's'}"
    assert f"epoch_2.pt was computed on cpu with {was}, this run on cpu with {threads + 1} threads" in note
    # resumed on the same threads: one run, no note
    stop_after["epochs"] = 1
    with pytest.raises(Stop):
        finetune(tiny_net(), train, on_epoch=interrupt, **{**kwargs, "checkpoint_dir": str(tmp_path / "same")})
    same_threads = finetune(tiny_net(), train, **{**kwargs, "checkpoint_dir": str(tmp_path / "same")})
    assert same_threads.computed_with == [{"epochs": [1, 3], "device": "cpu", "threads": threads}]
    assert "bit for bit" not in capfd.readouterr().err


def test_predict_and_augment(train):
    model = tiny_net().train()
    logits = predict(model, train.x[:10], batch_size=3)
    assert logits.shape == (10, 4) and model.training  # mode restored
    assert torch.allclose(predict(model, train)[:10], logits, atol=1e-5)
    g = torch.Generator().manual_seed(0)
    out = augment_batch(train.x[:16], g)
    assert out.shape == train.x[:16].shape
    kept = augment_batch(train.x[:16], torch.Generator().manual_seed(0), padding=0)
    pairs = zip(kept, train.x[:16], strict=True)
    assert all(torch.equal(k, x) or torch.equal(k, x.flip(2)) for k, x in pairs)


def test_bad_arguments_are_user_errors(train):
    for bad in (dict(epochs=0), dict(batch_size=0), dict(kd_alpha=2.0), dict(lr=-1.0)):
        with pytest.raises(UserError):
            finetune(tiny_net(), train, progress=False, device="cpu", **bad)


# --------------------------------------------------------------------------- distributed

RANK_SCRIPT = textwrap.dedent("""
    import os, sys
    import torch
    from torch import nn
    from prunec.data import load_split
    from prunec.training import finetune

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(32, 4))
    out = sys.argv[1]
    rank = int(os.environ["RANK"])
    if rank == 0:
        torch.save(model.state_dict(), os.path.join(out, "init.pt"))
    result = finetune(model, load_split("synthetic", "train"), epochs=1, max_steps=4, batch_size=32,
                      seed=0, progress=False, device="cpu", checkpoint_dir=os.path.join(out, "ckpt"))
    assert result.world_size == 2 and result.rank == rank and result.steps == 4, result
    # DDP's reducer must be gone with the process group, not left to the interpreter's exit
    import gc
    assert not any(isinstance(o, nn.parallel.DistributedDataParallel) for o in gc.get_objects())
    torch.save(model.state_dict(), os.path.join(out, f"rank{rank}.pt"))
""")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


#: torch 2.13's gloo backend now and then aborts a rank while the interpreter shuts down, after
#: all its work is done and written (more often on a loaded machine; a plain-torch DDP script
#: does it too; pytorch/pytorch#179291 describes such a finalisation abort). Only it is retried.
EXIT_ABORT = "terminate called without an active exception"


def torchrun(*args: str, cwd=ROOT, scratch: Path | None = None, tries: int = 3) -> subprocess.CompletedProcess:
    """Two CPU ranks; ``scratch`` (the run's output folder) is emptied before every try."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    for _ in range(tries):
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
            scratch.mkdir(parents=True)
        done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                               "--master_addr", "127.0.0.1", "--master_port", str(free_port()), *args],
                              cwd=cwd, env=env, capture_output=True, text=True, timeout=180)
        if done.returncode == 0 or EXIT_ABORT not in done.stderr:
            return done
    return done


def test_two_cpu_ranks_end_with_identical_weights(tmp_path):
    script, out = tmp_path / "rank.py", tmp_path / "run"
    script.write_text(RANK_SCRIPT)
    done = torchrun(str(script), str(out), scratch=out)
    assert done.returncode == 0, done.stdout + done.stderr
    init, r0, r1 = (torch.load(out / f"{n}.pt", weights_only=True) for n in ("init", "rank0", "rank1"))
    assert same(r0, r1)  # parameters *and* BatchNorm statistics
    assert not torch.equal(r0["5.weight"], init["5.weight"])
    assert os.listdir(out / "ckpt") == ["epoch_1.pt"]  # rank 0 alone writes checkpoints


# --------------------------------------------------------------------------- CLI


@pytest.mark.slow
def test_cli_runs_data_parallel_under_torchrun(tmp_path):
    out = tmp_path / "ddp.pt"
    done = torchrun("-m", "prunec", "finetune", "zoo:resnet20", "--data", "synthetic", "--max-steps", "2",
                    "--batch-size", "32", "--no-evaluate", "-o", str(out), cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("saved") == 1  # rank 0 alone reports and writes
    _, meta = load_with_meta(str(out))
    assert meta["finetune"]["world_size"] == 2 and meta["finetune"]["steps"] == 2




def test_cli_finetune_zoo_model(tmp_path):
    out = tmp_path / "ft.pt"
    done = run_cli("finetune", "zoo:resnet20", "--in-channels", "1", "--num-classes", "4",
                   "--data", "synthetic", "--max-steps", "4", "--batch-size", "32", "--lr", "0.05",
                   "--seed", "0", "--checkpoint-dir", str(tmp_path / "ckpt"), "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert "test accuracy" in done.stdout and "saved" in done.stdout
    model, meta = load_with_meta(str(out))
    assert meta["arch"] == "zoo:resnet20" and meta["arch_kwargs"] == {"in_channels": 1, "num_classes": 4}
    assert meta["dataset"] == "synthetic" and meta["finetune"]["steps"] == 4
    # --max-steps stopped the epoch asked for early: the record says how much was trained, not what was asked
    steps_per_epoch = len(load_split("synthetic", "train")) // 32
    assert meta["finetune"]["epochs"] == round(4 / steps_per_epoch, 4) < 1
    assert 0 <= meta["test_accuracy"] <= 100
    assert os.listdir(tmp_path / "ckpt") == ["epoch_1.pt"]


def test_cli_distils_a_pruned_checkpoint_and_keeps_its_metadata(tmp_path):
    from prunec import zoo
    from prunec.pruning import module_configs, prune

    torch.manual_seed(0)
    original = zoo.build("resnet20", 1, 4)
    teacher = tmp_path / "teacher.pt"
    save_checkpoint(original, str(teacher), "zoo:resnet20", 1, 4, dataset="synthetic")
    pruned = prune(original, torch.randn(1, 1, 16, 16), 0.5)
    configs = module_configs(pruned, zoo.build("resnet20", 1, 4))
    parent = tmp_path / "pruned.pt"
    save_checkpoint(pruned, str(parent), "zoo:resnet20", 1, 4, dataset="synthetic",
                    module_configs=configs, test_accuracy=12.5, note="kept")
    out = tmp_path / "child.pt"
    done = run_cli("finetune", str(parent), "--teacher", str(teacher), "--data", "synthetic",
                   "--max-steps", "2", "--batch-size", "32", "--no-evaluate", "-o", str(out))
    assert done.returncode == 0, done.stderr
    payload = torch.load(out, weights_only=True)
    assert payload["module_configs"] == configs and payload["note"] == "kept"
    assert "test_accuracy" not in payload  # stale: it described the parent's weights
    assert payload["finetune"]["teacher"] == str(teacher) and payload["finetune"]["kd_alpha"] == 0.5
    assert "source" not in payload
    child, _ = load_with_meta(str(out))
    name = "layer1.0.conv1"
    assert child.get_submodule(name).out_channels == pruned.get_submodule(name).out_channels < 16
    assert not torch.equal(child.state_dict()["fc.weight"], pruned.state_dict()["fc.weight"])


def test_cli_missing_data_set_is_one_line(tmp_path):
    out = tmp_path / "never.pt"
    done = run_cli("finetune", "zoo:resnet20", "--data", "cifar10", "--data-root",
                   str(tmp_path / "nowhere"), "-o", str(out))
    assert_user_error(done, "CIFAR-10 not found")
    assert not out.exists()
    assert_user_error(run_cli("finetune", "zoo:resnet20", "--data", "imagenet", "-o", str(out)),
                      "unknown data set")
    assert_user_error(run_cli("finetune", "zoo:resnet20", "--data", "synthetic", "--in-channels", "3",
                              "-o", str(out)), "does not accept")
    assert_user_error(run_cli("finetune", "zoo:resnet20", "--data", "synthetic", "--epochs", "0",
                              "-o", str(out)), "epochs must be positive")
    assert_user_error(run_cli("finetune", "zoo:resnet20", "--data", "synthetic", "--seed", str(2**64),
                              "-o", str(out)), "argument --seed: must be an integer from 0 to 4294967295")
    assert not out.exists()


def test_a_batch_of_one_image_that_batchnorm_cannot_train_on_is_one_clear_error(train):
    net = nn.Sequential(nn.Flatten(), nn.Linear(16 * 16, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 4))
    with pytest.raises(UserError, match=r"a training batch holds 1 image\(s\), and a BatchNorm layer needs more"):
        finetune(net, train.subset(1), **QUICK)
    finetune(net, train.subset(2), **QUICK)  # two images train


def test_finetune_refuses_a_seed_before_training(train):
    with pytest.raises(UserError, match="seed must be an integer from 0 to 4294967295, got -1"):
        finetune(tiny_net(), train, **QUICK, seed=-1)


def test_keep_zeros_holds_an_unstructured_mask(train):
    """keep_zeros: the weights zeroed by unstructured pruning stay zero through fine-tuning (and
    without it they revive, so the check can fail)."""
    from prunec.pruning import prune

    x = train.x[:1]
    for keep in (True, False):
        model = prune(tiny_net(), x, 0.5, pruner="unstructured")
        zeros = {name: p == 0 for name, p in model.named_parameters() if name.endswith("weight") and p.dim() > 1}
        finetune(model, train, epochs=1, max_steps=5, lr=0.1, progress=False, keep_zeros=keep)
        kept = all(bool((p[zeros[name]] == 0).all()) for name, p in model.named_parameters() if name in zeros)
        assert kept is keep
        assert all(bool((p[~zeros[name]] != 0).all()) for name, p in model.named_parameters() if name in zeros)


def test_finetune_cli_keeps_unstructured_zeros(tmp_path):
    """prune --pruner unstructured -> finetune: the zeros survive (and with --no-keep-zeros they do not)."""
    pruned = tmp_path / "u.pt"
    r = run_cli("prune", "zoo:resnet20", "--in-channels", "1", "--num-classes", "4", "--input-shape", "1,1,16,16",
                "--pruner", "unstructured", "--ratio", "0.6", "-o", str(pruned))
    assert r.returncode == 0, r.stderr
    for flag, low, high in (("--keep-zeros", 0.59, 0.61), ("--no-keep-zeros", 0.0, 0.01)):
        out = tmp_path / f"f{flag}.pt"
        r = run_cli("finetune", str(pruned), "--data", "synthetic", "--max-steps", "3", "--no-evaluate", flag,
                    "-o", str(out))
        assert r.returncode == 0, r.stderr
        model, _ = load_with_meta(str(out))
        share = float((model.layer2[0].conv1.weight == 0).double().mean())
        assert low <= share <= high, (flag, share)


def test_keep_zeros_says_when_it_would_freeze_a_zero_initialised_layer(tmp_path):
    """A layer that starts all zero is a zero initialisation more likely than a mask: --keep-zeros
    would hold it there for good, so finetune says so (and --no-keep-zeros trains it)."""
    for flag, frozen in (("--keep-zeros", True), ("--no-keep-zeros", False)):
        out = tmp_path / f"f{flag}.pt"
        r = run_cli("finetune", "tests.model_fixtures:zero_head_gray", "--data", "synthetic", "--max-steps", "3",
                    "--no-evaluate", flag, "-o", str(out))
        assert r.returncode == 0, r.stderr
        assert ("note: 5 holds only zero weights" in r.stderr) == frozen, r.stderr
        model, _ = load_with_meta(str(out), arch="tests.model_fixtures:zero_head_gray")
        assert bool(model[5].weight.any()) != frozen


def test_a_diverging_fine_tune_stops_with_one_clear_error_and_writes_nothing(tmp_path, train):
    """A learning rate far too high makes the loss NaN: every later number would be noise, so the run
    stops at the epoch's end, keeps no checkpoint of it and says what to change."""
    ckpt = tmp_path / "ckpt"
    with pytest.raises(UserError, match=r"fine-tuning diverged: the loss is (nan|inf) in epoch 1 .*lower --lr"):
        finetune(tiny_net(), train, epochs=1, lr=1e8, progress=False, seed=0, checkpoint_dir=str(ckpt))
    assert list(ckpt.glob("epoch_*.pt")) == []
    out = tmp_path / "out.pt"
    assert_user_error(run_cli("finetune", "zoo:resnet20", "--in-channels", "1", "--num-classes", "4", "--data",
                              "synthetic", "--epochs", "1", "--lr", "1e8", "--no-evaluate", "-o", str(out)),
                      "fine-tuning diverged")
    assert not out.exists()


@pytest.mark.parametrize(("flags", "needle"), [
    (["--momentum", "nan"], "momentum must be a finite number"),
    (["--weight-decay", "-1"], "weight decay must be a finite number, at least 0"),
    (["--epochs", "inf"], "epochs must be a finite number"),
    (["--device", "bogus"], "unknown device 'bogus'"),
])
def test_finetune_options_torch_would_choke_on_are_one_line(tmp_path, flags, needle):
    out = tmp_path / "out.pt"
    assert_user_error(run_cli("finetune", "zoo:resnet20", "--in-channels", "1", "--num-classes", "4", "--data",
                              "synthetic", "--max-steps", "1", "--no-evaluate", *flags, "-o", str(out)), needle)
    assert not out.exists()


def test_a_text_file_named_pt_and_a_fifo_as_output_are_refused(tmp_path):
    text = tmp_path / "notes.pt"
    text.write_text("hello world\n")
    assert_user_error(run_cli("finetune", str(text), "--arch", "zoo:resnet20", "--data", "synthetic",
                              "-o", str(tmp_path / "o.pt")), "is not a PyTorch file")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    assert_user_error(run_cli("prune", "zoo:resnet20", "--input-shape", "1,3,32,32", "--ratio", "0.5",
                              "-o", str(fifo)), "exists and is not a regular file")
    assert fifo.is_fifo()


def test_a_teacher_with_other_classes_is_refused_before_training(tmp_path):
    for classes in (10, 4):
        made = run_cli("prune", "zoo:resnet20", "--in-channels", "1", "--num-classes", str(classes), "--input-shape",
                       "1,1,16,16", "--ratio", "0.0", "-o", str(tmp_path / f"c{classes}.pt"))
        assert made.returncode == 0, made.stderr
    assert_user_error(run_cli("finetune", str(tmp_path / "c4.pt"), "--data", "synthetic", "--teacher",
                              str(tmp_path / "c10.pt"), "--max-steps", "1", "--no-evaluate",
                              "-o", str(tmp_path / "o.pt")), "--teacher outputs 10 classes but MODEL 4")


@pytest.mark.parametrize("where", ["a_file", "", "/proc/prunec_ckpt"])
def test_a_checkpoint_dir_that_cannot_be_one_is_refused_in_one_line(tmp_path, where, train):
    if where == "a_file":
        where = str(tmp_path / "a_file")
        Path(where).write_text("x")
    with pytest.raises(UserError, match="checkpoint directory"):
        finetune(tiny_net(), train, epochs=1, progress=False, checkpoint_dir=where)


def test_the_starting_weights_fingerprint_takes_any_dtype_and_sees_one_changed_weight():
    from prunec.training import fingerprint

    model = tiny_net()
    before = fingerprint(model)
    assert fingerprint(tiny_net()) == before and fingerprint(None) is None
    with torch.no_grad():
        next(model.parameters()).view(-1)[0] += 1e-3
    assert fingerprint(model) != before
    assert len(fingerprint(model.to(torch.bfloat16))) == 16  # numpy has no bfloat16: bytes are hashed
