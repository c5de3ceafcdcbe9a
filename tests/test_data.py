"""Data sets: fixed splits, no overlap between calibration and training data, clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from prunec.data import load_split
from prunec.errors import UserError
from tests.conftest import needs_fashion_mnist


@needs_fashion_mnist
def test_fashion_mnist_splits():
    sizes = {s: len(load_split("fashion-mnist", s)) for s in ("train", "calibration", "test")}
    assert sizes == {"train": 55_000, "calibration": 5_000, "test": 10_000}
    train, calib = load_split("fashion-mnist", "train"), load_split("fashion-mnist", "calibration")
    assert train.x.shape[1:] == (1, 28, 28) and abs(float(train.x.mean())) < 0.05
    # calibration images are not training images (compare raw hashes of a sample)
    train_hashes = {hash(img.numpy().tobytes()) for img in train.x[:: 11]}
    assert not any(hash(img.numpy().tobytes()) in train_hashes for img in calib.x)


def test_cifar10_splits_from_npz(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (50_000, 32, 32, 3), dtype=np.uint8)
    y = (np.arange(50_000) % 10).astype(np.uint8)
    np.savez(tmp_path / "cifar10_train.npz", x_train=x, y_train=y)
    test = load_split("cifar10", "test", root=tmp_path)
    calib = load_split("cifar10", "calibration", root=tmp_path)
    assert len(test) == 5_000 and len(calib) == 5_000
    assert len(load_split("cifar10", "train", root=tmp_path)) == 40_000
    assert test.x.shape[1:] == (3, 32, 32)
    assert torch.equal(test.y, torch.from_numpy(y[45_000:].astype(np.int64)))
    # HWC -> CHW is right: channel 0 of image 45000 is the red plane
    raw = torch.from_numpy(x[45_000, :, :, 0]).float() / 255
    torch.testing.assert_close(test.x[0, 0], (raw - 0.4914) / 0.2470)


def test_missing_data_sets_say_how_to_get_them(tmp_path):
    with pytest.raises(UserError, match="apt-get install dataset-fashion-mnist"):
        load_split("fashion-mnist", "test", root=tmp_path)
    with pytest.raises(UserError, match="CIFAR-10 not found"):
        load_split("cifar10", "test", root=tmp_path)
    with pytest.raises(UserError, match="unknown data set"):
        load_split("mnist", "test")


def test_synthetic_is_deterministic_and_learnable_shape():
    a, b = load_split("synthetic", "train"), load_split("synthetic", "train")
    assert torch.equal(a.x, b.x) and a.info.num_classes == 4
    assert set(a.y.tolist()) == {0, 1, 2, 3}
