"""``--data DIR``: an image folder (train/<class>/*.png ...) is read as the same images in a .npz."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from prunec.data import dataset_info, load_split
from prunec.errors import UserError
from tests.conftest import assert_user_error, run_cli


def write_folder(root: Path, arrays: dict[str, np.ndarray], classes: list[str]) -> None:
    """Each image of ``arrays`` (N x H x W x C uint8) as a PNG under root/<split>/<class>/."""
    for split in ("train", "calibration", "test"):
        if f"x_{split}" not in arrays:
            continue
        for i, (img, label) in enumerate(zip(arrays[f"x_{split}"], arrays[f"y_{split}"], strict=True)):
            folder = root / split / classes[label]
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img[..., 0] if img.shape[-1] == 1 else img).save(folder / f"{i:05d}.png")


def _in_folder_order(arrays: dict[str, np.ndarray], names: list[str]) -> dict[str, np.ndarray]:
    """The arrays as a folder lists them: labels renumbered to the sorted class names, images by
    class, then by file name (the index)."""
    rank = np.argsort(np.argsort(names))  # label -> position of its name in sorted order
    out = {}
    for key in arrays:
        if key.startswith("x_"):
            split = key[2:]
            y = rank[arrays[f"y_{split}"]]
            order = np.lexsort((np.arange(len(y)), y))
            out[key], out[f"y_{split}"] = arrays[key][order], y[order]
    return out


def _random_arrays(seed: int, channels: int, h: int, w: int, classes: int, calibration: bool) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, n in (("train", 24), ("test", 9)) + ((("calibration", 7),) if calibration else ()):
        y = np.concatenate([np.arange(classes), rng.integers(0, classes, n - classes)])  # train has every class
        arrays[f"x_{split}"] = rng.integers(0, 256, (n, h, w, channels)).astype(np.uint8)
        arrays[f"y_{split}"] = y.astype(np.int64)
    return arrays


def _assert_same_data(folder: Path, npz: Path) -> None:
    a, b = dataset_info(str(folder)), dataset_info(str(npz))
    for key in ("num_classes", "in_channels", "image_size", "image_width", "classes"):
        assert getattr(a, key) == getattr(b, key), key
    np.testing.assert_allclose(a.mean, b.mean, rtol=1e-6)
    np.testing.assert_allclose(a.std, b.std, rtol=1e-6)
    for split in ("train", "calibration", "test"):
        x, y = load_split(str(folder), split), load_split(str(npz), split)
        torch.testing.assert_close(x.x, y.x)
        assert torch.equal(x.y, y.y), split


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 10_000), channels=st.sampled_from([1, 3]), h=st.integers(4, 9), w=st.integers(4, 9),
       classes=st.integers(2, 4), calibration=st.booleans())
def test_a_folder_reads_as_the_same_images_in_a_npz(seed, channels, h, w, classes, calibration):
    """Differential: PNG files in class folders load exactly as a .npz of the same pixels and
    labels (in the folder's order) -- values, labels, class names, mean/std, and the seeded
    calibration tenth when there is no calibration/ folder."""
    arrays = _random_arrays(seed, channels, h, w, classes, calibration)
    names = ["zebra", "ant", "moth", "Cat"][:classes]  # not in sorted order: labels follow the sorted names
    with tempfile.TemporaryDirectory() as tmp:
        folder, npz = Path(tmp) / "pets", Path(tmp) / "pets.npz"
        write_folder(folder, arrays, names)
        np.savez(npz, **_in_folder_order(arrays, names), classes=np.array(sorted(names)))
        _assert_same_data(folder, npz)
        assert dataset_info(str(folder)).name == "pets"


def test_gray_and_colour_images_mixed_are_read_as_rgb(tmp_path):
    rng = np.random.default_rng(1)
    for split, cls, mode in (("train", "a", "L"), ("train", "b", "RGB"), ("test", "a", "RGB"), ("test", "b", "LA"),
                             ("calibration", "a", "L")):
        (tmp_path / split / cls).mkdir(parents=True)
        pixels = rng.integers(0, 256, (6, 5, {"L": 1, "RGB": 3, "LA": 2}[mode])).astype(np.uint8)
        Image.fromarray(pixels[..., 0] if mode == "L" else pixels, mode).save(tmp_path / split / cls / "0.png")
    gray_file = np.asarray(Image.open(tmp_path / "train" / "a" / "0.png"))
    train = load_split(str(tmp_path), "train")
    assert train.info.in_channels == 3 and train.info.input_shape == (1, 3, 6, 5)
    raw = train.x * torch.tensor(train.info.std).view(1, -1, 1, 1) + torch.tensor(train.info.mean).view(1, -1, 1, 1)
    for c in range(3):  # the grayscale image is replicated into every channel
        np.testing.assert_allclose(raw[0, c].numpy() * 255, gray_file, atol=1e-3)


def test_a_changed_image_is_read_again(tmp_path):
    arrays = _random_arrays(0, 1, 5, 5, 2, calibration=True)
    write_folder(tmp_path, arrays, ["x", "y"])
    before = load_split(str(tmp_path), "test").x.clone()
    target = sorted((tmp_path / "test" / "x").iterdir())[0]
    Image.fromarray(255 - np.asarray(Image.open(target))).save(target)
    os.utime(target, ns=(1, 1))  # a new mtime even on a coarse-grained file system
    assert not torch.equal(load_split(str(tmp_path), "test").x, before)


def _png(path: Path, size: tuple[int, int] = (6, 6)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros(size[::-1], np.uint8)).save(path)


@pytest.mark.parametrize(("layout", "needle"), [
    ({"train/a/0.png": None}, "has no test/ subfolder"),
    ({"test/a/0.png": None}, "has no train/ subfolder"),
    ({"train/0.png": None, "test/a/0.png": None}, "holds images directly"),
    ({"train/a/notes.txt": "text", "test/a/0.png": None}, "holds no images"),
    ({"train/a/0.png": None, "test/b/0.png": None}, "test/ has class 'b', which train/ lacks"),
    ({"train/a/0.png": None, "train/b/0.png": (7, 6), "test/a/0.png": None}, "is 7x6 but"),
    ({"train/a/0.png": None, "train/b/0.png": b"not a png", "test/a/0.png": None}, "cannot read image"),
    ({"train/a/0.png": None, "test/a/0.png": None}, "too few training images"),
    ({"train/a/0.png": None, "train/a/1.png": None, "test/a/0.png": None}, "one class only"),
    ({"train/a/0.png": None, "train/b/x.txt": "text", "train/c/0.png": None, "test/a/0.png": None},
     "class folder .*b holds no images"),
    ({"train/a/0.png": None, "train/b/sub/0.png": None, "test/a/0.png": None}, "nested folders are not read"),
])
def test_a_bad_folder_is_one_clear_error(tmp_path, layout, needle):
    for rel, what in layout.items():
        path = tmp_path / rel
        if what is None or isinstance(what, tuple):
            _png(path, what or (6, 6))
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(what if isinstance(what, bytes) else what.encode())
    with pytest.raises(UserError, match=needle):
        load_split(str(tmp_path), "train")


@pytest.mark.parametrize(("mode", "pixels"), [("I;16", np.full((6, 6), 1000, np.uint16)),
                                             ("F", np.full((6, 6), 0.5, np.float32))])
def test_images_deeper_than_8_bits_are_refused_not_clipped(tmp_path, mode, pixels):
    """convert("L") would clip 16-bit values to 255 and floats to 0: every image one constant."""
    for rel in ("train/a/0.png", "train/a/1.png", "test/a/0.png"):
        _png(tmp_path / rel)
    Image.fromarray(pixels).save(tmp_path / "train" / "a" / "2.tif")
    with pytest.raises(UserError, match=f"has '{mode}' pixels.*convert it to 8 bits"):
        load_split(str(tmp_path), "train")


def test_palette_rgba_and_oversized_images(tmp_path, monkeypatch):
    """A palette of greys reads as grayscale, RGBA as its RGB; an image past PIL's
    decompression-bomb limit is one clear error, not a traceback."""
    rng = np.random.default_rng(2)
    grey = rng.integers(0, 256, (6, 5)).astype(np.uint8)
    for split in ("train", "calibration", "test"):
        for cls in ("a", "b"):
            (tmp_path / split / cls).mkdir(parents=True)
            Image.fromarray(grey).convert("P").save(tmp_path / split / cls / "0.gif")
    assert load_split(str(tmp_path), "train").info.in_channels == 1
    rgba = rng.integers(0, 256, (6, 5, 4)).astype(np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "test" / "a" / "1.png")
    test = load_split(str(tmp_path), "test")
    raw = test.x * torch.tensor(test.info.std).view(1, -1, 1, 1) + torch.tensor(test.info.mean).view(1, -1, 1, 1)
    np.testing.assert_allclose(raw[1].permute(1, 2, 0).numpy() * 255, rgba[..., :3], atol=1e-3)  # a/0, a/1, b/0
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10)
    (tmp_path / "test" / "a" / "2.png").write_bytes((tmp_path / "test" / "a" / "1.png").read_bytes())
    with pytest.raises(UserError, match="too large to read safely"):
        load_split(str(tmp_path), "test")


def test_an_added_image_is_read(tmp_path):
    write_folder(tmp_path, _random_arrays(0, 1, 5, 5, 2, calibration=True), ["x", "y"])
    before = len(load_split(str(tmp_path), "test"))
    _png(tmp_path / "test" / "y" / "extra.png", (5, 5))
    assert len(load_split(str(tmp_path), "test")) == before + 1


def test_a_missing_folder_is_named(tmp_path):
    with pytest.raises(UserError, match="data folder not found"):
        dataset_info(str(tmp_path / "nope"))


def test_a_builtin_name_wins_over_a_folder_of_that_name(tmp_path, monkeypatch):
    (tmp_path / "synthetic").mkdir()
    monkeypatch.chdir(tmp_path)
    assert dataset_info("synthetic").num_classes == 4


def test_a_folder_named_like_a_builtin_data_set_is_not_recorded_as_it(tmp_path):
    """A checkpoint records the data set's name; ./cifar10 of your own recorded as "cifar10" would
    be compiled on CIFAR-10 without --data. It is named by its path instead."""
    write_folder(tmp_path / "synthetic", _random_arrays(0, 1, 6, 6, 3, calibration=False), ["a", "b", "c"])
    info = dataset_info(str(tmp_path / "synthetic"))
    assert info.name != "synthetic" and info.name.endswith("synthetic") and info.num_classes == 3


def test_an_existing_file_that_is_not_data_is_named_as_such(tmp_path):
    (tmp_path / "model.pt").write_bytes(b"x")
    with pytest.raises(UserError, match="model.pt is not a data set: give a .npz file or an image folder"):
        dataset_info(str(tmp_path / "model.pt"))
    arrays = {"x_train": np.zeros((20, 8, 8), np.uint8), "y_train": np.arange(20) % 2,
              "x_test": np.zeros((2, 8, 8), np.uint8), "y_test": np.zeros(2, int)}
    with open(tmp_path / "upper.NPZ", "wb") as fh:  # np.savez would add .npz to the name
        np.savez(fh, **arrays)
    assert dataset_info(str(tmp_path / "upper.NPZ")).num_classes == 2


def test_cli_names_a_folder_without_test_images(tmp_path):
    """A folder without test/ is one line and exit 2 before anything is written (the
    successful compile on a folder is tests/test_compile_cli.py::test_compile_on_your_own_data)."""
    arrays = _random_arrays(0, 3, 6, 6, 2, calibration=False)
    write_folder(tmp_path / "broken", {k: v for k, v in arrays.items() if not k.endswith("_test")}, ["a", "b"])
    out = tmp_path / "out"
    assert_user_error(run_cli("compile", "zoo:resnet20", "--data", str(tmp_path / "broken"), "--quiet", "-o", str(out)),
                      "has no test/ subfolder")
    assert not out.exists()


def test_compile_asks_for_the_data_a_checkpoint_was_trained_on(tmp_path):
    """Without --data, a checkpoint trained on a data set of the user's own is refused by name
    (a ./flowers folder in the working directory could be other data)."""
    from prunec import zoo
    from prunec.frontend import save_checkpoint

    path = tmp_path / "flowers.pt"
    save_checkpoint(zoo.build("resnet20", in_channels=3, num_classes=3), str(path), "zoo:resnet20", 3, 3,
                    dataset="flowers", input_shape=[1, 3, 12, 10])
    assert_user_error(run_cli("compile", str(path), "--quiet", "-o", str(tmp_path / "out")),
                      "trained on flowers", "name it with --data")


def test_a_folder_name_that_is_not_utf8_is_refused_before_any_work(tmp_path):
    """Its name titles the report and the plots: a Latin-1 "café" used to fail at the very end of a
    compile, in matplotlib, with a traceback."""
    import os

    root = os.path.join(os.fsencode(tmp_path), b"caf\xe9")
    write_folder(Path(os.fsdecode(root)), _random_arrays(0, 1, 6, 6, 2, False), ["a", "b"])
    for read in (lambda name: dataset_info(name), lambda name: load_split(name, "train")):
        with pytest.raises(UserError, match=r"caf\\xe9 is not valid UTF-8"):
            read(os.fsdecode(root))
    good = tmp_path / "good"  # a pathlib.Path is a path too
    write_folder(good, _random_arrays(0, 1, 6, 6, 2, False), ["a", "b"])
    assert len(load_split(good, "train")) == len(load_split(str(good), "train"))
