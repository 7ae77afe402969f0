"""Files written atomically: a temporary file beside the target, fsync, rename, fsync the folder.

A reader (or a restarted run) sees the old file or the whole new one, never a torn one, also
after a kill or a power loss; the file gets the usual mode (0666 less the umask, 0644 by
default), not the 0600 of temporary files. A temporary file left by a kill is named
``.<name>.<random>.tmp`` beside the target.

>>> import tempfile
>>> folder = Path(tempfile.mkdtemp())
>>> path = atomic_write_text(folder / "a" / "results.json", "{}\\n")
>>> sorted(p.name for p in path.parent.iterdir()), path.read_text()
(['results.json'], '{}\\n')
"""

from __future__ import annotations

import functools
import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import torch


@functools.cache
def _file_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], Any]) -> Path:
    """Call ``write`` on a binary handle of a temporary file, then put it in place as ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, _file_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write(path, lambda handle: handle.write(text.encode("utf-8")))


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` ``obj`` to ``path`` atomically."""
    return atomic_write(path, lambda handle: torch.save(obj, handle))


def fsync_dir(path: str | os.PathLike) -> None:
    """fsync the folder ``path`` (makes the creation, rename or removal of its entries durable)."""
    directory = os.open(path, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def fsync_tree(folder: str | os.PathLike) -> None:
    """fsync every file and folder under ``folder``, e.g. before renaming it into place."""
    for dirpath, _, filenames in os.walk(folder, topdown=False):
        for name in filenames:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(dirpath)


def temporary_files(folder: str | os.PathLike) -> list[Path]:
    """The temporary files (``.<name>.<random>.tmp``) of :func:`atomic_write` in ``folder``.

    A writer killed mid-write leaves its one behind; only a caller that knows no write is under
    way in ``folder`` (it holds the folder's lock) may remove them.
    """
    return sorted(p for p in Path(folder).glob(".*.tmp") if p.is_file())


def file_sha256(path: str | os.PathLike) -> str:
    """The sha256 of a file's bytes, read a megabyte at a time."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
