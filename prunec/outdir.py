"""All-or-nothing output directories.

A compile run writes into a hidden sibling directory and renames it into place only when
everything succeeded, so an interrupted or failed run leaves no half-written output, and
a previous good result is replaced only with ``force`` (and only once the new one is whole).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from prunec.errors import UserError
from prunec.interrupts import raise_if_interrupted

#: The file whose presence marks a directory as prunec output that ``--force`` may replace.
MARKER = "report.json"


def check_writable(path: str | os.PathLike, force: bool) -> Path:
    """Fail early, before any work, if ``path`` cannot become the output directory."""
    if not str(path).strip():
        raise UserError("the output directory is an empty name; give -o a directory to create")
    target = Path(path).resolve()
    if target.exists() and not target.is_dir():
        raise UserError(f"output path {path} exists and is not a directory")
    if target.exists() and not force:
        raise UserError(f"output directory {path} already exists; pass --force to replace it")
    if target.exists() and force:
        if target == Path.cwd().resolve() or target in Path.cwd().resolve().parents:
            raise UserError(f"refusing to replace {path}: it is (or holds) the working directory")
        if any(target.iterdir()) and not (target / MARKER).exists():
            raise UserError(f"refusing to replace {path}: it is not empty and holds no {MARKER} "
                            "(not a prunec output directory)")
    check_creatable_directory(target.parent, f"cannot write {path}")
    return target


def check_creatable_directory(directory: Path, context: str) -> None:
    """Fail, in one line prefixed by ``context``, if ``directory`` could not be created or written,
    without creating it: a run that fails later leaves no new empty folders behind."""
    existing = directory
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(f"{context}: {existing} is not a directory")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as exc:
        raise UserError(f"{context}: {existing} is not writable ({exc.strerror})") from None


def _missing_ancestors(directory: Path) -> list[Path]:
    """``directory`` and its parents that do not exist yet, deepest first."""
    missing = []
    while not directory.exists() and directory != directory.parent:
        missing.append(directory)
        directory = directory.parent
    return missing


def ensure_writable_directory(directory: Path, context: str) -> None:
    """Create ``directory`` if needed; one clear error, prefixed by ``context``, if it cannot be
    created or written. Writing is tried, not inferred from permission bits, which say yes to
    root on a read-only mount or on /proc."""
    if directory.exists() and not directory.is_dir():
        raise UserError(f"{context}: {directory} is not a directory")
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"{context}: cannot create {directory} ({exc.strerror})") from None
    try:
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as exc:
        raise UserError(f"{context}: {directory} is not writable ({exc.strerror})") from None


def check_writable_file(path: str | os.PathLike) -> Path:
    """Fail early, before any work, if the file ``path`` cannot be written (its directory must exist)."""
    if not str(path).strip():
        raise UserError("the output file is an empty name; give -o a file to write")
    target = Path(path).absolute()
    if target.is_dir():
        raise UserError(f"cannot write {path}: it is a directory")
    if target.exists() and not target.is_file():  # a device, FIFO or socket would be replaced by a file
        raise UserError(f"cannot write {path}: it exists and is not a regular file")
    if not target.parent.exists():
        raise UserError(f"cannot write {path}: directory {target.parent} does not exist")
    ensure_writable_directory(target.parent, f"cannot write {path}")
    return target


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike, force: bool = False) -> Iterator[Path]:
    """Yield a fresh staging directory that becomes ``path`` when the block succeeds."""
    target = check_writable(path, force)
    created = _missing_ancestors(target.parent)
    try:
        ensure_writable_directory(target.parent, f"cannot write {path}")
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    except (OSError, UserError) as exc:
        _remove_empty(created)
        if isinstance(exc, UserError):
            raise
        raise UserError(f"cannot write {path}: {exc.strerror}") from None
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(staging, 0o777 & ~umask)  # mkdtemp makes it private; the result should not be
    try:
        yield staging
        raise_if_interrupted()  # an interrupt swallowed on the way must not publish the result
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        _remove_empty(created)
        raise UserError(f"cannot write {path}: {exc.strerror or exc}") from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        _remove_empty(created)
        raise
    old = None
    if target.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
        os.rmdir(old)
        os.replace(target, old)
    os.replace(staging, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def write_atomic(path: str | os.PathLike[str], data: str | bytes) -> Path:
    """Write ``data`` (text as UTF-8) via a hidden temporary file then ``os.replace``: a crash or
    a full disk never leaves half a file, and a failure is one clear error."""
    path = Path(path)
    return write_atomic_files({path: data})[0]


def write_atomic_files(files: dict[Path, str | bytes]) -> list[Path]:
    """Replace several files as one set: every temporary file is written before the first is moved
    into place, so a full disk, a read-only folder or a directory in the way leaves all the old
    files as they were (only a failing rename among the final moves, which does not happen on one
    file system, could split the set)."""
    for path in files:
        if path.is_dir() or not path.parent.is_dir():
            why = "it is a directory" if path.is_dir() else f"directory {path.parent} does not exist"
            raise UserError(f"cannot write {path}: {why}")
    written: list[tuple[Path, Path]] = []
    try:
        for path, data in files.items():
            tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
            written.append((tmp, path))
            if isinstance(data, bytes):
                tmp.write_bytes(data)
            else:
                tmp.write_text(data, encoding="utf-8", errors="backslashreplace")
        for tmp, path in written:
            os.replace(tmp, path)
    except OSError as exc:
        for tmp, _ in written:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
        raise UserError(f"cannot write {path}: {exc.strerror or exc}") from None
    return list(files)


def _remove_empty(directories: list[Path]) -> None:
    """Remove the folders a failed write created (deepest first), where nothing else went into them."""
    for directory in directories:
        try:
            directory.rmdir()
        except OSError:
            return


__all__ = ["atomic_directory", "check_creatable_directory", "check_writable", "check_writable_file",
           "ensure_writable_directory",
           "write_atomic", "write_atomic_files"]

