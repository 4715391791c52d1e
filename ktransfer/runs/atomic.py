"""Atomic file writes: write to a temporary name in the same folder, then rename.

A crash (or SIGKILL) at any moment leaves either the old file or the new one, never half a file.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ktransfer.errors import DiskFullError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yields a temporary path beside `path`; on success renames it onto `path`.

    The temporary name keeps the extensions of `path` (Keras checks `.keras`, `.weights.h5`).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = suffix if suffix is not None else "".join(path.suffixes)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{suffix}", dir=path.parent)
    os.close(fd)
    os.unlink(tmp)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except Exception as exc:
        if is_disk_full(exc):
            _close_hdf5_files(tmp_path)
            exc.__traceback__ = None  # its frames hold the library's file objects
            raise DiskFullError(f"the disk holding {path} is full (writing {path.name}); free "
                                "some space and run the same command again: the previous "
                                "version of the file is kept") from None
        raise
    finally:
        if tmp_path.is_dir():
            shutil.rmtree(tmp_path, ignore_errors=True)
        elif tmp_path.exists():
            tmp_path.unlink()


def _close_hdf5_files(path: Path) -> None:
    """Closes every HDF5 file h5py still holds open at `path`. A `.weights.h5` save that failed
    on a full disk leaves its file open (closing it flushes, which fails again); HDF5 then
    retried at interpreter exit and the process died of a segmentation fault (exit -11) after
    the one-line error. Emptying the file first frees its blocks, so the close can flush.
    h5py is looked up, not imported: without h5py loaded there is no HDF5 file."""
    h5py = sys.modules.get("h5py")
    if h5py is None:
        return
    target = os.path.abspath(path)
    for fid in h5py.h5f.get_obj_ids(types=h5py.h5f.OBJ_FILE):
        try:
            if os.path.abspath(os.fsdecode(fid.name)) != target:
                continue
            with contextlib.suppress(OSError):
                os.truncate(target, 0)
            while fid.valid:
                fid.close()
        except (OSError, RuntimeError, ValueError):
            pass  # left to h5py's finalizer


def is_disk_full(exc: BaseException) -> bool:
    """Whether `exc` says the disk (or the user's quota) is full, however a library wrapped
    it (h5py raises its own errors with the OS message inside)."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(exc)
    # numpy's `tofile` (np.save) reports a short write as "N requested and M written".
    short_write = isinstance(exc, OSError) and re.fullmatch(r"\d+ requested and \d+ written",
                                                             text) is not None
    return short_write or "No space left on device" in text or "Disk quota exceeded" in text


def write_text(path: str | os.PathLike, text: str) -> None:
    """Writes `text` to `path` atomically (UTF-8)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Writes `data` to `path` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Writes `obj` as indented JSON to `path` atomically."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def save_with(path: str | os.PathLike, save: Callable[[str], None]) -> None:
    """Calls `save(tmp_path)` and renames the result onto `path` (for `model.save` and friends)."""
    with atomic_path(path) as tmp:
        save(str(tmp))


def _json_default(obj: Any) -> Any:
    """numpy / TF scalars and arrays as Python numbers and lists."""
    if getattr(obj, "ndim", 0) and hasattr(obj, "tolist"):
        return obj.tolist()
    if hasattr(obj, "item"):
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")
