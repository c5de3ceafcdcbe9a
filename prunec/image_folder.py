"""Your own data as a folder of image files, one subfolder per class.

The layout most image data sets ship in::

    DIR/train/<class>/*.png      DIR/test/<class>/*.png      [DIR/calibration/<class>/*.png]

Labels are the positions of the class names (the sorted subfolders of ``train/``, each of
which must hold images); the test and calibration splits may lack a class but not bring a
new one. Every image must have one size -- resizing changes what the model sees, so it is
left to the user -- and 8 bits per channel (16-bit or float images would have to be
rescaled, which is the user's call too). Images are read as grayscale when every one of
them is (modes 1, L, LA, or a palette of greys), else as RGB (alpha dropped). This module
only turns the folder into uint8 arrays; :mod:`prunec.data` splits, normalises, validates
and caches them exactly as it does a ``.npz``.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

from prunec.errors import UserError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm")
FOLDER_SPLITS = ("train", "calibration", "test")
_GRAY_MODES = ("1", "L", "LA")
_EIGHT_BIT_MODES = (*_GRAY_MODES, "P", "PA", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr")

#: One version of a folder: (split, class, file, mtime in ns, size) per image, in label order.
Signature = tuple[tuple[str, str, str, int, int], ...]


def is_image_folder(name: str) -> bool:
    """Whether ``--data`` names a directory (an image folder of the user's own)."""
    return os.path.isdir(name)


def folder_version(path: str | os.PathLike) -> tuple[str, Signature]:
    """The folder's absolute path and the signature of its images: any added, removed, moved
    or rewritten file changes it, so a cache keyed on it never serves stale images."""
    root = Path(path).resolve()
    try:
        return str(root), tuple((split, cls, str(f), st.st_mtime_ns, st.st_size)
                                for split, cls, f in _list_files(root) for st in (f.stat(),))
    except OSError as exc:
        raise UserError(f"cannot read image folder {root}: {exc}") from None


def _list_files(root: Path) -> list[tuple[str, str, Path]]:
    """``(split, class, file)`` for every image, by split, class and file name."""
    present = [s for s in FOLDER_SPLITS if (root / s).is_dir()]
    missing = [s for s in ("train", "test") if s not in present]
    if missing:
        raise UserError(f"image folder {root} has no {' or '.join(f'{s}/' for s in missing)} subfolder; lay it out "
                        f"as train/<class>/*.png and test/<class>/*.png (calibration/<class>/ optional)")
    out = []
    for split in present:
        entries = sorted(p for p in (root / split).iterdir() if not p.name.startswith("."))
        loose = [p.name for p in entries if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
        if loose:
            raise UserError(f"image folder {root / split} holds images directly ({loose[0]}, ...); put each in a "
                            f"subfolder named after its class")
        found = 0
        for folder in (p for p in entries if p.is_dir()):
            children = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
            nested = [p.name for p in children if p.is_dir()]
            if nested:
                raise UserError(f"image folder {folder} holds a folder ({nested[0]}); nested folders are not read: "
                                f"put the class's images directly in {folder.name}/")
            images = [f for f in children if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES]
            if not images and split == "train":
                raise UserError(f"class folder {folder} holds no images ({', '.join(IMAGE_SUFFIXES)}); every class "
                                f"in train/ needs some, or its label would shift the others")
            out += [(split, folder.name, f) for f in images]
            found += len(images)
        if not found:
            raise UserError(f"image folder {root / split} holds no images ({', '.join(IMAGE_SUFFIXES)}) in class "
                            f"subfolders")
    return out


def read_folder(root: str, signature: Signature) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], tuple[str, ...]]:
    """``({split: (uint8 N x C x H x W, int64 labels)}, class names)`` of the images ``signature``
    lists (see :func:`folder_version`). Raises :class:`UserError` naming the file at fault."""
    classes = tuple(sorted({cls for split, cls, *_ in signature if split == "train"}))
    extra = sorted({(split, cls) for split, cls, *_ in signature if cls not in classes})
    if extra:
        raise UserError(f"image folder {root}: {extra[0][0]}/ has class '{extra[0][1]}', which train/ lacks")
    index = {cls: i for i, cls in enumerate(classes)}
    pixels: dict[str, list[np.ndarray]] = {}
    labels: dict[str, list[int]] = {}
    gray, first = True, None
    for split, cls, name, *_ in signature:
        rgb, was_gray, size = _read_image(name)
        if first is None:
            first = (name, size)
        elif size != first[1]:
            raise UserError(f"image {name} is {size[0]}x{size[1]} but {first[0]} is {first[1][0]}x{first[1][1]}; "
                            f"every image must have one size (resize them first)")
        gray &= was_gray
        pixels.setdefault(split, []).append(rgb)
        labels.setdefault(split, []).append(index[cls])
    out = {}
    for split, images in pixels.items():
        x = np.stack(images).transpose(0, 3, 1, 2)
        out[split] = (np.ascontiguousarray(x[:, :1] if gray else x), np.array(labels[split], dtype=np.int64))
    return out, classes


def _read_image(name: str) -> tuple[np.ndarray, bool, tuple[int, int]]:
    """(H x W x 3 uint8, whether the image is grayscale, (width, height))."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(name) as img:
                if img.mode not in _EIGHT_BIT_MODES:
                    raise UserError(f"image {name} has {img.mode!r} pixels; prunec reads 8-bit images (grayscale, "
                                    f"palette or colour): convert it to 8 bits first")
                rgb = np.asarray(img.convert("RGB"), dtype=np.uint8)
                gray = img.mode in _GRAY_MODES or (img.mode in ("P", "PA") and _same_channels(rgb))
                return rgb, gray, img.size
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise UserError(f"image {name} is too large to read safely: {exc}") from None
    except (OSError, ValueError, SyntaxError) as exc:  # PIL's decoders raise all three on bad files
        raise UserError(f"cannot read image {name}: {exc}") from None


def _same_channels(rgb: np.ndarray) -> bool:
    return bool((rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all())


__all__ = ["folder_version", "read_folder", "is_image_folder", "IMAGE_SUFFIXES", "Signature"]
