"""The layout of an export folder (TF Serving's base path): numbered version folders, never
overwritten, and the checks on its name made before any work."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from ktransfer.errors import KtransferError

ORIGIN = "origin.json"  # in a version folder: the run that exported it


def origin(version_dir: Path) -> dict | None:
    """What `ORIGIN` says of the run that wrote a version folder (None when unknown)."""
    try:
        found = json.loads((version_dir / ORIGIN).read_text())
    except (OSError, ValueError):
        return None
    return found if isinstance(found, dict) else None


def versions(base: Path) -> list[int]:
    """The numbered version folders under `base`, ascending."""
    if not base.is_dir():
        return []
    return sorted(int(p.name) for p in base.iterdir() if p.is_dir() and p.name.isdigit())


def check_export_dir(export_dir: str | os.PathLike, version: int = 0,
                     flag: str = "export_dir") -> Path:
    """The absolute base path of `export_dir`, after checking its name and that `version` is
    free; KtransferError naming the flag otherwise."""
    base = Path(export_dir).resolve()
    if not base.name or not re.fullmatch(r"[A-Za-z0-9_.-]+", base.name):
        raise KtransferError(f"--{flag}: {export_dir!r} must end in a model name made of "
                             "letters, digits, '_', '.' or '-' (e.g. exports/digits)")
    if base.exists() and not base.is_dir():
        raise KtransferError(f"--{flag}: {base} exists and is not a folder")
    if version and version in versions(base):
        raise KtransferError(f"--version: {base / str(version)} already exists; versions are "
                             "never overwritten (omit --version for the next free one)")
    return base
