"""Data sets: real Fashion-MNIST and CIFAR-10 with the project's fixed splits, and a
synthetic set for tests.

Every split is returned as in-memory tensors: images already normalised with the data
set's mean/std (the model's input) and int64 labels. ``info.preprocess`` maps raw pixels
in [0, 1] to that input, so a compiled model can say what it expects.

Your own data: ``--data PATH.npz`` (see :func:`_user_npz` for the keys and layouts) or an
image folder ``--data DIR`` (see :mod:`prunec.image_folder`).

Splits (../shared/data/README.md):

* Fashion-MNIST: train = first 55,000 training images, calibration = last 5,000,
  test = the official 10,000 test images.
* CIFAR-10 (50,000 official training images): train 0-39,999, calibration
  40,000-44,999, test 45,000-49,999 ("CIFAR-10, 5k held-out split of the training set").
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import os
import pickle
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from prunec.errors import UserError
from prunec.image_folder import Signature, folder_version, is_image_folder, read_folder

MIN_STD = 1e-6  # a smaller std would blow 0-1 pixels up past float32's range
SPLITS = ("train", "calibration", "test")
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_INSTALL = "apt-get install dataset-fashion-mnist"


class Normalize(torch.nn.Module):
    """(x - mean) / std per channel: the preprocessing a data set's models expect."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (an fx Proxy passes: a model may trace through its own Normalize)
        if isinstance(x, np.ndarray) or (isinstance(x, torch.Tensor) and not torch.is_floating_point(x)):
            kind = x.dtype if isinstance(x, torch.Tensor) else "a numpy array"
            raise TypeError(f"Normalize takes a float tensor of 0-1 pixels, got {kind}; for uint8 images pass "
                            f"torch.as_tensor(images).float() / 255")
        return (x - self.mean) / self.std


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    num_classes: int
    in_channels: int
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    classes: tuple[str, ...] = field(default=())
    image_width: int | None = None  # None: square images
    test_note: str = ""  # what the test split is, for reports

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        return (1, self.in_channels, self.image_size, self.image_width or self.image_size)

    @property
    def preprocess(self) -> Normalize:
        return Normalize(self.mean, self.std)


@dataclass
class Split:
    """One split of a data set as tensors (x normalised NCHW float32, y int64)."""

    info: DatasetInfo
    name: str
    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, n: int | None, seed: int = 0) -> Split:
        """A reproducible random subset of at most ``n`` samples (all of them if ``n`` is None)."""
        if n is None or n >= len(self):
            return self
        idx = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))[:n]
        return Split(self.info, self.name, self.x[idx], self.y[idx])

    def loader(self, batch_size: int, shuffle: bool = False, seed: int = 0,
               ) -> torch.utils.data.DataLoader:
        dataset = torch.utils.data.TensorDataset(self.x, self.y)
        generator = torch.Generator().manual_seed(seed)
        return torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=shuffle,
                                           generator=generator)


FASHION_MNIST = DatasetInfo(
    "fashion-mnist", 10, 1, 28, (0.2860,), (0.3530,),
    ("t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag",
     "boot"),
)
CIFAR10 = DatasetInfo(
    "cifar10", 10, 3, 32, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616),
    ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
)
SYNTHETIC = DatasetInfo("synthetic", 4, 1, 16, (0.5,), (0.25,))
DATASETS = {d.name: d for d in (FASHION_MNIST, CIFAR10, SYNTHETIC)}


def is_data_file(name: str) -> bool:
    """Whether ``--data`` names data of the user's own (a ``.npz`` or an image folder) rather
    than a built-in data set; the built-in names win over a folder of the same name."""
    name = str(name)
    return name not in DATASETS and (name.lower().endswith(".npz") or is_image_folder(name))


def dataset_info(name: str) -> DatasetInfo:
    if is_data_file(name):
        return _user_data(name)[0]
    if name not in DATASETS:
        if os.path.exists(name):
            raise UserError(f"{name} is not a data set: give a .npz file or an image folder (train/<class>/ and "
                            "test/<class>/)")
        if os.sep in name or name.startswith("."):
            raise UserError(f"data folder not found: {name}")
        raise UserError(f"unknown data set {name!r}; choose one of: {', '.join(DATASETS)}, "
                        "a PATH.npz or an image folder DIR of your own")
    return DATASETS[name]


def renormalized(info: DatasetInfo, mean: Any = None, std: Any = None, source: str | None = None) -> DatasetInfo:
    """``info`` with the input normalization a model was trained with, where it differs.

    Models trained outside prunec often expect other statistics than the data set's own
    (0.5/0.5, or plain 0-1 pixels: mean 0, std 1); fed the wrong ones they look broken. One
    value stands for every channel. ``source`` names where the values came from in errors
    (default: the ``--mean``/``--std`` options).
    """
    def label(key: str) -> str:
        return f"--{key}" if source is None else f"{source} {key}"

    def per_channel(values: Any, key: str, default: tuple[float, ...]) -> tuple[float, ...]:
        if values is None:
            return default
        try:
            got = tuple(float(v) for v in np.asarray(values, dtype=np.float64).reshape(-1))
        except (TypeError, ValueError):
            raise UserError(f"{label(key)} must be numbers, one per channel or one for all; got {values!r}") from None
        if len(got) == 1:
            got *= info.in_channels
        if len(got) != info.in_channels:
            counts = "1" if info.in_channels == 1 else f"1 or {info.in_channels}"
            raise UserError(f"{label(key)} has {len(got)} values but {info.name}'s images have {info.in_channels} "
                            f"channel(s); give {counts}")
        if not all(np.isfinite(got)):
            raise UserError(f"{label(key)} must be finite numbers, got {', '.join(f'{v:g}' for v in got)}")
        return got

    new_mean, new_std = per_channel(mean, "mean", info.mean), per_channel(std, "std", info.std)
    if mean is not None and max(new_mean) > 1:
        raise UserError(f"{label('mean')} is on the 0-1 pixel scale, got {', '.join(f'{v:g}' for v in new_mean)}; "
                        f"divide 0-255 values by 255 (mean and std alike)")
    if min(new_std) < MIN_STD:
        raise UserError(f"{label('std')} must be positive (at least {MIN_STD:g}), "
                        f"got {', '.join(f'{v:g}' for v in new_std)}")
    return dataclasses.replace(info, mean=new_mean, std=new_std)


RECORDED_NORMALIZATION = "the model checkpoint's recorded (preprocess)"


def fingerprint(split: Split) -> str:
    """sha256 of ``split``'s images and labels: which data a compile used, where a name alone cannot tell
    (two image folders called ``data``, or one whose classes were renamed). The images are hashed as
    8-bit pixels, the normalization undone: inputs normalized with statistics that differ in the last
    digits (which :func:`same_normalization` accepts as the same) hash the same."""
    import hashlib

    digest = hashlib.sha256(str((tuple(split.x.shape), tuple(split.y.shape))).encode())
    shape = (1, -1) + (1,) * (split.x.dim() - 2)
    mean, std = (torch.tensor(v, dtype=torch.float32).view(shape) for v in (split.info.mean, split.info.std))
    for chunk in split.x.split(1024):  # a chunk at a time: a large split is not copied whole
        pixels = (chunk * std + mean).mul_(255).round_().clamp_(0, 255).to(torch.uint8).contiguous()
        digest.update(memoryview(pixels.numpy()))
    digest.update(memoryview(split.y.to(torch.int64).contiguous().numpy()))
    return digest.hexdigest()


def recorded_normalization(meta: dict[str, Any] | None) -> tuple[Any, Any] | None:
    """The (mean, std) a prunec checkpoint's metadata says its model was trained with, if any."""
    recorded = (meta or {}).get("preprocess")
    if isinstance(recorded, dict) and (recorded.get("mean") is not None or recorded.get("std") is not None):
        return recorded.get("mean"), recorded.get("std")
    return None


def same_normalization(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two ``{"mean", "std"}`` records feed a model the same inputs.

    Raises KeyError/TypeError/ValueError on a malformed record, for the caller to word.
    """
    return all(len(a[k]) == len(b[k]) and bool(np.allclose(a[k], b[k])) for k in ("mean", "std"))


def load_split(name: str, split: str, root: str | os.PathLike | None = None,
               mean: Sequence[float] | float | None = None, std: Sequence[float] | float | None = None) -> Split:
    """Load ``split`` of data set ``name`` (``fashion-mnist``, ``cifar10``, ``synthetic``).

    ``root`` overrides where the files are; else ``$PRUNEC_DATA``, else the default place.
    ``mean``/``std`` (0-1 scale) replace the data set's normalization (:func:`renormalized`).
    """
    if split not in SPLITS:
        raise UserError(f"unknown split {split!r}; choose one of: {', '.join(SPLITS)}")
    if is_data_file(name):
        info, arrays = _user_data(name)
        info = renormalized(info, mean, std)
        pixels, labels = arrays[split]
        x = torch.from_numpy(pixels).float()
        if pixels.dtype == np.uint8:
            x = x.div_(255.0)
        return Split(info, split, _row_major(info.preprocess(x)), torch.from_numpy(labels))
    if name == "fashion-mnist":
        pixels, labels = _fashion_mnist(split, root)
    elif name == "cifar10":
        pixels, labels = _cifar10(split, root)
    elif name == "synthetic":
        pixels, labels = _synthetic(split)
    else:
        dataset_info(name)  # raises the message listing the known ones
        raise AssertionError
    info = renormalized(DATASETS[name], mean, std)
    x = info.preprocess(torch.from_numpy(pixels).float().div_(255.0))
    return Split(info, split, _row_major(x), torch.from_numpy(labels.astype(np.int64)))


def _row_major(x: torch.Tensor) -> torch.Tensor:
    """``x`` with plain row-major strides. ``contiguous()`` is not enough: a one-channel batch made by
    numpy can be strided (HW, 1, W, 1), which torch counts as contiguous and as channels-last too,
    so convolutions return channels-last outputs and a model's ``x.view(x.size(0), -1)`` fails."""
    expected, step = [], 1
    for size in reversed(x.shape):
        expected.insert(0, step)
        step *= size
    return x if list(x.stride()) == expected else x.clone(memory_format=torch.contiguous_format)


# --------------------------------------------------------------------------- Fashion-MNIST


def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as fh:
        data = fh.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims).copy()


def _search_paths(name: str, root: str | os.PathLike | None, defaults: list[Path]) -> list[Path]:
    """Where to look for data set ``name``: an explicit ``root`` only; else ``$PRUNEC_DATA``
    (the folder itself or its ``name`` subfolder) and then the default places, so pointing
    the variable at one data set does not hide the other."""
    if root:
        return [Path(root), Path(root) / name]
    env = os.environ.get("PRUNEC_DATA")
    return ([Path(env), Path(env) / name] if env else []) + defaults


def _fashion_mnist(split: str, root: str | os.PathLike | None) -> tuple[np.ndarray, np.ndarray]:
    prefix = "t10k" if split == "test" else "train"
    names = (f"{prefix}-images-idx3-ubyte.gz", f"{prefix}-labels-idx1-ubyte.gz")
    candidates = _search_paths("fashion-mnist", root, [FASHION_MNIST_DIR])
    base = next((p for p in candidates if all((p / n).exists() for n in names)), None)
    if base is None:
        raise UserError(
            f"Fashion-MNIST not found (looked in {', '.join(str(p) for p in candidates)}); install it "
            f"with `{FASHION_MNIST_INSTALL}` or point --data-root / PRUNEC_DATA at the folder holding "
            "the idx .gz files"
        )
    images, labels = (base / n for n in names)
    try:
        x, y = _read_idx(images), _read_idx(labels)
    except (OSError, EOFError, ValueError) as exc:
        raise UserError(f"Fashion-MNIST files in {base} are unreadable: {exc}") from None
    if split == "train":
        x, y = x[:55_000], y[:55_000]
    elif split == "calibration":
        x, y = x[55_000:], y[55_000:]
    return np.ascontiguousarray(x[:, None, :, :]), y.copy()


# --------------------------------------------------------------------------- CIFAR-10

CIFAR_RANGES = {"train": (0, 40_000), "calibration": (40_000, 45_000), "test": (45_000, 50_000)}


def _default_cifar_paths() -> list[Path]:
    here = Path(__file__).resolve().parent.parent
    return [Path.cwd() / ".." / "shared" / "data" / "cifar10", here / ".." / "shared" / "data" /
            "cifar10", here / "shared" / "data" / "cifar10"]


def _cifar10(split: str, root: str | os.PathLike | None) -> tuple[np.ndarray, np.ndarray]:
    candidates = _search_paths("cifar10", root, _default_cifar_paths())
    for base in candidates:
        found = _read_cifar(base)
        if found is not None:
            x, y = found
            lo, hi = CIFAR_RANGES[split]
            return x[lo:hi], y[lo:hi]
    where = ", ".join(str(p) for p in candidates)
    raise UserError(
        f"CIFAR-10 not found (looked in {where}); give --data-root or PRUNEC_DATA pointing at "
        "cifar10_train.npz or a cifar-10-batches-py folder"
    )


def _read_cifar(base: Path) -> tuple[np.ndarray, np.ndarray] | None:
    """(x uint8 NCHW, y) of the 50,000 training images, from an .npz or the python batches."""
    npz = base if base.suffix == ".npz" else base / "cifar10_train.npz"
    if npz.is_file():
        with np.load(npz) as data:
            return data["x_train"].transpose(0, 3, 1, 2).copy(), data["y_train"].reshape(-1)
    batches = base if base.name == "cifar-10-batches-py" else base / "cifar-10-batches-py"
    if (batches / "data_batch_1").is_file():
        xs, ys = [], []
        for i in range(1, 6):
            with open(batches / f"data_batch_{i}", "rb") as fh:
                batch = pickle.load(fh, encoding="bytes")  # noqa: S301 - the official format
            xs.append(np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            ys.append(np.asarray(batch[b"labels"], dtype=np.uint8))
        return np.concatenate(xs), np.concatenate(ys)
    return None


# --------------------------------------------------------------------------- your own (.npz or a folder)


def _user_data(name: str) -> tuple[DatasetInfo, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """A data set of the user's own: an image folder (:mod:`prunec.image_folder`) or a ``.npz``."""
    name = os.fspath(name)
    try:  # the name titles the report, its plots and the terminal, which all need text
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise UserError(f"the data path {name.encode('utf-8', 'surrogateescape').decode('utf-8', 'backslashreplace')} "
                        "is not valid UTF-8 (a name from another encoding): rename it") from None
    if is_image_folder(name):
        return _image_folder(*folder_version(name))
    return _user_npz(name)


@functools.lru_cache(maxsize=2)
def _image_folder(root: str, signature: Signature) -> tuple[DatasetInfo, dict[str, tuple[np.ndarray, np.ndarray]]]:
    arrays, classes = read_folder(root, signature)
    name = Path(root).name
    return _assemble(root, arrays, {"classes": np.array(classes)}, name, f"{name}: the images in {Path(root) / 'test'}")


NPZ_SPLIT_KEYS = {"train": ("x_train", "y_train"), "calibration": ("x_calibration", "y_calibration"),
                  "test": ("x_test", "y_test")}
CALIBRATION_SHARE = 0.1


def _user_npz(path: str | os.PathLike) -> tuple[DatasetInfo, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """A data set of your own in one ``.npz``; read once per file version.

    Keys: ``x_train``, ``y_train``, ``x_test``, ``y_test`` and optionally ``x_calibration``,
    ``y_calibration`` (else a seeded random 10 % of the training images calibrate; the levels are
    fine-tuned on the rest). Images are uint8 (0-255) or floats (0-1), shaped N x H x W,
    N x H x W x C or N x C x H x W with C 1 or 3 (``layout`` = "NCHW"/"NHWC" settles an
    ambiguous shape); labels are integers 0..K-1. Optional: ``num_classes``, ``classes``,
    ``mean`` and ``std`` per channel on the 0-1 scale (default: measured on the training
    images).
    """
    p = Path(path)
    try:
        stat = p.stat()
    except OSError:
        raise UserError(f"data file not found: {path}") from None
    return _read_user_npz(str(p.resolve()), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=2)
def _read_user_npz(path: str, _mtime: int, _size: int
                   ) -> tuple[DatasetInfo, dict[str, tuple[np.ndarray, np.ndarray]]]:
    try:
        with np.load(path, allow_pickle=False) as data:
            raw = {k: data[k] for k in data.files}
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise UserError(f"{path} holds Python objects (object arrays), which prunec does not unpickle; store "
                            f"numeric arrays (images uint8 or float, labels integers)") from None
        raise UserError(f"{path} is not a readable .npz file: {exc}") from None
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise UserError(f"{path} is not a readable .npz file: {exc}") from None
    missing = [k for k in ("x_train", "y_train", "x_test", "y_test") if k not in raw]
    if missing:
        raise UserError(f"{path} lacks the arrays {', '.join(missing)} (it has: {', '.join(sorted(raw)) or 'none'})")
    layout = _text(raw["layout"]) if "layout" in raw else None
    if layout not in (None, "NCHW", "NHWC"):
        raise UserError(f"{path}: layout must be NCHW or NHWC, not {layout!r}")
    splits: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for split, (xk, yk) in NPZ_SPLIT_KEYS.items():
        if xk in raw or yk in raw:
            if xk not in raw or yk not in raw:
                raise UserError(f"{path} has only one of {xk} and {yk}")
            splits[split] = (_as_nchw(raw[xk], xk, layout, path), _as_labels(raw[yk], yk, path))
            if len(splits[split][0]) != len(splits[split][1]):
                raise UserError(f"{path}: {xk} has {len(splits[split][0])} images but {yk} "
                                f"{len(splits[split][1])} labels")
    name = Path(path).stem
    return _assemble(path, splits, raw, name, f"{name}: x_test/y_test of {path}")


def _assemble(path: str, splits: dict[str, tuple[np.ndarray, np.ndarray]], extras: dict[str, np.ndarray],
              name: str, test_note: str) -> tuple[DatasetInfo, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Check a user data set's splits (uint8 or 0-1 float NCHW, int labels) and describe it.

    ``extras`` may hold ``num_classes``, ``mean``, ``std`` and ``classes``; a missing
    calibration split is a seeded random tenth of the training images.
    """
    if name in DATASETS:  # a folder called cifar10 is not CIFAR-10: checkpoints record this name, and compile
        name = path       # and --reuse-levels would take the built-in data set for it
    if "calibration" not in splits:
        x, y = splits["train"]
        n_cal = max(1, int(round(len(y) * CALIBRATION_SHARE)))
        if len(y) - n_cal < 1:
            raise UserError(f"{path}: too few training images to set aside calibration images")
        # a seeded random tenth: files are often sorted by class, and the last tenth would be one class
        order = np.random.default_rng(0).permutation(len(y))
        cal, keep = np.sort(order[:n_cal]), np.sort(order[n_cal:])
        splits["train"], splits["calibration"] = (x[keep], y[keep]), (x[cal], y[cal])
    shapes = {s: x.shape[1:] for s, (x, _) in splits.items()}
    if len(set(shapes.values())) != 1:
        raise UserError(f"{path}: the splits' images differ in shape: {shapes}")
    if 0 in shapes["train"]:
        raise UserError(f"{path}: the images hold no pixels (channels x height x width {shapes['train']})")
    for split, (_, y) in splits.items():
        if len(y) == 0:
            raise UserError(f"{path}: the {split} split is empty")
    top = max(int(y.max()) for _, y in splits.values()) + 1
    num_classes = _number(extras["num_classes"], "num_classes", path) if "num_classes" in extras else top
    if "num_classes" not in extras and top < 2:
        raise UserError(f"{path}: one class only (label 0); a classifier needs at least 2")
    if num_classes < max(2, top):
        raise UserError(f"{path}: labels go up to {top - 1}, so num_classes must be at least {max(2, top)}")
    seen = len(np.unique(np.concatenate([y for _, y in splits.values()])))
    if num_classes > max(1000, 10 * seen):
        raise UserError(f"{path}: {num_classes} classes for {seen} distinct labels; number the classes 0..K-1")
    _check_test_classes_trained(path, splits)
    c, h, w = shapes["train"]
    train_x = splits["train"][0]
    scale = 255.0 if train_x.dtype == np.uint8 else 1.0
    mean = _per_channel(extras["mean"], "mean", c, path) if "mean" in extras else \
        tuple(float(train_x[:, i].mean(dtype=np.float64) / scale) for i in range(c))  # float16 would overflow
    std = _per_channel(extras["std"], "std", c, path) if "std" in extras else \
        tuple(max(float(train_x[:, i].std(dtype=np.float64) / scale), MIN_STD) for i in range(c))
    if min(std) < MIN_STD:
        raise UserError(f"{path}: std must be at least {MIN_STD:g} (on the 0-1 pixel scale), got "
                        f"{', '.join(f'{v:g}' for v in std)}")
    if max(mean) > 1:
        raise UserError(f"{path}: mean is on the 0-1 pixel scale, got {', '.join(f'{v:g}' for v in mean)}; divide "
                        f"0-255 values by 255 (mean and std alike)")
    classes = tuple(_text(v) for v in extras["classes"].reshape(-1)) if "classes" in extras else ()
    if classes and len(classes) != num_classes:
        raise UserError(f"{path}: {len(classes)} class names for {num_classes} classes")
    info = DatasetInfo(name, num_classes, c, h, mean, std, classes, image_width=w if w != h else None,
                       test_note=test_note)
    return info, splits


def _check_test_classes_trained(path: str, splits: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
    """Refuse test labels no training image has: the model cannot learn them, so accuracy would be capped."""
    trained = np.unique(np.concatenate([y for s, (_, y) in splits.items() if s != "test"]))
    untrained = np.setdiff1d(np.unique(splits["test"][1]), trained)
    if untrained.size:
        shown = ", ".join(str(int(v)) for v in untrained[:5]) + (", ..." if untrained.size > 5 else "")
        raise UserError(f"{path}: the test split has label(s) {shown}, which no training or calibration image "
                        f"has; every test class needs training images")


def _text(value: np.ndarray | bytes | str) -> str:
    value = value.item() if isinstance(value, np.ndarray) and value.ndim == 0 else value
    return value.decode() if isinstance(value, bytes) else str(value)


def _number(value: np.ndarray, key: str, path: str) -> int:
    try:
        number = np.asarray(value).item()
        if isinstance(number, bool) or not float(number).is_integer():  # 2.5 classes is not 2
            raise ValueError
        return int(number)
    except (TypeError, ValueError, OverflowError):
        raise UserError(f"{path}: {key} must be one integer, not {value!r}") from None


def _per_channel(value: np.ndarray, key: str, channels: int, path: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in np.asarray(value, dtype=np.float64).reshape(-1))
    except (TypeError, ValueError):
        raise UserError(f"{path}: {key} must be numbers, one per channel") from None
    if len(values) != channels or not all(np.isfinite(values)):
        raise UserError(f"{path}: {key} needs {channels} finite value(s), one per channel; got {len(values)}")
    return values


def _as_nchw(x: np.ndarray, key: str, layout: str | None, path: str) -> np.ndarray:
    if x.dtype != np.uint8 and not np.issubdtype(x.dtype, np.floating):
        raise UserError(f"{path}: {key} must be uint8 (0-255) or float (0-1) images, not {x.dtype}")
    if np.issubdtype(x.dtype, np.floating) and x.size:
        if not np.isfinite(x).all():
            raise UserError(f"{path}: {key} holds NaN or infinite values; images must be finite")
        if float(x.min()) < -1e-3 or float(x.max()) > 1 + 1e-3:
            raise UserError(f"{path}: float images in {key} must be scaled to 0-1 (found {float(x.min()):.3g} "
                            f"to {float(x.max()):.3g}); or store uint8 0-255")
    if x.ndim == 3:
        return np.ascontiguousarray(x[:, None])
    if x.ndim != 4:
        raise UserError(f"{path}: {key} must be N x H x W, N x H x W x C or N x C x H x W, not shape {x.shape}")
    if layout is None:
        channels_first, channels_last = x.shape[1] in (1, 3), x.shape[3] in (1, 3)
        if channels_first == channels_last:
            raise UserError(f"{path}: cannot tell the channels of {key} {x.shape}; add layout='NCHW' or 'NHWC'")
        layout = "NCHW" if channels_first else "NHWC"
    return np.ascontiguousarray(x if layout == "NCHW" else x.transpose(0, 3, 1, 2))


def _as_labels(y: np.ndarray, key: str, path: str) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim == 2 and min(y.shape) > 1:  # (N, 1) and (1, N) are label vectors
        raise UserError(f"{path}: {key} has shape {y.shape}, one row per image (one-hot?); store one class "
                        f"index per image, e.g. {key}.argmax(1)")
    y = y.reshape(-1)
    if not np.issubdtype(y.dtype, np.integer) or (len(y) and int(y.min()) < 0):
        raise UserError(f"{path}: {key} must hold integer class labels 0..K-1")
    return y.astype(np.int64)


# --------------------------------------------------------------------------- synthetic


def _synthetic(split: str) -> tuple[np.ndarray, np.ndarray]:
    """A small learnable set: each class is a bright square in its own quadrant, plus noise."""
    sizes = {"train": 512, "calibration": 256, "test": 256}
    rng = np.random.default_rng(SPLITS.index(split))
    n, size = sizes[split], SYNTHETIC.image_size
    y = rng.integers(0, SYNTHETIC.num_classes, n)
    x = rng.normal(60, 30, (n, 1, size, size))
    half = size // 2
    for i, label in enumerate(y):
        r, c = divmod(int(label), 2)
        x[i, 0, r * half:(r + 1) * half, c * half:(c + 1) * half] += 120
    return np.clip(x, 0, 255).astype(np.uint8), y.astype(np.uint8)


__all__ = ["DatasetInfo", "Split", "Normalize", "load_split", "renormalized", "recorded_normalization",
           "same_normalization", "dataset_info", "fingerprint", "is_data_file", "DATASETS", "SPLITS"]
