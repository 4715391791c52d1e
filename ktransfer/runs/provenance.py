"""Where a run came from: the ktransfer version and commit that trained it, and when it
finished (metrics.json and the report show them)."""

from __future__ import annotations

import subprocess
import time
from importlib import metadata
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1]


def commit() -> str:
    """The short commit of the git checkout ktransfer runs from, with "+changes" when its
    files differ from it; "" outside a checkout (an installed wheel)."""
    def git(*args: str) -> str:
        try:
            done = subprocess.run(["git", *args], cwd=PACKAGE, capture_output=True, text=True,
                                  timeout=10)
        except (OSError, subprocess.SubprocessError):
            return ""
        return done.stdout.strip() if done.returncode == 0 else ""

    head = git("rev-parse", "--short", "HEAD")
    if head and git("status", "--porcelain", "--untracked-files=no", "--", "."):
        head += "+changes"
    return head


def version(unknown: str = "unknown") -> str:
    """The installed ktransfer's version (`unknown` when it is not installed)."""
    try:
        return metadata.version("ktransfer")
    except metadata.PackageNotFoundError:
        return unknown


def provenance() -> dict[str, str]:
    """{ktransfer version, commit, finished (UTC, ISO 8601)}."""
    return {"version": version(), "commit": commit(),
            "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
