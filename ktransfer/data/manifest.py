"""The split manifest: which examples a run trained, validated and tested on, written into the
run directory when it starts (`manifest.json`).

Each split lists its examples (a file path, an id, or a position for in-memory sets) with their
class; every file the data came from is recorded with its size and modification time. A resumed
run and `evaluate` on the run's own split compare the data they read with it, so data that
changed in between (files added, removed, edited or relabelled) is named instead of silently
re-split.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from ktransfer.data.examples import Examples, Splits
from ktransfer.data.targets import Targets
from ktransfer.errors import DataError
from ktransfer.runs import atomic

MANIFEST = "manifest.json"


def _rows(examples: Examples | None, task: Targets) -> list[list[str]]:
    if examples is None:
        return []
    names = examples.names() or [str(i) for i in range(len(examples))]
    return [[name, task.target_text(target, examples.class_names)]
            for name, target in zip(names, examples.labels, strict=True)]


def _stat(path: str) -> list[int] | None:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return [info.st_size, info.st_mtime_ns]


def describe(splits: Splits, sources: list[str], task: Targets) -> dict[str, Any]:
    """The manifest of `splits` (targets in `task`'s form), read from the `sources` (--data,
    --val_data, ...)."""
    rows = {split: _rows(examples, task) for split, examples in
            (("train", splits.train), ("val", splits.val), ("test", splits.test))}
    names = {name for split in rows.values() for name, _ in split}
    files = {p: _stat(p) for p in sorted(names | set(sources)) if os.path.isfile(p)}
    body = json.dumps([rows, files], sort_keys=True).encode()
    return {"fingerprint": hashlib.sha1(body).hexdigest(), "splits": rows, "files": files}


def sources(data: Any) -> list[str]:
    """The paths a DataConfig reads (--data, --val_data, --test_data that are paths)."""
    specs = [data.data, data.val_data, data.test_data]
    return [s.split(":", 1)[1] if s.startswith("folder:") else s for s in specs
            if s and not s.startswith(("builtin:", "tfds:"))]


def write(run_dir: Path, manifest: dict[str, Any]) -> None:
    atomic.write_json(run_dir / MANIFEST, manifest)


def read(run_dir: Path) -> dict[str, Any] | None:
    try:
        return json.loads((run_dir / MANIFEST).read_text())
    except (OSError, ValueError):
        return None


def difference(saved: dict[str, Any], now: dict[str, Any]) -> str:
    """What changed between two manifests, in words ('' when nothing did)."""
    if saved.get("fingerprint") == now["fingerprint"]:
        return ""
    old = {n: c for split in saved["splits"].values() for n, c in split}
    new = {n: c for split in now["splits"].values() for n, c in split}
    added, removed = len(new.keys() - old.keys()), len(old.keys() - new.keys())
    relabelled = sum(old[n] != new[n] for n in old.keys() & new.keys())
    edited = sum(saved["files"].get(p) != s for p, s in now["files"].items()
                 if p in saved["files"])
    parts = [f"{n} {what}" for n, what in ((added, "added"), (removed, "removed"),
                                            (relabelled, "relabelled"), (edited, "modified"))
             if n]
    return ", ".join(parts) or "the split changed"


def check_unchanged(run_dir: Path, now: dict[str, Any], flag: str = "data") -> None:
    """DataError when the data differ from the run's manifest (none saved: nothing to check)."""
    saved = read(run_dir)
    if saved is None:
        return
    changed = difference(saved, now)
    if changed:
        raise DataError(f"--{flag}: the data changed since this run started ({changed}); "
                        "resuming or re-using its splits needs the same data: restore it, "
                        "or pass --overwrite (train) or --data (evaluate)")
