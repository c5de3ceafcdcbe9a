"""Your own data as a folder of image files, one subfolder per class.

The layout most image data sets ship in (torchvision's ``ImageFolder``, Keras'
``image_dataset_from_directory``)::

    DIR/train/<class>/*.png      DIR/test/<class>/*.png      [DIR/calibration/<class>/*.png]

Labels are the positions of the class names (the sorted subfolders of ``train/``); the test
and calibration splits may lack a class but not bring a new one. Every image must have one
size -- resizing changes what the model sees, so it is left to the user. Images are read
as grayscale when every one of them is, else as RGB (alpha dropped). This module only
turns the folder into uint8 arrays; :mod:`prunec.data` splits, normalises and validates
them exactly as it does a ``.npz``.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np

from prunec.errors import UserError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm")
FOLDER_SPLITS = ("train", "calibration", "test")
_GRAY_MODES = ("1", "L", "LA", "I", "I;16", "F")


def is_image_folder(name: str) -> bool:
    """Whether ``--data`` names a directory (an image folder of the user's own)."""
    return os.path.isdir(name)


def read_image_folder(path: str | os.PathLike) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], tuple[str, ...]]:
    """``({split: (uint8 N x C x H x W, int64 labels)}, class names)``; read once per folder version.

    Raises :class:`UserError` naming the folder or the file at fault.
    """
    root = Path(path).resolve()
    files = _list_files(root)
    signature = tuple((str(f), f.stat().st_mtime_ns, f.stat().st_size) for split in files.values()
                      for _, f in split)
    return _read(str(root), signature)


def _list_files(root: Path) -> dict[str, list[tuple[str, Path]]]:
    """``{split: [(class name, file), ...]}`` in class, then file-name order."""
    present = [s for s in FOLDER_SPLITS if (root / s).is_dir()]
    missing = [s for s in ("train", "test") if s not in present]
    if missing:
        raise UserError(f"image folder {root} has no {' or '.join(f'{s}/' for s in missing)} subfolder; lay it out "
                        f"as train/<class>/*.png and test/<class>/*.png (calibration/<class>/ optional)")
    files: dict[str, list[tuple[str, Path]]] = {}
    for split in present:
        entries = sorted(p for p in (root / split).iterdir() if not p.name.startswith("."))
        loose = [p.name for p in entries if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
        if loose:
            raise UserError(f"image folder {root / split} holds images directly ({loose[0]}, ...); put each in a "
                            f"subfolder named after its class")
        files[split] = [(d.name, f) for d in entries if d.is_dir() for f in sorted(d.iterdir())
                        if f.is_file() and not f.name.startswith(".") and f.suffix.lower() in IMAGE_SUFFIXES]
        if not files[split]:
            raise UserError(f"image folder {root / split} holds no images ({', '.join(IMAGE_SUFFIXES)}) in its class "
                            f"subfolders")
    return files


@functools.lru_cache(maxsize=2)
def _read(root: str, signature: tuple) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], tuple[str, ...]]:
    del signature  # part of the cache key only: a changed file is read again
    from PIL import Image, UnidentifiedImageError

    files = _list_files(Path(root))
    classes = tuple(sorted({c for c, _ in files["train"]}))
    for split, entries in files.items():
        extra = sorted({c for c, _ in entries} - set(classes))
        if extra:
            raise UserError(f"image folder {root}: {split}/ has class '{extra[0]}', which train/ lacks")
    gray, first = True, None
    for entries in files.values():
        for _, f in entries:
            try:
                with Image.open(f) as img:
                    size, mode = img.size, img.mode
            except (OSError, UnidentifiedImageError, ValueError) as exc:
                raise UserError(f"cannot read image {f}: {exc}") from None
            if first is None:
                first = (f, size)
            elif size != first[1]:
                raise UserError(f"image {f} is {size[0]}x{size[1]} but {first[0]} is {first[1][0]}x{first[1][1]}; "
                                f"every image must have one size (resize them first)")
            gray &= mode in _GRAY_MODES
    mode = "L" if gray else "RGB"
    index = {c: i for i, c in enumerate(classes)}
    out = {}
    for split, entries in files.items():
        pixels = []
        for _, f in entries:
            try:
                with Image.open(f) as img:
                    pixels.append(np.asarray(img.convert(mode), dtype=np.uint8))
            except (OSError, ValueError) as exc:
                raise UserError(f"cannot read image {f}: {exc}") from None
        x = np.stack(pixels)
        x = x[:, None] if gray else x.transpose(0, 3, 1, 2)
        out[split] = (np.ascontiguousarray(x), np.array([index[c] for c, _ in entries], dtype=np.int64))
    return out, classes


__all__ = ["read_image_folder", "is_image_folder", "IMAGE_SUFFIXES"]
