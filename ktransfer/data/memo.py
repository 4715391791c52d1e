"""Memos of checks that passed on files that have not changed since, kept between runs.

A run decodes every image file of a folder once before training, so that a corrupt one is
named before any work; on 2,000 JPEGs that is about half a second, and it grows with the data.
When every file passed, the check is remembered under a key of the files' paths, sizes and
modification times (nanoseconds), so the next run on the same unchanged folder skips it. A file
added, removed, rewritten or touched changes the key, and the check runs again.

Memos are empty files in `$KTRANSFER_CACHE/memo` (default `~/.cache/ktransfer/memo`); deleting
the folder forgets them. Where it cannot be written (a read-only home), nothing is remembered.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)


def folder() -> Path:
    """Where memos are kept: $KTRANSFER_CACHE/memo, by default ~/.cache/ktransfer/memo."""
    base = os.environ.get("KTRANSFER_CACHE") or Path.home() / ".cache" / "ktransfer"
    return Path(base) / "memo"


def key(check: str, files: list[str]) -> str | None:
    """A key for `check` (its name and version) passed on `files` as they are now: SHA-1 of
    the absolute paths, sizes and modification times in order; None when one cannot be read."""
    digest = hashlib.sha1(check.encode())
    try:
        for path in files:
            stat = os.stat(path)
            digest.update(f"\0{os.path.abspath(path)}\0{stat.st_size}\0{stat.st_mtime_ns}"
                          .encode("utf-8", "surrogateescape"))
    except OSError:
        return None
    return digest.hexdigest()


def seen(memo: str | None) -> bool:
    """Whether the check of `memo` (from `key`) passed before."""
    return memo is not None and (folder() / memo).is_file()


def remember(memo: str | None) -> None:
    """Records that the check of `memo` passed (silently nothing where it cannot)."""
    if memo is None:
        return
    try:
        folder().mkdir(parents=True, exist_ok=True)
        (folder() / memo).touch()
    except OSError as exc:
        log.debug("memo not written to %s: %s", folder(), exc)
