"""Compile's fine-tuning checkpoints: each level resumes from its own folder and nobody else's."""

from __future__ import annotations

import copy
import dataclasses
import functools
import os

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import prunec.training
from prunec.data import load_split
from prunec.pipeline import CompileConfig, finetune_level
from prunec.resume import fingerprint, level_checkpoint_dir
from tests.test_finetune import Stop, same, tiny_net, weights


@pytest.fixture(scope="module")
def train():
    return load_split("synthetic", "train").subset(256)


def test_fingerprint_sees_every_value_and_nothing_else():
    a = tiny_net()
    assert fingerprint(a) == fingerprint(copy.deepcopy(a)) == fingerprint(tiny_net())
    assert fingerprint(a) != fingerprint(tiny_net(seed=1))
    b = copy.deepcopy(a)
    b[1].running_mean[3] += 1e-6  # a buffer, not a parameter
    assert fingerprint(b) != fingerprint(a)
    b = copy.deepcopy(a)
    b[1].num_batches_tracked += 1  # a 0-d integer buffer
    assert fingerprint(b) != fingerprint(a)
    x = torch.arange(6.0)
    assert fingerprint(x) != fingerprint(x.double()) != fingerprint(x.reshape(2, 3))
    assert fingerprint(x) == fingerprint(x.clone())


@settings(max_examples=25, deadline=None)
@given(index=st.integers(0, 255), delta=st.sampled_from([1e-3, -1.0, 3.0]))
def test_any_change_to_the_training_images_moves_the_folder(train, index, delta):
    settings_ = {"epochs": 1.0, "lr": 0.02}
    base = level_checkpoint_dir("/c", tiny_net(), tiny_net(1), train, settings_, "fine-tune mild")
    changed = dataclasses.replace(train, x=train.x.clone())
    changed.x.view(len(train), -1)[index, index % changed.x[0].numel()] += delta
    assert level_checkpoint_dir("/c", tiny_net(), tiny_net(1), changed, settings_, "fine-tune mild") != base


def test_the_folder_is_keyed_by_everything_the_result_depends_on(train):
    net, teacher, opts = tiny_net(), tiny_net(1), {"epochs": 1.0, "lr": 0.02, "augment": False}
    base = level_checkpoint_dir("/c", net, teacher, train, opts, "fine-tune mild")
    assert base == level_checkpoint_dir("/c", copy.deepcopy(net), copy.deepcopy(teacher), train, dict(opts),
                                        "fine-tune mild")
    assert base.parent.as_posix() == "/c" and base.name.startswith("fine-tune-mild-")
    relabelled = dataclasses.replace(train, y=(train.y + 1) % 4)
    others = [level_checkpoint_dir("/c", tiny_net(2), teacher, train, opts, "fine-tune mild"),
              level_checkpoint_dir("/c", net, tiny_net(2), train, opts, "fine-tune mild"),
              level_checkpoint_dir("/c", net, teacher, relabelled, opts, "fine-tune mild"),
              level_checkpoint_dir("/c", net, teacher, train.subset(128), opts, "fine-tune mild"),
              level_checkpoint_dir("/c", net, teacher, train, {**opts, "epochs": 2.0}, "fine-tune mild"),
              level_checkpoint_dir("/c", net, teacher, train, {**opts, "augment": True}, "fine-tune mild"),
              level_checkpoint_dir("/c", net, teacher, train, opts, "fine-tune aggressive")]
    looser = copy.deepcopy(net)
    looser[1].eps = 1e-3  # same weights, another BatchNorm
    others.append(level_checkpoint_dir("/c", looser, teacher, train, opts, "fine-tune mild"))
    threads = torch.get_num_threads()
    try:  # CPU float sums depend on the thread count
        torch.set_num_threads(threads + 1)
        others.append(level_checkpoint_dir("/c", net, teacher, train, opts, "fine-tune mild"))
    finally:
        torch.set_num_threads(threads)
    assert len({base, *others}) == len(others) + 1


def _epoch_files(root) -> dict[str, float]:
    return {os.path.join(d, f): os.stat(os.path.join(d, f)).st_mtime_ns
            for d, _, files in os.walk(root) for f in files}


def test_a_rerun_resumes_each_level_from_its_own_folder(train, tmp_path, monkeypatch):
    cfg = CompileConfig(checkpoint_dir=str(tmp_path), progress=False, lr=0.05, batch_size=64)
    teacher = tiny_net(1)
    first = finetune_level(tiny_net(), teacher, train, 2.0, cfg, "fine-tune mild")
    files = _epoch_files(tmp_path)
    assert [os.path.basename(f) for f in files] == ["epoch_2.pt"]  # only the latest epoch is kept

    uninterrupted = finetune_level(tiny_net(), teacher, train, 2.0, dataclasses.replace(cfg, checkpoint_dir=None),
                                   "fine-tune mild")
    assert same(weights(first), weights(uninterrupted))  # checkpointing changes nothing

    results = _spy_on_finetune(monkeypatch)
    again = finetune_level(tiny_net(), teacher, train, 2.0, cfg, "fine-tune mild")
    assert results[-1].resumed_from_step == results[-1].total_steps  # resumed, not retrained
    assert same(weights(again), weights(first)) and _epoch_files(tmp_path) == files

    finetune_level(tiny_net(seed=3), teacher, train, 2.0, cfg, "fine-tune mild")  # another network
    assert len(os.listdir(tmp_path)) == 2


def _spy_on_finetune(monkeypatch, **extra):
    """Record every finetune result of finetune_level, passing ``extra`` keyword arguments on."""
    real, results = prunec.training.finetune, []

    @functools.wraps(real)
    def spy(*args, **kwargs):
        results.append(real(*args, **kwargs, **extra))
        return results[-1]

    monkeypatch.setattr(prunec.training, "finetune", spy)
    return results


def test_half_finished_level_resumes_to_the_uninterrupted_weights(train, tmp_path, monkeypatch):
    cfg = CompileConfig(checkpoint_dir=str(tmp_path), progress=False, lr=0.05, batch_size=64, augment=True)
    teacher, start = tiny_net(1), tiny_net()

    def stop(summary):
        if summary["epoch"] >= 2:
            raise Stop

    with monkeypatch.context() as patch:  # a compile stopped after two of three epochs
        _spy_on_finetune(patch, on_epoch=stop)
        with pytest.raises(Stop):
            finetune_level(copy.deepcopy(start), teacher, train, 3.0, cfg, "fine-tune aggressive")
    (folder,) = tmp_path.iterdir()
    assert os.listdir(folder) == ["epoch_2.pt"]

    results = _spy_on_finetune(monkeypatch)
    resumed = finetune_level(copy.deepcopy(start), teacher, train, 3.0, cfg, "fine-tune aggressive")
    assert results[-1].resumed_from_step == 2 * results[-1].steps_per_epoch  # resumed, not retrained
    whole = finetune_level(copy.deepcopy(start), teacher, train, 3.0,
                           dataclasses.replace(cfg, checkpoint_dir=None), "fine-tune aggressive")
    assert results[-1].resumed_from_step is None
    assert same(weights(resumed), weights(whole))
    assert os.listdir(folder) == ["epoch_3.pt"]


def test_no_checkpoints_without_a_directory(train, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    finetune_level(tiny_net(), tiny_net(1), train, 0.5, CompileConfig(progress=False), "fine-tune mild")
    assert os.listdir(tmp_path) == []
