"""Data sets: fixed splits, no overlap between calibration and training data, clear errors."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

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


def _write_idx(path, array):
    header = bytes([0, 0, 8, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as fh:
        fh.write(header + array.astype(np.uint8).tobytes())


def test_prunec_data_for_one_data_set_does_not_hide_the_other(tmp_path, monkeypatch):
    """$PRUNEC_DATA pointing at CIFAR-10 (or at a folder of data sets) must not make
    Fashion-MNIST unfindable in its default place."""
    fashion = tmp_path / "fmnist"
    fashion.mkdir()
    _write_idx(fashion / "t10k-images-idx3-ubyte.gz", np.full((3, 28, 28), 7))
    _write_idx(fashion / "t10k-labels-idx1-ubyte.gz", np.array([1, 2, 3]))
    monkeypatch.setattr("prunec.data.FASHION_MNIST_DIR", fashion)
    shared = tmp_path / "data"
    (shared / "cifar10").mkdir(parents=True)
    x = np.zeros((50_000, 32, 32, 3), dtype=np.uint8)
    np.savez(shared / "cifar10" / "cifar10_train.npz", x_train=x, y_train=np.arange(50_000) % 10)
    for env in (shared, shared / "cifar10"):
        monkeypatch.setenv("PRUNEC_DATA", str(env))
        assert len(load_split("cifar10", "test")) == 5_000
        assert load_split("fashion-mnist", "test").y.tolist() == [1, 2, 3]
    monkeypatch.setenv("PRUNEC_DATA", str(tmp_path / "nowhere"))
    with pytest.raises(UserError, match="nowhere"):
        load_split("cifar10", "test", root=tmp_path / "nowhere")


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


def _own_npz(path, layout="NHWC", calibration=True, **extra):
    """A small RGB data set of 3 classes on 12 x 10 images, written the way a user would."""
    rng = np.random.default_rng(0)

    def split(n):
        y = rng.integers(0, 3, n)
        x = rng.integers(0, 60, (n, 12, 10, 3)).astype(np.uint8)
        for i, label in enumerate(y):
            x[i, :, :, label] += 150  # the class is the bright channel
        return (x if layout == "NHWC" else x.transpose(0, 3, 1, 2)), y

    arrays = {}
    for name, n in (("train", 90), ("test", 30)) + ((("calibration", 20),) if calibration else ()):
        arrays[f"x_{name}"], arrays[f"y_{name}"] = split(n)
    np.savez(path, **arrays, **extra)
    return arrays


@pytest.mark.parametrize("layout", ["NHWC", "NCHW"])
def test_own_data_from_npz(tmp_path, layout):
    from prunec.data import dataset_info

    path = tmp_path / "flowers.npz"
    arrays = _own_npz(path, layout)
    info = dataset_info(str(path))
    assert (info.name, info.num_classes, info.in_channels, info.input_shape) == ("flowers", 3, 3, (1, 3, 12, 10))
    train = load_split(str(path), "train")
    nchw = arrays["x_train"] if layout == "NCHW" else arrays["x_train"].transpose(0, 3, 1, 2)
    raw = torch.from_numpy(nchw.astype(np.float32) / 255)
    torch.testing.assert_close(train.x, info.preprocess(raw))
    assert train.x.shape == (90, 3, 12, 10) and train.y.tolist() == arrays["y_train"].tolist()
    # mean/std measured on the training images: the normalised training set is centred
    assert train.x.mean(dim=(0, 2, 3)).abs().max() < 1e-4
    assert len(load_split(str(path), "calibration")) == 20 and len(load_split(str(path), "test")) == 30


def test_own_data_without_calibration_sets_aside_a_tenth(tmp_path):
    path = tmp_path / "d.npz"
    arrays = _own_npz(path, calibration=False, mean=np.array([0.5, 0.5, 0.5]), std=np.array([0.25, 0.25, 0.25]))
    train, calib = load_split(str(path), "train"), load_split(str(path), "calibration")
    assert (len(train), len(calib)) == (81, 9)
    # a seeded random tenth (not the last one: files are often sorted by class), none lost, none twice
    both = torch.cat([train.x, calib.x]).flatten(1)
    pixels = torch.from_numpy(arrays["x_train"].transpose(0, 3, 1, 2).astype(np.float32) / 255)
    expected = train.info.preprocess(pixels).flatten(1)
    assert sorted(map(tuple, both.tolist())) == sorted(map(tuple, expected.tolist()))
    assert calib.y.tolist() != arrays["y_train"][-9:].tolist()
    assert load_split(str(path), "calibration").y.tolist() == calib.y.tolist()
    assert train.info.mean == (0.5, 0.5, 0.5)


_SMALL = {"x_train": np.zeros((20, 8, 8), np.uint8), "y_train": np.arange(20) % 2,
          "x_test": np.zeros((2, 8, 8), np.uint8), "y_test": np.zeros(2, int)}


@pytest.mark.parametrize(("arrays", "needle"), [
    ({"x_train": np.zeros((4, 8, 8), np.uint8), "y_train": np.zeros(4, int)}, "lacks the arrays x_test, y_test"),
    ({"x_train": np.zeros((4, 8, 8), np.uint8), "y_train": np.zeros(3, int),
      "x_test": np.zeros((2, 8, 8), np.uint8), "y_test": np.zeros(2, int)}, "3 labels"),
    ({"x_train": np.zeros((4, 8, 8), np.uint8), "y_train": np.zeros(4, int),
      "x_test": np.zeros((2, 9, 8), np.uint8), "y_test": np.zeros(2, int)}, "differ in shape"),
    ({"x_train": np.zeros((20, 3, 8, 3), np.uint8), "y_train": np.zeros(20, int),
      "x_test": np.zeros((2, 3, 8, 3), np.uint8), "y_test": np.zeros(2, int)}, "layout"),
    ({"x_train": np.zeros((20, 8, 8), np.uint8), "y_train": np.full(20, 0.5),
      "x_test": np.zeros((2, 8, 8), np.uint8), "y_test": np.zeros(2, int)}, "integer class labels"),
    ({**_SMALL, "num_classes": np.array("ten")}, "num_classes must be one integer"),
    ({**_SMALL, "num_classes": np.array([3, 4])}, "num_classes must be one integer"),
    ({**_SMALL, "mean": np.array(["a"])}, "mean must be numbers"),
    ({**_SMALL, "std": np.array([0.1, 0.2])}, "std needs 1 finite"),
    ({**_SMALL, "y_train": np.full(20, 2**40)}, "number the classes"),
    ({**_SMALL, "classes": np.array(["a", "b", "c"])}, "3 class names for 2 classes"),
    ({**_SMALL, "x_train": np.full((20, 8, 8), 200.0)}, "scaled to 0-1"),
    ({**_SMALL, "x_train": np.full((20, 8, 8), np.nan)}, "finite"),
    ({**_SMALL, "layout": np.array("NWHC")}, "layout must be"),
    ({**_SMALL, "y_train": np.eye(2, dtype=np.int64)[np.arange(20) % 2]}, "one-hot"),
    ({**_SMALL, "y_test": np.array([0, 2])}, "label\\(s\\) 2, which no training"),
    # the data's own faults name the file, not --std/--mean the user never passed
    ({**_SMALL, "std": np.array([1e-9])}, "bad.npz: std must be at least 1e-06"),
    ({**_SMALL, "x_train": np.zeros((20, 1, 0, 8), np.uint8), "x_test": np.zeros((2, 1, 0, 8), np.uint8),
      "layout": np.array("NCHW")}, "bad.npz: the images hold no pixels"),
    ({**_SMALL, "num_classes": np.array(2.5)}, "num_classes must be one integer"),  # not read as 2
])
def test_bad_own_data_is_one_clear_error(tmp_path, arrays, needle):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(UserError, match=needle):
        load_split(str(path), "train")


def test_float16_images_normalize_as_their_float64_values(tmp_path):
    """Half-precision 0-1 images: mean and std are measured in float64, so they equal the same
    images' in float64 (in float16 they lose precision, and on a large set overflow to inf)."""
    rng = np.random.default_rng(0)
    x = rng.random((300, 3, 16, 16))
    path = tmp_path / "half.npz"
    np.savez(path, x_train=x.astype(np.float16), y_train=np.arange(300) % 2, x_test=x[:4].astype(np.float16),
             y_test=np.zeros(4, int), x_calibration=x[:4].astype(np.float16), y_calibration=np.zeros(4, int))
    info = load_split(str(path), "train").info
    half = x.astype(np.float16).astype(np.float64)
    np.testing.assert_allclose(info.mean, [half[:, i].mean() for i in range(3)], rtol=1e-6)
    np.testing.assert_allclose(info.std, [half[:, i].std() for i in range(3)], rtol=1e-6)


def test_labels_as_a_row_or_a_column_are_label_vectors(tmp_path):
    """(1, N) labels (as from MATLAB) and (N, 1) ones load as N labels; only (N, K>1) is one-hot."""
    for shape in ((1, 20), (20, 1)):
        path = tmp_path / f"y{shape[0]}.npz"
        np.savez(path, **{**_SMALL, "y_train": (np.arange(20) % 2).reshape(shape),
                          "x_calibration": np.zeros((2, 8, 8), np.uint8), "y_calibration": np.zeros(2, int)})
        assert load_split(str(path), "train").y.tolist() == [0, 1] * 10


def test_own_data_file_missing_or_corrupt(tmp_path):
    with pytest.raises(UserError, match="not found"):
        load_split(str(tmp_path / "nope.npz"), "train")
    (tmp_path / "c.npz").write_bytes(b"PK\x03\x04 broken")
    with pytest.raises(UserError, match="not a readable .npz"):
        load_split(str(tmp_path / "c.npz"), "train")


def test_own_data_layout_as_bytes(tmp_path):
    path = tmp_path / "b.npz"
    x = np.zeros((10, 3, 8, 3), np.uint8)  # ambiguous without the layout
    np.savez(path, x_train=x, y_train=np.arange(10) % 2, x_test=x[:2], y_test=np.zeros(2, int),
             layout=np.array(b"NHWC"))
    assert load_split(str(path), "test").x.shape == (2, 3, 3, 8)


@settings(max_examples=25, deadline=None)
@given(mean=st.floats(-1, 1), std=st.floats(0.05, 2))
def test_normalization_override_changes_only_the_affine_map_of_the_same_pixels(mean, std):
    default, mine = load_split("synthetic", "test"), load_split("synthetic", "test", mean=[mean], std=[std])
    assert (mine.info.mean, mine.info.std) == ((mean,), (std,))
    torch.testing.assert_close(mine.x * std + mean, default.x * 0.25 + 0.5, rtol=1e-5, atol=1e-5)
    assert torch.equal(mine.y, default.y)


@pytest.mark.parametrize(("mean", "std", "needle"), [
    ([0.1, 0.2], None, "--mean has 2 values but synthetic's images have 1 channel"),
    (None, [0.0], "--std must be positive"),
    (None, 1e-9, "--std must be positive"),
    ([float("nan")], None, "--mean must be finite"),
    ("0.5,0.2", None, "--mean must be numbers"),
    (None, {"a": 1}, "--std must be numbers"),
])
def test_bad_normalization_is_one_clear_error(mean, std, needle):
    with pytest.raises(UserError, match=needle):
        load_split("synthetic", "train", mean=mean, std=std)


def test_normalization_from_elsewhere_is_named_in_errors_and_plain_numbers_work():
    from prunec.data import dataset_info, renormalized

    info = dataset_info("synthetic")
    assert renormalized(info, 0, "1").mean == (0.0,) and renormalized(info, 0, "1").std == (1.0,)
    with pytest.raises(UserError, match="MODEL's recorded \\(preprocess\\) mean has 3 values"):
        renormalized(info, [0.4, 0.4, 0.4], None, "MODEL's recorded (preprocess)")


def test_one_value_normalizes_every_channel(tmp_path):
    _own_npz(tmp_path / "rgb.npz")
    split = load_split(str(tmp_path / "rgb.npz"), "test", mean=[0.5], std=[0.5])
    assert split.info.mean == (0.5, 0.5, 0.5) and split.info.std == (0.5, 0.5, 0.5)


@pytest.mark.parametrize("shape", [(40, 12, 12), (40, 12, 12, 1)])
def test_one_channel_images_have_plain_strides(tmp_path, shape):
    """N x H x W (or NHWC with C = 1) images, split by index into training and calibration images,
    reach the model row-major: a conv then ``view(x.size(0), -1)`` works as on any tensor (numpy's
    (HW, 1, W, 1) strides made torch return channels-last outputs, and the view failed)."""
    path = tmp_path / "gray.npz"
    rng = np.random.default_rng(0)
    np.savez(path, x_train=rng.integers(0, 255, shape, dtype=np.uint8), y_train=np.arange(40) % 2,
             x_test=rng.integers(0, 255, (4, *shape[1:]), dtype=np.uint8), y_test=np.arange(4) % 2)
    conv = torch.nn.Conv2d(1, 3, 3, padding=1)
    for split in ("train", "calibration", "test"):
        x = load_split(str(path), split).x
        assert x.stride() == torch.empty(x.shape).stride(), split
        assert conv(x).view(len(x), -1).shape == (len(x), 3 * 144)


def test_the_data_fingerprint_is_the_pixels_and_labels_not_the_normalization():
    """--reuse-levels compares it: statistics that differ in the last digits (accepted as the same
    normalization) must not read as other data, while one relabelled image must."""
    from prunec.data import fingerprint, load_split

    a = load_split("synthetic", "calibration")
    b = load_split("synthetic", "calibration", mean=[m + 1e-7 for m in a.info.mean])
    assert fingerprint(a) == fingerprint(b) and len(fingerprint(a)) == 64
    b.y[0] = (b.y[0] + 1) % a.info.num_classes
    assert fingerprint(a) != fingerprint(b)
