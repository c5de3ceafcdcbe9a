"""Data sets: real Fashion-MNIST and CIFAR-10 with the project's fixed splits, and a
synthetic set for tests.

Every split is returned as in-memory tensors: images already normalised with the data
set's mean/std (the model's input) and int64 labels. ``info.preprocess`` maps raw pixels
in [0, 1] to that input, so a compiled model can say what it expects.

Splits (../shared/data/README.md):

* Fashion-MNIST: train = first 55,000 training images, calibration = last 5,000,
  test = the official 10,000 test images.
* CIFAR-10 (50,000 official training images): train 0-39,999, calibration
  40,000-44,999, test 45,000-49,999 ("CIFAR-10, 5k held-out split of the training set").
"""

from __future__ import annotations

import gzip
import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from prunec.errors import UserError

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

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        return (1, self.in_channels, self.image_size, self.image_size)

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


def dataset_info(name: str) -> DatasetInfo:
    if name not in DATASETS:
        raise UserError(f"unknown data set {name!r}; choose one of: {', '.join(DATASETS)}")
    return DATASETS[name]


def load_split(name: str, split: str, root: str | os.PathLike | None = None) -> Split:
    """Load ``split`` of data set ``name`` (``fashion-mnist``, ``cifar10``, ``synthetic``).

    ``root`` overrides where the files are; else ``$PRUNEC_DATA``, else the default place.
    """
    if split not in SPLITS:
        raise UserError(f"unknown split {split!r}; choose one of: {', '.join(SPLITS)}")
    if name == "fashion-mnist":
        pixels, labels = _fashion_mnist(split, root)
    elif name == "cifar10":
        pixels, labels = _cifar10(split, root)
    elif name == "synthetic":
        pixels, labels = _synthetic(split)
    else:
        dataset_info(name)  # raises the message listing the known ones
        raise AssertionError
    info = DATASETS[name]
    x = info.preprocess(torch.from_numpy(pixels).float().div_(255.0))
    return Split(info, split, x.contiguous(), torch.from_numpy(labels.astype(np.int64)))


# --------------------------------------------------------------------------- Fashion-MNIST


def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as fh:
        data = fh.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims).copy()


def _fashion_mnist(split: str, root: str | os.PathLike | None) -> tuple[np.ndarray, np.ndarray]:
    base = Path(root or os.environ.get("PRUNEC_DATA") or FASHION_MNIST_DIR)
    if (base / "fashion-mnist").is_dir():
        base = base / "fashion-mnist"
    prefix = "t10k" if split == "test" else "train"
    images, labels = base / f"{prefix}-images-idx3-ubyte.gz", base / f"{prefix}-labels-idx1-ubyte.gz"
    if not images.exists() or not labels.exists():
        raise UserError(
            f"Fashion-MNIST not found in {base}; install it with `{FASHION_MNIST_INSTALL}` "
            "or point --data-root / PRUNEC_DATA at the folder holding the idx .gz files"
        )
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
    candidates = [Path(root)] if root else (
        [Path(os.environ["PRUNEC_DATA"])] if os.environ.get("PRUNEC_DATA") else _default_cifar_paths()
    )
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


__all__ = ["DatasetInfo", "Split", "Normalize", "load_split", "dataset_info", "DATASETS", "SPLITS"]
